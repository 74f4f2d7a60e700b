"""The points ledger on its own: pending lots, available buckets by expiry, derived balances, debt,
clawback policies, redemption, expiry."""
from __future__ import annotations

import pytest

from stream_app.core.ledger import Ledger, Lot


def lot(lot_id: str, points: int, *, released: bool = True, available_at: int = 0, expires_at: int = 1000,
        rule: str = "order") -> Lot:
    return Lot(lot_id, rule, lot_id, points, points, 0, available_at, expires_at, released)


def remaining(ledger: Ledger) -> dict[str, int]:
    """Pending lots by id, available points by expiry instant ("@<ms>")."""
    return {**{x.lot_id: x.remaining for x in ledger.pending_lots},
            **{f"@{expires_at}": points for expires_at, points, _ in ledger.buckets}}


def identity(ledger: Ledger) -> bool:
    return (ledger.earned - ledger.clawed_back - ledger.redeemed - ledger.expired + ledger.adjusted
            == ledger.available + ledger.pending)


def test_balances_are_derived_from_lots():
    ledger = Ledger()
    ledger.add(lot("a", 100))
    ledger.add(lot("b", 40, released=False))
    assert (ledger.available, ledger.pending, ledger.earned) == (100, 40, 140)
    assert identity(ledger)


def test_release_moves_pending_to_available():
    ledger = Ledger()
    ledger.add(lot("p", 40, released=False))
    [pending] = ledger.pending_lots
    ledger.release(pending)
    assert (ledger.available, ledger.pending) == (40, 0)
    assert pending.released and ledger.pending_lots == []
    assert ledger.buckets == [[1000, 40, 0]]


def test_points_expiring_at_one_instant_share_a_bucket():
    ledger = Ledger()
    ledger.add(lot("a", 10, expires_at=500))
    ledger.add(lot("b", 20, expires_at=700))
    ledger.add(lot("c", 5, expires_at=500))
    ledger.add(lot("d", 1, expires_at=100))  # a late lot expiring before the others goes first
    assert ledger.buckets == [[100, 1, 0], [500, 15, 0], [700, 20, 0]]


def test_spendable_excludes_lots_expiring_at_or_before_now():
    ledger = Ledger()
    ledger.add(lot("a", 10, expires_at=500))
    ledger.add(lot("b", 20, expires_at=600))
    ledger.add(lot("p", 99, released=False))
    assert ledger.spendable(499) == 30
    assert ledger.spendable(500) == 20
    assert ledger.spendable(600) == 0


def test_claw_back_pending_first_preferring_the_orders_lot_then_soonest_expiring_available():
    ledger = Ledger()
    ledger.add(lot("other-pending", 30, released=False, available_at=10))
    ledger.add(lot("order-pending", 20, released=False, available_at=50))
    ledger.add(lot("late", 100, expires_at=900))
    ledger.add(lot("soon", 100, expires_at=300))
    taken = ledger.claw_back(80, now=0, policy="unlimited", prefer=("order-pending",))
    assert taken == 80
    assert remaining(ledger) == {"other-pending": 0, "order-pending": 0, "@900": 100, "@300": 70}
    assert (ledger.available, ledger.pending, ledger.clawed_back, ledger.debt) == (170, 0, 80, 0)
    assert identity(ledger)


def test_claw_back_skips_lots_already_expired_at_now():
    ledger = Ledger()
    ledger.add(lot("dead", 50, expires_at=100))
    ledger.add(lot("live", 50, expires_at=200))
    assert ledger.claw_back(10, now=100, policy="within_balance") == 10
    assert remaining(ledger) == {"@100": 50, "@200": 40}


def test_claw_back_unlimited_goes_into_debt_and_earnings_repay_it():
    ledger = Ledger()
    ledger.add(lot("a", 30))
    assert ledger.claw_back(100, now=0, policy="unlimited") == 100
    assert (ledger.available, ledger.pending, ledger.debt, ledger.clawed_back) == (-70, 0, 70, 100)
    ledger.add(lot("p", 50, released=False, available_at=5))
    assert (ledger.available, ledger.pending, ledger.debt) == (-70, 50, 70)  # pending does not repay
    ledger.add(lot("b", 20))  # an available lot repays at once
    assert (ledger.available, ledger.debt, ledger.buckets) == (-50, 50, [])
    ledger.release(ledger.pending_lots[0])
    assert (ledger.available, ledger.pending, ledger.debt, remaining(ledger)) == (0, 0, 0, {})
    ledger.add(lot("c", 15))
    assert (ledger.available, ledger.debt) == (15, 0)
    assert identity(ledger)


def test_claw_back_within_balance_stops_at_zero():
    ledger = Ledger()
    ledger.add(lot("a", 30))
    ledger.add(lot("p", 10, released=False))
    assert ledger.claw_back(100, now=0, policy="within_balance") == 40
    assert (ledger.available, ledger.pending, ledger.debt, ledger.clawed_back) == (0, 0, 0, 40)
    assert identity(ledger)


def test_claw_back_only_pending_never_touches_available():
    ledger = Ledger()
    ledger.add(lot("a", 30))
    ledger.add(lot("p", 10, released=False))
    assert ledger.claw_back(25, now=0, policy="only_pending") == 10
    assert (ledger.available, ledger.pending, ledger.debt, ledger.clawed_back) == (30, 0, 0, 10)
    assert identity(ledger)


def test_redeem_soonest_expiring_first():
    ledger = Ledger()
    ledger.add(lot("late", 50, expires_at=900))
    ledger.add(lot("soon", 30, expires_at=300))
    ledger.add(lot("mid", 40, expires_at=600))
    ledger.redeem(50, now=0)
    assert remaining(ledger) == {"@900": 50, "@600": 20}
    assert (ledger.available, ledger.redeemed) == (70, 50)
    assert identity(ledger)


def test_expire_due_empties_the_buckets_whose_instant_has_come():
    ledger = Ledger()
    ledger.add(lot("a", 30, expires_at=100))
    ledger.add(lot("b", 20, expires_at=200))
    ledger.add(lot("c", 5, expires_at=300))
    ledger.add(lot("p", 10, released=False))
    ledger.redeem(30, now=0)
    ledger.claw_back(10, now=0, policy="unlimited")
    assert ledger.expire_due(99) == []
    assert ledger.expire_due(200) == [(200, 20)]  # the first bucket was used up by the redemption
    assert (ledger.expired, ledger.available, ledger.pending) == (20, 5, 0)
    # the used-up buckets go; the pending lot with nothing left stays until it is released
    assert remaining(ledger) == {"p": 0, "@300": 5}
    assert (ledger.earned, ledger.redeemed, ledger.clawed_back, ledger.expired) == (65, 30, 10, 20)
    assert identity(ledger)


def test_a_warning_covers_only_the_points_it_announced():
    ledger = Ledger()
    ledger.add(lot("a", 30, expires_at=500))
    soon = ledger.unwarned_expiring(now=0, horizon=500)
    ledger.mark_warned(soon)
    assert ledger.buckets == [[500, 30, 1]]
    ledger.add(lot("b", 5, expires_at=500))  # deposited after the warning: an unwarned twin
    assert ledger.buckets == [[500, 5, 0], [500, 30, 1]]
    assert ledger.unwarned_expiring(now=0, horizon=500) == [[500, 5, 0]]
    assert ledger.next_warning(warn_before=100, now=0) == 400
    ledger.mark_warned(ledger.unwarned_expiring(now=0, horizon=500))
    assert ledger.buckets == [[500, 35, 1]]
    assert ledger.next_warning(warn_before=100, now=0) is None


def test_adjust_positive_repays_debt_and_negative_goes_into_debt():
    ledger = Ledger()
    ledger.add(lot("a", 10))
    ledger.adjust(-25, None)
    assert (ledger.available, ledger.debt, ledger.adjusted) == (-15, 15, -25)
    ledger.adjust(40, lot("adj", 40, rule="adjustment"))
    assert (ledger.available, ledger.debt, ledger.adjusted, remaining(ledger)) == (25, 0, 15, {"@1000": 25})
    assert ledger.earned == 10  # an adjustment is not earned
    assert identity(ledger)


def test_take_stops_at_amount():
    ledger = Ledger()
    lots = [lot("a", 5), lot("b", 5), lot("c", 5)]
    assert ledger.take(7, lots) == 7
    assert [x.remaining for x in lots] == [0, 3, 5]
    assert ledger.take(100, lots) == 8


@pytest.mark.parametrize("debt", [0, 7])
def test_round_trip(debt):
    ledger = Ledger(debt=debt, earned=5, clawed_back=1, redeemed=2, expired=3, adjusted=4)
    ledger.add(Lot("a:order", "order", "a", 9, 7, 1, 3, 8, released=False))  # a pending lot's id: source:rule
    ledger.add(lot("b", 4, expires_at=9))
    again = Ledger.from_dict(ledger.to_dict())
    assert again == ledger
    assert again.to_dict() == ledger.to_dict()


def test_a_ledger_stored_with_one_entry_per_lot_loads_into_buckets():
    """Release 047f314 stored every lot; released ones join their expiry's bucket on load."""
    old = {"lots": [lot("a", 10, expires_at=500).to_dict(), lot("b", 5, expires_at=500).to_dict(),
                    {**lot("w", 7, expires_at=900).to_dict(), "warned": True},
                    {**lot("used", 3, expires_at=900).to_dict(), "remaining": 0},
                    lot("p", 4, released=False, expires_at=950).to_dict()],
           "debt": 0, "earned": 29, "clawed_back": 0, "redeemed": 3, "expired": 0, "adjusted": 0}
    ledger = Ledger.from_dict(old)
    assert ledger.buckets == [[500, 15, 0], [900, 7, 1]]
    assert [x.lot_id for x in ledger.pending_lots] == ["p"]
    assert (ledger.available, ledger.pending) == (22, 4)
    assert identity(ledger)

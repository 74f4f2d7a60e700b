"""Refunds claw back floor(order points x refunded / paid) less what was already clawed for the order,
pending first, then available soonest-expiring first, limited by the refund policy."""
from __future__ import annotations

import pytest

from stream_app.core.event_ids import id_hash
from stream_app.core.member import Member
from tests.unit.conftest import DAY, due, ms, summary, templates

T0 = "2024-03-05T10:00:00+08:00"
RELEASE = ms(T0) + 7 * DAY


def remaining(r) -> dict[str, int]:
    """Pending lots by id, available points by expiry instant ("@<ms>")."""
    return {**{lot.lot_id: lot.remaining for lot in r.ledger.pending_lots},
            **{f"@{expires_at}": points for expires_at, points, _ in r.ledger.buckets}}


def clawed(result) -> list[tuple[int, str]]:
    return [(x["points"], x["rule"]) for x in result.rewards if x["type"] == "points_clawed_back"]


@pytest.fixture
def policy_run(run, make_program):
    def make(policy: str):
        return run(make_program({"orders.refund_policy": f'"{policy}"'}))
    return make


def test_partial_refunds_add_up_and_floor_on_the_cumulative_amount(run):
    r = run()
    r.order(T0, "o1", 10000)
    results = [r.refund(ms(T0) + i + 1, "o1", cents) for i, cents in enumerate((333, 333, 334))]
    # floor(100 x 333/10000) = 3, floor(100 x 666/10000) = 6, floor(100 x 1000/10000) = 10
    assert [summary(x.rewards) for x in results] == [[("points_clawed_back", -3, "refund")],
                                                     [("points_clawed_back", -3, "refund")],
                                                     [("points_clawed_back", -4, "refund")]]
    assert [x.rewards[0]["details"] for x in results] == [{"order_id": "o1", "refunded_cents": 333},
                                                          {"order_id": "o1", "refunded_cents": 666},
                                                          {"order_id": "o1", "refunded_cents": 1000}]
    assert [x.notifications[0]["params"] for x in results] == [{"points": 3, "order_id": "o1"},
                                                               {"points": 3, "order_id": "o1"},
                                                               {"points": 4, "order_id": "o1"}]
    assert results[0].notifications[0]["priority"] == "transactional"
    assert r.balance() == (0, 190)
    order = r.member.order("o1")
    assert (order.refunded_cents, order.clawed_back, order.bonus_reversed) == (1000, 10, False)
    assert r.ledger.clawed_back == 10

    result = r.refund(ms(T0) + 10, "o1", 9000)
    assert summary(result.rewards) == [("points_clawed_back", -90, "refund"),
                                       ("points_clawed_back", -100, "first_order_bonus_reversal")]
    assert result.rewards[1]["details"] == {"order_id": "o1"}
    assert [n["params"] for n in result.notifications] == [{"points": 190, "order_id": "o1"}]
    assert result.rewards[-1]["balance"] == {"available": 0, "pending": 0}
    assert r.ledger.clawed_back == 200


def test_a_refund_too_small_for_a_point_claws_nothing(run):
    r = run()
    r.order(T0, "o1", 10000)
    result = r.refund(ms(T0) + 1, "o1", 99)
    assert (result.outcome, result.rewards, result.notifications) == ("applied", [], [])
    assert r.member.order("o1").refunded_cents == 99


def test_partial_refund_keeps_the_bonus(run):
    r = run()
    r.order(T0, "o1", 10000)
    result = r.refund(ms(T0) + 1, "o1", 9999)
    assert summary(result.rewards) == [("points_clawed_back", -99, "refund")]
    assert r.balance() == (0, 101)


def test_refund_larger_than_the_payment_is_capped(run):
    r = run()
    r.order(T0, "o1", 10000)
    result = r.refund(ms(T0) + 1, "o1", 15000)
    assert summary(result.rewards) == [("points_clawed_back", -100, "refund"),
                                       ("points_clawed_back", -100, "first_order_bonus_reversal")]
    assert result.rewards[0]["details"] == {"order_id": "o1", "refunded_cents": 10000}
    assert r.member.order("o1").refunded_cents == 10000
    again = r.refund(ms(T0) + 2, "o1", 100)
    assert (again.outcome, again.rewards, again.notifications) == ("applied", [], [])
    assert r.balance() == (0, 0)
    assert r.ledger.clawed_back == 200


def test_refund_of_an_unknown_order_is_ignored(run):
    r = run()
    r.order(T0, "o1", 10000)
    before = r.state
    result = r.refund(ms(T0) + 1, "nope", 500)
    assert (result.outcome, result.rewards, result.notifications) == ("ignored", [], [])
    for key in ("ledger", "orders", "tier", "at_risk_since"):
        assert result.state[key] == before[key]
    assert Member.from_dict(result.state).seen.hashes == [id_hash(x) for x in ("e1", "e2")]


def test_refund_of_another_members_order_is_ignored(run):
    a, b = run(member_id="a"), run(member_id="b", prefix="b")
    a.order(T0, "o1", 10000)
    b.order(T0, "o2", 10000)
    result = b.refund(ms(T0) + 1, "o1", 10000)
    assert (result.outcome, result.rewards) == ("ignored", [])
    assert b.balance() == (0, 200)


def test_refund_claws_the_orders_own_pending_lot_first(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.order(ms(T0) + DAY, "o2", 5000)
    r.refund(ms(T0) + DAY + 1, "o2", 2000)
    assert remaining(r) == {"e1:order": 100, "e1:first_order_bonus": 100, "e2:order": 30}


def test_refund_after_release_claws_available_soonest_expiring_first(run):
    r = run()
    r.share(T0)                       # 5 points, expire T0 + 365 days
    r.order(T0, "o1", 10000)          # available at RELEASE, expire RELEASE + 365 days
    r.advance(RELEASE)
    assert r.balance() == (205, 0)
    result = r.refund(RELEASE + 1, "o1", 5000)
    assert summary(result.rewards) == [("points_clawed_back", -50, "refund")]
    # the share's points go first, then the order's (its two lots expire together: one bucket)
    assert remaining(r) == {f"@{RELEASE + 365 * DAY}": 155}
    assert r.balance() == (155, 0)


def test_pending_points_of_another_order_go_before_available_points(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.advance(RELEASE)
    r.order(RELEASE + DAY, "o2", 5000)
    assert r.balance() == (200, 50)
    result = r.refund(RELEASE + DAY + 1, "o1", 10000)
    assert summary(result.rewards) == [("points_clawed_back", -100, "refund"),
                                       ("points_clawed_back", -100, "first_order_bonus_reversal")]
    assert result.notifications[0]["params"] == {"points": 200, "order_id": "o1"}
    assert r.balance() == (50, 0)
    assert remaining(r) == {"e2:order": 0, f"@{RELEASE + 365 * DAY}": 50}


def test_refund_of_a_doubled_order_claws_what_it_earned(run):
    r = run()
    r.order("2024-03-17T10:00:00+08:00", "o0", 1000)
    r.order("2024-03-18T10:00:00+08:00", "o1", 10000)
    assert r.member.order("o1").points == 200
    result = r.refund("2024-03-19T10:00:00+08:00", "o1", 10000)
    assert summary(result.rewards) == [("points_clawed_back", -200, "refund")]


def test_refund_still_applies_to_a_frozen_member(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.state["frozen"] = True
    result = r.refund(ms(T0) + 1, "o1", 5000)
    assert (result.outcome, summary(result.rewards)) == ("applied", [("points_clawed_back", -50, "refund")])


def test_unlimited_policy_goes_negative_and_later_earnings_repay(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.advance(RELEASE)
    r.redeem(RELEASE + 1, 200)
    assert r.balance() == (0, 0)
    result = r.refund(RELEASE + 2, "o1", 10000)
    assert summary(result.rewards) == [("points_clawed_back", -100, "refund"),
                                       ("points_clawed_back", -100, "first_order_bonus_reversal")]
    assert result.rewards[-1]["balance"] == {"available": -200, "pending": 0}
    assert (r.ledger.debt, r.ledger.clawed_back) == (200, 200)
    result = r.share(RELEASE + 3)
    assert summary(result.rewards) == [("points_earned", 5, "shares")]
    assert result.rewards[0]["balance"] == {"available": -195, "pending": 0}
    r.order(RELEASE + 4, "o2", 30000)
    assert r.balance() == (-195, 300)      # pending points do not repay
    result = r.advance(RELEASE + 4 + 7 * DAY)
    assert summary(result.rewards) == [("points_earned", 300, "order")]
    assert result.rewards[0]["balance"] == {"available": 105, "pending": 0}
    assert r.ledger.debt == 0
    redeem = r.redeem(RELEASE + 5 + 7 * DAY, 106)
    assert redeem.rewards[0]["details"]["reason"] == "insufficient_points"
    assert summary(r.redeem(RELEASE + 6 + 7 * DAY, 105).rewards) == [("points_redeemed", -105, "redemption")]


def test_within_balance_policy_stops_at_zero(policy_run):
    r = policy_run("within_balance")
    r.order(T0, "o1", 10000)
    r.advance(RELEASE)
    r.redeem(RELEASE + 1, 150)
    result = r.refund(RELEASE + 2, "o1", 10000)
    assert summary(result.rewards) == [("points_clawed_back", -50, "refund"),
                                       ("points_clawed_back", 0, "first_order_bonus_reversal")]
    assert [n["params"] for n in result.notifications] == [{"points": 50, "order_id": "o1"}]
    assert r.balance() == (0, 0)
    assert (r.ledger.debt, r.ledger.clawed_back) == (0, 50)
    order = r.member.order("o1")
    assert (order.clawed_back, order.bonus_reversed, order.qualifying) == (50, True, 50)
    # the next earning is not used to repay anything
    assert r.share(RELEASE + 3).rewards[0]["balance"] == {"available": 5, "pending": 0}
    # a further refund of the same order retries the shortfall of the order points, within balance
    result = r.refund(RELEASE + 4, "o1", 1)
    assert summary(result.rewards) == [("points_clawed_back", -5, "refund")]
    assert r.member.order("o1").clawed_back == 55


def test_within_balance_takes_pending_before_available(policy_run):
    r = policy_run("within_balance")
    r.share(T0)
    r.order(T0, "o1", 10000)
    result = r.refund(ms(T0) + 1, "o1", 10000)
    assert clawed(result) == [(-100, "refund"), (-100, "first_order_bonus_reversal")]
    assert r.balance() == (5, 0)


def test_only_pending_policy_never_touches_available(policy_run):
    r = policy_run("only_pending")
    r.share(T0)
    r.order(T0, "o1", 10000)
    result = r.refund(ms(T0) + 1, "o1", 5000)
    assert clawed(result) == [(-50, "refund")]
    assert r.balance() == (5, 150)
    r.advance(RELEASE)
    assert r.balance() == (155, 0)
    result = r.refund(RELEASE + 1, "o1", 5000)
    assert summary(result.rewards) == [("points_clawed_back", 0, "refund"),
                                       ("points_clawed_back", 0, "first_order_bonus_reversal")]
    assert result.notifications == []
    assert r.balance() == (155, 0)
    assert r.member.order("o1").clawed_back == 50


def test_release_reports_only_what_is_left_after_a_pending_clawback(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.refund(ms(T0) + 1, "o1", 2500)
    result = r.advance(RELEASE)
    assert summary(result.rewards) == [("points_earned", 100, "first_order_bonus"), ("points_earned", 75, "order")]
    assert [n["params"]["points"] for n in result.notifications] == [100, 75]
    assert result.rewards[-1]["balance"] == {"available": 175, "pending": 0}


def test_release_of_a_fully_refunded_order_emits_nothing(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.refund(ms(T0) + 1, "o1", 10000)
    assert remaining(r) == {"e1:order": 0, "e1:first_order_bonus": 0}
    result = r.advance(RELEASE)
    assert (result.rewards, result.notifications) == ([], [])
    assert (r.ledger.pending_lots, r.ledger.buckets) == ([], [])
    assert due(result) is None


def test_refunding_a_non_first_order_reverses_no_bonus(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.order(ms(T0) + 1, "o2", 4000)
    result = r.refund(ms(T0) + 2, "o2", 4000)
    assert summary(result.rewards) == [("points_clawed_back", -40, "refund")]
    assert templates(result.notifications) == ["points_clawed_back"]
    assert r.balance() == (0, 200)

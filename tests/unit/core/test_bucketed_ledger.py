"""The ledger's buckets against a model that keeps every lot (the form before issue 11).

Whatever the sequence of earnings (any expiry instants, in any order), releases, redemptions,
clawbacks, adjustments and expiries, the bucketed ledger gives the same balances, the same spendable
points at any instant and the same points expired at each instant as one that keeps each lot and
spends soonest-expiring first: buckets lose nothing but the lots' names.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.ledger import Ledger, Lot


@dataclass
class ModelLot:
    name: str
    remaining: int
    available_at: int
    expires_at: int
    released: bool


@dataclass
class Model:
    """One entry per lot; what the ledger must be equivalent to."""

    lots: list[ModelLot] = field(default_factory=list)
    debt: int = 0

    def live(self, now: int | None) -> list[ModelLot]:
        return sorted((x for x in self.lots if x.released and x.remaining and (now is None or x.expires_at > now)),
                      key=lambda x: x.expires_at)

    def repay(self, lot: ModelLot) -> None:
        paid = min(self.debt, lot.remaining)
        lot.remaining -= paid
        self.debt -= paid

    def take(self, amount: int, lots: list[ModelLot]) -> int:
        taken = 0
        for lot in lots:
            part = min(lot.remaining, amount - taken)
            lot.remaining -= part
            taken += part
        return taken

    def available(self) -> int:
        return sum(x.remaining for x in self.lots if x.released) - self.debt

    def spendable(self, now: int) -> int:
        return sum(x.remaining for x in self.live(now)) - self.debt


ACTION = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 50), st.integers(1, 40), st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 40)),
    st.tuples(st.just("redeem"), st.integers(1, 80), st.integers(0, 40)),
    st.tuples(st.just("claw_back"), st.integers(1, 80), st.integers(0, 40),
              st.sampled_from(["unlimited", "within_balance", "only_pending"])),
    st.tuples(st.just("adjust"), st.integers(-60, 60), st.integers(1, 40)),
    st.tuples(st.just("expire"), st.integers(0, 40)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ACTION, max_size=40))
def test_buckets_behave_like_lots(actions):
    ledger, model = Ledger(), Model()
    pending: dict[str, Lot] = {}
    for n, action in enumerate(actions):
        kind = action[0]
        if kind == "earn":
            _, points, expires, released = action
            name = f"l{n}"
            lot = Lot(name, "r", name, points, points, 0, 0 if released else expires // 2, expires * 10, released)
            ledger.add(lot)
            model.lots.append(ModelLot(name, points, lot.available_at, lot.expires_at, released))
            if released:
                model.repay(model.lots[-1])
            else:
                pending[name] = lot
        elif kind == "release":
            for name in sorted(pending, key=lambda k: pending[k].available_at)[:1]:
                ledger.release(pending.pop(name))
                mine = next(x for x in model.lots if x.name == name)
                mine.released = True
                model.repay(mine)
        elif kind == "redeem":
            _, amount, now = action
            now *= 10
            if ledger.spendable(now) >= amount:
                assert model.spendable(now) >= amount
                ledger.redeem(amount, now)
                model.take(amount, model.live(now))
        elif kind == "claw_back":
            _, amount, now, policy = action
            now *= 10
            taken = ledger.claw_back(amount, now, policy)
            expected = model.take(amount, sorted((x for x in model.lots if not x.released),
                                                 key=lambda x: x.available_at))
            if policy != "only_pending":
                expected += model.take(amount - expected, model.live(now))
            if policy == "unlimited":
                model.debt += amount - expected
                expected = amount
            assert taken == expected
        elif kind == "adjust":
            _, points, expires = action
            if points > 0:
                lot = Lot(f"a{n}", "adjustment", f"a{n}", points, points, 0, 0, expires * 10, True)
                ledger.adjust(points, lot)
                model.lots.append(ModelLot(f"a{n}", points, 0, expires * 10, True))
                model.repay(model.lots[-1])
            elif points < 0:
                ledger.adjust(points, None)
                model.debt += -points - model.take(-points, model.live(None))
        else:
            now = action[1] * 10
            expired = ledger.expire_due(now)
            by_instant: dict[int, int] = {}
            for lot in model.lots:
                if lot.released and lot.remaining and lot.expires_at <= now:
                    by_instant[lot.expires_at] = by_instant.get(lot.expires_at, 0) + lot.remaining
                    lot.remaining = 0
            assert expired == sorted(by_instant.items())
        assert ledger.available == model.available()
        assert ledger.pending == sum(x.remaining for x in model.lots if not x.released)
        for at in (0, 55, 200, 400):
            assert ledger.spendable(at) == model.spendable(at)
        instants = [(b[0], b[2]) for b in ledger.buckets]
        assert instants == sorted(set(instants)) and all(b[1] > 0 for b in ledger.buckets)

"""A member's points ledger: pending lots, available points in buckets by expiry, and running totals.

Pure data and arithmetic; times are epoch milliseconds passed in by the caller.
Invariant: earned - clawed_back - redeemed - expired + adjusted == available + pending.

Why buckets: available points are fungible except for when they expire, so once a lot is available
its points join the bucket of its expiry instant (the program rounds expiry to a day or a month,
`expiry.granularity`); a year of daily earning is then a dozen buckets, not thousands of lots, and
spending soonest-expiring first is exact at the bucket's granularity. A bucket is
`[expires_at, remaining, warned]`; points deposited after a bucket was warned go to an unwarned twin
at the same instant, so a warning never covers points it did not announce. Pending lots keep their
identity (a refund claws back its own order's lot first) until released.
"""
from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

EXPIRES, REMAINING, WARNED = 0, 1, 2
ROW_REMAINING = 3  # in a pending lot's stored row (Lot.to_row)
_REMAINING_OF_LOT, _REMAINING_OF_BUCKET = attrgetter("remaining"), itemgetter(REMAINING)  # summed per balance


@dataclass(slots=True)
class Lot:
    """Points earned by one source event under one rule (pending until `available_at`)."""

    lot_id: str
    rule: str
    source_event_id: str
    points: int
    remaining: int
    earned_at: int
    available_at: int
    expires_at: int
    released: bool
    warned: bool = False

    def to_dict(self) -> dict:
        return {"lot_id": self.lot_id, "rule": self.rule, "source_event_id": self.source_event_id,
                "points": self.points, "remaining": self.remaining, "earned_at": self.earned_at,
                "available_at": self.available_at, "expires_at": self.expires_at,
                "released": self.released, "warned": self.warned}

    @classmethod
    def from_dict(cls, d: dict) -> Lot:
        return cls(d["lot_id"], d["rule"], d["source_event_id"], d["points"], d["remaining"],
                   d["earned_at"], d["available_at"], d["expires_at"], d["released"], d["warned"])

    def to_row(self) -> list:
        """A pending lot, compactly: its id is `<source_event_id>:<rule>` (earning.py), it is unreleased."""
        return [self.rule, self.source_event_id, self.points, self.remaining, self.earned_at, self.available_at,
                self.expires_at]

    @classmethod
    def from_row(cls, row: list) -> Lot:
        rule, source, points, remaining, earned_at, available_at, expires_at = row
        return cls(f"{source}:{rule}", rule, source, points, remaining, earned_at, available_at, expires_at, False)


@dataclass(slots=True)
class Ledger:
    """Pending lots, available buckets, and the running totals the balance identity is checked against."""

    pending_lots: list[Lot] = field(default_factory=list)
    buckets: list[list[int]] = field(default_factory=list)  # [expires_at, remaining, warned], sorted
    debt: int = 0
    earned: int = 0
    clawed_back: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0

    def to_dict(self) -> dict:
        return {"pending": [lot.to_row() for lot in self.pending_lots], "buckets": self.buckets,
                "debt": self.debt, "earned": self.earned, "clawed_back": self.clawed_back,
                "redeemed": self.redeemed, "expired": self.expired, "adjusted": self.adjusted}

    @classmethod
    def from_dict(cls, d: dict) -> Ledger:
        if "lots" in d:  # written before buckets (release 047f314 and earlier): one entry per lot
            lots = [Lot.from_dict(x) for x in d["lots"]]
            ledger = cls([lot for lot in lots if not lot.released], [], d["debt"], d["earned"],
                         d["clawed_back"], d["redeemed"], d["expired"], d["adjusted"])
            for lot in lots:
                if lot.released and lot.remaining:
                    ledger._deposit(lot.expires_at, lot.remaining, lot.warned)
            return ledger
        return cls([Lot.from_row(x) for x in d["pending"]], [list(b) for b in d["buckets"]], d["debt"],
                   d["earned"], d["clawed_back"], d["redeemed"], d["expired"], d["adjusted"])

    @classmethod
    def stored_liability(cls, d: dict) -> int:
        """Available + pending points of a stored ledger (`to_dict`), read off its rows without building
        Lot objects: the member index recomputes it for every changed member."""
        if "lots" in d:  # written before buckets (release 047f314 and earlier)
            old = cls.from_dict(d)
            return old.available + old.pending
        return (sum(bucket[REMAINING] for bucket in d["buckets"]) - d["debt"]
                + sum(row[ROW_REMAINING] for row in d["pending"]))

    # -- balances (derived, never stored) --------------------------------------------------
    @property
    def pending(self) -> int:
        return sum(map(_REMAINING_OF_LOT, self.pending_lots))

    @property
    def available(self) -> int:
        return sum(map(_REMAINING_OF_BUCKET, self.buckets)) - self.debt

    def spendable(self, now: int) -> int:
        """Available points in buckets still live at `now` (an expired bucket cannot be spent)."""
        return sum(b[REMAINING] for b in self.buckets if b[EXPIRES] > now) - self.debt

    # -- changes -----------------------------------------------------------------------------
    def add(self, lot: Lot) -> None:
        """Record an earned lot: pending until released, or straight into its expiry bucket."""
        self.earned += lot.points
        if lot.released:
            self._deposit(lot.expires_at, self._repay_debt(lot.remaining))
        else:
            self.pending_lots.append(lot)

    def release(self, lot: Lot) -> None:
        """A pending lot becomes available: what is left of it repays debt, the rest joins its bucket."""
        self.pending_lots.remove(lot)
        lot.released = True
        self._deposit(lot.expires_at, self._repay_debt(lot.remaining))

    def _repay_debt(self, points: int) -> int:
        """Repay debt from `points`; returns what is left of them."""
        repaid = min(self.debt, points)
        self.debt -= repaid
        return points - repaid

    def _deposit(self, expires_at: int, points: int, warned: bool = False) -> None:
        if points <= 0:
            return
        for bucket in reversed(self.buckets):  # deposits are nearly always in the newest bucket
            if bucket[EXPIRES] < expires_at:
                break
            if bucket[EXPIRES] == expires_at and bucket[WARNED] == warned:
                bucket[REMAINING] += points
                return
        insort(self.buckets, [expires_at, points, int(warned)])

    @staticmethod
    def take(amount: int, lots: list[Lot]) -> int:
        """Take up to `amount` points from pending `lots` in the given order; returns what was taken."""
        taken = 0
        for lot in lots:
            if taken == amount:
                break
            part = min(lot.remaining, amount - taken)
            lot.remaining -= part
            taken += part
        return taken

    def _take_available(self, amount: int, live_after: int | None) -> int:
        """Take up to `amount` from buckets, soonest-expiring first (only those live after `live_after`)."""
        return sum(points for _, points in self._take_parts(amount, live_after))

    def _take_parts(self, amount: int, live_after: int | None) -> list[list[int]]:
        """What `_take_available` takes, as [expires_at, points] parts (twins at one instant: one part)."""
        parts: list[list[int]] = []
        for bucket in self.buckets:
            if amount == 0:
                break
            if live_after is not None and bucket[EXPIRES] <= live_after:
                continue
            part = min(bucket[REMAINING], amount)
            bucket[REMAINING] -= part
            amount -= part
            if parts and parts[-1][0] == bucket[EXPIRES]:
                parts[-1][1] += part
            elif part:
                parts.append([bucket[EXPIRES], part])
        self._drop_empty()
        return parts

    def claw_back(self, amount: int, now: int, policy: str, prefer: tuple[str, ...] = ()) -> int:
        """Remove `amount` points for a refund: pending first (preferred lots first), then available
        soonest-expiring first, then, under the `unlimited` policy, debt. Returns points removed."""
        pending = sorted(self.pending_lots, key=lambda lot: (lot.lot_id not in prefer, lot.available_at))
        taken = self.take(amount, pending)
        if policy != "only_pending":
            taken += self._take_available(amount - taken, now)
        if policy == "unlimited":
            self.debt += amount - taken
            taken = amount
        self.clawed_back += taken
        return taken

    def redeem(self, amount: int, now: int) -> None:
        """Spend `amount` points (the caller checked `spendable`), soonest-expiring first."""
        self.redeemed += self._take_available(amount, now)

    def expire_due(self, now: int) -> list[tuple[int, int]]:
        """Expire every bucket whose instant has come: (expires_at, points) per expiry instant, in order."""
        expired: list[tuple[int, int]] = []
        while self.buckets and self.buckets[0][EXPIRES] <= now:
            expires_at, points, _ = self.buckets.pop(0)
            if expired and expired[-1][0] == expires_at:
                expired[-1] = (expires_at, expired[-1][1] + points)
            elif points:
                expired.append((expires_at, points))
        self.expired += sum(points for _, points in expired)
        return expired

    def adjust(self, points: int, lot: Lot | None) -> None:
        """An operator's adjustment: a positive one arrives as an available lot, a negative one is
        taken from available points (soonest-expiring first) and then from debt."""
        self.adjusted += points
        if lot is not None:
            self._deposit(lot.expires_at, self._repay_debt(lot.remaining))
        else:
            owed = -points
            self.debt += owed - self._take_available(owed, None)

    def unwarned_expiring(self, now: int, horizon: int) -> list[list[int]]:
        """Buckets with points, not yet warned, that expire after `now` and by `horizon`."""
        soon = []
        for bucket in self.buckets:
            if bucket[EXPIRES] > horizon:
                break
            if bucket[EXPIRES] > now and bucket[REMAINING] and not bucket[WARNED]:
                soon.append(bucket)
        return soon

    def mark_warned(self, buckets: list[list[int]]) -> None:
        """Mark `buckets` warned, merging each into a warned twin at its instant if there is one."""
        for bucket in buckets:
            twin = next((b for b in self.buckets if b[EXPIRES] == bucket[EXPIRES] and b[WARNED]), None)
            if twin is None:
                bucket[WARNED] = 1
            else:
                twin[REMAINING] += bucket[REMAINING]
                bucket[REMAINING] = 0
        self._drop_empty()

    def next_warning(self, warn_before: int, now: int) -> int | None:
        """The earliest instant after `now` at which an unwarned bucket enters its warning period."""
        for bucket in self.buckets:
            if bucket[REMAINING] and not bucket[WARNED] and bucket[EXPIRES] - warn_before > now:
                return bucket[EXPIRES] - warn_before
        return None

    def _drop_empty(self) -> None:
        if any(not b[REMAINING] for b in self.buckets):
            self.buckets = [b for b in self.buckets if b[REMAINING]]

    # -- reservations (stream_app/core/redemption.py) -------------------------------------------
    def take_parts(self, amount: int, now: int) -> list[list[int]]:
        """Spend `amount` points as `redeem` does (soonest-expiring first) and say what was taken, as
        [expires_at, points] parts: a later `give_back` restores each part with the expiry it had left."""
        parts = self._take_parts(amount, now)
        self.redeemed += sum(points for _, points in parts)
        return parts

    def give_back(self, parts: list[list[int]]) -> int:
        """Return points taken by `take_parts`, each part to the bucket of the expiry it had (an instant
        already past expires at the member's next step); they count as redeemed no more. Returns the
        points given back."""
        total = 0
        for expires_at, points in parts:
            self._deposit(expires_at, self._repay_debt(points))
            total += points
        self.redeemed -= total
        return total

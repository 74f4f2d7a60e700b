"""A member's points ledger: earn lots, derived balances, release, consumption and expiry.

Pure data and arithmetic; times are epoch milliseconds passed in by the caller.
Invariant: earned - clawed_back - redeemed - expired + adjusted == available + pending.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Lot:
    """Points earned by one source event under one rule."""

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


@dataclass(slots=True)
class Ledger:
    """Lots plus the running totals that the balance identity is checked against."""

    lots: list[Lot] = field(default_factory=list)
    debt: int = 0
    earned: int = 0
    clawed_back: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0

    def to_dict(self) -> dict:
        return {"lots": [lot.to_dict() for lot in self.lots], "debt": self.debt, "earned": self.earned,
                "clawed_back": self.clawed_back, "redeemed": self.redeemed, "expired": self.expired,
                "adjusted": self.adjusted}

    @classmethod
    def from_dict(cls, d: dict) -> Ledger:
        return cls([Lot.from_dict(x) for x in d["lots"]], d["debt"], d["earned"], d["clawed_back"],
                   d["redeemed"], d["expired"], d["adjusted"])

    # -- balances (derived, never stored) --------------------------------------------------
    @property
    def pending(self) -> int:
        return sum(lot.remaining for lot in self.lots if not lot.released)

    @property
    def available(self) -> int:
        return sum(lot.remaining for lot in self.lots if lot.released) - self.debt

    def spendable(self, now: int) -> int:
        """Available points on lots still live at `now` (an expired lot cannot be spent)."""
        return sum(lot.remaining for lot in self.lots if lot.released and lot.expires_at > now) - self.debt

    # -- changes -----------------------------------------------------------------------------
    def add(self, lot: Lot) -> None:
        """Record an earned lot; an available one first repays any debt."""
        self.earned += lot.points
        self.lots.append(lot)
        if lot.released:
            self._repay_debt(lot)

    def release(self, lot: Lot) -> None:
        """A pending lot becomes available."""
        lot.released = True
        self._repay_debt(lot)

    def _repay_debt(self, lot: Lot) -> None:
        repaid = min(self.debt, lot.remaining)
        lot.remaining -= repaid
        self.debt -= repaid

    def take(self, amount: int, lots: list[Lot]) -> int:
        """Take up to `amount` points from `lots` in the given order; returns what was taken."""
        taken = 0
        for lot in lots:
            if taken == amount:
                break
            part = min(lot.remaining, amount - taken)
            lot.remaining -= part
            taken += part
        return taken

    def claw_back(self, amount: int, now: int, policy: str, prefer: tuple[str, ...] = ()) -> int:
        """Remove `amount` points for a refund: pending first (preferred lots first), then available
        soonest-expiring first, then, under the `unlimited` policy, debt. Returns points removed."""
        pending = sorted((lot for lot in self.lots if not lot.released),
                         key=lambda lot: (lot.lot_id not in prefer, lot.available_at))
        taken = self.take(amount, pending)
        if policy != "only_pending":
            taken += self.take(amount - taken, self.live_available(now))
        if policy == "unlimited":
            self.debt += amount - taken
            taken = amount
        self.clawed_back += taken
        return taken

    def live_available(self, now: int) -> list[Lot]:
        """Available lots that are live at `now`, soonest-expiring first."""
        return sorted((lot for lot in self.lots if lot.released and lot.remaining and lot.expires_at > now),
                      key=lambda lot: (lot.expires_at, lot.lot_id))

    def redeem(self, amount: int, now: int) -> None:
        """Spend `amount` points (the caller checked `spendable`), soonest-expiring first."""
        self.redeemed += self.take(amount, self.live_available(now))

    def expire(self, lot: Lot) -> int:
        """Expire what is left of a lot; returns the points expired."""
        points, lot.remaining = lot.remaining, 0
        self.expired += points
        return points

    def adjust(self, points: int, lot: Lot | None) -> None:
        """An operator's adjustment: a positive one arrives as an available lot, a negative one is
        taken from available lots and then from debt."""
        self.adjusted += points
        if lot is not None:
            self.lots.append(lot)
            self._repay_debt(lot)
        else:
            owed = -points
            taken = self.take(owed, [x for x in self.lots if x.released and x.remaining])
            self.debt += owed - taken

    def prune(self) -> None:
        """Drop lots with nothing left once they are available (totals keep their history)."""
        self.lots = [lot for lot in self.lots if lot.remaining or not lot.released]

    # -- reservations (stream_app/core/redemption.py) -------------------------------------------
    def take_parts(self, amount: int, now: int) -> list[list[int]]:
        """Spend `amount` points as `redeem` does (soonest-expiring first) and say what was taken, as
        [expires_at, points] parts: a later `give_back` restores each part with the expiry it had left."""
        parts: list[list[int]] = []
        for lot in self.live_available(now):
            if amount == 0:
                break
            part = min(lot.remaining, amount)
            lot.remaining -= part
            amount -= part
            parts.append([lot.expires_at, part])
        self.redeemed += sum(points for _, points in parts)
        return parts

    def give_back(self, parts: list[list[int]], source_id: str, now: int) -> int:
        """Return points taken by `take_parts`: one available lot per part, with its own expiry; they
        count as redeemed no more. Returns the points given back."""
        total = 0
        for index, (expires_at, points) in enumerate(parts):
            lot = Lot(f"{source_id}:{index}", "give_back", source_id, points, points, now, now, expires_at,
                      released=True)
            self.lots.append(lot)
            self._repay_debt(lot)
            total += points
        self.redeemed -= total
        return total

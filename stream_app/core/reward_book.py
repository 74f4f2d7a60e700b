"""A member's side of redemptions: its reservations, units redeemed per reward and period, grants given.

Stored as one field of the member state (`Member.rewards`); a state written before rewards existed
has no such key and reads as an empty book, and an empty book is not written (old states stay byte-equal).
"""
from __future__ import annotations

from dataclasses import dataclass, field

RESERVED, REDEEMED, RELEASED, CANCELLED = "reserved", "redeemed", "released", "cancelled"


@dataclass(slots=True)
class Reservation:
    """Points held for one redemption until the reward agent answers; `parts` is what the ledger gave."""

    reward_code: str
    quantity: int
    points: int
    parts: list[list[int]]
    status: str
    at: int
    period: str  # the limit period the units count in
    grant: bool = False

    def to_dict(self) -> dict:
        return {"reward_code": self.reward_code, "quantity": self.quantity, "points": self.points,
                "parts": self.parts, "status": self.status, "at": self.at, "period": self.period,
                "grant": self.grant}

    @classmethod
    def from_dict(cls, d: dict) -> Reservation:
        return cls(d["reward_code"], d["quantity"], d["points"], [list(p) for p in d["parts"]], d["status"],
                   d["at"], d["period"], d.get("grant", False))


@dataclass(slots=True)
class RewardBook:
    reservations: dict[str, Reservation] = field(default_factory=dict)  # by redemption id, oldest first
    counts: dict[str, list] = field(default_factory=dict)  # reward code -> [period key, units]
    grants: dict[str, str] = field(default_factory=dict)  # reward code -> last period granted

    def to_dict(self) -> dict:
        return {"reservations": {rid: r.to_dict() for rid, r in self.reservations.items()},
                "counts": self.counts, "grants": self.grants}

    @classmethod
    def from_dict(cls, d: dict | None) -> RewardBook:
        if not d:
            return cls()
        return cls({rid: Reservation.from_dict(r) for rid, r in d["reservations"].items()},
                   {code: list(c) for code, c in d["counts"].items()}, dict(d["grants"]))

    def __bool__(self) -> bool:
        return bool(self.reservations or self.counts or self.grants)

    @property
    def points_reserved(self) -> int:
        return sum(r.points for r in self.reservations.values() if r.status == RESERVED)

    def units(self, code: str, period: str) -> int:
        counted = self.counts.get(code)
        return counted[1] if counted and counted[0] == period else 0

    def count(self, code: str, period: str, units: int) -> None:
        """Add `units` (negative: a release) to the reward's count of `period` (an older period restarts)."""
        if self.units(code, period) or units > 0:
            self.counts[code] = [period, max(0, self.units(code, period) + units)]

    def prune(self, keep: int) -> None:
        """Keep every open reservation, and the `keep` newest finished ones (a cancel needs them)."""
        finished = [rid for rid, r in self.reservations.items() if r.status != RESERVED]
        for rid in finished[:-keep] if keep else finished:
            del self.reservations[rid]

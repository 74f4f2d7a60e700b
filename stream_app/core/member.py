"""A member's whole state as the core sees it, and its plain-dict form stored in tables."""
from __future__ import annotations

from dataclasses import dataclass, field

from stream_app.core.ledger import Ledger
from stream_app.core.reward_book import RewardBook


@dataclass(slots=True)
class Order:
    """A paid order as far as points are concerned (what it actually earned, not today's rules)."""

    order_id: str
    event_id: str
    paid_at: int
    paid_cents: int
    points: int
    bonus: int
    refunded_cents: int = 0
    clawed_back: int = 0
    bonus_reversed: bool = False
    reviewed: bool = False

    def to_dict(self) -> dict:
        return {"order_id": self.order_id, "event_id": self.event_id, "paid_at": self.paid_at,
                "paid_cents": self.paid_cents, "points": self.points, "bonus": self.bonus,
                "refunded_cents": self.refunded_cents, "clawed_back": self.clawed_back,
                "bonus_reversed": self.bonus_reversed, "reviewed": self.reviewed}

    @classmethod
    def from_dict(cls, d: dict) -> Order:
        return cls(**d)

    @property
    def qualifying(self) -> int:
        """Tier-qualifying points this order still counts for."""
        return self.points - self.clawed_back


@dataclass(slots=True)
class Member:
    member_id: str
    created_at: int
    tier: str
    ledger: Ledger = field(default_factory=Ledger)
    at_risk_since: int | None = None
    orders: dict[str, Order] = field(default_factory=dict)
    has_ordered: bool = False
    daily: dict[str, dict[str, int]] = field(default_factory=dict)
    last_login_day: str | None = None
    login_streak: int = 0
    birthday: str | None = None
    birthday_set_at: int | None = None
    birthday_paid_year: int | None = None
    referrer_id: str | None = None
    frozen: bool = False
    redemption_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    first_order_at: int | None = None
    last_order_at: int | None = None
    last_activity_at: int | None = None
    segment: str | None = None
    velocity: dict[str, list] = field(default_factory=dict)
    flags: list[dict] = field(default_factory=list)
    held: list[dict] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    evaluated_at: int | None = None
    rewards: RewardBook = field(default_factory=RewardBook)

    def to_dict(self) -> dict:
        state = {
            "member_id": self.member_id, "created_at": self.created_at, "tier": self.tier,
            "ledger": self.ledger.to_dict(), "at_risk_since": self.at_risk_since,
            "orders": [o.to_dict() for o in self.orders.values()], "has_ordered": self.has_ordered,
            "daily": self.daily, "last_login_day": self.last_login_day, "login_streak": self.login_streak,
            "birthday": self.birthday, "birthday_set_at": self.birthday_set_at,
            "birthday_paid_year": self.birthday_paid_year, "referrer_id": self.referrer_id,
            "frozen": self.frozen, "redemption_ids": self.redemption_ids, "event_ids": self.event_ids,
            "first_order_at": self.first_order_at, "last_order_at": self.last_order_at,
            "last_activity_at": self.last_activity_at, "segment": self.segment, "velocity": self.velocity,
            "flags": self.flags, "held": self.held, "devices": self.devices,
            "evaluated_at": self.evaluated_at,
        }
        if self.rewards:  # written only once used: states of members who never redeemed stay as they were
            state["rewards"] = self.rewards.to_dict()
        return state

    @classmethod
    def from_dict(cls, d: dict) -> Member:
        return cls(
            member_id=d["member_id"], created_at=d["created_at"], tier=d["tier"],
            ledger=Ledger.from_dict(d["ledger"]), at_risk_since=d["at_risk_since"],
            orders={o["order_id"]: Order.from_dict(o) for o in d["orders"]}, has_ordered=d["has_ordered"],
            daily={day: dict(counts) for day, counts in d["daily"].items()},
            last_login_day=d["last_login_day"], login_streak=d["login_streak"],
            birthday=d["birthday"], birthday_set_at=d["birthday_set_at"],
            birthday_paid_year=d["birthday_paid_year"], referrer_id=d["referrer_id"], frozen=d["frozen"],
            redemption_ids=list(d["redemption_ids"]), event_ids=list(d["event_ids"]),
            # Fields added after the first release: states written before them lack the keys.
            first_order_at=d.get("first_order_at"), last_order_at=d.get("last_order_at"),
            last_activity_at=d.get("last_activity_at"), segment=d.get("segment"),
            velocity={k: [list(x) for x in v] for k, v in d.get("velocity", {}).items()},
            flags=list(d.get("flags", [])), held=[dict(x) for x in d.get("held", [])],
            devices=list(d.get("devices", [])), evaluated_at=d.get("evaluated_at"),
            rewards=RewardBook.from_dict(d.get("rewards")),
        )

    def count_today(self, day: str, kind: str) -> int:
        return self.daily.get(day, {}).get(kind, 0)

    def bump_today(self, day: str, kind: str) -> None:
        """Count one rewarded `kind` on local `day`, keeping only the three newest days."""
        counts = self.daily.setdefault(day, {})
        counts[kind] = counts.get(kind, 0) + 1
        for old in sorted(self.daily)[:-3]:
            del self.daily[old]

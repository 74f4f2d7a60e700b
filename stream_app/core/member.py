"""A member's whole state as the core sees it, and its plain-dict form stored in tables (compact rows
for orders and buckets: what is stored per member is bounded by time, not by history)."""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from stream_app.core.event_ids import EventIds
from stream_app.core.ledger import Ledger
from stream_app.core.referral_book import ReferralBook
from stream_app.core.reward_book import RewardBook

#: Stored as "v"; states without it were written by release 047f314 or earlier and are migrated on load.
#: 2: the bounded state (issue 11); 3: event ids as one string of records, orders as JSON text.
STATE_VERSION = 3


#: Order flags, one bit each, in the compact stored row.
BONUS_REVERSED, REVIEWED = 1, 2


@dataclass(slots=True)
class Order:
    """A paid order as far as points are concerned (what it actually earned, not today's rules), kept
    while it may still be refunded. `window_key` is the instant its qualifying points count from in
    the tier and segment windows (its row in `Member.windows`)."""

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
    window_key: int = 0

    def to_row(self) -> list:
        flags = (BONUS_REVERSED if self.bonus_reversed else 0) | (REVIEWED if self.reviewed else 0)
        return [self.order_id, self.event_id, self.paid_at, self.paid_cents, self.points, self.bonus,
                self.refunded_cents, self.clawed_back, flags, self.window_key]

    @classmethod
    def from_row(cls, row: list | dict) -> Order:
        """An order from its stored row (or the dict of release 047f314 and earlier)."""
        if isinstance(row, dict):  # written before compact rows (release 047f314 and earlier)
            return cls(**row, window_key=row["paid_at"])
        order_id, event_id, paid_at, paid_cents, points, bonus, refunded, clawed, flags, key = row
        return cls(order_id, event_id, paid_at, paid_cents, points, bonus, refunded, clawed,
                   bool(flags & BONUS_REVERSED), bool(flags & REVIEWED), key)

    @property
    def qualifying(self) -> int:
        """Tier-qualifying points this order still counts for."""
        return self.points - self.clawed_back


class StoredOrders:
    """`Member.orders` and `Member.reviewable` as stored: one JSON text inside the state, decoded only when
    a rule reads them (an order, refund or review, or housekeeping that can forget one). A heavy member
    keeps a month of orders, a third of its state, and most of its events never look at them; the
    paid instants of the first order and the first reviewable one are kept beside the text, so
    `order_history.fold` can tell without decoding that nothing is to be forgotten yet."""

    __slots__ = ("text", "first_paid", "first_reviewable", "_orders", "_reviewable")

    def __init__(self, text: str | None = None, first_paid: int | None = None,
                 first_reviewable: int | None = None) -> None:
        self.text, self.first_paid, self.first_reviewable = text, first_paid, first_reviewable
        self._orders: dict[str, list] | None = None if text else {}
        self._reviewable: dict[str, int] | None = None if text else {}

    @classmethod
    def of(cls, orders: dict[str, list], reviewable: dict[str, int]) -> StoredOrders:
        part = cls()
        part._orders, part._reviewable = orders, reviewable
        return part

    @property
    def decoded(self) -> bool:
        return self._orders is not None

    def orders(self) -> dict[str, list]:
        self._decode()
        return self._orders

    def reviewable(self) -> dict[str, int]:
        self._decode()
        return self._reviewable

    def _decode(self) -> None:
        if self._orders is None:
            rows, reviewable = orjson.loads(self.text)
            self._orders, self._reviewable = {row[0]: row for row in rows}, reviewable
            self.text = None

    def to_dict(self) -> dict:
        if self._orders is None:  # never read: stored as it was
            return {"rows": self.text, "first_paid": self.first_paid, "first_reviewable": self.first_reviewable}
        orders, reviewable = self._orders, self._reviewable
        return {"rows": orjson.dumps([list(orders.values()), reviewable]).decode() if orders or reviewable else "",
                "first_paid": next(iter(orders.values()))[2] if orders else None,  # Order.to_row: paid_at
                "first_reviewable": next(iter(reviewable.values())) if reviewable else None}

    def may_forget(self, refund_horizon_ms: int, review_window_ms: int, at: int) -> bool:
        """Whether `order_history.fold` at `at` could forget anything (judged without decoding)."""
        return self._orders is not None or (
            self.first_paid is not None and self.first_paid + refund_horizon_ms < at) or (
            self.first_reviewable is not None and self.first_reviewable + review_window_ms < at)

    @classmethod
    def from_dict(cls, d: dict) -> StoredOrders:
        return cls(d["rows"], d["first_paid"], d["first_reviewable"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredOrders) and (self.orders(), self.reviewable()) == (
            other.orders(), other.reviewable())


@dataclass(slots=True)
class Member:
    """Everything the core remembers of a member, each part bounded by a time horizon of the program
    rather than by the member's history (issue 11): lots by expiry bucket, orders while refundable,
    then only what the review and the tier/segment windows still need, and recent event-id hashes."""

    member_id: str
    created_at: int
    tier: str
    ledger: Ledger = field(default_factory=Ledger)
    at_risk_since: int | None = None
    stored_orders: StoredOrders = field(default_factory=StoredOrders)  # `orders` and `reviewable`
    windows: list[list[int]] = field(default_factory=list)  # [window_key, qualifying, orders], sorted by key
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
    seen: EventIds = field(default_factory=lambda: EventIds())
    first_order_at: int | None = None
    last_order_at: int | None = None
    last_activity_at: int | None = None
    segment: str | None = None
    velocity: dict[str, list] = field(default_factory=dict)
    flags: list[dict] = field(default_factory=list)
    held: list[dict] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    evaluated_at: int | None = None
    referrals: ReferralBook = field(default_factory=ReferralBook)
    rewards: RewardBook = field(default_factory=RewardBook)

    def to_dict(self) -> dict:
        state = {
            "v": STATE_VERSION,
            "member_id": self.member_id, "created_at": self.created_at, "tier": self.tier,
            "ledger": self.ledger.to_dict(), "at_risk_since": self.at_risk_since,
            "orders": self.stored_orders.to_dict(),
            "windows": self.windows, "has_ordered": self.has_ordered,
            "daily": self.daily, "last_login_day": self.last_login_day, "login_streak": self.login_streak,
            "birthday": self.birthday, "birthday_set_at": self.birthday_set_at,
            "birthday_paid_year": self.birthday_paid_year, "referrer_id": self.referrer_id,
            "frozen": self.frozen, "redemption_ids": self.redemption_ids, "seen": self.seen.to_dict(),
            "first_order_at": self.first_order_at, "last_order_at": self.last_order_at,
            "last_activity_at": self.last_activity_at, "segment": self.segment, "velocity": self.velocity,
            "flags": self.flags, "held": self.held, "devices": self.devices,
            "evaluated_at": self.evaluated_at,
            **({"referrals": self.referrals.to_dict()} if self.referrals else {}),
        }
        if self.rewards:  # written only once used: states of members who never redeemed stay as they were
            state["rewards"] = self.rewards.to_dict()
        return state

    @classmethod
    def from_dict(cls, d: dict) -> Member:
        if d.get("v") == STATE_VERSION:
            orders = StoredOrders.from_dict(d["orders"])
            windows, seen = [list(w) for w in d["windows"]], EventIds.from_dict(d["seen"])
        elif "v" in d:  # 2: orders as a list of rows (an Order is made only when one is used)
            orders = StoredOrders.of({row[0]: row for row in d["orders"]}, dict(d["reviewable"]))
            windows, seen = [list(w) for w in d["windows"]], EventIds.from_dict(d["seen"])
        else:  # release 047f314 and earlier: every order kept; each counts from its own paid_at
            old = [Order.from_row(o) for o in d["orders"]]
            orders = StoredOrders.of({o.order_id: o.to_row() for o in old}, {})
            windows = _windows_of(old)
            seen = EventIds.migrated(d["event_ids"], d.get("evaluated_at") or d["created_at"])
        return cls(
            member_id=d["member_id"], created_at=d["created_at"], tier=d["tier"],
            ledger=Ledger.from_dict(d["ledger"]), at_risk_since=d["at_risk_since"],
            stored_orders=orders, windows=windows, has_ordered=d["has_ordered"],
            daily={day: dict(counts) for day, counts in d["daily"].items()},
            last_login_day=d["last_login_day"], login_streak=d["login_streak"],
            birthday=d["birthday"], birthday_set_at=d["birthday_set_at"],
            birthday_paid_year=d["birthday_paid_year"], referrer_id=d["referrer_id"], frozen=d["frozen"],
            redemption_ids=list(d["redemption_ids"]), seen=seen,
            # Fields added after the first release: states written before them lack the keys.
            first_order_at=d.get("first_order_at"), last_order_at=d.get("last_order_at"),
            last_activity_at=d.get("last_activity_at"), segment=d.get("segment"),
            velocity={k: [list(x) for x in v] for k, v in d.get("velocity", {}).items()},
            flags=list(d.get("flags", [])), held=[dict(x) for x in d.get("held", [])],
            devices=list(d.get("devices", [])), evaluated_at=d.get("evaluated_at"),
            referrals=ReferralBook.from_dict(d.get("referrals")),
            rewards=RewardBook.from_dict(d.get("rewards")),
        )

    @property
    def orders(self) -> dict[str, list]:
        """Order id -> Order row (`Order.to_row`), kept while refundable, in the order they were kept."""
        return self.stored_orders.orders()

    @property
    def reviewable(self) -> dict[str, int]:
        """Order id -> paid_at of orders past the refund horizon, not reviewed, in the review window."""
        return self.stored_orders.reviewable()

    def order(self, order_id: str) -> Order | None:
        """The kept order called `order_id` (a copy: `keep_order` stores a change)."""
        row = self.orders.get(order_id)
        return None if row is None else Order.from_row(row)

    def keep_order(self, order: Order) -> None:
        self.orders[order.order_id] = order.to_row()

    def count_today(self, day: str, kind: str) -> int:
        return self.daily.get(day, {}).get(kind, 0)

    def bump_today(self, day: str, kind: str) -> None:
        """Count one rewarded `kind` on local `day`, keeping only the three newest days."""
        counts = self.daily.setdefault(day, {})
        counts[kind] = counts.get(kind, 0) + 1
        for old in sorted(self.daily)[:-3]:
            del self.daily[old]


def _windows_of(orders) -> list[list[int]]:
    rows: dict[int, list[int]] = {}
    for order in orders:
        row = rows.setdefault(order.window_key, [order.window_key, 0, 0])
        row[1] += order.qualifying
        row[2] += 1
    return [rows[key] for key in sorted(rows)]

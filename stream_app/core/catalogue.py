"""The reward catalogue as the program states it: what can be redeemed, at what price, by whom, how often.

Live stock, pauses and coupon-code pools change while the program runs and are the reward agent's
(stream_app/core/reward_stock.py); everything here is fixed for the life of a worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

KINDS = ("coupon", "gift", "privilege")
PERIODS = ("day", "week", "month", "year", "ever")
CODE_SOURCES = ("generated", "pool")


@dataclass(frozen=True, slots=True)
class Reward:
    code: str
    name: str
    kind: str
    points: int  # price of one unit
    tier: str | None = None  # lowest tier that may redeem it
    available_from_ms: int | None = None
    available_until_ms: int | None = None
    limit_per_member: int | None = None  # units per member per `limit_period`; None: no limit
    limit_period: str = "ever"
    stock: int | None = None  # initial stock; None: unlimited
    coupon_valid_ms: int | None = None  # a coupon's validity after issue
    codes: str = "generated"  # coupon codes: made from the redemption id, or taken from an imported pool

    def available_at(self, now: int) -> bool:
        return ((self.available_from_ms is None or self.available_from_ms <= now)
                and (self.available_until_ms is None or now < self.available_until_ms))


@dataclass(frozen=True, slots=True)
class Grant:
    """A reward given free once per member per period while the member holds `min_tier` or above."""

    reward: str
    min_tier: str
    period: str = "month"


@dataclass(frozen=True, slots=True)
class RewardRules:
    catalogue: tuple[Reward, ...] = ()
    grants: tuple[Grant, ...] = ()
    allow_free_form: bool = False

    def get(self, code: str) -> Reward | None:
        for reward in self.catalogue:
            if reward.code == code:
                return reward
        return None


def period_key(period: str, now: int, tz: ZoneInfo) -> str:
    """The calendar period `now` falls in, as a stable label (local time): `2026-12-02`, `2026-W49`, ..."""
    day = datetime.fromtimestamp(now / 1000, tz).date()
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "year":
        return str(day.year)
    return "ever"


def coupon_expiry_ms(reward: Reward, issued_at: int) -> int | None:
    return None if reward.coupon_valid_ms is None else issued_at + reward.coupon_valid_ms


__all__ = ["CODE_SOURCES", "KINDS", "PERIODS", "Grant", "Reward", "RewardRules", "coupon_expiry_ms",
           "period_key"]

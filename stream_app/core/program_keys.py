"""Every key a program file may hold: the one list the loader, the reader and docs/program.md share.

A file with any other key is refused (with the closest known key as a hint), so a misspelling
such as `first_order_bouns` cannot silently leave a rule at its default; the reader in
program.py refuses to read a key missing here; tests/unit/shell/test_contracts.py checks that
docs/program.md documents exactly these keys.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

#: Notification templates the core sends (or may send): the keys of `[notifications]`.
TEMPLATES = (
    "points_pending", "points_earned", "points_clawed_back", "points_redeemed", "redemption_rejected",
    "points_expired", "points_expiring", "tier_changed", "tier_at_risk", "birthday_gift", "member_flagged",
    "win_back", "referral_referrer_rewarded", "referral_friend_rewarded", "reward_issued", "coupon_issued",
    "redemption_cancelled",
)

#: Dotted keys, array-of-tables elements without their index (`tiers.levels.name`).
KEYS = (
    "timezone",
    "orders", "orders.points_per_unit", "orders.return_window", "orders.first_order_bonus",
    "orders.refund_policy", "orders.category_multipliers", "orders.refund_horizon", "orders.window_granularity",
    "reviews", "reviews.points", "reviews.media_bonus", "reviews.order_window", "reviews.daily_cap",
    "shares", "shares.points", "shares.daily_cap",
    "logins", "logins.points", "logins.streak_days", "logins.streak_bonus",
    "birthday", "birthday.points", "birthday.min_age_of_birthday",
    "expiry", "expiry.after", "expiry.warn_before", "expiry.warn_min_points", "expiry.granularity",
    "tiers", "tiers.window", "tiers.grace", "tiers.levels", "tiers.levels.name", "tiers.levels.threshold",
    "tiers.levels.multiplier",
    "campaigns", "campaigns.name", "campaigns.start", "campaigns.end", "campaigns.monthly_day",
    "campaigns.weekdays", "campaigns.multiplier", "campaigns.applies_to",
    "abuse", "abuse.reviews_per_window", "abuse.shares_per_window", "abuse.devices_per_window", "abuse.window",
    "segments", "segments.new_for", "segments.loyal_orders", "segments.loyal_window", "segments.at_risk_after",
    "segments.churned_after",
    "notification_policy", "notification_policy.marketing_daily_cap", "notification_policy.quiet_start",
    "notification_policy.quiet_end", "notification_policy.quiet_hours", "notification_policy.hold_at_most",
    "referrals", "referrals.referrer_points", "referrals.friend_points", "referrals.min_order_cents",
    "referrals.max_per_month", "referrals.milestones", "referrals.milestones.count", "referrals.milestones.points",
    "dedupe", "dedupe.max_event_ids", "dedupe.window",
    "version", "versions", "versions.name", "versions.effective_from",
    "rewards", "rewards.allow_free_form", "rewards.catalog", "rewards.catalog.code", "rewards.catalog.name",
    "rewards.catalog.kind", "rewards.catalog.points", "rewards.catalog.tier", "rewards.catalog.available_from",
    "rewards.catalog.available_until", "rewards.catalog.limit_per_member", "rewards.catalog.limit_period",
    "rewards.catalog.stock", "rewards.catalog.coupon_valid_for", "rewards.catalog.codes",
    "rewards.grants", "rewards.grants.reward", "rewards.grants.min_tier", "rewards.grants.period",
    "notifications", *(f"notifications.{template}" for template in TEMPLATES),
)
#: Tables whose keys are names the operator chooses (category names), not program keys.
FREE_TABLES = ("orders.category_multipliers",)
#: Keys that hold arrays of tables (`[[tiers.levels]]`).
ARRAYS_OF_TABLES = ("tiers.levels", "campaigns", "referrals.milestones", "rewards.catalog", "rewards.grants")

_KNOWN = frozenset(KEYS)
_INDEX = re.compile(r"\[\d+\]")


def generic(key: str) -> str:
    """`tiers.levels[2].name` -> `tiers.levels.name`: the form KEYS lists."""
    return _INDEX.sub("", key)


def is_known(key: str) -> bool:
    return generic(key) in _KNOWN


def first_unknown(data: dict[str, Any], path: str = "") -> str | None:
    """The error for the first key of parsed TOML `data` that KEYS lacks, e.g. `orders.first_order_bouns:
    unknown key; did you mean first_order_bonus?`; None when every key is known."""
    table = generic(path)
    if table in FREE_TABLES:
        return None
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        if not is_known(key):
            return f"{key}: unknown key; {_hint(name, table)}"
        if isinstance(value, dict):
            found = first_unknown(value, key)
        elif generic(key) in ARRAYS_OF_TABLES and isinstance(value, list):
            found = next((hit for i, element in enumerate(value) if isinstance(element, dict)
                          and (hit := first_unknown(element, f"{key}[{i}]")) is not None), None)
        else:
            found = None
        if found is not None:
            return found
    return None


def _hint(name: str, table: str) -> str:
    prefix = f"{table}." if table else ""
    siblings = [key.removeprefix(prefix) for key in KEYS
                if key.startswith(prefix) and "." not in key.removeprefix(prefix)]
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"known keys{f' of [{table}]' if table else ''}: {', '.join(siblings)}"

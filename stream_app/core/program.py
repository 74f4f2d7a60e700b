"""The loyalty program: rules as data, loaded from a TOML file into frozen dataclasses."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EARN_KINDS = ("orders", "reviews", "shares", "logins")
REFUND_POLICIES = ("unlimited", "within_balance", "only_pending")
PRIORITIES = ("transactional", "marketing")
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ProgramError(ValueError):
    """A program file that cannot be used; the message names the key at fault."""


def parse_duration_ms(text: str) -> int:
    """ISO 8601 duration (weeks, days, hours, minutes, seconds) in milliseconds."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ProgramError(f"not an ISO 8601 duration (PnWnDTnHnMnS): {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    seconds = parts["w"] * 604800 + parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    return int(round(seconds * 1000))


def _multiplier(value: object, key: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ProgramError(f"{key}: a multiplier must be a non-negative number")
    return Fraction(str(value))


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    threshold: int
    multiplier: Fraction


@dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    start_ms: int
    end_ms: int
    monthly_day: int | None
    weekdays: tuple[int, ...]
    multiplier: Fraction
    applies_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Program:
    timezone: ZoneInfo
    points_per_unit: Fraction
    return_window_ms: int
    first_order_bonus: int
    refund_policy: str
    category_multipliers: dict[str, Fraction]
    review_points: int
    review_media_bonus: int
    review_order_window_ms: int
    review_daily_cap: int
    share_points: int
    share_daily_cap: int
    login_points: int
    login_streak_days: int
    login_streak_bonus: int
    birthday_points: int
    birthday_min_age_ms: int
    expiry_after_ms: int
    expiry_warn_before_ms: int
    expiry_warn_min_points: int
    tier_window_ms: int
    tier_grace_ms: int
    tiers: tuple[Tier, ...]
    campaigns: tuple[Campaign, ...]
    max_event_ids: int
    priorities: dict[str, str]
    abuse_limits: dict[str, int]
    abuse_window_ms: int
    segment_new_ms: int
    segment_loyal_orders: int
    segment_loyal_window_ms: int
    segment_at_risk_ms: int
    segment_churned_ms: int
    marketing_daily_cap: int
    quiet_start_s: int
    quiet_end_s: int
    quiet_hold: bool
    hold_at_most_ms: int

    def tier(self, name: str) -> Tier:
        """The tier called `name` (the lowest one for an unknown name)."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        return self.tiers[0]

    def tier_for(self, qualifying: int) -> Tier:
        """The highest tier whose threshold `qualifying` points reach."""
        reached = self.tiers[0]
        for tier in self.tiers:
            if qualifying >= tier.threshold:
                reached = tier
        return reached

    def priority(self, template: str) -> str:
        return self.priorities.get(template, "transactional")


class _Reader:
    """Typed access to a TOML table that names the full key in every error."""

    def __init__(self, data: dict, path: str) -> None:
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def section(self, name: str) -> _Reader:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise ProgramError(f"{self.key(name)}: must be a table")
        return _Reader(value, self.key(name))

    def get(self, name: str, kind: type, default: object = None) -> object:
        value = self.data.get(name, default)
        if value is None:
            raise ProgramError(f"{self.key(name)}: missing")
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise ProgramError(f"{self.key(name)}: must be {kind.__name__}, got {type(value).__name__}")
        return value

    def count(self, name: str, default: int | None = None) -> int:
        value = self.get(name, int, default)
        if value < 0:
            raise ProgramError(f"{self.key(name)}: must be >= 0")
        return value

    def duration(self, name: str, default: str | None = None) -> int:
        try:
            return parse_duration_ms(self.get(name, str, default))
        except ProgramError as exc:
            raise ProgramError(f"{self.key(name)}: {exc}") from None


def _instant_ms(value: object, key: str) -> int:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ProgramError(f"{key}: not an RFC 3339 date-time") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ProgramError(f"{key}: must be a date-time with an offset")
    return int(value.timestamp() * 1000)


def _campaign(raw: object, index: int) -> Campaign:
    key = f"campaigns[{index}]"
    if not isinstance(raw, dict):
        raise ProgramError(f"{key}: must be a table")
    r = _Reader(raw, key)
    weekdays = tuple(raw.get("weekdays", ()))
    if any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7 for d in weekdays):
        raise ProgramError(f"{key}.weekdays: ISO weekdays 1 (Monday) to 7")
    monthly_day = raw.get("monthly_day")
    if monthly_day is not None and (isinstance(monthly_day, bool) or not isinstance(monthly_day, int)
                                    or not 1 <= monthly_day <= 31):
        raise ProgramError(f"{key}.monthly_day: a day of the month, 1 to 31")
    applies_to = tuple(r.get("applies_to", list, ["orders"]))
    unknown = [k for k in applies_to if k not in EARN_KINDS]
    if unknown:
        raise ProgramError(f"{key}.applies_to: unknown kinds {unknown}; known: {list(EARN_KINDS)}")
    start_ms = _instant_ms(raw.get("start"), f"{key}.start")
    end_ms = _instant_ms(raw.get("end"), f"{key}.end")
    if end_ms <= start_ms:
        raise ProgramError(f"{key}.end: must be after start")
    return Campaign(
        name=r.get("name", str), start_ms=start_ms, end_ms=end_ms, monthly_day=monthly_day,
        weekdays=weekdays, multiplier=_multiplier(raw.get("multiplier", 1), f"{key}.multiplier"),
        applies_to=applies_to,
    )


def _tiers(raw: object) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise ProgramError("tiers.levels: at least one [[tiers.levels]] is required")
    tiers = []
    for i, level in enumerate(raw):
        r = _Reader(level if isinstance(level, dict) else {}, f"tiers.levels[{i}]")
        tiers.append(Tier(r.get("name", str), r.count("threshold"),
                          _multiplier(level.get("multiplier", 1), r.key("multiplier"))))
    if tiers[0].threshold != 0:
        raise ProgramError("tiers.levels[0].threshold: the first tier must start at 0")
    if any(a.threshold >= b.threshold for a, b in zip(tiers, tiers[1:], strict=False)):
        raise ProgramError("tiers.levels: thresholds must increase strictly")
    if len({t.name for t in tiers}) != len(tiers):
        raise ProgramError("tiers.levels: names must be unique")
    return tuple(tiers)


def _clock_seconds(value: str, key: str) -> int:
    """Seconds after midnight of a time of day HH:MM or HH:MM:SS."""
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?", value)
    if not match:
        raise ProgramError(f"{key}: a time of day HH:MM or HH:MM:SS")
    return int(match[1]) * 3600 + int(match[2]) * 60 + int(match[3] or 0)


def program_from_dict(data: dict) -> Program:
    """Build and check a Program from parsed TOML."""
    root = _Reader(data, "")
    try:
        timezone = ZoneInfo(root.get("timezone", str, "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise ProgramError(f"timezone: unknown time zone {data.get('timezone')!r}") from None
    orders, reviews, shares = root.section("orders"), root.section("reviews"), root.section("shares")
    logins, birthday, expiry = root.section("logins"), root.section("birthday"), root.section("expiry")
    tiers, dedupe, notes = root.section("tiers"), root.section("dedupe"), root.section("notifications")
    abuse, segments, policy_ = root.section("abuse"), root.section("segments"), root.section("notification_policy")
    quiet = policy_.get("quiet_hours", str, "hold")
    if quiet not in ("hold", "drop"):
        raise ProgramError("notification_policy.quiet_hours: hold or drop")
    policy = orders.get("refund_policy", str, "unlimited")
    if policy not in REFUND_POLICIES:
        raise ProgramError(f"orders.refund_policy: one of {list(REFUND_POLICIES)}")
    categories = orders.section("category_multipliers").data
    priorities = dict(notes.data)
    bad = [t for t, p in priorities.items() if p not in PRIORITIES]
    if bad:
        raise ProgramError(f"notifications.{bad[0]}: priority must be one of {list(PRIORITIES)}")
    campaigns = data.get("campaigns", [])
    if not isinstance(campaigns, list):
        raise ProgramError("campaigns: must be an array of tables [[campaigns]]")
    streak_days = logins.count("streak_days", 7)
    if streak_days < 1:
        raise ProgramError("logins.streak_days: must be >= 1")
    return Program(
        timezone=timezone,
        points_per_unit=_multiplier(orders.data.get("points_per_unit", 1), "orders.points_per_unit"),
        return_window_ms=orders.duration("return_window", "P7D"),
        first_order_bonus=orders.count("first_order_bonus", 0),
        refund_policy=policy,
        category_multipliers={c: _multiplier(m, f"orders.category_multipliers.{c}")
                              for c, m in categories.items()},
        review_points=reviews.count("points", 0),
        review_media_bonus=reviews.count("media_bonus", 0),
        review_order_window_ms=reviews.duration("order_window", "P90D"),
        review_daily_cap=reviews.count("daily_cap", 5),
        share_points=shares.count("points", 0),
        share_daily_cap=shares.count("daily_cap", 3),
        login_points=logins.count("points", 0),
        login_streak_days=streak_days,
        login_streak_bonus=logins.count("streak_bonus", 0),
        birthday_points=birthday.count("points", 0),
        birthday_min_age_ms=birthday.duration("min_age_of_birthday", "P30D"),
        expiry_after_ms=expiry.duration("after", "P365D"),
        expiry_warn_before_ms=expiry.duration("warn_before", "P30D"),
        expiry_warn_min_points=expiry.count("warn_min_points", 100),
        tier_window_ms=tiers.duration("window", "P365D"),
        tier_grace_ms=tiers.duration("grace", "P30D"),
        tiers=_tiers(tiers.data.get("levels")),
        campaigns=tuple(_campaign(c, i) for i, c in enumerate(campaigns)),
        max_event_ids=max(1, dedupe.count("max_event_ids", 2000)),
        priorities=priorities,
        abuse_limits={"reviews": abuse.count("reviews_per_window", 10), "shares": abuse.count("shares_per_window", 20),
                      "devices": abuse.count("devices_per_window", 5)},
        abuse_window_ms=abuse.duration("window", "PT1H"),
        segment_new_ms=segments.duration("new_for", "P30D"),
        segment_loyal_orders=segments.count("loyal_orders", 5),
        segment_loyal_window_ms=segments.duration("loyal_window", "P365D"),
        segment_at_risk_ms=segments.duration("at_risk_after", "P60D"),
        segment_churned_ms=segments.duration("churned_after", "P180D"),
        marketing_daily_cap=policy_.count("marketing_daily_cap", 3),
        quiet_start_s=_clock_seconds(policy_.get("quiet_start", str, "22:00"), "notification_policy.quiet_start"),
        quiet_end_s=_clock_seconds(policy_.get("quiet_end", str, "08:00"), "notification_policy.quiet_end"),
        quiet_hold=quiet == "hold",
        hold_at_most_ms=policy_.duration("hold_at_most", "PT12H"),
    )


def parse_program(text: str) -> Program:
    """Parse program TOML text; TOML syntax errors carry their line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"TOML syntax: {exc}") from None
    return program_from_dict(data)


def default_program_text() -> str:
    return resources.files("stream_app.core").joinpath("default_program.toml").read_text("utf-8")


def load_program(path: str | None) -> Program:
    """The program at `path`, or the packaged default when `path` is empty."""
    return parse_program(Path(path).read_text("utf-8") if path else default_program_text())

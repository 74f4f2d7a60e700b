"""The loyalty program: rules as data, loaded from a TOML file into frozen dataclasses.

The file is checked strictly before a worker starts: every key must be one of program_keys.KEYS,
every value of its type and within the range that makes sense for it. A ProgramError names the
key at fault and, when the text is known, the line it is on.
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream_app.core.catalogue import CODE_SOURCES, KINDS, PERIODS, Grant, Reward, RewardRules
from stream_app.core.program_keys import TEMPLATES, first_unknown, generic, is_known
from stream_app.core.toml_lines import line_of

EARN_KINDS = ("orders", "reviews", "shares", "logins")
REFUND_POLICIES = ("unlimited", "within_balance", "only_pending")
GRANULARITIES = ("exact", "day", "month")  # expiry.granularity, orders.window_granularity
PRIORITIES = ("transactional", "marketing")
COUNT_MAX = 1_000_000_000
MULTIPLIER_MAX = 1000
DURATION_MAX = "P36500D"  # 100 years: longer windows only overflow the calendar
NAME_MAX = 64
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


class ProgramError(ValueError):
    """A program file that cannot be used: `detail` names the key at fault, `line` where it is written."""

    def __init__(self, detail: str, *, line: int | None = None, source: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.line, self.source = detail, line, source

    def __str__(self) -> str:
        if self.source is not None:
            return f"{self.source}:{self.line}: {self.detail}" if self.line else f"{self.source}: {self.detail}"
        return f"line {self.line}: {self.detail}" if self.line else self.detail


def parse_duration_ms(text: str) -> int:
    """ISO 8601 duration (weeks, days, hours, minutes, seconds) in milliseconds."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ProgramError(f"not an ISO 8601 duration (PnWnDTnHnMnS): {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    seconds = parts["w"] * 604800 + parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    return int(round(seconds * 1000))


_DURATION_MAX_MS = parse_duration_ms(DURATION_MAX)


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
class Milestone:
    """The `count`th successful referral of a referrer earns `points` more."""

    count: int
    points: int


@dataclass(frozen=True, slots=True)
class ReferralRules:
    """`[referrals]`: what a successful referral pays each side, and its limits (stream_app/core/referrals.py)."""

    referrer_points: int = 0
    friend_points: int = 0
    min_order_cents: int = 0
    max_per_month: int = 10
    milestones: tuple[Milestone, ...] = ()

    @property
    def active(self) -> bool:
        """Whether a referral pays anything at all (a program without `[referrals]` keeps none)."""
        return bool(self.referrer_points or self.friend_points or self.milestones)


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
    dedupe_window_ms: int | None  # None: ids are forgotten only beyond max_event_ids
    expiry_granularity: str  # exact | day | month: an expiry instant is rounded up to a local period's end
    refund_horizon_ms: int  # an order is refundable this long after it was paid, then only its totals stay
    order_window_granularity: str  # exact | day | month: when an order's points count from in windows
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
    referrals: ReferralRules = ReferralRules()
    #: the name of the program version this is (stream_app/core/program_versions.py), on every reward event
    version: str = "base"
    rewards: RewardRules = RewardRules()

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
    """Typed access to a TOML table that names the full key in every error.

    Each read is of a key in program_keys.KEYS (anything else is a bug here, not in the file).
    """

    def __init__(self, data: dict, path: str) -> None:
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _raw(self, name: str, default: object) -> object:
        if not is_known(self.key(name)):
            raise KeyError(f"{generic(self.key(name))} is read but not in program_keys.KEYS")
        return self.data.get(name, default)

    def fail(self, name: str, message: str) -> ProgramError:
        return ProgramError(f"{self.key(name)}: {message}")

    def section(self, name: str) -> _Reader:
        value = self._raw(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, "must be a table")
        return _Reader(value, self.key(name))

    def tables(self, name: str) -> list[_Reader]:
        """The elements of an array of tables `[[name]]`; none when absent."""
        value = self._raw(name, [])
        if not isinstance(value, list) or not all(isinstance(element, dict) for element in value):
            raise self.fail(name, f"must be an array of tables [[{self.key(name)}]]")
        return [_Reader(element, f"{self.key(name)}[{i}]") for i, element in enumerate(value)]

    def get(self, name: str, kind: type | tuple[type, ...], default: object = None) -> Any:
        value = self._raw(name, default)
        if value is None:
            raise self.fail(name, "missing")
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.fail(name, f"must be {expected}, got {type(value).__name__}")
        return value

    def name(self, name: str) -> str:
        value = self.get(name, str)
        if not 1 <= len(value) <= NAME_MAX:
            raise self.fail(name, f"must be 1 to {NAME_MAX} characters")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in options:
            raise self.fail(name, f"one of {list(options)}, got {value!r}")
        return value

    def count(self, name: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.get(name, int, default)
        if not minimum <= value <= COUNT_MAX:
            raise self.fail(name, f"must be >= {minimum}" if value < minimum else f"must be <= {COUNT_MAX:,}")
        return value

    def duration(self, name: str, default: str | None = None, positive: bool = False) -> int:
        text = self.get(name, str, default)
        try:
            ms = parse_duration_ms(text)
        except ProgramError as exc:
            raise self.fail(name, exc.detail) from None
        if ms > _DURATION_MAX_MS:
            raise self.fail(name, f"at most {DURATION_MAX} (100 years)")
        if positive and ms == 0:
            raise self.fail(name, "must be longer than 0 (at least PT0.001S)")
        return ms

    def multiplier(self, name: str, default: float | int, positive: bool) -> Fraction:
        return _multiplier(self._raw(name, default), self.key(name), positive)

    def instant(self, name: str) -> int:
        """Epoch ms of a date-time with an offset: a TOML offset date-time or an RFC 3339 string."""
        value = self.get(name, (str, datetime))
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(name, "not an RFC 3339 date-time") from None
        if value.tzinfo is None:
            raise self.fail(name, "must be a date-time with an offset")
        return int(value.timestamp() * 1000)

    def clock(self, name: str, default: str) -> int:
        """Seconds after midnight of a time of day HH:MM or HH:MM:SS."""
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?", self.get(name, str, default))
        if not match:
            raise self.fail(name, "a time of day HH:MM or HH:MM:SS")
        return int(match[1]) * 3600 + int(match[2]) * 60 + int(match[3] or 0)

    def integers(self, name: str, low: int, high: int, what: str) -> tuple[int, ...]:
        """A non-empty array of integers from `low` to `high`; () when absent."""
        value = self._raw(name, [])
        if not isinstance(value, list) or (name in self.data and not value) or any(
                isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in value):
            raise self.fail(name, f"a non-empty array of {what} {low} to {high}")
        return tuple(value)


def _multiplier(value: object, key: str, positive: bool) -> Fraction:
    """A finite number from 0 (or above 0 when `positive`) to MULTIPLIER_MAX, exactly as written."""
    low = "above 0" if positive else ">= 0"
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or not (value > 0 if positive else value >= 0) or value > MULTIPLIER_MAX):
        raise ProgramError(f"{key}: a multiplier must be a number {low} and at most {MULTIPLIER_MAX}")
    return Fraction(str(value))


def _campaigns(root: _Reader) -> tuple[Campaign, ...]:
    campaigns: list[Campaign] = []
    for r in root.tables("campaigns"):
        name = r.name("name")
        if any(c.name == name for c in campaigns):
            raise r.fail("name", f"{name!r} names an earlier campaign too; names must be unique")
        weekdays = r.integers("weekdays", 1, 7, "ISO weekdays (Monday = 1)")
        monthly_day = r.get("monthly_day", int) if "monthly_day" in r.data else None
        if monthly_day is not None and not 1 <= monthly_day <= 31:
            raise r.fail("monthly_day", "a day of the month, 1 to 31")
        applies_to = tuple(r.get("applies_to", list, ["orders"]))
        if not applies_to or any(kind not in EARN_KINDS for kind in applies_to):
            raise r.fail("applies_to", f"a non-empty array of kinds from {list(EARN_KINDS)}")
        start_ms, end_ms = r.instant("start"), r.instant("end")
        if end_ms <= start_ms:
            raise r.fail("end", "must be after start")
        campaigns.append(Campaign(name=name, start_ms=start_ms, end_ms=end_ms, monthly_day=monthly_day,
                                  weekdays=weekdays, multiplier=r.multiplier("multiplier", 1, positive=True),
                                  applies_to=applies_to))
    return tuple(campaigns)


def _referrals(section: _Reader) -> ReferralRules:
    milestones: list[Milestone] = []
    for r in section.tables("milestones"):
        count = r.count("count", minimum=1)
        if milestones and count <= milestones[-1].count:
            raise r.fail("count", f"milestone counts must increase strictly: {count} is not above "
                                  f"{milestones[-1].count}")
        milestones.append(Milestone(count, r.count("points", minimum=1)))
    return ReferralRules(referrer_points=section.count("referrer_points", 0),
                         friend_points=section.count("friend_points", 0),
                         min_order_cents=section.count("min_order_cents", 0),
                         max_per_month=section.count("max_per_month", 10, minimum=1),
                         milestones=tuple(milestones))


def _rewards(root: _Reader, tiers: tuple[Tier, ...]) -> RewardRules:
    """`[rewards]`: the catalogue (`[[rewards.catalog]]`) and the periodic tier grants (`[[rewards.grants]]`)."""
    section = root.section("rewards")
    tier_names = [t.name for t in tiers]
    catalogue: list[Reward] = []
    for r in section.tables("catalog"):
        code = r.name("code")
        if any(x.code == code for x in catalogue):
            raise r.fail("code", f"{code!r} names an earlier reward too; codes must be unique")
        kind = r.choice("kind", KINDS, "gift")
        tier = r.get("tier", str) if "tier" in r.data else None
        if tier is not None and tier not in tier_names:
            raise r.fail("tier", f"one of the tiers {tier_names}, got {tier!r}")
        start = r.instant("available_from") if "available_from" in r.data else None
        end = r.instant("available_until") if "available_until" in r.data else None
        if start is not None and end is not None and end <= start:
            raise r.fail("available_until", "must be after available_from")
        if kind != "coupon" and ("coupon_valid_for" in r.data or "codes" in r.data):
            raise r.fail("coupon_valid_for" if "coupon_valid_for" in r.data else "codes", "only for kind \"coupon\"")
        catalogue.append(Reward(
            code=code, name=r.name("name"), kind=kind, points=r.count("points"), tier=tier,
            available_from_ms=start, available_until_ms=end,
            limit_per_member=r.count("limit_per_member", minimum=1) if "limit_per_member" in r.data else None,
            limit_period=r.choice("limit_period", PERIODS, "ever"),
            stock=r.count("stock") if "stock" in r.data else None,
            coupon_valid_ms=r.duration("coupon_valid_for", "P30D", positive=True) if kind == "coupon" else None,
            codes=r.choice("codes", CODE_SOURCES, "generated")))
    grants: list[Grant] = []
    for r in section.tables("grants"):
        reward = r.name("reward")
        if not any(x.code == reward for x in catalogue):
            raise r.fail("reward", f"{reward!r} is not a [[rewards.catalog]] code")
        min_tier = r.name("min_tier")
        if min_tier not in tier_names:
            raise r.fail("min_tier", f"one of the tiers {tier_names}, got {min_tier!r}")
        grants.append(Grant(reward, min_tier, r.choice("period", PERIODS[:-1], "month")))
    return RewardRules(tuple(catalogue), tuple(grants), section.get("allow_free_form", bool, False))


def _tiers(section: _Reader) -> tuple[Tier, ...]:
    tiers: list[Tier] = []
    for r in section.tables("levels"):
        name, threshold = r.name("name"), r.count("threshold")
        if not tiers and threshold != 0:
            raise r.fail("threshold", "the first tier must start at 0")
        if tiers and threshold <= tiers[-1].threshold:
            raise r.fail("threshold", f"thresholds must increase strictly: {threshold} is not above "
                                      f"{tiers[-1].threshold} ({tiers[-1].name})")
        if any(t.name == name for t in tiers):
            raise r.fail("name", f"{name!r} names a lower tier too; names must be unique")
        tiers.append(Tier(name, threshold, r.multiplier("multiplier", 1, positive=True)))
    if not tiers:
        raise section.fail("levels", "at least one [[tiers.levels]] is required")
    return tuple(tiers)


def _timezone(root: _Reader) -> ZoneInfo:
    name = root.get("timezone", str, "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise root.fail("timezone", f"unknown time zone {name!r}") from None


def program_from_dict(data: dict) -> Program:
    """Build and check a Program from parsed TOML."""
    unknown = first_unknown(data)
    if unknown is not None:
        raise ProgramError(unknown)
    if "versions" in data:  # one Program cannot stand for several: program_versions.versions_from_dict can
        raise ProgramError("versions: a file with [[versions]] is read as program versions (load_versions)")
    root = _Reader(data, "")
    orders, reviews, shares = root.section("orders"), root.section("reviews"), root.section("shares")
    logins, birthday, expiry = root.section("logins"), root.section("birthday"), root.section("expiry")
    tiers, dedupe, notes = root.section("tiers"), root.section("dedupe"), root.section("notifications")
    abuse, segments, policy = root.section("abuse"), root.section("segments"), root.section("notification_policy")
    categories = orders.section("category_multipliers")
    levels = _tiers(tiers)
    return Program(
        timezone=_timezone(root),
        points_per_unit=orders.multiplier("points_per_unit", 1, positive=True),
        return_window_ms=orders.duration("return_window", "P7D"),
        first_order_bonus=orders.count("first_order_bonus", 0),
        refund_policy=orders.choice("refund_policy", REFUND_POLICIES, "unlimited"),
        category_multipliers={category: _multiplier(value, categories.key(category), positive=False)
                              for category, value in categories.data.items()},
        review_points=reviews.count("points", 0),
        review_media_bonus=reviews.count("media_bonus", 0),
        review_order_window_ms=reviews.duration("order_window", "P90D", positive=True),
        review_daily_cap=reviews.count("daily_cap", 5),
        share_points=shares.count("points", 0),
        share_daily_cap=shares.count("daily_cap", 3),
        login_points=logins.count("points", 0),
        login_streak_days=logins.count("streak_days", 7, minimum=1),
        login_streak_bonus=logins.count("streak_bonus", 0),
        birthday_points=birthday.count("points", 0),
        birthday_min_age_ms=birthday.duration("min_age_of_birthday", "P30D"),
        expiry_after_ms=expiry.duration("after", "P365D", positive=True),
        expiry_warn_before_ms=expiry.duration("warn_before", "P30D"),
        expiry_warn_min_points=expiry.count("warn_min_points", 100),
        tier_window_ms=tiers.duration("window", "P365D", positive=True),
        tier_grace_ms=tiers.duration("grace", "P30D"),
        tiers=levels,
        campaigns=_campaigns(root),
        max_event_ids=max(1, dedupe.count("max_event_ids", 2000)),
        dedupe_window_ms=dedupe.duration("window", positive=True) if "window" in dedupe.data else None,
        expiry_granularity=expiry.choice("granularity", GRANULARITIES, "exact"),
        refund_horizon_ms=(orders.duration("refund_horizon") if "refund_horizon" in orders.data else
                           _kept_before_horizons(orders, reviews, tiers)),
        order_window_granularity=orders.choice("window_granularity", GRANULARITIES, "exact"),
        priorities={template: notes.choice(template, PRIORITIES, "transactional")
                    for template in TEMPLATES if template in notes.data},
        abuse_limits={"reviews": abuse.count("reviews_per_window", 10), "shares": abuse.count("shares_per_window", 20),
                      "devices": abuse.count("devices_per_window", 5)},
        abuse_window_ms=abuse.duration("window", "PT1H", positive=True),
        segment_new_ms=segments.duration("new_for", "P30D"),
        segment_loyal_orders=segments.count("loyal_orders", 5, minimum=1),
        segment_loyal_window_ms=segments.duration("loyal_window", "P365D", positive=True),
        segment_at_risk_ms=segments.duration("at_risk_after", "P60D", positive=True),
        segment_churned_ms=segments.duration("churned_after", "P180D", positive=True),
        marketing_daily_cap=policy.count("marketing_daily_cap", 3),
        quiet_start_s=policy.clock("quiet_start", "22:00"),
        quiet_end_s=policy.clock("quiet_end", "08:00"),
        quiet_hold=policy.choice("quiet_hours", ("hold", "drop"), "hold") == "hold",
        hold_at_most_ms=policy.duration("hold_at_most", "PT12H"),
        referrals=_referrals(root.section("referrals")),
        version=root.name("version") if "version" in data else "base",
        rewards=_rewards(root, levels),
    )


def _kept_before_horizons(orders: _Reader, reviews: _Reader, tiers: _Reader) -> int:
    """Without `orders.refund_horizon`, orders stay refundable as long as earlier releases kept them."""
    return max(orders.duration("return_window", "P7D"), reviews.duration("order_window", "P90D", positive=True),
               tiers.duration("window", "P365D", positive=True))


def parse_program(text: str, source: str | None = None) -> Program:
    """Parse program TOML text; an error carries the line it is about (and `source`, the file's name)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        position = _TOML_POSITION.search(str(exc))
        line = None if position is None else int(position.group(1)) if position.group(1) else len(text.splitlines())
        raise ProgramError(f"TOML syntax: {_TOML_POSITION.sub('', str(exc))}", line=max(1, line or 1),
                           source=source) from None
    try:
        return program_from_dict(data)
    except ProgramError as exc:
        raise ProgramError(exc.detail, line=line_of(exc.detail.split(": ", 1)[0], text), source=source) from None


def default_program_text() -> str:
    return resources.files("stream_app.core").joinpath("default_program.toml").read_text("utf-8")


def read_program_text(path: str | None) -> tuple[str, str]:
    """(text, source) of the program file at `path`, or of the packaged default when `path` is empty;
    ProgramError names a file that cannot be read."""
    if not path:
        return default_program_text(), "stream_app/core/default_program.toml"
    try:
        return Path(path).read_text("utf-8"), path
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgramError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=path) from None


def load_program(path: str | None) -> Program:
    """The program at `path`, or the packaged default when `path` is empty; ProgramError names the file."""
    return parse_program(*read_program_text(path))

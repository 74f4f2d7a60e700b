"""Calendar rules in the program's time zone: local days, campaigns and birthdays.

The conversions are memoised by their arguments (instants, days, the zone): one event asks for the
same instant's local day, and formats the same instant, several times over, and the simulation runs
each member's instants under two programs in a row. Each is a pure function, so a memo changes nothing
but the cost (`CACHE` bounds each memo's entries).
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction
from functools import lru_cache
from zoneinfo import ZoneInfo

from stream_app.core.program import Campaign, Program

CACHE = 4096
ONE = Fraction(1)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@lru_cache(maxsize=CACHE)
def rfc3339(ms: int) -> str:
    """An instant as RFC 3339 in UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=CACHE)
def local_date(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


@lru_cache(maxsize=CACHE)
def local_day(ms: int, tz: ZoneInfo) -> str:
    """The local date of `ms` in ISO form (the key of a member's daily counts)."""
    return local_date(ms, tz).isoformat()


@lru_cache(maxsize=CACHE)
def second_of_day(ms: int, tz: ZoneInfo) -> int:
    """Seconds since local midnight of the wall clock at `ms` (what quiet hours are judged by)."""
    local = datetime.fromtimestamp(ms / 1000, tz)
    return local.hour * 3600 + local.minute * 60 + local.second


@lru_cache(maxsize=CACHE)
def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    return to_ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def campaign_active(campaign: Campaign, kind: str, ms: int, tz: ZoneInfo) -> bool:
    if kind not in campaign.applies_to or not campaign.start_ms <= ms < campaign.end_ms:
        return False
    day = local_date(ms, tz)
    if campaign.monthly_day is not None and day.day != campaign.monthly_day:
        return False
    return not campaign.weekdays or day.isoweekday() in campaign.weekdays


def active_campaigns(program: Program, kind: str | None, ms: int) -> list[Campaign]:
    """Campaigns running at `ms` (for `kind`, or for any kind when `kind` is None)."""
    kinds = [kind] if kind else None
    return [c for c in program.campaigns
            if any(campaign_active(c, k, ms, program.timezone) for k in (kinds or c.applies_to))]


def campaign_multiplier(program: Program, kind: str, ms: int) -> Fraction:
    """The largest multiplier of the campaigns running for `kind` at `ms` (campaigns do not stack)."""
    largest = None
    for campaign in program.campaigns:
        if campaign_active(campaign, kind, ms, program.timezone) and (
                largest is None or campaign.multiplier > largest):
            largest = campaign.multiplier
    return ONE if largest is None else largest


def birthday_in_year(birthday: str, year: int) -> date:
    """The member's birthday ("MM-DD") in `year`; 02-29 falls on 02-28 in common years."""
    month, day = int(birthday[:2]), int(birthday[3:])
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, month, day - 1)


@lru_cache(maxsize=CACHE)
def period_end(ms: int, granularity: str, tz: ZoneInfo) -> int:
    """`ms` rounded up to the end of its local day or month (the next period's first instant), or itself
    (`exact`): the program's granularity for instants that decide which bucket or window row a point
    belongs to, so that a year of activity is a few hundred rows at most, not thousands."""
    if granularity == "exact":
        return ms
    day = local_date(ms, tz)
    if granularity == "day":
        return local_midnight_ms(date.fromordinal(day.toordinal() + 1), tz)
    first_next = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return local_midnight_ms(first_next, tz)

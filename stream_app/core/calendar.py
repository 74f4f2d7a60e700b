"""Calendar rules in the program's time zone: local days, campaigns and birthdays."""
from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

from stream_app.core.program import Campaign, Program


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def rfc3339(ms: int) -> str:
    """An instant as RFC 3339 in UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_date(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


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
    return max((c.multiplier for c in active_campaigns(program, kind, ms)), default=Fraction(1))


def birthday_in_year(birthday: str, year: int) -> date:
    """The member's birthday ("MM-DD") in `year`; 02-29 falls on 02-28 in common years."""
    month, day = int(birthday[:2]), int(birthday[3:])
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, month, day - 1)

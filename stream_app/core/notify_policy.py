"""Notification policy: transactional always goes; marketing has a daily cap and quiet hours."""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from stream_app.core.calendar import CACHE, local_date, local_day, second_of_day, to_ms
from stream_app.core.emitted import Outputs
from stream_app.core.member import Member
from stream_app.core.program import Program


def in_quiet_hours(ms: int, program: Program) -> bool:
    """Whether `ms` falls in quiet hours (equal start and end: no quiet hours)."""
    start, end, second = program.quiet_start_s, program.quiet_end_s, second_of_day(ms, program.timezone)
    if start == end:
        return False
    return start <= second < end if start < end else second >= start or second < end


def quiet_end_after(ms: int, program: Program) -> int:
    """The first end of quiet hours after `ms` (asked several times per event at the same instant)."""
    return _quiet_end_after(ms, program.timezone, program.quiet_end_s)


@lru_cache(maxsize=CACHE)
def _quiet_end_after(ms: int, timezone, end_s: int) -> int:
    day = local_date(ms, timezone)
    for offset in (0, 1, 2):
        d = day + timedelta(days=offset)
        end = to_ms(datetime(d.year, d.month, d.day, end_s // 3600, end_s // 60 % 60, end_s % 60, tzinfo=timezone))
        if end > ms:
            return end
    raise AssertionError("unreachable: a quiet end falls within two days")


def apply_policy(member: Member, program: Program, now: int, notifications: list[dict]) -> tuple[list[dict], int]:
    """(notifications to send now, how many were dropped); quiet-hour marketing ones are held."""
    send, dropped = [], 0
    for note in notifications:
        if note["priority"] != "marketing":
            send.append(note)
        elif in_quiet_hours(now, program):
            if program.quiet_hold and all(h["notification_id"] != note["notification_id"] for h in member.held):
                member.held.append({**note, "held_at": now})
            else:
                dropped += 1
        elif _take_marketing_slot(member, program, now):
            send.append(note)
        else:
            dropped += 1
    return send, dropped


def settle(member: Member, program: Program, at: int, out: Outputs, first: int) -> None:
    """Apply the policy at `at` to the notifications `out` collected from index `first` on, after the
    held ones that may go at `at`. Called per due step at its own instant and once for an event, so
    what is held, sent or dropped, and which day's cap it counts against, does not depend on when a
    tick or the next event happened to run the step."""
    if not member.held and len(out.notifications) == first:
        return  # nothing held, nothing new: the common step
    released, stale = release_held(member, program, at)
    send, dropped = apply_policy(member, program, at, out.notifications[first:])
    out.notifications[first:] = released + send
    out.notifications_dropped += stale + dropped


def release_held(member: Member, program: Program, now: int) -> tuple[list[dict], int]:
    """Held notifications that may go at `now` (out of quiet hours), and how many went stale."""
    if not member.held or in_quiet_hours(now, program):
        return [], 0
    send, dropped = [], 0
    for note in member.held:
        held_at = note.pop("held_at")
        if now - held_at > program.hold_at_most_ms or not _take_marketing_slot(member, program, now):
            dropped += 1
        else:
            send.append(note)
    member.held = []
    return send, dropped


def held_due_at(member: Member, program: Program, now: int) -> int | None:
    """When held notifications may go: the end of the quiet period they (or `now`) fall in."""
    if not member.held:
        return None
    return quiet_end_after(max(now, min(h["held_at"] for h in member.held)), program)


def _take_marketing_slot(member: Member, program: Program, now: int) -> bool:
    day = local_day(now, program.timezone)
    if member.count_today(day, "marketing") >= program.marketing_daily_cap:
        return False
    member.bump_today(day, "marketing")
    return True

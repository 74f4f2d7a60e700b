"""Earning helpers shared by the rules: a lot added to the ledger, and its reward event."""
from __future__ import annotations

from math import floor

from stream_app.core import calendar
from stream_app.core.calendar import campaign_multiplier, period_end, rfc3339
from stream_app.core.emitted import Outputs
from stream_app.core.ledger import Lot
from stream_app.core.member import Member
from stream_app.core.program import Program


def earn_available(member: Member, program: Program, source_event_id: str, rule: str, points: int,
                    now: int, out: Outputs) -> None:
    """Add an immediately available lot and emit `points_earned`."""
    lot = Lot(f"{source_event_id}:{rule}", rule, source_event_id, points, points, now, now,
              expiry_of(program, now), released=True)
    member.ledger.add(lot)
    out.reward(member, "points_earned", points, source_event_id, rule, now)


def earn_pending(member: Member, program: Program, source_event_id: str, rule: str, points: int,
                  now: int, out: Outputs) -> None:
    available_at = now + program.return_window_ms
    lot = Lot(f"{source_event_id}:{rule}", rule, source_event_id, points, points, now, available_at,
              expiry_of(program, available_at), released=False)
    member.ledger.add(lot)
    out.reward(member, "points_pending", points, source_event_id, rule, now,
               {"available_at": rfc3339(available_at)})


def expiry_of(program: Program, available_at: int) -> int:
    """When points available from `available_at` expire: `expiry.after` later, rounded up to the
    program's `expiry.granularity` (so that points of one day or month share one ledger bucket)."""
    return period_end(available_at + program.expiry_after_ms, program.expiry_granularity, program.timezone)


def simple_earn(member: Member, event: dict, program: Program, now: int, out: Outputs, kind: str,
                 points: int) -> None:
    multiplier = campaign_multiplier(program, kind, now)
    if multiplier != 1:
        points = floor(points * multiplier)
    if points:
        earn_available(member, program, event["event_id"], kind, points, now, out)


def local_day(program: Program, now: int) -> str:
    return calendar.local_day(now, program.timezone)

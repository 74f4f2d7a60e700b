"""The loyalty core's entry points: apply one input event, or the passing of time, to a member's state.

Pure and deterministic: state in, state and output events out; the clock is an argument.
Before an event is applied, the member's due work up to its instant is done, so a replay of the
same events gives the same results. The member's clock (`evaluated_at`) never runs backwards: an
event older than it (late: the worker merges its inputs by event time, agents/merge.py, so only an
event later than that merge's grace is late) is applied as of the clock. What the event itself says
keeps its own `occurred_at` (an order's paid date, the local day a login, share or review counts for,
the review's order window, the velocity window, the instant of its rewards); the member's time-driven
state (due work, tier, segment, notification policy, next due instant) is judged at the clock.
The rules per event kind are in handlers.py, due work in due.py, earning helpers in earning.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from stream_app.core.abuse import check_velocity
from stream_app.core.due import catch_up, next_due
from stream_app.core.emitted import Outputs
from stream_app.core.handlers import HANDLERS, freeze_flagged
from stream_app.core.member import Member
from stream_app.core.notify_policy import settle
from stream_app.core.outcomes import APPLIED, DUPLICATE, ERASED, IGNORED, STALE
from stream_app.core.program import Program
from stream_app.core.redemption import grant_due
from stream_app.core.referrals import after_event as referral_after_event
from stream_app.core.segments import evaluate_segment
from stream_app.core.tiers import evaluate_tier

ADMIN_TYPES = frozenset({"member_frozen", "member_unfrozen", "points_adjusted", "member_flagged"})
__all__ = ["ADMIN_TYPES", "Result", "advance", "advance_member", "apply_event", "apply_to_member", "clock_of",
           "event_time_ms", "new_member", "next_due"]


@dataclass(slots=True)
class Result:
    """The member's new state (None when erased), what to emit, and how the event was counted."""

    state: dict | None
    rewards: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    outcome: str = APPLIED
    next_due: int | None = None
    notifications_dropped: int = 0
    device_links: list[dict] = field(default_factory=list)
    late: bool = False  # applied, but older than the member's clock (counted: loyalty_events_late_total)
    messages: list[dict] = field(default_factory=list)  # to other members' partitions (referrals)
    reward_requests: list[dict] = field(default_factory=list)  # to the reward agents (core/redemption.py)


def event_time_ms(event: dict) -> int:
    return int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)


def new_member(member_id: str, now: int, program: Program) -> Member:
    return Member(member_id=member_id, created_at=now, tier=program.tiers[0].name)


def apply_event(state: dict | None, event: dict, program: Program) -> Result:
    """Apply one validated input event to a member's state (None for a member not seen yet)."""
    member, result = apply_to_member(Member.from_dict(state) if state else None, event, program)
    if result.outcome in (DUPLICATE, STALE):
        result.state = state  # unchanged (and not migrated: nothing was applied)
    elif member is not None:
        result.state = member.to_dict()
    return result


def apply_to_member(member: Member | None, event: dict, program: Program,
                    schedule: bool = True) -> tuple[Member | None, Result]:
    """`apply_event` on a Member object, changed in place: (the member, None when erased; the Result,
    whose `state` is left None). A caller that keeps the object between events (the simulation) saves
    the state's decoding and encoding per event; `schedule=False` also skips the next due instant."""
    occurred = event_time_ms(event)
    if member is None:
        member = new_member(event["member_id"], occurred, program)
    now = clock_of(member, occurred)
    if event["event_id"] in member.seen:
        return member, Result(None, outcome=DUPLICATE, next_due=_scheduled(member, program, now, schedule))
    if member.seen.is_stale(occurred):  # its id may be forgotten: applying it could count it twice
        return member, Result(None, outcome=STALE, next_due=_scheduled(member, program, now, schedule))
    out = Outputs(program)
    if event["type"] == "member_erased":
        out.reward(member, "member_erased", 0, event["event_id"], "erasure", occurred)
        for device in member.devices:
            out.link_device("forget", device, member)
        return None, Result(None, out.rewards, out.notifications, ERASED, device_links=out.device_links)
    catch_up(member, program, now, out)
    first = len(out.notifications)  # what catch_up sent is settled already, step by step
    if event["type"] not in ADMIN_TYPES:
        member.last_activity_at = max(member.last_activity_at or occurred, occurred)
        _flag_abuse(member, event, program, occurred, out)
    outcome = HANDLERS[event["type"]](member, event, program, occurred, out)
    referral_after_event(member, event, program, occurred, outcome, out)
    evaluate_tier(member, program, now, event["event_id"], out)
    grant_due(member, program, now, event["event_id"], out)
    evaluate_segment(member, program, now, event["event_id"], out)
    member.seen.remember(event["event_id"], occurred, now, program.dedupe_window_ms, program.max_event_ids)
    settle(member, program, now, out, first)
    return member, Result(None, out.rewards, out.notifications, outcome, _scheduled(member, program, now, schedule),
                          out.notifications_dropped, out.device_links, late=occurred < now, messages=out.messages,
                          reward_requests=out.reward_requests)


def _scheduled(member: Member, program: Program, now: int, schedule: bool) -> int | None:
    return next_due(member, program, now) if schedule else None


def clock_of(member: Member, at: int) -> int:
    """The instant the member's time-driven state is judged at: `at`, or its clock when that is later."""
    return at if member.evaluated_at is None else max(at, member.evaluated_at)


def advance(state: dict, program: Program, now: int) -> Result:
    """Do the member's work that has fallen due by `now` (release, expiry, warnings, birthday, tier).

    A `now` the member's clock already passed (a due tick that arrives after newer events) does nothing."""
    member = Member.from_dict(state)
    now = clock_of(member, now)
    result = advance_member(member, program, now)
    new_state = member.to_dict()
    # Only the evaluation cursor moved: nothing to write (stepping again from the old one is a no-op).
    # Keys the core does not own (e.g. an `_outbox` left by older versions) are not compared.
    changed = any(new_state[k] != state.get(k) for k in new_state if k != "evaluated_at")
    result.state, result.outcome = (new_state, APPLIED) if changed else (state, IGNORED)
    result.next_due = next_due(member, program, now)
    return result


def advance_member(member: Member, program: Program, now: int) -> Result:
    """`advance` on a Member object, changed in place (its clock moves even when nothing else does):
    what the due work emitted, in a Result whose `state` and `next_due` are left None."""
    out = Outputs(program)
    catch_up(member, program, clock_of(member, now), out)
    return Result(None, out.rewards, out.notifications, notifications_dropped=out.notifications_dropped,
                  messages=out.messages)


def _flag_abuse(member: Member, event: dict, program: Program, now: int, out: Outputs) -> None:
    """Freeze a member whose activity breaks a velocity limit; the event is still recorded."""
    flagged = check_velocity(member, event, program, now)
    if flagged is not None and not member.frozen:
        freeze_flagged(member, event, *flagged, now, out)

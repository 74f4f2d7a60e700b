"""The core's entry points under program versions: each event and each step of time under the version in
effect at its instant (stream_app/core/program_versions.py).

`engine.apply_event` and `engine.advance` take one Program; these resolve it. When a member's clock
crosses a version's effective_from, the member is first advanced to just before it under the old
version, so due work falls under the version in effect when it fell due, whenever it happens to run:
live (due ticks) and replayed (catch-up inside the next event) give the same results.
"""
from __future__ import annotations

from dataclasses import replace

from stream_app.core.engine import Result, advance, advance_member, apply_event, apply_to_member, event_time_ms
from stream_app.core.member import Member
from stream_app.core.program_versions import ProgramVersions
from stream_app.core.referral_messages import apply_message, message_time_ms
from stream_app.core.reward_replies import apply_reply


def apply_event_at(state: dict | None, event: dict, versions: ProgramVersions) -> Result:
    if len(versions.versions) == 1:  # no boundary to cross, and no second parse of occurred_at
        return apply_event(state, event, versions.versions[0].program)
    occurred = event_time_ms(event)
    state, crossed = _cross(state, versions, occurred)
    return _joined(crossed, apply_event(state, event, versions.at(occurred)))


def advance_at(state: dict, versions: ProgramVersions, now: int) -> Result:
    if len(versions.versions) == 1:
        return advance(state, versions.versions[0].program, now)
    state, crossed = _cross(state, versions, now)
    return _joined(crossed, advance(state, versions.at(now), now))


def apply_to_member_at(member: Member | None, event: dict, versions: ProgramVersions) -> tuple[Member | None, Result]:
    """`apply_event_at` on a Member object (engine.apply_to_member, no next due instant). Crossing a
    version boundary goes through the stored form, so that what `advance` leaves unchanged (the old
    clock) is exactly what `apply_event_at` continues from."""
    if len(versions.versions) == 1:
        return apply_to_member(member, event, versions.versions[0].program, schedule=False)
    occurred = event_time_ms(event)
    crossed: list[Result] = []
    if member is not None and member.evaluated_at is not None and versions.boundaries(member.evaluated_at, occurred):
        state, crossed = _cross(member.to_dict(), versions, occurred)
        member = Member.from_dict(state)
    member, last = apply_to_member(member, event, versions.at(occurred), schedule=False)
    return member, _joined(crossed, last)


def advance_member_at(member: Member, versions: ProgramVersions, now: int) -> tuple[Member, Result]:
    """`advance_at` on a Member object (engine.advance_member), through the stored form when crossing."""
    if len(versions.versions) == 1:
        return member, advance_member(member, versions.versions[0].program, now)
    if member.evaluated_at is None or not versions.boundaries(member.evaluated_at, now):
        return member, advance_member(member, versions.at(now), now)
    result = advance_at(member.to_dict(), versions, now)
    return Member.from_dict(result.state), result


def apply_message_at(state: dict | None, message: dict, versions: ProgramVersions) -> Result:
    at = message_time_ms(message)
    state, crossed = _cross(state, versions, at)
    return _joined(crossed, apply_message(state, message, versions.at(at)))


def apply_reply_at(state: dict | None, reply: dict, versions: ProgramVersions) -> Result:
    """The reward agent's answer (`at`: the instant of the request it answers)."""
    state, crossed = _cross(state, versions, reply["at"])
    return _joined(crossed, apply_reply(state, reply, versions.at(reply["at"])))


def _cross(state: dict | None, versions: ProgramVersions, upto: int) -> tuple[dict | None, list[Result]]:
    """Advance `state` to just before each version boundary between its clock and `upto`."""
    clock = None if state is None else state.get("evaluated_at")
    if clock is None:
        return state, []
    crossed = []
    for boundary in versions.boundaries(clock, upto):
        result = advance(state, versions.at(boundary - 1), boundary - 1)
        crossed.append(result)
        state = result.state
    return state, crossed


def _joined(crossed: list[Result], last: Result) -> Result:
    """One Result for the steps before the boundaries and the final call: outputs in order, the last state."""
    if not crossed:
        return last
    steps = [*crossed, last]
    return replace(last, rewards=[r for s in steps for r in s.rewards],
                   notifications=[n for s in steps for n in s.notifications],
                   device_links=[d for s in steps for d in s.device_links],
                   messages=[m for s in steps for m in s.messages],
                   reward_requests=[r for s in steps for r in s.reward_requests],
                   notifications_dropped=sum(s.notifications_dropped for s in steps))

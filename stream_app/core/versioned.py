"""The core's entry points under program versions: each event and each step of time under the version in
effect at its instant (stream_app/core/program_versions.py).

`engine.apply_event` and `engine.advance` take one Program; these resolve it. When a member's clock
crosses a version's effective_from, the member is first advanced to just before it under the old
version, so due work falls under the version in effect when it fell due, whenever it happens to run:
live (due ticks) and replayed (catch-up inside the next event) give the same results.
"""
from __future__ import annotations

from dataclasses import replace

from stream_app.core.engine import Result, advance, apply_event, event_time_ms
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

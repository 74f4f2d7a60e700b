"""Abuse monitoring: velocity limits per member over a sliding window of event time."""
from __future__ import annotations

from stream_app.core.member import Member
from stream_app.core.program import Program

_KIND_OF_TYPE = {"review_posted": "reviews", "share": "shares", "login": "devices"}


def check_velocity(member: Member, event: dict, program: Program, now: int) -> tuple[str, dict] | None:
    """Record the event in its sliding window; (rule, evidence) when the window is over its limit.

    Logins count distinct devices (by their keyed hash, never the raw id) rather than logins.
    """
    kind = _KIND_OF_TYPE.get(event["type"])
    if kind is None:
        return None
    since = now - program.abuse_window_ms
    window = [x for x in member.velocity.get(kind, []) if x[0] > since]
    window.append([now, event.get("device_id", "")])
    member.velocity[kind] = window
    limit = program.abuse_limits[kind]
    seen = len({x[1] for x in window}) if kind == "devices" else len(window)
    if seen <= limit:
        return None
    return f"velocity:{kind}", {"count": seen, "limit": limit, "window_ms": program.abuse_window_ms}

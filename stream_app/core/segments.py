"""Lifecycle segments: new, active, loyal, at_risk, churned; win-back on entering at_risk."""
from __future__ import annotations

from stream_app.core import order_history
from stream_app.core.emitted import Outputs
from stream_app.core.member import Member
from stream_app.core.program import Program


def segment_at(member: Member, program: Program, now: int) -> str:
    """The member's segment at `now` (churned > at_risk > loyal > new > active)."""
    if now - (member.last_activity_at or member.created_at) >= program.segment_churned_ms:
        return "churned"
    if now - (member.last_order_at or member.created_at) >= program.segment_at_risk_ms:
        return "at_risk"
    if order_history.orders_in_window(member, program.segment_loyal_window_ms, now) >= program.segment_loyal_orders:
        return "loyal"
    if now - (member.first_order_at or member.created_at) < program.segment_new_ms:
        return "new"
    return "active"


def evaluate_segment(member: Member, program: Program, now: int, cause_id: str, out: Outputs) -> None:
    """Record a segment change; entering at_risk sends the win-back notification."""
    segment = segment_at(member, program, now)
    if segment == member.segment:
        return
    before, member.segment = member.segment, segment
    if before is None:
        return  # a member's first segment is an assignment, not a change
    out.reward(member, "segment_changed", 0, cause_id, f"segment:{segment}", now, {"from": before, "to": segment})
    if segment == "at_risk":
        out.notify(member, "win_back", f"{cause_id}:win_back", now, {"segment": segment})


def segment_due_at(member: Member, program: Program, now: int) -> int | None:
    """The next instant at which time alone may change the segment."""
    times = [
        (member.last_activity_at or member.created_at) + program.segment_churned_ms,
        (member.last_order_at or member.created_at) + program.segment_at_risk_ms,
        (member.first_order_at or member.created_at) + program.segment_new_ms,
        order_history.next_exit(member, program.segment_loyal_window_ms, now, qualifying_only=False),
    ]
    later = [t for t in times if t is not None and t > now]
    return min(later) if later else None

"""Tier qualification: upgrade at once, downgrade one tier after a grace period below threshold."""
from __future__ import annotations

from stream_app.core import order_history
from stream_app.core.calendar import rfc3339
from stream_app.core.emitted import Outputs
from stream_app.core.member import Member
from stream_app.core.program import Program


def qualifying_points(member: Member, program: Program, now: int) -> int:
    """Order points earned in the trailing window (pending included, bonus excluded) less clawbacks."""
    return order_history.qualifying_points(member, program.tier_window_ms, now)


def next_tier(member: Member, program: Program):
    names = [t.name for t in program.tiers]
    index = names.index(program.tier(member.tier).name)
    return program.tiers[index + 1] if index + 1 < len(program.tiers) else None


def evaluate_tier(member: Member, program: Program, now: int, cause_id: str, out: Outputs) -> None:
    """Move the member's tier to what its qualifying points justify at `now`."""
    qualifying = qualifying_points(member, program, now)
    current = program.tier(member.tier)
    reached = program.tier_for(qualifying)
    if reached.threshold > current.threshold:
        _change(member, reached.name, "tier_upgrade", qualifying, now, cause_id, out)
        member.at_risk_since = None
    elif qualifying >= current.threshold:
        member.at_risk_since = None
    elif member.at_risk_since is None:
        _start_grace(member, program, qualifying, now, out)
    elif now >= member.at_risk_since + program.tier_grace_ms:
        below = program.tiers[[t.name for t in program.tiers].index(current.name) - 1]
        grace_id = f"tier-grace:{member.at_risk_since}"
        _change(member, below.name, "tier_downgrade", qualifying, now, grace_id, out)
        member.at_risk_since = None
        if qualifying < below.threshold:
            _start_grace(member, program, qualifying, now, out)


def _start_grace(member: Member, program: Program, qualifying: int, now: int, out: Outputs) -> None:
    member.at_risk_since = now
    threshold = program.tier(member.tier).threshold
    out.notify(member, "tier_at_risk", f"tier-grace:{now}:{member.tier}", now, {
        "tier": member.tier, "qualifying_points": qualifying, "points_needed": threshold - qualifying,
        "grace_ends_at": rfc3339(now + program.tier_grace_ms)})


def _change(member: Member, to: str, rule: str, qualifying: int, now: int, cause_id: str,
            out: Outputs) -> None:
    before, member.tier = member.tier, to
    details = {"from": before, "to": to, "qualifying_points": qualifying}
    out.reward(member, "tier_changed", 0, cause_id, rule, now, details)
    out.notify(member, "tier_changed", f"{cause_id}:{rule}", now, details)


def tier_due_at(member: Member, program: Program, now: int) -> int | None:
    """When time alone may next change the tier: grace end, or an order leaving the window."""
    if member.at_risk_since is not None:
        return member.at_risk_since + program.tier_grace_ms
    if program.tier(member.tier).threshold == 0:
        return None
    return order_history.next_exit(member, program.tier_window_ms, now, qualifying_only=True)

"""What `GET /members/{id}` shows, computed from a member's stored state at an instant."""
from __future__ import annotations

from stream_app.core.calendar import active_campaigns, rfc3339
from stream_app.core.member import Member
from stream_app.core.program import Program
from stream_app.core.tiers import next_tier, qualifying_points

EXPIRING_HORIZON_MS = 30 * 86_400_000


def member_view(state: dict, program: Program, now: int) -> dict:
    member = Member.from_dict(state)
    ledger = member.ledger
    qualifying = qualifying_points(member, program, now)
    upcoming = next_tier(member, program)
    expiring: dict[int, int] = {}  # a warned bucket and its unwarned twin show as one
    for expires_at, remaining, _ in ledger.buckets:
        if remaining and now < expires_at <= now + EXPIRING_HORIZON_MS:
            expiring[expires_at] = expiring.get(expires_at, 0) + remaining
    return {
        "member_id": member.member_id,
        "tier": member.tier,
        "tier_progress": {
            "qualifying_points": qualifying,
            "next_tier": upcoming.name if upcoming else None,
            "points_needed": max(0, upcoming.threshold - qualifying) if upcoming else 0,
            "at_risk_since": rfc3339(member.at_risk_since) if member.at_risk_since else None,
        },
        "points": {"available": ledger.available, "pending": ledger.pending,
                   "lifetime_earned": ledger.earned},
        "expiring_soon": [{"points": points, "expires_at": rfc3339(expires_at)}
                          for expires_at, points in expiring.items()],
        "active_campaigns": [{"name": c.name, "multiplier": float(c.multiplier), "applies_to": list(c.applies_to)}
                             for c in active_campaigns(program, None, now)],
        "segment": member.segment,
        "frozen": member.frozen,
        "flags": [{**flag, "at": rfc3339(flag["at"])} for flag in member.flags],
    }

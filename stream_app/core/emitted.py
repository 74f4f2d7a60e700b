"""Reward and notification events with deterministic ids, collected while the core works."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from stream_app.core.calendar import rfc3339
from stream_app.core.member import Member
from stream_app.core.program import Program


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id, so consumers can dedupe."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return f"{prefix}-{digest}"


@dataclass(slots=True)
class Outputs:
    """What one call of the core emits, in order."""

    program: Program
    rewards: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    device_links: list[dict] = field(default_factory=list)
    notifications_dropped: int = 0  # by the notification policy (notify_policy.settle)
    #: to another member's partition (the internal `referrals` topic), keyed by the message's member_id
    messages: list[dict] = field(default_factory=list)
    reward_requests: list[dict] = field(default_factory=list)  # to the reward agent (core/redemption.py)

    def link_device(self, op: str, device: str, member: Member) -> None:
        """Tell the device index that `member` uses (op "seen") or no longer uses ("forget") `device`."""
        self.device_links.append({"op": op, "device": device, "member_id": member.member_id,
                                  "referrer_id": member.referrer_id})

    def ask_reward_agent(self, op: str, member_id: str, redemption_id: str, reward_code: str, quantity: int,
                         at: int) -> None:
        """A message for the reward agent of `reward_code` (internal reward-requests topic, keyed by code)."""
        self.reward_requests.append({"op": op, "redemption_id": redemption_id, "member_id": member_id,
                                     "reward_code": reward_code, "quantity": quantity, "at": at})

    def reward(self, member: Member, kind: str, points: int, source_event_id: str, rule: str,
               at: int, details: dict | None = None) -> dict:
        """Emit a reward event carrying the balance after the change."""
        reward = {
            "reward_id": stable_id("rw", member.member_id, source_event_id, rule, kind),
            "member_id": member.member_id, "type": kind, "points": points,
            "balance": {"available": member.ledger.available, "pending": member.ledger.pending},
            "tier": member.tier, "source_event_id": source_event_id, "rule": rule,
            "occurred_at": rfc3339(at), "program_version": self.program.version,
        }
        if details:
            reward["details"] = details
        self.rewards.append(reward)
        return reward

    def notify(self, member: Member, template: str, cause_id: str, at: int, params: dict) -> None:
        """Emit a notification; its id derives from its cause so a resend is recognisable."""
        self.notifications.append({
            "notification_id": stable_id("nt", member.member_id, cause_id, template),
            "member_id": member.member_id, "template": template,
            "priority": self.program.priority(template), "params": params, "created_at": rfc3339(at),
        })

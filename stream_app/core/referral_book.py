"""What a member's state remembers about referrals: its own (as the friend) and its decisions (as a referrer).

The one field `Member.referrals`; states written before referrals existed have no `referrals` key and
load as an empty book, and an empty book is not written (so those states save unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass, field

PENDING, CLAIMED, PAID, REJECTED = "pending", "claimed", "paid", "rejected"
MAX_DECIDED = 1000  # a referrer's newest decisions kept: a claim sent again is answered as before


@dataclass(slots=True)
class FriendReferral:
    """The member's own referral: from its first qualifying order until both sides are paid or it is rejected."""

    referrer_id: str
    order_id: str
    claim_id: str  # the referral_claimed message's event id (also the source of both sides' points)
    decides_at: int  # the order's return window ends: judged then, unless refunded before
    status: str = PENDING
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"referrer_id": self.referrer_id, "order_id": self.order_id, "claim_id": self.claim_id,
                "decides_at": self.decides_at, "status": self.status, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> FriendReferral:
        return cls(**d)


@dataclass(slots=True)
class ReferralBook:
    friend: FriendReferral | None = None
    #: as a referrer: [friend id, claim instant (ms), rejection reason or None when paid], oldest first
    decided: list[list] = field(default_factory=list)
    successes: int = 0  # successful referrals ever (milestones count these)

    def __bool__(self) -> bool:
        return self.friend is not None or bool(self.decided) or bool(self.successes)

    def decision_for(self, friend_id: str) -> list | None:
        return next((d for d in self.decided if d[0] == friend_id), None)

    def decide(self, friend_id: str, at: int, reason: str | None) -> None:
        self.decided.append([friend_id, at, reason])
        del self.decided[:-MAX_DECIDED]
        if reason is None:
            self.successes += 1

    def to_dict(self) -> dict:
        return {"friend": self.friend.to_dict() if self.friend else None, "decided": self.decided,
                "successes": self.successes}

    @classmethod
    def from_dict(cls, d: dict | None) -> ReferralBook:
        if not d:
            return cls()
        friend = d.get("friend")
        return cls(FriendReferral.from_dict(friend) if friend else None, [list(x) for x in d.get("decided", [])],
                   d.get("successes", 0))

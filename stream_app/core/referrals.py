"""Two-sided referrals: the rules on each side of a referral (docs/referrals.md).

The friend and the referrer live in different partitions, so a referral is three steps, each
applied in one member's partition and each idempotent:

1. friend: its first qualifying order makes the referral pending until the order's return window
   ends (`after_event`); a refund before then rejects it (`order_refunded`). When the window ends
   (`decide_due`, due work) the friend's own rules are judged (self_referral, shared_device,
   friend_frozen); if they pass, a `referral_claimed` message goes to the referrer's partition.
2. referrer: `judge_claim` decides (referrer_unknown, referrer_frozen, referral_loop, shared_device,
   max_per_month); an accepted claim pays the referrer (and any milestone); either way the decision
   is remembered (a claim sent again gets the same answer) and a `referral_decided` goes back.
3. friend: an accepted decision pays the friend; a rejection emits `referral_rejected` with the reason.

Message ids derive from the friend and its order, so every resend after a crash is recognisable.
"""
from __future__ import annotations

from datetime import datetime

from stream_app.core.calendar import local_date, rfc3339
from stream_app.core.device_index import RULE as SHARED_DEVICE_FLAG
from stream_app.core.earning import earn_available
from stream_app.core.emitted import Outputs, stable_id
from stream_app.core.member import Member
from stream_app.core.outcomes import APPLIED
from stream_app.core.program import Program, ReferralRules
from stream_app.core.referral_book import CLAIMED, PAID, PENDING, REJECTED, FriendReferral

CLAIMED_TYPE, DECIDED_TYPE = "referral_claimed", "referral_decided"
#: Every reason a referral_rejected reward event may carry (docs/referrals.md).
REASONS = ("self_referral", "referrer_unknown", "referrer_frozen", "shared_device", "max_per_month",
           "referral_loop", "friend_frozen", "order_refunded")


def after_event(member: Member, event: dict, program: Program, now: int, outcome: str, out: Outputs) -> None:
    """After an input event's own rule: a first qualifying order opens the referral, a refund of it cancels."""
    friend, kind = member.referrals.friend, event["type"]
    if kind == "order_paid" and outcome == APPLIED and friend is None and member.referrer_id:
        rules = program.referrals
        if rules.active and event["amount_cents"] > 0 and event["amount_cents"] >= rules.min_order_cents:
            order_id = event["order_id"]
            friend = FriendReferral(member.referrer_id, order_id, stable_id("rc", member.member_id, order_id),
                                    now + program.return_window_ms)
            member.referrals.friend = friend
            out.reward(member, "referral_pending", 0, event["event_id"], "referral", now,
                       {"referrer_id": friend.referrer_id, "order_id": order_id,
                        "decides_at": rfc3339(friend.decides_at)})
    elif (kind == "order_refunded" and friend is not None and friend.status == PENDING
          and event["order_id"] == friend.order_id and now < friend.decides_at):
        _reject(member, friend, "order_refunded", event["event_id"], now, out)


def due_times(member: Member) -> list[int]:
    friend = member.referrals.friend
    return [friend.decides_at] if friend is not None and friend.status == PENDING else []


def friend_rejection(member: Member, referrer_id: str) -> str | None:
    """What the friend's own partition knows against the referral, or None."""
    if referrer_id == member.member_id:
        return "self_referral"
    if any(f["rule"] == SHARED_DEVICE_FLAG and f.get("evidence", {}).get("referrer_id") == referrer_id
           for f in member.flags):
        return "shared_device"  # the device index flagged (and froze) the friend for this referrer
    if member.frozen:
        return "friend_frozen"
    return None


def decide_due(member: Member, program: Program, now: int, out: Outputs) -> None:
    """The return window of the qualifying order ended unrefunded: judge the friend's side, then claim."""
    friend = member.referrals.friend
    if friend is None or friend.status != PENDING or friend.decides_at > now:
        return
    reason = friend_rejection(member, friend.referrer_id)
    if reason is not None:
        _reject(member, friend, reason, friend.claim_id, friend.decides_at, out)
        return
    friend.status = CLAIMED
    out.messages.append({"type": CLAIMED_TYPE, "event_id": friend.claim_id, "member_id": friend.referrer_id,
                         "friend_id": member.member_id, "order_id": friend.order_id,
                         "occurred_at": rfc3339(friend.decides_at), "devices": list(member.devices)})


def judge_claim(referrer: Member | None, friend_id: str, friend_devices: list[str], at: int,
                program: Program) -> str | None:
    """The referrer side's verdict on a claim: a rejection reason, or None to pay."""
    if referrer is None:
        return "referrer_unknown"
    if referrer.frozen:
        return "referrer_frozen"
    if referrer.referrer_id == friend_id:
        return "referral_loop"
    if set(friend_devices) & set(referrer.devices):
        return "shared_device"
    if successes_in_month(referrer, at, program) >= program.referrals.max_per_month:
        return "max_per_month"
    return None


def successes_in_month(referrer: Member, at: int, program: Program) -> int:
    """Successful referrals whose claim falls in the calendar month (program time zone) of `at`."""
    month = local_date(at, program.timezone).replace(day=1)
    return sum(1 for _, when, reason in referrer.referrals.decided
               if reason is None and local_date(when, program.timezone).replace(day=1) == month)


def milestone_points(rules: ReferralRules, successes: int) -> int:
    return sum(m.points for m in rules.milestones if m.count == successes)


def on_claim(referrer: Member, claim: dict, program: Program, now: int, out: Outputs) -> None:
    """A friend's claim reached the referrer: decide once, pay on acceptance, answer (again, if asked again)."""
    friend_id, at = claim["friend_id"], _ms(claim["occurred_at"])
    book = referrer.referrals
    decision = book.decision_for(friend_id)
    if decision is None:
        reason = judge_claim(referrer, friend_id, claim["devices"], at, program)
        book.decide(friend_id, at, reason)
        if reason is None:
            _pay_referrer(referrer, claim, program, now, out)
    else:
        reason = decision[2]
    out.messages.append(reply(claim, referrer.member_id, reason))


def reply(claim: dict, referrer_id: str, reason: str | None) -> dict:
    """The referrer side's answer to `claim`: the same answer, with the same id, every time."""
    return {"type": DECIDED_TYPE, "event_id": stable_id("rd", claim["event_id"]), "member_id": claim["friend_id"],
            "referrer_id": referrer_id, "claim_id": claim["event_id"], "order_id": claim["order_id"],
            "occurred_at": claim["occurred_at"], "accepted": reason is None, "reason": reason}


def on_decision(member: Member, decision: dict, program: Program, now: int, out: Outputs) -> None:
    """The referrer side answered: pay the friend, or record the rejection; an answer seen before does nothing."""
    friend = member.referrals.friend
    if friend is None or friend.status != CLAIMED or friend.claim_id != decision["claim_id"]:
        return
    if not decision["accepted"]:
        _reject(member, friend, decision["reason"], friend.claim_id, now, out)
        return
    friend.status = PAID
    points = program.referrals.friend_points
    if points:
        earn_available(member, program, friend.claim_id, "referral_friend", points, now, out)
        out.notify(member, "referral_friend_rewarded", friend.claim_id, now,
                   {"points": points, "referrer_id": friend.referrer_id})


def _pay_referrer(referrer: Member, claim: dict, program: Program, now: int, out: Outputs) -> None:
    rules, source = program.referrals, claim["event_id"]
    bonus = milestone_points(rules, referrer.referrals.successes)
    if rules.referrer_points:
        earn_available(referrer, program, source, "referral_referrer", rules.referrer_points, now, out)
    if bonus:
        earn_available(referrer, program, source, "referral_milestone", bonus, now, out)
    if rules.referrer_points or bonus:
        out.notify(referrer, "referral_referrer_rewarded", source, now,
                   {"points": rules.referrer_points + bonus, "friend_id": claim["friend_id"],
                    "successful_referrals": referrer.referrals.successes, "milestone_points": bonus})


def _reject(member: Member, friend: FriendReferral, reason: str, source: str, at: int, out: Outputs) -> None:
    friend.status, friend.reason = REJECTED, reason
    out.reward(member, "referral_rejected", 0, source, "referral", at,
               {"referrer_id": friend.referrer_id, "order_id": friend.order_id, "reason": reason})


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)

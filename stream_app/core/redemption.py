"""The member's side of a redemption: check, reserve the points, then confirm or release on the answer.

Stock is global and points are per member, so a redemption of a catalogue reward takes two steps
(docs/rewards.md): the member's partition checks what it knows (price, tier, window, limit, balance,
freeze) and reserves the points, and asks the reward agent of that code for stock and a code; the
agent's answer comes back to the member's partition (`apply_reply`, core/reward_replies.py), which
confirms the redemption or gives the points back with the expiry they had left. Every step is keyed
by the redemption id and recorded in the member's `RewardBook`, so a repeated message changes nothing.
"""
from __future__ import annotations

from stream_app.core.calendar import rfc3339
from stream_app.core.catalogue import Reward, coupon_expiry_ms, period_key
from stream_app.core.emitted import Outputs, stable_id
from stream_app.core.member import Member
from stream_app.core.outcomes import APPLIED, IGNORED
from stream_app.core.program import Program
from stream_app.core.reward_book import CANCELLED, REDEEMED, RELEASED, RESERVED, Reservation

RULE = "redemption"


def tier_rank(program: Program, name: str) -> int:
    return next((i for i, tier in enumerate(program.tiers) if tier.name == name), 0)


def why_not(member: Member, reward: Reward, quantity: int, program: Program, now: int) -> str | None:
    """The reason the member may not redeem `quantity` of `reward` now, as far as its partition knows."""
    if member.frozen:
        return "member_frozen"
    if reward.tier is not None and tier_rank(program, member.tier) < tier_rank(program, reward.tier):
        return "tier_required"
    if not reward.available_at(now):
        return "not_available"
    if reward.limit_per_member is not None:
        used = member.rewards.units(reward.code, period_key(reward.limit_period, now, program.timezone))
        if used + quantity > reward.limit_per_member:
            return "limit_reached"
    if member.ledger.spendable(now) < reward.points * quantity:
        return "insufficient_points"
    return None


def redemption_requested(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    rid, code = event["redemption_id"], event["reward_code"]
    reward = program.rewards.get(code)
    if reward is None and program.rewards.allow_free_form and "points" in event:
        return _free_form(member, event, program, now, out)
    quantity = event.get("quantity", 1)
    params = {"redemption_id": rid, "reward_code": code, "quantity": quantity}
    if rid in member.redemption_ids or rid in member.rewards.reservations:
        reason = "duplicate"
    elif reward is None:
        reason = "unknown_reward"
    elif "points" in event and event["points"] != reward.points * quantity:
        reason = "price_mismatch"
    else:
        reason = why_not(member, reward, quantity, program, now)
    if reason is not None:
        _reject(member, event["event_id"], params, reason, now, out)
        return APPLIED
    reserve(member, reward, rid, quantity, program, now, event["event_id"], out)
    return APPLIED


def reserve(member: Member, reward: Reward, rid: str, quantity: int, program: Program, now: int,
            cause_id: str, out: Outputs, grant: bool = False) -> None:
    """Hold the price (nothing for a grant) and ask the reward agent for stock and codes."""
    points = 0 if grant else reward.points * quantity
    period = period_key(reward.limit_period, now, program.timezone)
    parts = member.ledger.take_parts(points, now)
    member.rewards.reservations[rid] = Reservation(reward.code, quantity, points, parts, RESERVED, now, period, grant)
    member.rewards.count(reward.code, period, quantity)
    member.redemption_ids.append(rid)
    del member.redemption_ids[:-program.max_event_ids]
    if points:
        out.reward(member, "points_reserved", -points, cause_id, RULE, now,
                   {"redemption_id": rid, "reward_code": reward.code, "quantity": quantity, "points": points})
    out.ask_reward_agent("allocate", member.member_id, rid, reward.code, quantity, now)
    member.rewards.prune(program.max_event_ids)


def redemption_cancelled(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    """The reward came back unused: points back with their expiry, stock and the code's void to the agent."""
    rid = event["redemption_id"]
    held = member.rewards.reservations.get(rid)
    if held is None or held.status != REDEEMED:
        return IGNORED  # unknown, still open, already undone: once only (docs/rewards.md)
    held.status = CANCELLED
    points = member.ledger.give_back(held.parts)
    member.rewards.count(held.reward_code, held.period, -held.quantity)
    params = {"redemption_id": rid, "reward_code": held.reward_code, "quantity": held.quantity, "points": points}
    out.reward(member, "redemption_cancelled", points, event["event_id"], RULE, now, params)
    out.notify(member, "redemption_cancelled", event["event_id"], now, params)
    out.ask_reward_agent("cancel", member.member_id, rid, held.reward_code, held.quantity, now)
    return APPLIED


def settle(member: Member, reply: dict, program: Program, now: int, out: Outputs) -> str:
    """The reward agent's answer to an allocate: confirm, or release the reserved points."""
    rid = reply["redemption_id"]
    held = member.rewards.reservations.get(rid)
    if held is None or held.status != RESERVED:
        if reply["op"] == "allocated" and (held is None or held.status == RELEASED):
            # Nothing is held for it (a replay decided otherwise, or it was released): undo the allocation.
            out.ask_reward_agent("release", member.member_id, rid, reply["reward_code"], reply["quantity"], now)
            return APPLIED
        return IGNORED
    cause = reply["event_id"]
    params = {"redemption_id": rid, "reward_code": held.reward_code, "quantity": held.quantity}
    if reply["op"] == "rejected":
        held.status = RELEASED
        points = member.ledger.give_back(held.parts)
        member.rewards.count(held.reward_code, held.period, -held.quantity)
        if points:
            out.reward(member, "reservation_released", points, cause, RULE, now, {**params, "points": points})
        _reject(member, cause, params, reply["reason"], now, out)
        return APPLIED
    held.status = REDEEMED
    reward = program.rewards.get(held.reward_code)
    kind = reward.kind if reward is not None else "gift"
    out.reward(member, "points_redeemed", 0, cause, RULE, now, {**params, "points": held.points})
    issued = {**params, "kind": kind, "grant": held.grant}
    out.reward(member, "reward_issued", 0, cause, RULE, now, issued)
    if held.points:
        out.notify(member, "points_redeemed", cause, now, {**params, "points": held.points})
    if kind == "coupon":
        expires = coupon_expiry_ms(reward, now) if reward is not None else None
        out.notify(member, "coupon_issued", cause, now,
                   {**params, "codes": reply.get("codes", []),
                    "valid_until": rfc3339(expires) if expires is not None else None})
    else:
        out.notify(member, "reward_issued", cause, now, issued)
    out.ask_reward_agent("confirm", member.member_id, rid, held.reward_code, held.quantity, now)
    return APPLIED


def grant_due(member: Member, program: Program, now: int, cause_id: str, out: Outputs) -> None:
    """Periodic tier grants: once per member per period while the member holds the tier (or above)."""
    for grant in program.rewards.grants:
        period = period_key(grant.period, now, program.timezone)
        if (member.frozen or tier_rank(program, member.tier) < tier_rank(program, grant.min_tier)
                or member.rewards.grants.get(grant.reward) == period):
            continue
        member.rewards.grants[grant.reward] = period
        reward = program.rewards.get(grant.reward)
        rid = stable_id("grant", member.member_id, grant.reward, period)
        reserve(member, reward, rid, 1, program, now, cause_id, out, grant=True)


def _reject(member: Member, cause_id: str, params: dict, reason: str, now: int, out: Outputs) -> None:
    out.reward(member, "redemption_rejected", 0, cause_id, RULE, now, {**params, "reason": reason})
    out.notify(member, "redemption_rejected", cause_id, now, {**params, "reason": reason})


def _free_form(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    """Today's form under `rewards.allow_free_form`: the request names its price; only the balance is checked."""
    redemption_id, points = event["redemption_id"], event["points"]
    if redemption_id in member.redemption_ids:
        reason = "duplicate"
    elif member.frozen:
        reason = "member_frozen"
    elif member.ledger.spendable(now) < points:
        reason = "insufficient_points"
    else:
        reason = None
    params = {"redemption_id": redemption_id, "points": points, "reward_code": event["reward_code"]}
    if reason:
        out.reward(member, "redemption_rejected", 0, event["event_id"], "redemption", now,
                   {**params, "reason": reason})
        out.notify(member, "redemption_rejected", event["event_id"], now, {**params, "reason": reason})
        return APPLIED
    member.redemption_ids.append(redemption_id)
    del member.redemption_ids[:-program.max_event_ids]
    member.ledger.redeem(points, now)
    out.reward(member, "points_redeemed", -points, event["event_id"], "redemption", now, params)
    out.notify(member, "points_redeemed", event["event_id"], now, params)
    return APPLIED

"""What `GET /rewards`, `GET /members/{id}/rewards` and `loyalty rewards` show: the catalogue with live
stock, and what one member may redeem now (and why not otherwise)."""
from __future__ import annotations

from stream_app.core.calendar import rfc3339
from stream_app.core.catalogue import Reward
from stream_app.core.member import Member
from stream_app.core.program import Program
from stream_app.core.redemption import why_not
from stream_app.core.reward_book import RESERVED
from stream_app.core.reward_stock import RewardStock


def reward_entry(reward: Reward, stock: dict | None) -> dict:
    """One reward as listed; `stock` is its reward-agent state if this worker holds it (None: unknown here)."""
    live = RewardStock.from_dict(stock) if stock is not None else RewardStock.new(reward.code, reward)
    return {
        "code": reward.code, "name": reward.name, "kind": reward.kind, "points": reward.points,
        "tier": reward.tier, "limit_per_member": reward.limit_per_member, "limit_period": reward.limit_period,
        "available_from": rfc3339(reward.available_from_ms) if reward.available_from_ms is not None else None,
        "available_until": rfc3339(reward.available_until_ms) if reward.available_until_ms is not None else None,
        "unlimited": live.stock_left is None, "stock_left": live.stock_left, "paused": live.paused,
        "codes_left": len(live.pool) if reward.codes == "pool" else None, "live": stock is not None,
    }


def catalogue_view(program: Program, stocks: dict[str, dict | None]) -> dict:
    return {"rewards": [reward_entry(r, stocks.get(r.code)) for r in program.rewards.catalogue],
            "allow_free_form": program.rewards.allow_free_form}


def member_rewards_view(state: dict, program: Program, now: int, stocks: dict[str, dict | None]) -> dict:
    """Each catalogue reward with `redeemable` and, when not, the reason a request now would get."""
    member = Member.from_dict(state)
    rewards = []
    for reward in program.rewards.catalogue:
        entry = reward_entry(reward, stocks.get(reward.code))
        reason = why_not(member, reward, 1, program, now)
        if reason is None and entry["paused"]:
            reason = "paused"
        elif reason is None and (entry["stock_left"] == 0 or entry["codes_left"] == 0):
            reason = "out_of_stock"
        rewards.append({**entry, "redeemable": reason is None, "reason": reason})
    held = [{"redemption_id": rid, "reward_code": r.reward_code, "points": r.points}
            for rid, r in member.rewards.reservations.items() if r.status == RESERVED]
    return {"member_id": member.member_id, "tier": member.tier, "spendable": member.ledger.spendable(now),
            "points_reserved": member.rewards.points_reserved, "open_reservations": held, "rewards": rewards}

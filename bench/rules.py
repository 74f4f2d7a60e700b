"""The earning arithmetic shared by the two comparison contenders (plain aiokafka loop, Quix Streams).

A deliberately small subset of the service's default program, so the peers do the same kind of
per-member work on the same events without the service's full rule set:

- order paid: 1 point per 1.00 paid, pending; +100 on the member's first paid order (pending too)
- order refunded: the order's points claw back in proportion to the refunded amount; the first-order
  bonus is reversed when the order is fully refunded
- login: 2 points on the member's first login of a calendar day (Asia/Shanghai, UTC+8)
- share: 5 points, at most 3 rewarded a day
- review: 10 points (20 with media) for a not yet reviewed order of the member, at most 5 a day
- redemption: approved when the member's available points cover it, else rejected

State is one plain JSON-able dict per member; each call returns the new state and the reward events
(the same fields the service's reward events carry, `source_event_id` included, so latency can be
matched the same way).
"""
from __future__ import annotations

from datetime import datetime

DAY_MS = 86_400_000
UTC_OFFSET_MS = 8 * 3_600_000  # Asia/Shanghai: no daylight saving time
ORDERS_KEPT = 10

FIRST_ORDER_BONUS, LOGIN_POINTS, SHARE_POINTS, SHARE_CAP = 100, 2, 5, 3
REVIEW_POINTS, REVIEW_MEDIA_BONUS, REVIEW_CAP = 10, 10, 5


def _ms(occurred_at: str) -> int:
    return int(datetime.fromisoformat(occurred_at).timestamp() * 1000)


def new_state() -> dict:
    return {"available": 0, "pending": 0, "has_ordered": False, "login_day": -1, "share_day": -1, "shares": 0,
            "review_day": -1, "reviews": 0, "orders": {}}


def earn(state: dict | None, event: dict) -> tuple[dict, list[dict]]:
    """Apply one input event to a member's state (None: not seen yet); returns (state, rewards)."""
    s = state if state is not None else new_state()
    now = _ms(event["occurred_at"])
    day = (now + UTC_OFFSET_MS) // DAY_MS
    kind = event["type"]
    rewards: list[dict] = []

    def reward(rtype: str, points: int, rule: str, **details) -> None:
        r = {"member_id": event["member_id"], "type": rtype, "points": points,
             "balance": {"available": s["available"], "pending": s["pending"]},
             "source_event_id": event["event_id"], "rule": rule, "occurred_at": event["occurred_at"]}
        if details:
            r["details"] = details
        rewards.append(r)

    if kind == "order_paid":
        orders = s["orders"]
        if event["order_id"] not in orders:
            points = event["amount_cents"] // 100
            bonus = FIRST_ORDER_BONUS if not s["has_ordered"] and event["amount_cents"] > 0 else 0
            s["has_ordered"] = s["has_ordered"] or event["amount_cents"] > 0
            # [paid cents, points, bonus, refunded cents, reviewed, points clawed back]
            orders[event["order_id"]] = [event["amount_cents"], points, bonus, 0, False, 0]
            if len(orders) > ORDERS_KEPT:
                del orders[next(iter(orders))]
            if points + bonus:
                s["pending"] += points + bonus
                reward("points_pending", points + bonus, "order", bonus=bonus)
    elif kind == "order_refunded":
        order = s["orders"].get(event["order_id"])
        if order is not None:
            paid, points, bonus, refunded, _, clawed = order
            refunded = min(paid, refunded + event["refund_cents"])
            owed = points * refunded // paid if paid else 0
            taken = max(0, owed - clawed)
            if bonus and refunded == paid:
                taken += bonus
                order[2] = 0
            order[3], order[5] = refunded, max(owed, clawed)
            if taken:
                s["pending"] -= taken
                reward("points_clawed_back", -taken, "refund")
    elif kind == "login":
        if day > s["login_day"]:
            s["login_day"] = day
            s["available"] += LOGIN_POINTS
            reward("points_earned", LOGIN_POINTS, "logins")
    elif kind == "share":
        if s["share_day"] != day:
            s["share_day"], s["shares"] = day, 0
        if s["shares"] < SHARE_CAP:
            s["shares"] += 1
            s["available"] += SHARE_POINTS
            reward("points_earned", SHARE_POINTS, "shares")
    elif kind == "review_posted":
        order = s["orders"].get(event["order_id"])
        if s["review_day"] != day:
            s["review_day"], s["reviews"] = day, 0
        if order is not None and not order[4] and s["reviews"] < REVIEW_CAP:
            order[4] = True
            s["reviews"] += 1
            points = REVIEW_POINTS + (REVIEW_MEDIA_BONUS if event["has_media"] else 0)
            s["available"] += points
            reward("points_earned", points, "reviews")
    elif kind == "redemption_requested":
        points = event["points"]
        if s["available"] >= points:
            s["available"] -= points
            reward("points_redeemed", -points, "redemption", redemption_id=event["redemption_id"])
        else:
            reward("redemption_rejected", 0, "redemption", redemption_id=event["redemption_id"],
                   reason="insufficient_points")
    return s, rewards

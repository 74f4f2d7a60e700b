"""Events in, rewards out: exact points over the real broker, HTTP, metrics."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.harness import consume, event_message, produce, wait_for

NOW = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=0)
if NOW.day == 18:  # keep the member-day campaign out of these totals (the day before: never in the future)
    NOW -= timedelta(days=1)


def at(days: float = 0) -> str:
    return (NOW + timedelta(days=days)).isoformat()


def test_events_in_rewards_out(deployment):
    worker = deployment.worker().start()
    p, m = deployment.prefix, "alice"
    events = [
        ("orders", {"event_id": "o-1", "member_id": m, "occurred_at": at(), "type": "order_paid",
                    "order_id": "A1", "amount_cents": 25999, "currency": "CNY"}),
        ("reviews", {"event_id": "r-1", "member_id": m, "occurred_at": at(), "type": "review_posted",
                     "review_id": "R1", "order_id": "A1", "rating": 5, "has_media": True}),
        *[("shares", {"event_id": f"s-{i}", "member_id": m, "occurred_at": at(), "type": "share",
                      "share_id": f"S{i}", "channel": "wechat", "target": "A1"}) for i in range(4)],
        ("logins", {"event_id": "l-1", "member_id": m, "occurred_at": at(-1), "type": "login", "device_id": "d1"}),
        ("logins", {"event_id": "l-2", "member_id": m, "occurred_at": at(), "type": "login", "device_id": "d1"}),
        ("logins", {"event_id": "l-3", "member_id": m, "occurred_at": at(), "type": "login", "device_id": "d1"}),
    ]
    messages = [event_message(p, kind, e) for kind, e in events]
    # Topics are not ordered with each other: the review must find its order already applied.
    produce(messages[:1])
    wait_for(lambda: (worker.member(m) or {}).get("points", {}).get("pending") == 359, timeout=30)
    produce(messages[1:] + messages[:3])  # the first three again: duplicates must change nothing

    # order 259 pending + 100 first-order bonus pending; review 20, 3 shares x5, 2 daily logins x2
    expected = {"available": 20 + 15 + 4, "pending": 259 + 100, "lifetime_earned": 259 + 100 + 39}
    wait_for(lambda: (worker.member(m) or {}).get("points") == expected, timeout=30,
             show=lambda: worker.member(m))
    body = worker.member(m)
    assert body["tier"] == "bronze"
    assert body["tier_progress"] == {"qualifying_points": 259, "next_tier": "silver", "points_needed": 741,
                                     "at_risk_since": None}

    received = consume(deployment.topic("rewards"), lambda rs: len({r["reward_id"] for r in rs}) >= 8)
    rewards = list({r["reward_id"]: r for r in received}.values())  # at least once: dedupe by id
    assert all(r == next(x for x in rewards if x["reward_id"] == r["reward_id"]) for r in received)
    summary = sorted((r["type"], r["rule"], r["points"]) for r in rewards)
    assert summary == sorted([
        ("points_pending", "order", 259), ("points_pending", "first_order_bonus", 100),
        ("points_earned", "reviews", 20), *[("points_earned", "shares", 5)] * 3,
        ("points_earned", "logins", 2), ("points_earned", "logins", 2)])
    assert rewards[-1]["balance"] == {"available": 39, "pending": 359}
    notifications = consume(deployment.topic("notifications"), lambda ns: len(ns) >= 1)
    assert {"points_pending"} <= {n["template"] for n in notifications}

    assert worker.get("/members/nobody")[0] == 404
    assert worker.get("/health") == (200, {"status": "ok"})
    status, text = worker.get("/metrics")
    assert status == 200
    assert 'loyalty_events_total{outcome="duplicate",topic="orders"} 1.0' in text
    assert 'loyalty_events_total{outcome="ignored",topic="shares"} 1.0' in text

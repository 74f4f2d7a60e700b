"""Work that falls due with no new event, on wall-clock time: release, tiers, warnings, expiry."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.integration.harness import consume, event_message, produce, wait_for

FAST = str(Path(__file__).parent / "programs" / "fast.toml")


def now() -> str:
    return datetime.now(timezone(timedelta(hours=8))).isoformat(timespec="milliseconds")


def test_pending_release_tier_up_and_down_and_expiry(deployment):
    worker = deployment.worker(LOYALTY_RULES=FAST).start()
    p, m = deployment.prefix, "carol"

    def points() -> dict:
        return (worker.member(m) or {}).get("points", {})

    produce([event_message(p, "orders", {"event_id": "o1", "member_id": m, "occurred_at": now(),
                                         "type": "order_paid", "order_id": "A", "amount_cents": 120_000,
                                         "currency": "CNY"})])
    wait_for(lambda: (worker.member(m) or {}).get("tier") == "silver", timeout=20)  # upgrade at once
    wait_for(lambda: points() == {"available": 1300, "pending": 0, "lifetime_earned": 1300}, timeout=20,
             show=points)  # released by due work after the 2 s return window

    produce([event_message(p, "orders", {"event_id": "r1", "member_id": m, "occurred_at": now(),
                                         "type": "order_refunded", "order_id": "A", "refund_cents": 50_000})])
    wait_for(lambda: points().get("available") == 800, timeout=20, show=points)
    wait_for(lambda: (worker.member(m) or {}).get("tier") == "bronze", timeout=20)  # after the 3 s grace
    wait_for(lambda: points() == {"available": 0, "pending": 0, "lifetime_earned": 1300}, timeout=30,
             show=points)  # expired 8 s after release

    def seen(records: list[dict], kinds: set) -> bool:
        return kinds <= {(r["type"], r.get("rule")) for r in records}

    wanted = {("points_pending", "order"), ("points_pending", "first_order_bonus"),
              ("points_earned", "order"), ("points_earned", "first_order_bonus"),
              ("tier_changed", "tier_upgrade"), ("points_clawed_back", "refund"),
              ("tier_changed", "tier_downgrade"), ("points_expired", "expiry")}
    rewards = consume(deployment.topic("rewards"), lambda rs: seen(rs, wanted), timeout=30)
    # The refund's 500 came from the soonest-expiring lots (the bonus lot, then the order lot),
    # so only the order lot's remaining 800 expires.
    assert [(r["rule"], r["points"]) for r in rewards if r["type"] == "points_expired"] == [("expiry", -800)]
    released = [r for r in rewards if r["type"] == "points_earned"]
    assert sorted(r["points"] for r in released) == [100, 1200]
    tiers = [(r["details"]["from"], r["details"]["to"]) for r in rewards if r["type"] == "tier_changed"]
    assert tiers == [("bronze", "silver"), ("silver", "bronze")]

    templates = {"tier_at_risk", "points_expiring", "points_earned", "tier_changed"}
    notes = consume(deployment.topic("notifications"),
                    lambda ns: templates <= {n["template"] for n in ns}, timeout=30)
    at_risk = next(n for n in notes if n["template"] == "tier_at_risk")
    assert at_risk["params"]["points_needed"] == 300 and at_risk["priority"] == "marketing"
    warning = next(n for n in notes if n["template"] == "points_expiring")
    assert warning["params"]["points"] == 800

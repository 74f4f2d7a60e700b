"""SIGKILL mid-stream and restart: every member's totals are exact (nothing lost, nothing twice)."""
from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from tests.integration.harness import consume, event_message, produce, wait_for

MEMBERS, DAYS = 300, 12
# Orders occur at noon yesterday (+ minutes), logins on the days before: all in the past, and never on
# the 18th, when the packaged member-day campaign would double the orders' points.
START = (datetime.now(timezone(timedelta(hours=8))) - timedelta(days=1)).replace(hour=12, minute=0, second=0,
                                                                                 microsecond=0)
if START.day == 18:
    START -= timedelta(days=1)


def workload(prefix: str, seed: int = 7) -> tuple[list[tuple], dict[str, dict]]:
    """Logins on consecutive days and orders for many members, with resent duplicates.

    Expected totals are computed here by hand from the program's numbers, not by the core.
    """
    rng = random.Random(seed)
    messages, expected = [], defaultdict(lambda: {"available": 0, "pending": 0})
    for day in range(DAYS):
        when = START - timedelta(days=DAYS - day)
        if when.day == 18:
            continue  # no member day: order points stay 1 per 1.00
        for m in range(MEMBERS):
            member = f"m{m:04d}"
            login = {"event_id": f"{member}-l{day}", "member_id": member, "occurred_at": when.isoformat(),
                     "type": "login", "device_id": "d"}
            messages.append(event_message(prefix, "logins", login))
            expected[member]["logins"] = expected[member].get("logins", 0) + 1
            if rng.random() < 0.3:
                cents = rng.randrange(100, 8_000)  # 12 orders stay under silver (1,000 points)
                order = {"event_id": f"{member}-o{day}", "member_id": member, "type": "order_paid",
                         "occurred_at": (START + timedelta(minutes=day)).isoformat(), "order_id": f"{member}-{day}",
                         "amount_cents": cents, "currency": "CNY"}
                messages.append(event_message(prefix, "orders", order))
                first = "ordered" not in expected[member]
                expected[member]["ordered"] = True
                expected[member]["pending"] += cents // 100 + (100 if first else 0)
    for e in expected.values():
        streak_bonuses = 0
        run = 0
        for day in range(DAYS):
            if (START - timedelta(days=DAYS - day)).day == 18:
                run = 0
                continue
            run += 1
            streak_bonuses += 20 if run % 7 == 0 else 0
        e["available"] = 2 * e.pop("logins") + streak_bonuses
        e.pop("ordered", None)
    duplicates = rng.sample(messages, len(messages) // 10)
    return messages + duplicates, dict(expected)


def test_sigkill_mid_stream_then_restart_counts_everything_exactly_once(deployment):
    worker = deployment.worker().start()
    messages, expected = workload(deployment.prefix)
    assert len(messages) > 4000
    producer = threading.Thread(target=produce, args=(messages,), kwargs={"rate": 1500})
    producer.start()
    wait_for(lambda: worker.get("/metrics")[1] and "loyalty_events_total" in worker.get("/metrics")[1],
             timeout=30, interval=0.1)
    threading.Event().wait(1.0)
    assert producer.is_alive(), "the kill must land while events are still streaming in"
    worker.kill()  # SIGKILL while events stream in
    worker.start()
    producer.join()

    def totals_match() -> bool:
        return all((worker.member(m) or {}).get("points", {}) | {"lifetime_earned": 0}
                   == {**e, "lifetime_earned": 0} for m, e in expected.items())

    def mismatches() -> dict:
        return {m: ((worker.member(m) or {}).get("points"), e) for m, e in expected.items()
                if ((worker.member(m) or {}).get("points") or {}) | {"lifetime_earned": 0}
                != {**e, "lifetime_earned": 0}}

    wait_for(totals_match, timeout=120, interval=1, show=lambda: list(mismatches().items())[:5])
    mismatched = {m: (worker.member(m) or {}).get("points") for m, e in expected.items()
                  if (worker.member(m) or {}).get("points", {}).get("available") != e["available"]}
    assert not mismatched

    # Reward events: at least once on the topic, deduplicated by their deterministic ids they add up.
    expected_earned = sum(e["available"] + e["pending"] for e in expected.values())
    rewards = consume(deployment.topic("rewards"),
                      lambda rs: sum(r["points"] for r in {x["reward_id"]: x for x in rs}.values()
                                     if r["type"] in ("points_pending", "points_earned")) >= expected_earned,
                      timeout=60)
    unique = {r["reward_id"]: r for r in rewards}
    earned = defaultdict(int)
    for r in unique.values():
        if r["type"] in ("points_pending", "points_earned"):
            earned[r["member_id"]] += r["points"]
    assert earned == {m: e["available"] + e["pending"] for m, e in expected.items()}

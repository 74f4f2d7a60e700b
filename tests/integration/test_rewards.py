"""A flash sale on the real broker: 200 members race for a reward with stock 50 while the worker that
runs the reward agent is killed with SIGKILL mid-way and restarted (docs/rewards.md).

Exactly 50 are issued, the other 150 are rejected `out_of_stock` with their points back, every coupon
code goes to one member only, and a malformed catalogue message is dead-lettered.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson

from stream_app.core.program import default_program_text
from tests.integration.harness import consume, event_message, produce, wait_for

MEMBERS, STOCK, PRICE, FUNDS = 200, 50, 100, 150
CODES = [f"RACE-{i:03d}" for i in range(80)]  # more codes than stock: the stock is what runs out
RACE = f"""
[[rewards.catalog]]
code = "RACE"
name = "Flash-sale coupon"
kind = "coupon"
points = {PRICE}
stock = {STOCK}
codes = "pool"
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def unique(records: list[dict], kind: str, field: str = "reward_id", key: str = "type") -> dict[str, dict]:
    return {r[field]: r for r in records if r.get(key) == kind}


def test_200_members_race_for_50_while_the_reward_worker_is_killed(deployment, tmp_path: Path):
    rules = tmp_path / "race.toml"
    rules.write_text(default_program_text() + RACE, "utf-8")
    worker = deployment.worker(LOYALTY_RULES=str(rules)).start()
    prefix = deployment.prefix
    members = [f"racer{i:03d}" for i in range(MEMBERS)]
    funding = [event_message(prefix, "admin", {"event_id": f"fund-{m}", "member_id": m, "occurred_at": now(),
                                               "type": "points_adjusted", "operator_id": "test",
                                               "reason": "race", "points": FUNDS}) for m in members]
    codes = [(f"{prefix}coupon-codes", f"RACE:imp-{i}".encode(),
              orjson.dumps({"import_id": f"imp-{i}", "reward_code": "RACE", "codes": CODES[i * 40:(i + 1) * 40],
                            "occurred_at": now()})) for i in range(2)]
    bad = [(f"{prefix}catalog", b"RACE", b'{"update_id": "u1", "reward_code": "RACE", "type": "stock_set"}'),
           (f"{prefix}catalog", b"NOPE", orjson.dumps({"update_id": "u2", "reward_code": "NOPE", "type": "paused",
                                                       "operator_id": "op", "occurred_at": now()}))]
    produce(funding + codes + bad)
    wait_for(lambda: all((worker.member(m) or {}).get("points", {}).get("available") == FUNDS
                         for m in members[::20]), timeout=60)

    requests = [event_message(prefix, "redemptions", {"event_id": f"req-{m}", "member_id": m, "occurred_at": now(),
                                                      "type": "redemption_requested", "redemption_id": f"rd-{m}",
                                                      "reward_code": "RACE", "quantity": 1, "points": PRICE})
                for m in members]
    producer = threading.Thread(target=produce, args=(requests,), kwargs={"rate": 15})
    producer.start()
    consume(f"{prefix}rewards", lambda rs: len(unique(rs, "reward_issued")) >= 5, timeout=60)
    assert producer.is_alive(), "the kill must land while requests are still streaming in"
    worker.kill()
    worker.start()
    producer.join()

    def settled(records: list[dict]) -> bool:
        return len(unique(records, "reward_issued")) + len(unique(records, "redemption_rejected")) >= MEMBERS

    rewards = consume(f"{prefix}rewards", settled, timeout=120)
    issued, rejected = unique(rewards, "reward_issued"), unique(rewards, "redemption_rejected")
    assert len(issued) == STOCK
    assert len(rejected) == MEMBERS - STOCK
    assert {r["details"]["reason"] for r in rejected.values()} == {"out_of_stock"}
    assert {r["member_id"] for r in issued.values()}.isdisjoint(r["member_id"] for r in rejected.values())
    assert "RACE-0" not in orjson.dumps(rewards).decode()  # no coupon code on the rewards topic

    notes = consume(f"{prefix}notifications",
                    lambda ns: len(unique(ns, "coupon_issued", "notification_id", "template")) >= STOCK, timeout=60)
    coupons = unique(notes, "coupon_issued", "notification_id", "template").values()
    handed = [c for n in coupons for c in n["params"]["codes"]]
    assert len(coupons) == STOCK and len(handed) == len(set(handed)) == STOCK and set(handed) <= set(CODES)
    assert {n["member_id"] for n in coupons} == {r["member_id"] for r in issued.values()}

    winners = {r["member_id"] for r in issued.values()}
    wait_for(lambda: all((worker.member(m) or {}).get("points", {}).get("available")
                         == (FUNDS - PRICE if m in winners else FUNDS) for m in members), timeout=60,
             show=lambda: {m: (worker.member(m) or {}).get("points") for m in members[:3]})

    status, body = worker.get("/rewards")
    assert status == 200
    race = next(r for r in body["rewards"] if r["code"] == "RACE")
    assert race["stock_left"] == 0 and race["codes_left"] == len(CODES) - STOCK
    loser = next(m for m in members if m not in winners)
    status, mine = worker.get(f"/members/{loser}/rewards")  # the page routed to the member's own worker
    assert status == 200 and mine["member_id"] == loser and mine["open_reservations"] == []
    assert next(r for r in mine["rewards"] if r["code"] == "RACE")["reason"] == "out_of_stock"

    letters = consume(f"{prefix}dead-letters", lambda ds: len(ds) >= 2, timeout=30)
    assert sorted(d["error"] for d in letters) == ["schema_violation", "unknown_reward"]

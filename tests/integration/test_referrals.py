"""Referrals across partitions on the real broker: the referrer and the friend in different partitions, the
worker SIGKILLed while referrals are between them, and each side paid exactly once after the restart.
And program versions: a worker refuses to start when a version in effect was edited."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.harness import event_message, produce, wait_for
from topics.outgoing import partition_for

FAST = (Path(__file__).parent / "programs" / "fast.toml").read_text("utf-8")
PROGRAM = FAST.replace('after = "PT8S"', 'after = "P365D"').replace('warn_before = "PT4S"', 'warn_before = "P1D"') + """
[referrals]
referrer_points = 300
friend_points = 200
min_order_cents = 1000
max_per_month = 1000
"""
PAIRS = 40
ORDER_CENTS = 5000  # 50 points + the 100-point first-order bonus, released after the 2 s return window


def pairs(partitions: int) -> list[tuple[str, str]]:
    """(referrer, friend) ids whose partitions differ."""
    found, i = [], 0
    while len(found) < PAIRS:
        referrer, friend = f"r{i:03d}", f"f{i:03d}"
        if partition_for(referrer.encode(), partitions) != partition_for(friend.encode(), partitions):
            found.append((referrer, friend))
        i += 1
    return found


def at(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def test_both_sides_are_paid_exactly_once_across_a_sigkill(deployment, tmp_path):
    rules = tmp_path / "referrals.toml"
    rules.write_text(PROGRAM)
    deployment.env["LOYALTY_RULES"] = str(rules)
    worker = deployment.worker().start()
    members = pairs(int(deployment.env["LOYALTY_PARTITIONS"]))
    start = datetime.now(UTC)
    joins = []
    for referrer, friend in members:
        joins.append(event_message(deployment.prefix, "members", {
            "event_id": f"{referrer}-j", "member_id": referrer, "type": "member_joined", "occurred_at": at(start)}))
        joins.append(event_message(deployment.prefix, "members", {
            "event_id": f"{friend}-j", "member_id": friend, "type": "member_joined", "occurred_at": at(start),
            "referrer_id": referrer}))
    produce(joins)
    # The friends' orders over ~6 s, so that referrals are pending, claimed or answered when the kill lands.
    orders = [event_message(deployment.prefix, "orders", {
        "event_id": f"{friend}-o", "member_id": friend, "type": "order_paid", "order_id": f"{friend}-1",
        "amount_cents": ORDER_CENTS, "currency": "CNY",
        "occurred_at": at(datetime.now(UTC) + timedelta(milliseconds=150 * i))})
        for i, (_, friend) in enumerate(members)]
    producer = threading.Thread(target=produce, args=(orders,), kwargs={"rate": 1000 / 150})
    producer.start()

    def paid_referrers() -> int:
        return sum(1 for referrer, _ in members
                   if ((worker.member(referrer) or {}).get("points") or {}).get("available"))

    wait_for(lambda: paid_referrers() >= 3, timeout=60, interval=0.2)
    assert paid_referrers() < PAIRS, "the kill must land while referrals are still under way"
    worker.kill()
    worker.start()
    producer.join()

    def balances() -> dict[str, tuple]:
        return {m: tuple(((worker.member(m) or {}).get("points") or {}).get(k) for k in ("available", "pending"))
                for pair in members for m in pair}

    expected = {**{r: (300, 0) for r, _ in members}, **{f: (50 + 100 + 200, 0) for _, f in members}}
    wait_for(lambda: balances() == expected, timeout=120, interval=1,
             show=lambda: {m: b for m, b in balances().items() if b != expected[m]})
    time.sleep(3)  # anything sent twice has long been applied: still exactly once
    assert balances() == expected


VERSIONED = FAST + """
[[versions]]
name = "v2"
effective_from = 2020-01-01T00:00:00Z
[versions.shares]
points = 7
"""


def test_a_worker_refuses_to_start_when_a_version_in_effect_was_edited(deployment, tmp_path):
    rules = tmp_path / "versioned.toml"
    rules.write_text(VERSIONED)
    deployment.env["LOYALTY_RULES"] = str(rules)
    worker = deployment.worker().start()
    worker.stop()
    rules.write_text(VERSIONED.replace("points = 7", "points = 8"))
    worker.spawn()
    assert worker.proc.wait(timeout=90) == 2
    assert "v2 (in effect since 2020-01-01T00:00:00.000Z) edited after it took effect" in worker.log_tail()
    rules.write_text(VERSIONED + '\n[[versions]]\nname = "v3"\neffective_from = 2021-01-01T00:00:00Z\n'
                                 '[versions.shares]\npoints = 8\n')
    worker.start()  # a new version instead of the edit: accepted

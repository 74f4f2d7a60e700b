"""The members changelog topic is deleted under a running worker: its state can no longer be made
durable, so it fail-stops (/ready 503 with reason `changelog`) and exits with 74, committing nothing
past what was applied; restarted, it declares the topic again and every event counts exactly once."""
from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.integration.harness import delete_topics, event_message, produce, wait_for

EXITS_WITHIN = 90.0  # a failed try surfaces after the producer's 30 s request timeout, then the 15 s hold


def share(i: int, member: str) -> dict:
    return {"event_id": f"s{i}", "member_id": member, "occurred_at": datetime.now(UTC).isoformat(),
            "type": "share", "share_id": f"sh{i}", "channel": "wechat", "target": "x"}


def available(worker, member: str) -> int | None:
    return (worker.member(member) or {}).get("points", {}).get("available")


def test_a_deleted_changelog_topic_fail_stops_the_worker_and_a_restart_loses_nothing(deployment):
    worker = deployment.worker(LOYALTY_WORKER_NAME="changelog-w1").start()
    produce([event_message(deployment.prefix, "shares", share(0, "first"))])
    wait_for(lambda: available(worker, "first") == 5, timeout=60)

    assert delete_topics(f"{deployment.env['LOYALTY_APP_ID']}-members-changelog")
    members = [f"m{i}" for i in range(20)]
    produce([event_message(deployment.prefix, "shares", share(i, m)) for i, m in enumerate(members, 1)])

    failed_at = time.monotonic()
    wait_for(lambda: (worker.get("/ready")[1] or {}).get("failure"), timeout=EXITS_WITHIN, interval=0.5,
             show=lambda: worker.log_tail(10))
    failure = worker.get("/ready")[1]["failure"]
    assert (failure["reason"], failure["exit_code"]) == ("changelog", 74), failure
    assert "the topic does not exist" in failure["detail"]
    code = worker.proc.wait(timeout=EXITS_WITHIN - (time.monotonic() - failed_at) + 20)
    assert code == 74  # by itself, after the hold

    worker.start()
    wait_for(lambda: all(available(worker, m) == 5 for m in members), timeout=90,
             show=lambda: {m: available(worker, m) for m in members})
    assert available(worker, "first") == 5

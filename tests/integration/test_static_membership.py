"""Static group membership: a worker SIGKILLed and restarted at once resumes in seconds, not after
its session timeout (60 s here). Without LOYALTY_WORKER_NAME's group.instance.id the restarted worker
waits for the dead incarnation's session to expire (measured: 60 s; docs/scaling.md)."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.integration.harness import event_message, produce, wait_for

SESSION_TIMEOUT = 60
RESUMES_WITHIN = 20.0
pytestmark = pytest.mark.parametrize("deployment", [{"LOYALTY_SESSION_TIMEOUT": f"PT{SESSION_TIMEOUT}S"}],
                                     indirect=True)


def share(i: int) -> dict:
    return {"event_id": f"s{i}", "member_id": "ann", "occurred_at": datetime.now(UTC).isoformat(),
            "type": "share", "share_id": f"sh{i}", "channel": "wechat", "target": "x"}


def available(worker) -> int | None:
    return (worker.member("ann") or {}).get("points", {}).get("available")


def test_a_killed_worker_restarted_at_once_resumes_in_seconds(deployment):
    worker = deployment.worker(LOYALTY_WORKER_NAME="static-w1").start()
    produce([event_message(deployment.prefix, "shares", share(0))])
    wait_for(lambda: available(worker) == 5, timeout=60)

    for round_ in (1, 2):
        worker.kill()
        restarted = time.monotonic()
        worker.start(ready_timeout=SESSION_TIMEOUT + 30)
        produce([event_message(deployment.prefix, "shares", share(round_))])
        wait_for(lambda n=round_: available(worker) == 5 * (n + 1), timeout=SESSION_TIMEOUT + 30, interval=0.2)
        took = time.monotonic() - restarted
        assert took < RESUMES_WITHIN, f"round {round_}: the event was applied {took:.1f}s after the restart"

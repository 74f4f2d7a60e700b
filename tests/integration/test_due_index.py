"""Due work after a restart comes from the member index (tables/member_index.py), not from a scan of the
member states: a worker restored from the changelogs alone schedules the release of pending points."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.integration.harness import event_message, produce, wait_for

FAST = Path(__file__).parent / "programs" / "fast.toml"


def test_a_restored_worker_releases_pending_points_from_the_index(deployment, tmp_path):
    rules = tmp_path / "slow-release.toml"  # a return window long enough to restart the worker within it
    rules.write_text(FAST.read_text().replace('return_window = "PT2S"', 'return_window = "PT30S"'))
    first = deployment.worker("w1", LOYALTY_RULES=str(rules)).start()
    m = "dora"

    def points(worker) -> dict:
        return (worker.member(m) or {}).get("points", {})

    paid_at = datetime.now(timezone(timedelta(hours=8)))
    produce([event_message(deployment.prefix, "orders", {
        "event_id": "o1", "member_id": m, "occurred_at": paid_at.isoformat(timespec="milliseconds"),
        "type": "order_paid", "order_id": "A", "amount_cents": 120_000, "currency": "CNY"})])
    wait_for(lambda: points(first).get("pending") == 1300, timeout=20, show=lambda: points(first))
    first_log = first.log_path.read_text(errors="replace")
    assert "member index: indexing partitions" in first_log  # a new deployment: every partition, no member
    first.stop()

    # A fresh data dir: members, index entries and the partitions' markers come back from the changelogs.
    second = deployment.worker("w2", LOYALTY_RULES=str(rules)).start()
    wait_for(lambda: "due schedule rebuilt: 1 members scheduled" in second.log_path.read_text(errors="replace"),
             timeout=30, show=second.log_tail)
    assert points(second).get("pending") == 1300  # restarted well within the return window
    assert "member index: indexing" not in second.log_path.read_text(errors="replace")  # no member state scanned
    wait_for(lambda: points(second) == {"available": 1300, "pending": 0, "lifetime_earned": 1300}, timeout=60,
             show=lambda: points(second))
    released_at = datetime.now(timezone(timedelta(hours=8)))
    assert released_at - paid_at >= timedelta(seconds=30)

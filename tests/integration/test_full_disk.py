"""The data volume fills up mid-stream: the worker stops consuming and committing, says so (/ready,
/health, loyalty_worker_failed) and exits non-zero (here at SIGTERM, within 30 s); once the space is
freed and it is restarted, every member's totals are exactly what the pure core computes for the
same events: nothing was committed past what was applied.

The data dir is a 20 MB tmpfs (the tests run as root, here and in CI); a filler file leaves it a few
MB once the first events are applied, and the rest of the stream fills it. Freeing it removes the
filler and remounts it larger (the whole stream's RocksDB files need more than 20 MB).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from stream_app.core.engine import apply_event
from stream_app.core.program import load_program
from stream_app.core.read_model import member_view
from tests.integration.harness import Worker, event_message, produce, wait_for

MEMBERS, ORDERS_EACH = 1500, 14
PARTITIONS = 4  # the harness's LOYALTY_PARTITIONS
LEFT_FREE = 3 * 1024 * 1024  # what the filler leaves: a few batches' worth of RocksDB writes
STOP_WITHIN = 30.0
HELD = 8.0  # seconds the failed worker is watched before SIGTERM (it would exit by itself after 15 s)


def partition_of(member: str) -> int:
    return (murmur2(member.encode()) & 0x7FFFFFFF) % PARTITIONS


def mount_tmpfs(path: Path, size: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"this test mounts a {size} tmpfs as the worker's data dir and needs root "
                    f"(mount -t tmpfs): {done.stderr.strip() or done.returncode}")


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def orders(members: int = MEMBERS, each: int = ORDERS_EACH, seed: int = 3, tag: str = "") -> list[dict]:
    """Orders and some refunds for many members, all on the orders topic (one partition per member:
    the applied order is the published order, as the core fold below assumes)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    events = []
    for n in range(each):
        for m in range(members):
            member = f"{tag}m{m:04d}"
            when = (start + timedelta(seconds=n * 60 + m / 100)).isoformat()
            if n and rng.random() < 0.15:
                events.append({"event_id": f"{member}-r{n}", "member_id": member, "occurred_at": when,
                               "type": "order_refunded", "order_id": f"{member}-o{n - 1}",
                               "refund_cents": rng.randrange(100, 2_000)})
            else:
                events.append({"event_id": f"{member}-o{n}", "member_id": member, "occurred_at": when,
                               "type": "order_paid", "order_id": f"{member}-o{n}",
                               "amount_cents": rng.randrange(100, 40_000), "currency": "CNY"})
    return events


def core_views(events: list[dict]) -> dict[str, dict]:
    """Each member's points and tier as the pure core computes them for `events`, in order."""
    program = load_program("")
    states: dict[str, dict | None] = defaultdict(lambda: None)
    for event in events:
        states[event["member_id"]] = apply_event(states[event["member_id"]], event, program).state
    now = int(time.time() * 1000)
    return {member: summary(member_view(state, program, now)) for member, state in states.items()}


def summary(view: dict | None) -> dict | None:
    return None if view is None else {"points": view["points"], "tier": view["tier"]}


def mismatches(worker: Worker, expected: dict[str, dict], limit: int) -> dict:
    wrong = {}
    for member, want in expected.items():
        got = summary(worker.member(member))
        if got != want:
            wrong[member] = (got, want)
            if len(wrong) >= limit:
                break
    return wrong


def failed_metric(worker: Worker) -> str:
    status, text = worker.get("/metrics")
    return "" if status != 200 else "\n".join(line for line in text.splitlines()
                                              if line.startswith("loyalty_worker_failed{"))


def test_a_full_data_volume_stops_the_worker_and_a_restart_loses_nothing(deployment):
    data = deployment.tmp / "data-w1"
    data.mkdir()
    mount_tmpfs(data, "20m")
    filler = data / "filler"
    try:
        worker = deployment.worker("w1", LOYALTY_WORKER_NAME="full-disk-w1").start()
        events = orders()
        # The first events only touch half the partitions, so the others have committed no offset yet
        # when the disk fills (where Faust's own check for unacked offsets at the head does not apply).
        first = [e for e in events[:MEMBERS] if partition_of(e["member_id"]) < PARTITIONS // 2]
        first_ids = {e["event_id"] for e in first}
        rest = [e for e in events if e["event_id"] not in first_ids]
        produce(event_message(deployment.prefix, "orders", e) for e in first)
        applied = core_views(first)
        wait_for(lambda: not mismatches(worker, applied, limit=1), timeout=90, interval=1,
                 show=lambda: list(mismatches(worker, applied, limit=3).items()))

        free = os.statvfs(data).f_bavail * os.statvfs(data).f_frsize
        with open(filler, "wb") as f:
            f.truncate(0)
            f.write(b"\0" * max(0, free - LEFT_FREE))  # tmpfs pages are allocated as they are written
        produce(event_message(deployment.prefix, "orders", e) for e in rest)

        wait_for(lambda: worker.get("/ready")[0] == 503 and (worker.get("/ready")[1] or {}).get("failure"),
                 timeout=90, interval=0.2, show=lambda: (worker.get("/ready"), worker.log_tail(20)))
        ready = worker.get("/ready")[1]
        assert ready["failure"]["reason"] == "store" and ready["failure"]["exit_code"] == 74, ready
        assert "No space left on device" in ready["failure"]["detail"]
        assert worker.get("/health")[0] == 503
        assert 'loyalty_worker_failed{reason="store"} 1.0' in failed_metric(worker)

        time.sleep(HELD)  # commits would advance past the unwritten events now, if anything acked them
        assert worker.alive() and worker.get("/ready")[0] == 503

        stopping = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(timeout=STOP_WITHIN + 5)
        assert time.monotonic() - stopping < STOP_WITHIN
        assert code == 74, worker.log_tail(30)

        filler.unlink()  # the cause is gone: the space back, and room for the whole stream's RocksDB files
        remount(data, "512m")
        worker.start()
        expected = core_views(events)
        assert len(expected) == MEMBERS
        wait_for(lambda: not mismatches(worker, expected, limit=1), timeout=180, interval=1,
                 show=lambda: list(mismatches(worker, expected, limit=5).items()))
        assert not mismatches(worker, expected, limit=MEMBERS)
        assert worker.get("/ready")[0] == 200
    finally:
        for w in deployment.workers:
            w.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)

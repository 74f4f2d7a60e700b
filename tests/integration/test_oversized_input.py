"""Nothing wedges on bad input: an 800 KB binary value and a 5 MB one on an input topic are
dead-lettered in capped form (the original's length, SHA-256, topic, partition and offset) and the
valid events after them count. A worker that loses the broker mid-stream turns unready, its
deliveries keep failing (retried, nothing acked), SIGTERM still stops it within 30 s, and nothing is
lost when it restarts; a broker back without a restart is picked up by itself.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import threading
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import BOOTSTRAP, Worker, consume, event_message, produce, wait_for
from tests.integration.netns import IsolatedWorker
from tests.integration.test_full_disk import core_views, mismatches, orders

VALUE_CAP = 65536  # topics/dead_letters.py VALUE_MAX_BYTES
STOP_WITHIN = 30.0


def share(i: int, member: str = "bob") -> dict:
    return {"event_id": f"ok-{i}", "member_id": member, "occurred_at": datetime.now(UTC).isoformat(),
            "type": "share", "share_id": f"s{i}", "channel": "weibo", "target": "x"}


def available(worker: Worker, member: str = "bob") -> int | None:
    return (worker.member(member) or {}).get("points", {}).get("available")


async def _admin(action) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await action(admin)
    finally:
        await admin.close()


def create_topic(name: str, partitions: int, configs: dict[str, str]) -> None:
    asyncio.run(_admin(lambda admin: admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])))


def send_large(topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    """Publish one large message; (partition, offset) it landed at."""

    async def run() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", max_request_size=len(value) + 65536)
        await producer.start()
        try:
            metadata = await producer.send_and_wait(topic, value, key=key)
            return metadata.partition, metadata.offset
        finally:
            await producer.stop()

    return asyncio.run(run())


def stop_within(worker: Worker, seconds: float) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds it took), failing if the worker is still there after `seconds`."""
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(timeout=seconds)
    except Exception:
        worker.kill()
        raise AssertionError(f"SIGTERM did not stop the worker within {seconds}s:\n{worker.log_tail(40)}") from None
    return code, time.monotonic() - started


@pytest.mark.parametrize("size", [800_000, 5_000_000], ids=["800KB", "5MB"])
def test_a_huge_binary_input_is_dead_lettered_capped_and_the_stream_goes_on(deployment, size):
    orders = deployment.topic("orders")
    if size > 1_000_000:  # over the broker's default message.max.bytes: raised for this topic only
        create_topic(orders, 4, {"max.message.bytes": str(size + 1_048_576)})
    worker = deployment.worker().start()
    value = os.urandom(size)
    produce([event_message(deployment.prefix, "shares", share(0))])
    partition, offset = send_large(orders, b"bob", value)
    after = [f"m{i}" for i in range(8)]  # other members too: partitions other than bob's must go on as well
    produce([event_message(deployment.prefix, "shares", share(1)), event_message(deployment.prefix, "shares", share(2))]
            + [event_message(deployment.prefix, "shares", share(i, member)) for i, member in enumerate(after, 3)])

    wait_for(lambda: available(worker) == 15 and all(available(worker, m) == 5 for m in after), timeout=60,
             show=lambda: (worker.member("bob"), [available(worker, m) for m in after], worker.log_tail(30)))
    letters = consume(deployment.topic("dead-letters"), lambda rs: len(rs) >= 1)
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["topic"], letter["partition"], letter["offset"]) == (orders, partition, offset)
    assert letter["error"] == "oversized" and letter["key"] == "bob"
    assert letter["value_truncated"] is True and letter["value_length"] == size
    assert letter["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["encoding"] == "base64" and base64.b64decode(letter["value"]) == value[:VALUE_CAP]
    assert worker.get("/ready")[0] == 200 and worker.alive()

    code, took = stop_within(worker, STOP_WITHIN)
    assert code == 0, worker.log_tail(30)


def isolated_worker(deployment, name: str = "w1", **env: str) -> IsolatedWorker:
    """Like `deployment.worker`, in its own network namespace (tests/integration/netns.py)."""
    data = deployment.tmp / f"data-{name}"
    data.mkdir(exist_ok=True)
    worker = IsolatedWorker({**deployment.env, **env}, data, deployment.tmp / f"{name}.log")
    deployment.workers.append(worker)
    return worker


def broker_metric(worker: Worker) -> str | None:
    status, text = worker.get("/metrics")
    return next((line for line in text.splitlines() if line.startswith("loyalty_broker_connected ")), None) \
        if status == 200 else None


def test_a_lost_broker_turns_the_worker_unready_sigterm_still_stops_it_and_nothing_is_lost(deployment):
    worker = isolated_worker(deployment, LOYALTY_WORKER_NAME="isolated-w1").start()
    events = orders(members=300, each=10, seed=5)
    streaming = threading.Thread(target=produce, args=([event_message(deployment.prefix, "orders", e)
                                                         for e in events],), kwargs={"rate": 600})
    streaming.start()
    wait_for(lambda: (worker.member("m0000") or {}).get("points"), timeout=30, interval=0.2)
    worker.cut()  # mid-stream: batches fetched, their deliveries now fail

    wait_for(lambda: worker.get("/ready")[0] == 503, timeout=30, interval=0.5, show=lambda: worker.get("/ready"))
    ready = worker.get("/ready")[1]
    assert ready["broker_connected"] is False and ready["failure"] is None, ready
    assert broker_metric(worker) == "loyalty_broker_connected 0.0"
    wait_for(lambda: "sending again in" in worker.log_tail(300), timeout=90, interval=1,
             show=lambda: worker.log_tail(10))  # a delivery that keeps failing (retried, nothing acked)
    streaming.join()

    code, took = stop_within(worker, STOP_WITHIN)
    assert code in (0, 75), worker.log_tail(30)

    worker.restore()
    worker.start()
    expected = core_views(events)
    wait_for(lambda: not mismatches(worker, expected, limit=1), timeout=120, interval=1,
             show=lambda: list(mismatches(worker, expected, limit=5).items()))

    # The broker lost and back without a restart: unready meanwhile, then it goes on by itself.
    worker.cut()
    wait_for(lambda: worker.get("/ready")[0] == 503, timeout=30, interval=0.5)
    worker.restore()
    wait_for(lambda: worker.get("/ready")[0] == 200, timeout=60, interval=0.5, show=lambda: worker.get("/ready"))
    more = orders(members=20, each=2, seed=6, tag="late-")
    produce([event_message(deployment.prefix, "orders", e) for e in more])
    late = core_views(more)
    wait_for(lambda: not mismatches(worker, late, limit=1), timeout=60, interval=1,
             show=lambda: list(mismatches(worker, late, limit=5).items()))

"""Any producer's partitioner: one member's events from a murmur2 and a CRC32 (librdkafka) producer give one state."""
from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from tests.integration.harness import BOOTSTRAP, wait_for
from topics.outgoing import partition_for

PARTITIONS = 4
MEMBER = "placement-member-1"


def crc32_partitioner(key: bytes, all_partitions: list[int], available: list[int]) -> int:
    """librdkafka's default for keyed messages (`consistent_random`): CRC32 of the key."""
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


def order(i: int) -> dict:
    # Hours back, inside the 7-day return window: the 10 orders stay pending, nothing releases or expires.
    at = (datetime.now(UTC) - timedelta(hours=10 - i)).isoformat(timespec="milliseconds")
    return {"event_id": f"o-{i}", "member_id": MEMBER, "occurred_at": at, "type": "order_paid",
            "order_id": f"ORD-{i}", "amount_cents": 10000, "currency": "CNY"}


async def publish(topic: str, events: list[dict], partitioner=None) -> list[int]:
    kwargs = {"partitioner": partitioner} if partitioner else {}
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", **kwargs)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, orjson.dumps(e), key=MEMBER.encode()) for e in events]
        return [r.partition for r in sent]
    finally:
        await producer.stop()


def test_events_from_two_partitioners_give_one_state_with_exact_totals(deployment):
    home = partition_for(MEMBER.encode(), PARTITIONS)
    assert zlib.crc32(MEMBER.encode()) % PARTITIONS != home, "pick a member the two partitioners disagree on"
    worker = deployment.worker().start()
    topic = deployment.topic("orders")
    events = [order(i) for i in range(10)]

    murmur = asyncio.run(publish(topic, events[0::2]))  # aiokafka's default, as the Java client
    crc = asyncio.run(publish(topic, events[1::2], crc32_partitioner))
    assert set(murmur) == {home} and home not in set(crc)

    # 10 orders of 100.00: 10 x 100 points + one first-order bonus of 100, all pending, in one state.
    wait_for(lambda: (worker.member(MEMBER) or {}).get("points", {}).get("pending") == 1100, timeout=60,
             show=lambda: worker.member(MEMBER))
    metrics = worker.get("/metrics")[1]
    forwarded = [line for line in metrics.splitlines()
                 if line.startswith('loyalty_events_total{') and 'outcome="forwarded"' in line and "orders" in line]
    assert forwarded and float(forwarded[0].split()[-1]) == 5.0
    assert (worker.member(MEMBER) or {})["points"] == {"available": 0, "pending": 1100, "lifetime_earned": 1100}

"""Contender `fair`: the fair ceiling for the service's own rules, a plain aiokafka loop running the same core.

Per event it does what the worker does for the rules, without Faust: `decode_event` (the strict
validation) and `scrub`, `apply_event` of the full default program on the member's state, the state
kept as orjson bytes in a dict (decoded before and encoded after each event, as the worker's table
does), each reward and notification and one changelog record per changed state appended to aiokafka
`BatchBuilder`s, one per topic partition (as topics/outgoing.py does), handed to the producer at the
end of every fetch. Offsets are committed about every second, after every batch handed over since
the last commit was acknowledged (at-least-once, like the service).

What it leaves out: Faust (its consumer hand-off, streams, acks, tables), the event-time merge,
RocksDB, due work, metrics and the Redis projection. bench/baseline.py (the arithmetic-only loop)
stays the framework ceiling; this is the ceiling for the rules.

    python -m bench.fair CONFIG.json

CONFIG as bench/baseline.py's, plus `partitions` (of the output topics); outputs go to
`{output}` (rewards), `{output}-notifications` and `{output}-changelog`.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.core.engine import apply_event
from stream_app.core.privacy import scrub
from stream_app.core.program import load_program
from stream_app.kafka_security import client_options
from stream_app.settings import load_kafka_security
from topics.catalog import TopicNames
from topics.outgoing import partition_for
from topics.validation import Rejection, decode_event

COMMIT_EVERY_S = 1.0
BATCH_RECORDS = 500  # records per BatchBuilder before it is handed over


class Batches:
    """One aiokafka BatchBuilder per topic partition; `hand_over` sends them all, returns the futures."""

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.producer, self.partitions = producer, partitions
        self.open: dict[tuple[str, int], object] = {}
        self.sent: list[asyncio.Future] = []

    async def add(self, topic: str, key: bytes, value: bytes) -> None:
        where = (topic, partition_for(key, self.partitions))
        batch = self.open.get(where)
        if batch is None:
            batch = self.open[where] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: hand over, start another
            await self._send(where, self.open.pop(where))
            await self.add(topic, key, value)
        elif batch.record_count() >= BATCH_RECORDS:
            await self._send(where, self.open.pop(where))

    async def _send(self, where: tuple[str, int], batch) -> None:
        batch.close()
        self.sent.append(await self.producer.send_batch(batch, where[0], partition=where[1]))

    async def hand_over(self) -> None:
        for where in list(self.open):
            await self._send(where, self.open.pop(where))

    async def acknowledged(self) -> None:
        sent, self.sent = self.sent, []
        if sent:
            await asyncio.gather(*sent)


async def run(cfg: dict) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    security = client_options(load_kafka_security())
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg["bootstrap"], group_id=cfg["group"],
                                auto_offset_reset=cfg["reset"], enable_auto_commit=False,
                                client_id="bench-fair", **security)
    producer = AIOKafkaProducer(bootstrap_servers=cfg["bootstrap"], acks="all", linger_ms=5,
                                max_batch_size=512 * 1024, max_request_size=1024 * 1024, client_id="bench-fair",
                                **security)
    await producer.start()
    await consumer.start()
    consumer.subscribe(cfg["topics"])
    program = load_program(None)
    pii_key = b"loyalty-pii:bench-fair"
    kind_of = TopicNames(cfg["topics"][0].rsplit(".", 1)[0] + ".").kind_of
    rewards_topic = cfg["output"]
    notifications_topic, changelog_topic = f"{rewards_topic}-notifications", f"{rewards_topic}-changelog"
    batches = Batches(producer, int(cfg["partitions"]))
    states: dict[bytes, bytes] = {}
    started = time.time()
    stop_after = int(cfg.get("stop_after") or 0)
    count = rewards_sent = rejected = 0
    first_at = last_at = None
    next_commit = time.monotonic() + COMMIT_EVERY_S
    loads, dumps, add = orjson.loads, orjson.dumps, batches.add
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, messages in fetched.items():
                kind = kind_of(tp.topic)
                for message in messages:
                    decoded = decode_event(kind, message.key, message.value, now_ms=int(time.time() * 1000))
                    if isinstance(decoded, Rejection):
                        rejected += 1
                    else:
                        key = decoded["member_id"].encode()
                        stored = states.get(key)
                        result = apply_event(None if stored is None else loads(stored), scrub(decoded, pii_key),
                                             program)
                        for reward in result.rewards:
                            await add(rewards_topic, key, dumps(reward))
                        for notification in result.notifications:
                            await add(notifications_topic, key, dumps(notification))
                        rewards_sent += len(result.rewards)
                        if result.state is not None:
                            encoded = states[key] = dumps(result.state)
                            await add(changelog_topic, key, encoded)
                    count += 1
                    if count == 1:
                        first_at = time.time()
                    if count == stop_after:
                        last_at = time.time()
                        stop.set()
            await batches.hand_over()
            if time.monotonic() >= next_commit or stop.is_set():
                await batches.acknowledged()
                await consumer.commit()
                next_commit = time.monotonic() + COMMIT_EVERY_S
    finally:
        await consumer.stop()
        await producer.stop()
    return {"contender": "fair", "count": count, "first_at": first_at, "last_at": last_at,
            "rewards": rewards_sent, "rejected": rejected, "members": len(states), "started": started}


def main() -> int:
    cfg = orjson.loads(Path(sys.argv[1]).read_bytes())
    result = asyncio.run(run(cfg))
    Path(cfg["result"]).write_bytes(orjson.dumps(result))
    print(f"fair: {result['count']} events, {result['rewards']} rewards, {result['rejected']} rejected",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

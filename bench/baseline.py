"""Contender 2, the ceiling: a plain aiokafka consume → decode → earn → encode → produce loop.

No tables, no changelog, no validation: member state is a Python dict in memory. Offsets are
committed about every second after the producer has flushed (at-least-once, like the service).

    python -m bench.baseline CONFIG.json

CONFIG: bootstrap, topics (input topic names), output (topic), group, reset ("earliest" |
"latest"), stop_after (input events; 0 = run until SIGTERM), result (path of the JSON result).
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from bench.rules import earn
from stream_app.kafka_security import client_options
from stream_app.settings import load_kafka_security

COMMIT_EVERY_S = 1.0


async def run(cfg: dict) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    assigned = asyncio.Event()

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked) -> None:
            pass

        async def on_partitions_assigned(self, partitions) -> None:
            if partitions:
                assigned.set()

    security = client_options(load_kafka_security())  # LOYALTY_KAFKA_*, inherited from bench.run
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg["bootstrap"], group_id=cfg["group"],
                                auto_offset_reset=cfg["reset"], enable_auto_commit=False,
                                client_id="bench-baseline", **security)
    producer = AIOKafkaProducer(bootstrap_servers=cfg["bootstrap"], acks="all", linger_ms=5,
                                max_batch_size=256 * 1024, client_id="bench-baseline", **security)
    await producer.start()
    await consumer.start()
    consumer.subscribe(cfg["topics"], listener=Listener())
    started = time.time()
    members: dict[bytes, dict] = {}
    out, stop_after = cfg["output"], int(cfg.get("stop_after") or 0)
    count = rewards_sent = 0
    first_at = last_at = None
    next_commit = time.monotonic() + COMMIT_EVERY_S
    loads, dumps, send = orjson.loads, orjson.dumps, producer.send
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    key = message.key
                    state, rewards = earn(members.get(key), loads(message.value))
                    members[key] = state
                    for reward in rewards:
                        await send(out, dumps(reward), key=key)
                    rewards_sent += len(rewards)
                    count += 1
                    if count == 1:
                        first_at = time.time()
                    if count == stop_after:
                        last_at = time.time()
                        stop.set()
            if time.monotonic() >= next_commit or stop.is_set():
                await producer.flush()
                await consumer.commit()
                next_commit = time.monotonic() + COMMIT_EVERY_S
    finally:
        await consumer.stop()
        await producer.stop()
    return {"contender": "baseline", "count": count, "first_at": first_at, "last_at": last_at,
            "rewards": rewards_sent, "members": len(members), "started": started, "assigned": assigned.is_set()}


def main() -> int:
    cfg = orjson.loads(Path(sys.argv[1]).read_bytes())
    result = asyncio.run(run(cfg))
    Path(cfg["result"]).write_bytes(orjson.dumps(result))
    print(f"baseline: {result['count']} events, {result['rewards']} rewards", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A Faust app that does (almost) nothing per event: what Faust itself costs (bench/floor.py runs it).

FLOOR_MODE picks the per-event work: `events` (an empty `stream.events()` loop), `take` (empty
`take_events` batches), `topic_send` (+ one Faust `Topic.send`), `batch_append` (+ one append to
an aiokafka batch, sent per 500), `table_set` (+ one Faust table write with its changelog).

FLOOR_RUNTIME, comma-separated, adds the service's runtime settings (stream_app/runtime.py and
stream_app/faust_compat.py) one by one: `uvloop`, `monitor` (the Monitor without per-message hooks),
`cython` (cython_optimizations), `gc` (the collector's thresholds, frozen after start), `handoff`
(the fetcher's hand-off without wait_first).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

import faust

from stream_app import faust_compat, runtime
from stream_app.kafka_security import faust_credentials
from stream_app.settings import load_kafka_security

MODE, EVENTS, TOPIC, TAG = (os.environ["FLOOR_MODE"], int(os.environ["FLOOR_EVENTS"]),
                            os.environ["FLOOR_TOPIC"], os.environ["FLOOR_TAG"])
RESULT = os.environ["FLOOR_RESULT"]
RUNTIME = set(filter(None, os.environ.get("FLOOR_RUNTIME", "").split(",")))
if RUNTIME - {"uvloop", "monitor", "cython", "gc", "handoff"}:
    raise SystemExit(f"FLOOR_RUNTIME: unknown {RUNTIME}")
if "uvloop" in RUNTIME:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
if "gc" in RUNTIME:
    gc.set_threshold(*runtime.GC_THRESHOLD)
if "handoff" in RUNTIME:
    faust_compat.fast_hand_off()
TUNING = {**({"Monitor": runtime.QuietMonitor} if "monitor" in RUNTIME else {}),
          **({"cython_optimizations": True} if "cython" in RUNTIME else {})}

app = faust.App(f"floor-{TAG}", broker=os.environ.get("FLOOR_BROKER", "kafka://127.0.0.1:9092"),
                broker_credentials=faust_credentials(load_kafka_security()),
                store="rocksdb://", datadir=os.environ["FLOOR_DATA"], web_port=int(os.environ["FLOOR_PORT"]),
                key_serializer="raw", value_serializer="raw", topic_partitions=8, producer_linger=0.005,
                consumer_auto_offset_reset="earliest", topic_disable_leader=True, **TUNING)
for chatty in ("aiokafka", "faust.topics"):
    logging.getLogger(chatty).setLevel(logging.INFO)
source = app.topic(TOPIC, key_type=bytes, value_type=bytes, partitions=8)
sink = app.topic(f"{TOPIC}.out", key_type=bytes, value_type=bytes, partitions=8)
table = app.Table(f"floor-{TAG}", partitions=8, key_type=bytes)
clock = {"count": 0, "started": 0.0, "cpu": 0.0}
if "gc" in RUNTIME:
    @app.task
    async def freeze() -> None:
        await runtime.freeze_after_recovery(app)


def counted(n: int = 1) -> None:
    if not clock["count"]:
        clock["started"], clock["cpu"] = time.monotonic(), time.process_time()
    clock["count"] += n
    if clock["count"] >= EVENTS:
        cpu_us = (time.process_time() - clock["cpu"]) / clock["count"] * 1e6  # the process: every thread
        with open(RESULT, "w") as out:
            out.write(f"{clock['count'] / (time.monotonic() - clock['started']):.0f} {cpu_us:.1f}\n")
        os._exit(0)


@app.agent(source)
async def floor(stream) -> None:
    if MODE == "take":
        async for events in stream.take_events(1000, within=0.01):
            counted(len(events))
        return
    producer, batch = None, None
    async for event in stream.events():
        message = event.message
        if MODE == "topic_send":
            await sink.send(key=message.key, value=message.value)
        elif MODE == "table_set":
            table[message.key] = {"offset": message.offset}
        elif MODE == "batch_append":
            producer = producer or app.producer._ensure_producer()
            batch = batch or producer.create_batch()
            batch.append(key=message.key, value=message.value, timestamp=None)
            if batch.record_count() >= 500:
                batch.close()
                await producer.send_batch(batch, f"{TOPIC}.out", partition=message.partition)
                batch = None
        counted()

"""A Faust app that does (almost) nothing per event: what Faust itself costs (bench/floor.py runs it).

FLOOR_MODE picks the per-event work: `events` (an empty `stream.events()` loop), `take` (empty
`take_events` batches), `topic_send` (+ one Faust `Topic.send`), `batch_append` (+ one append to
an aiokafka batch, sent per 500), `table_set` (+ one Faust table write with its changelog).
"""
from __future__ import annotations

import logging
import os
import time

import faust

from stream_app.kafka_security import faust_credentials
from stream_app.settings import load_kafka_security

MODE, EVENTS, TOPIC, TAG = (os.environ["FLOOR_MODE"], int(os.environ["FLOOR_EVENTS"]),
                            os.environ["FLOOR_TOPIC"], os.environ["FLOOR_TAG"])
RESULT = os.environ["FLOOR_RESULT"]

app = faust.App(f"floor-{TAG}", broker=os.environ.get("FLOOR_BROKER", "kafka://127.0.0.1:9092"),
                broker_credentials=faust_credentials(load_kafka_security()),
                store="rocksdb://", datadir=os.environ["FLOOR_DATA"], web_port=int(os.environ["FLOOR_PORT"]),
                key_serializer="raw", value_serializer="raw", topic_partitions=8, producer_linger=0.005,
                consumer_auto_offset_reset="earliest", topic_disable_leader=True)
for chatty in ("aiokafka", "faust.topics"):
    logging.getLogger(chatty).setLevel(logging.INFO)
source = app.topic(TOPIC, key_type=bytes, value_type=bytes, partitions=8)
sink = app.topic(f"{TOPIC}.out", key_type=bytes, value_type=bytes, partitions=8)
table = app.Table(f"floor-{TAG}", partitions=8, key_type=bytes)
clock = {"count": 0, "started": 0.0}


def counted(n: int = 1) -> None:
    if not clock["count"]:
        clock["started"] = time.monotonic()
    clock["count"] += n
    if clock["count"] >= EVENTS:
        with open(RESULT, "w") as out:
            out.write(f"{clock['count'] / (time.monotonic() - clock['started']):.0f}\n")
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

"""`loyalty simulate --from-kafka` on the real broker: a time range of the input topics, read only.

The middle third of a generated history, selected by record timestamps, must give the report the same
events give from a file, and the run must leave every topic as it found it.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.core.engine import event_time_ms
from stream_app.core.program import default_program_text
from stream_app.loadgen import DEFAULT_MIX, generate
from tests.integration.harness import BOOTSTRAP, ROOT
from topics.catalog import INPUT_KINDS

STEP_MS = 120_000  # whole seconds apart: no due instant falls 1 ms after an event
EVENTS = 600  # 20 hours of events, record timestamps = occurred_at: within the broker's retention (24 h)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


async def _create(prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}{kind}", 2, 1) for kind in INPUT_KINDS])
    finally:
        await admin.close()


async def _send(records: list[tuple[str, bytes | None, bytes, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for topic, key, value, timestamp in records:
            await producer.send(topic, value, key=key, timestamp_ms=timestamp)
        await producer.flush()
    finally:
        await producer.stop()


async def _end_offsets(prefix: str) -> dict:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        topics = [t for t in await admin.describe_topics() if t["topic"].startswith(prefix)]
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in topics for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {f"{tp.topic}[{tp.partition}]": offset for tp, offset in ends.items()}


def simulate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", "simulate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_kafka_time_range_gives_the_report_of_the_same_events_from_a_file(deployment, tmp_path):
    prefix = deployment.prefix
    asyncio.run(_create(prefix))
    start = int(time.time()) // 60 * 60_000 - (EVENTS + 30) * STEP_MS  # the assertions hold for any start
    messages = list(generate(40, EVENTS, 8, DEFAULT_MIX, start, STEP_MS))
    middle = messages[200:400]
    since_ms = event_time_ms(orjson.loads(middle[0][2]))
    last_ms = event_time_ms(orjson.loads(middle[-1][2]))
    records = [(f"{prefix}{kind}", key, value, event_time_ms(orjson.loads(value))) for kind, key, value in messages]
    wrong_key = orjson.dumps({**orjson.loads(middle[0][2]), "event_id": "wrong-key"})
    records[250:250] = [(f"{prefix}logins", b"not-json", b"{oops", since_ms + 1),
                        (f"{prefix}{middle[0][0]}", b"someone-else", wrong_key, since_ms + 2)]
    asyncio.run(_send(records))
    before = asyncio.run(_end_offsets(prefix))

    candidate = tmp_path / "candidate.toml"
    candidate.write_text(default_program_text().replace("[shares]\npoints = 5\n", "[shares]\npoints = 10\n"))
    env = {**os.environ, **deployment.env}
    from_kafka = simulate("--from-kafka", "--since", iso(since_ms), "--until", iso(last_ms + 1),
                          "--candidate", str(candidate), "--json", str(tmp_path / "kafka.json"), "--jobs", "2",
                          env=env)
    assert from_kafka.returncode == 0, from_kafka.stderr
    history = tmp_path / "middle.jsonl"
    history.write_bytes(b"".join(value + b"\n" for _, _, value in middle) + b"{oops\n")
    from_file = simulate(str(history), "--candidate", str(candidate), "--json", str(tmp_path / "file.json"),
                         "--jobs", "1", env=env)
    assert from_file.returncode == 0, from_file.stderr

    kafka, file = (json.loads((tmp_path / name).read_text()) for name in ("kafka.json", "file.json"))
    assert kafka["history"]["records"] == len(middle) + 2 and kafka["history"]["events"] == len(middle)
    assert kafka["history"]["end"] == iso(last_ms + 1).replace("+00:00", "Z")
    assert {code: n["current"] for code, n in kafka["dead_letters"]["by_code"].items()} == \
        {"invalid_json": 1, "key_mismatch": 1}
    assert kafka["dead_letters"]["examples"]["key_mismatch"]["where"].startswith(f"{prefix}{middle[0][0]}[")
    assert {code: n["current"] for code, n in file["dead_letters"]["by_code"].items()} == {"invalid_json": 1}
    for section in ("history", "dead_letters"):
        del kafka[section], file[section]
    assert kafka == file
    assert file["points"]["issued"]["shares"]["difference"] == file["points"]["issued"]["shares"]["current"] > 0

    assert asyncio.run(_end_offsets(prefix)) == before  # nothing written, no topic created

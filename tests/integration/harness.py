"""Integration harness: a real worker subprocess against the real local broker (make up).

Workers inherit the environment; the test clients here use the same LOYALTY_KAFKA_* security, so
the suite also runs against a secured cluster (LOYALTY_TEST_BOOTSTRAP and LOYALTY_KAFKA_* set).
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_app.kafka_security import client_options
from stream_app.settings import load_kafka_security
from stream_app.worker_process import WorkerProcess as Worker

BOOTSTRAP = os.environ.get("LOYALTY_TEST_BOOTSTRAP", "127.0.0.1:9092")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Broker:
    """Where the test clients connect and how: bootstrap servers, aiokafka security options, and the
    LOYALTY_KAFKA_* variables that give workers and the CLI the same security."""

    bootstrap: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


#: The shared broker; its security comes from the environment, which workers inherit.
LOCAL = Broker(BOOTSTRAP, client_options(load_kafka_security()))


def broker_answers() -> bool:
    host, port = BOOTSTRAP.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


class Deployment:
    """A test's own topics, consumer group and workers (unique prefix and app id)."""

    def __init__(self, tmp: Path, extra_env: dict[str, str] | None = None, broker: Broker = LOCAL) -> None:
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"t{tag}."
        self.tmp = tmp
        self.broker = broker
        self.env = {"LOYALTY_BROKER": f"kafka://{broker.bootstrap}", "LOYALTY_APP_ID": f"loyalty-{tag}",
                    "LOYALTY_TOPIC_PREFIX": self.prefix, "LOYALTY_PARTITIONS": "4",
                    "LOYALTY_DUE_TICK": "PT0.5S", "LOYALTY_SESSION_TIMEOUT": "PT10S", **broker.env,
                    **(extra_env or {})}
        self.workers: list[Worker] = []

    def topic(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    def worker(self, name: str = "w1", log_level: str = "info", **env: str) -> Worker:
        data = self.tmp / f"data-{name}"
        data.mkdir(exist_ok=True)
        w = Worker({**self.env, **env}, data, self.tmp / f"{name}.log", log_level)
        self.workers.append(w)
        return w

    def close(self) -> None:
        """Stop the workers and delete every topic of this deployment (its own and Faust's, named
        after the app id): a broker that keeps every test's partitions runs out of file handles."""
        for w in self.workers:
            w.stop()
        delete_topics(self.prefix, self.env["LOYALTY_APP_ID"], broker=self.broker)


def delete_topics(*name_parts: str, broker: Broker = LOCAL) -> list[str]:
    """Delete the topics whose names contain any of `name_parts`; returns their names."""

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, **broker.options)
        await admin.start()
        try:
            doomed = [t for t in await admin.list_topics() if any(part in t for part in name_parts)]
            if doomed:
                await admin.delete_topics(doomed)
            return doomed
        finally:
            await admin.close()

    return asyncio.run(run())


def produce(messages: Iterable[tuple[str, bytes | None, bytes | None]], rate: float | None = None,
            broker: Broker = LOCAL) -> int:
    """Send (topic, key, value) messages, optionally paced at `rate` per second; returns the count."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5, **broker.options)
        await producer.start()
        count, started = 0, time.monotonic()
        try:
            for topic, key, value in messages:
                await producer.send(topic, value, key=key)
                count += 1
                if rate and count % 50 == 0:
                    ahead = count / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()
        return count

    return asyncio.run(run())


def event_message(prefix: str, kind: str, event: dict, key: bytes | None | str = "member") -> tuple:
    """A (topic, key, value) for an input event, keyed by its member id unless told otherwise."""
    if key == "member":
        key = event["member_id"].encode()
    return f"{prefix}{kind}", key, orjson.dumps(event)


def consume(topic: str, until: Callable[[list[dict]], bool], timeout: float = 60,
            broker: Broker = LOCAL) -> list[dict]:
    """Read `topic` from the beginning until `until(records)` holds; records are decoded JSON values."""

    async def run() -> list[dict]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None, **broker.options)
        await consumer.start()
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    records.extend(orjson.loads(m.value) for m in msgs)
                if until(records):
                    return records
        finally:
            await consumer.stop()
        raise TimeoutError(f"{topic}: condition not met in {timeout}s with {len(records)} records")

    return asyncio.run(run())


def records(topic: str, timeout: float = 30) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) now in `topic`, raw (tombstones included), read from the start to the end offsets."""

    async def run() -> list[tuple[bytes | None, bytes | None]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            while not consumer.assignment():  # without a group: every partition, once the metadata is in
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: no partitions in {timeout}s")
                await asyncio.sleep(0.1)
            parts = sorted(consumer.assignment())
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            found: list[tuple[bytes | None, bytes | None]] = []
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: not read to its end offsets in {timeout}s")
                for msgs in (await consumer.getmany(*parts, timeout_ms=500)).values():
                    found.extend((m.key, m.value) for m in msgs)
            return found
        finally:
            await consumer.stop()

    return asyncio.run(run())


def topic_config(topic: str) -> dict[str, str]:
    """The broker's configuration of `topic` (every key, defaults included)."""

    async def run() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            response = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            return {entry[0]: entry[1] for entry in response[0].resources[0][4]}
        finally:
            await admin.close()

    return asyncio.run(run())


def wait_for(check: Callable[[], bool], timeout: float = 60, interval: float = 0.5,
             show: Callable[[], object] | None = None) -> None:
    """Poll `check` until it holds; on time-out say what `show` returns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout}s" + (f"; last seen: {show()!r}" if show else ""))

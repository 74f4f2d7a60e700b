"""Outgoing messages of a batch of events, handed to the producer as one batch per topic partition.

Faust's `Topic.send` and its table changelog writes cost ~90 us of Faust bookkeeping per message;
appending to an aiokafka `BatchBuilder` costs a few (bench/faust_floor.py measures both). The
processing agents `add` every output, dead letter and changelog record of a batch of events here,
then `flush`: flush returns once the broker acknowledged every message (retrying a failed batch
until it is), and only then are the events acked. So an acked event's messages are never lost,
whatever Faust commits next, and a member's messages keep their order in their partition.

Keyed messages without an explicit partition go where Kafka's default partitioner puts them
(murmur2 of the key), so they agree with every other producer of the same topic.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka.partitioner import murmur2

from stream_app import metrics

log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes | None]  # key, value
RETRY_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between tries; then 5 s for as long as it fails


class Sink(Protocol):
    """Where batches go: the app's Kafka producer, or a recorder in unit tests."""

    async def partition_count(self, topic: str) -> int: ...

    async def deliver(self, topic: str, partition: int, records: list[Record]) -> int:
        """Send `records` in order and return the offset of the first, once all are acknowledged."""
        ...


@dataclass
class _Topic:
    explicit: dict[int, list[Record]] = field(default_factory=lambda: defaultdict(list))
    keyed: list[Record] = field(default_factory=list)  # partition chosen at flush, from the key


class OutgoingBatches:
    """Messages added since the last flush, grouped by topic."""

    def __init__(self, sink: Sink | None = None, kind_of: Callable[[str], str] = str) -> None:
        self.sink = sink
        self._kind_of = kind_of  # topic name -> the metrics' topic label
        self._topics: dict[str, _Topic] = defaultdict(_Topic)
        self._delivered: dict[str, list[Callable[[int, int], None]]] = defaultdict(list)
        self._lock = asyncio.Lock()

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        """Queue one message for the next flush (partition None: by key, as Kafka's default partitioner)."""
        pending = self._topics[topic]
        if partition is None:
            pending.keyed.append((key, value))
        else:
            pending.explicit[partition].append((key, value))

    def on_delivered(self, topic: str, callback: Callable[[int, int], None]) -> None:
        """Call `callback(partition, last offset)` after each flush that delivered to `topic`."""
        self._delivered[topic].append(callback)

    def __len__(self) -> int:
        return sum(len(t.keyed) + sum(map(len, t.explicit.values())) for t in self._topics.values())

    async def flush(self) -> None:
        """Send everything added so far and return once the broker has acknowledged all of it."""
        async with self._lock:
            topics, self._topics = self._topics, defaultdict(_Topic)
            if not topics:
                return
            assert self.sink is not None, "OutgoingBatches.sink is not set"
            groups: list[tuple[str, int, list[Record]]] = []
            for topic, pending in topics.items():
                by_partition = pending.explicit
                if pending.keyed:
                    count = await self.sink.partition_count(topic)
                    for key, value in pending.keyed:
                        by_partition[partition_for(key, count)].append((key, value))
                groups.extend((topic, partition, records) for partition, records in by_partition.items())
            firsts = await asyncio.gather(*(self._deliver(*group) for group in groups))
            for (topic, partition, records), first in zip(groups, firsts, strict=True):
                for callback in self._delivered.get(topic, ()):
                    callback(partition, first + len(records) - 1)

    async def _deliver(self, topic: str, partition: int, records: list[Record]) -> int:
        for attempt in itertools.count():
            try:
                return await self.sink.deliver(topic, partition, records)
            except Exception as exc:  # broker unreachable past the producer's own retries: keep trying
                metrics.SEND_RETRIES.labels(self._kind_of(topic)).inc()
                delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
                log.warning("delivery to %s[%d] failed (%s: %s); try %d again in %.1fs",
                            topic, partition, type(exc).__name__, exc, attempt + 2, delay)
                await asyncio.sleep(delay)
        raise AssertionError("itertools.count() ended")


def partition_for(key: bytes | None, count: int) -> int:
    """Kafka's default partitioner: murmur2 of the key, positive, modulo the partition count."""
    if key is None:
        return random.randrange(count)
    return (murmur2(key) & 0x7FFFFFFF) % count


class ProducerSink:
    """Delivers through the app's aiokafka producer, with its batch API (one request per batch)."""

    def __init__(self, app) -> None:
        self._app = app

    def _producer(self):
        return self._app.producer._ensure_producer()

    async def partition_count(self, topic: str) -> int:
        producer = self._producer()
        await producer.client._wait_on_metadata(topic)
        return len(producer.client.cluster.partitions_for_topic(topic))

    async def deliver(self, topic: str, partition: int, records: list[Record]) -> int:
        producer = self._producer()
        first: int | None = None
        waits = []
        builder = producer.create_batch()
        for key, value in records:
            if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                waits.append(await producer.send_batch(builder, topic, partition=partition))
                builder = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a message for {topic} is larger than the producer's batch size")
        waits.append(await producer.send_batch(builder, topic, partition=partition))
        for wait in waits:
            metadata = await wait
            first = metadata.offset if first is None else first
        assert first is not None
        return first

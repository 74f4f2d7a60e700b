"""Outgoing messages of a batch of events, handed to the producer as one batch per topic partition.

Faust's `Topic.send` and its table changelog writes cost ~90 us of Faust bookkeeping per message;
appending to an aiokafka `BatchBuilder` costs a few (bench/faust_floor.py measures both). The
agents `add` every output, dead letter and changelog record here; `send()` hands them all to the
producer at once and returns a future that completes when the broker has acknowledged every one
(a batch that fails is handed over again, with backoff, until it is acknowledged). The agents ack
their events only after that future completes (agents/batch.py).

Keyed messages without an explicit partition go where Kafka's default partitioner puts them
(murmur2 of the key), so they agree with every other producer of the same topic.

Delivery failures (docs/contracts.md, "Delivery guarantees"): a failure that sending again can cure
(the broker unreachable or restarting, a leader moving, a full producer buffer) is retried with
backoff for as long as it lasts. One that cannot is never retried:

- a record larger than `MAX_RECORD_BYTES` is not handed over at all: `add` gives it to the
  `on_too_large` handler (the agents dead-letter the event that produced an oversized output)
  or, without one (the table changelogs), raises `DeliveryFailed`;
- a broker error aiokafka marks non-retriable (authorization, invalid topic, a topic whose
  `max.message.bytes` is below ours, ...) and a topic that no longer exists (fresh metadata is
  asked after every failed try) raise `DeliveryFailed`, and the worker fail-stops
  (agents/batch.py, stream_app/failstop.py).
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka.errors import (
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from stream_app import metrics
from stream_app.faust_compat import partition_count, raw_producer

log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes | None]  # key, value
RETRY_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between tries; then 5 s for as long as it fails

#: The largest record the worker sends (a record batch of one record, as the broker measures it):
#: the producer's max_request_size (stream_app/compose.py) and within the broker's and topics' default
#: message.max.bytes / max.message.bytes (1,048,588). Inputs are capped at 64 KiB
#: (topics/validation.py) and dead letters at about 400 KiB (topics/dead_letters.py), so only a
#: member state (a changelog record) can come near it.
MAX_RECORD_BYTES = 1024 * 1024

_RECORD_OVERHEAD = 1024  # more than a record batch's header and one record's framing ever add

_AUTHORIZATION = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError, GroupAuthorizationFailedError,
                  TransactionalIdAuthorizationFailed)


class DeliveryFailed(Exception):
    """Records for `topic` that no retry can deliver; `cause` says why."""

    def __init__(self, topic: str, partition: int | None, cause: BaseException | str) -> None:
        self.topic, self.partition, self.cause = topic, partition, cause
        where = topic if partition is None else f"{topic}[{partition}]"
        why = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"{where}: {why}")

    @property
    def authorization(self) -> bool:
        """The broker refused this worker's credentials (not the records)."""
        return isinstance(self.cause, _AUTHORIZATION)


def retriable(exc: BaseException) -> bool:
    """Whether sending the same records again can succeed.

    Broker errors carry aiokafka's own verdict (`retriable`). Client-side errors are retriable
    (a timeout or a lost connection: the broker may come back), except a record too large.
    """
    if isinstance(exc, RecordTooLargeError | DeliveryFailed):
        return False
    if isinstance(exc, BrokerResponseError):
        return bool(exc.retriable)
    return True


def record_size(key: bytes | None, value: bytes | None) -> int:
    """Bytes of a record batch holding just this record, as the broker compares it with its limits."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])


class Sink(Protocol):
    """Where batches go: the app's Kafka producer, or a recorder in unit tests."""

    async def partition_count(self, topic: str) -> int: ...

    async def topic_exists(self, topic: str) -> bool | None:
        """Whether fresh cluster metadata lists `topic` (None: the broker did not answer)."""
        ...

    async def hand_off(self, topic: str, partition: int, records: list[Record]) -> Awaitable[int]:
        """Give `records` to the producer, in order; the result completes with the first one's offset
        once all are acknowledged."""
        ...


@dataclass
class _Topic:
    explicit: dict[int, list[Record]] = field(default_factory=lambda: defaultdict(list))
    keyed: list[Record] = field(default_factory=list)  # partition chosen at hand-off, from the key


class OutgoingBatches:
    """Messages added since the last `send()`, grouped by topic."""

    def __init__(self, sink: Sink | None = None, kind_of: Callable[[str], str] = str) -> None:
        self.sink = sink
        self._kind_of = kind_of  # topic name -> the metrics' topic label
        self._topics: dict[str, _Topic] = defaultdict(_Topic)
        self._delivered: dict[str, list[Callable[[int, int], None]]] = defaultdict(list)
        self._too_large: Callable[[str, bytes | None, int], None] | None = None

    def on_too_large(self, handler: Callable[[str, bytes | None, int], None]) -> None:
        """Give records larger than MAX_RECORD_BYTES to `handler(topic, key, size)` instead of raising."""
        self._too_large = handler

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        """Queue one message for the next send (partition None: by key, as Kafka's default partitioner).

        A record over MAX_RECORD_BYTES is not queued: it goes to the `on_too_large` handler, or
        raises DeliveryFailed without one."""
        if (len(key or b"") + len(value or b"") > MAX_RECORD_BYTES - _RECORD_OVERHEAD  # cheap test first
                and (size := record_size(key, value)) > MAX_RECORD_BYTES):
            if self._too_large is None:
                raise DeliveryFailed(topic, partition, RecordTooLargeError(
                    f"a record of {size} bytes, limit {MAX_RECORD_BYTES}"))
            self._too_large(topic, key, size)
            return
        pending = self._topics[topic]
        if partition is None:
            pending.keyed.append((key, value))
        else:
            pending.explicit[partition].append((key, value))

    def on_delivered(self, topic: str, callback: Callable[[int, int], None]) -> None:
        """Call `callback(partition, last offset)` whenever records sent to `topic` are acknowledged."""
        self._delivered[topic].append(callback)

    async def send(self) -> asyncio.Future:
        """Hand everything added so far to the producer (in order per partition); the returned future
        completes once the broker has acknowledged all of it."""
        topics, self._topics = self._topics, defaultdict(_Topic)
        groups: list[tuple[str, int, list[Record]]] = []
        for topic, pending in topics.items():
            by_partition = pending.explicit
            if pending.keyed:
                count = await self._retrying(topic, None, lambda t=topic: self.sink.partition_count(t))
                for key, value in pending.keyed:
                    by_partition[partition_for(key, count)].append((key, value))
            groups.extend((topic, partition, records) for partition, records in by_partition.items())
        handed = [await self._hand_off(*group) for group in groups]
        return asyncio.ensure_future(self._confirm(groups, handed))

    async def flush(self) -> None:
        """Send everything added so far and wait until the broker has acknowledged it."""
        await (await self.send())

    async def _hand_off(self, topic: str, partition: int, records: list[Record]) -> Awaitable[int]:
        return await self._retrying(topic, partition, lambda: self.sink.hand_off(topic, partition, records))

    async def _retrying(self, topic: str, partition: int | None, call: Callable[[], Awaitable]):
        """`await call()`, again after each retriable failure (e.g. the producer's buffer timed out)."""
        for attempt in itertools.count():
            try:
                return await call()
            except Exception as exc:
                await self._failed(topic, partition, exc, attempt)
        raise AssertionError("itertools.count() ended")

    async def _confirm(self, groups: list[tuple[str, int, list[Record]]], handed: list[Awaitable[int]]) -> None:
        for (topic, partition, records), delivery in zip(groups, handed, strict=True):
            for attempt in itertools.count():
                try:
                    first = await delivery
                    break
                except Exception as exc:  # broker unreachable past the producer's own retries: again
                    await self._failed(topic, partition, exc, attempt)
                    delivery = await self._hand_off(topic, partition, records)
            for callback in self._delivered.get(topic, ()):
                callback(partition, first + len(records) - 1)

    async def _failed(self, topic: str, partition: int | None, exc: Exception, attempt: int) -> None:
        """Wait before the next try, or raise DeliveryFailed when no try can succeed."""
        if not retriable(exc):
            raise exc if isinstance(exc, DeliveryFailed) else DeliveryFailed(topic, partition, exc) from exc
        if await self.sink.topic_exists(topic) is False:  # deleted: no retry brings it back
            raise DeliveryFailed(topic, partition, f"the topic does not exist ({type(exc).__name__}: {exc})") from exc
        metrics.SEND_RETRIES.labels(self._kind_of(topic)).inc()
        delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
        log.warning("delivery to %s[%s] failed (%s: %s); sending again in %.1fs",
                    topic, "by key" if partition is None else partition, type(exc).__name__, exc, delay)
        await asyncio.sleep(delay)


def partition_for(key: bytes | None, count: int) -> int:
    """Kafka's default partitioner: murmur2 of the key, positive, modulo the partition count."""
    if key is None:
        return random.randrange(count)
    return _keyed_partition(key, count)


@functools.lru_cache(maxsize=1 << 17)
def _keyed_partition(key: bytes, count: int) -> int:
    """Memoised per member key: aiokafka's murmur2 is pure Python (~2 µs), and an event asks it for its
    own key and for each output keyed by its member."""
    return (murmur2(key) & 0x7FFFFFFF) % count


class ProducerSink:
    """Hands batches to the app's aiokafka producer with its batch API (no per-message futures)."""

    def __init__(self, app) -> None:
        self._app = app

    def _producer(self):
        return raw_producer(self._app)

    async def partition_count(self, topic: str) -> int:
        return await partition_count(self._producer(), topic)

    async def topic_exists(self, topic: str) -> bool | None:
        client = self._producer().client
        if not await client.force_metadata_update():
            return None
        return client.cluster.partitions_for_topic(topic) is not None

    async def hand_off(self, topic: str, partition: int, records: list[Record]) -> Awaitable[int]:
        producer = self._producer()
        deliveries = []
        builder = producer.create_batch()
        for key, value in records:
            if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                deliveries.append(await self._send(producer, builder, topic, partition))
                builder = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a message for {topic} is larger than the producer's batch size")
        deliveries.append(await self._send(producer, builder, topic, partition))
        return asyncio.ensure_future(_first_offset(deliveries))

    @staticmethod
    async def _send(producer, builder, topic: str, partition: int) -> asyncio.Future:
        builder.close()  # complete: the producer sends it now instead of lingering for more
        return await producer.send_batch(builder, topic, partition=partition)


async def _first_offset(deliveries: list[asyncio.Future]) -> int:
    metadata = [await delivery for delivery in deliveries]
    return metadata[0].offset

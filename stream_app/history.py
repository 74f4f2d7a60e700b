"""Histories of input events for `loyalty simulate`: a JSON-lines file or a time range of the input topics.

Both give `Record`s, validated as the worker validates a message (topics/validation.decode_event)
and collected into a `History`: the valid events by member, who referred whom (the members that must
be simulated together), the rejected ones counted by code.
A file line is read as `loyalty replay` reads it: its topic is the input kind whose schema lists its
`type`, its key is its `member_id`; a line that names no input type gets the code the worker would
give it on any input topic (`invalid_json`, `not_an_object`, `schema_violation`, `unknown_type`).
Kafka is only read: a consumer without a group (nothing committed), stopping at the offsets it found
when it started.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.core.engine import event_time_ms
from stream_app.core.simulation import referral_links
from topics import strict_json
from topics.catalog import INPUT_KINDS, TopicNames
from topics.validation import MAX_MESSAGE_BYTES, Rejection, decode_event, load_schema

KIND_OF_TYPE = {name: kind for kind in INPUT_KINDS for name in load_schema(kind)["properties"]["type"]["enum"]}
STALL_SECONDS = 60.0  # a Kafka read that gets no record for this long while records remain fails


@dataclass(frozen=True, slots=True)
class Record:
    """One input message of a history: where it was read, its topic kind (None: from its type), key, value."""

    where: str
    kind: str | None
    key: bytes | None
    value: bytes | None


def decode(record: Record, now_ms: int) -> dict | Rejection:
    """The validated event of a record, or why the worker would dead-letter it, read at `now_ms`."""
    kind, key, value = record.kind, record.key, record.value
    if kind is None:
        routed = route(value)
        if isinstance(routed, Rejection):
            return routed
        kind, key = routed
    return decode_event(kind, key, value, now_ms=now_ms)


def route(value: bytes) -> tuple[str, bytes | None] | Rejection:
    """(topic kind, key) of a JSON-lines event, as `loyalty replay` publishes it: the input kind whose
    schema lists its `type`, keyed by its `member_id`; or why the worker would refuse it on any topic."""
    if len(value) > MAX_MESSAGE_BYTES:
        return Rejection("oversized", f"value is {len(value)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        event, _ = strict_json.decode(value)  # its unsafe values: decode_event's to report
    except strict_json.InvalidJson as exc:
        return Rejection("invalid_json", str(exc))
    if not isinstance(event, dict):
        return Rejection("not_an_object", "value is not a JSON object")
    event_type = event.get("type")
    if not isinstance(event_type, str):
        return Rejection("schema_violation", "type: missing or not a string")
    kind = KIND_OF_TYPE.get(event_type)
    if kind is None:
        return Rejection("unknown_type", f"{event_type!r} is not an input event type")
    member_id = event.get("member_id")
    return kind, member_id.encode() if isinstance(member_id, str) else None


def count_lines(path: Path) -> int:
    """Lines in a file (for the progress line), counted in blocks."""
    with path.open("rb") as file:
        return sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b""))


def file_records(path: Path) -> Iterator[Record]:
    """Each non-blank line of a JSON-lines file, named `FILE:LINE`."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            value = raw.strip()
            if value:
                yield Record(f"{path}:{number}", None, None, value)


@dataclass(slots=True)
class History:
    """The valid events by member (raw JSON in input order), the referrals among them and the records
    the worker would refuse."""

    source: str
    now_ms: int  # the clock validation reads occurred_at against (the worker's at arrival; here: at reading)
    records: int = 0
    members: dict[str, list[bytes]] = field(default_factory=dict)
    referrals: list[tuple[str, str]] = field(default_factory=list)  # (friend, referrer) of each valid join naming one
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> first (where, detail)
    first_ms: int | None = None
    last_ms: int | None = None

    @property
    def events(self) -> int:
        return self.records - sum(self.rejected.values())

    def add(self, record: Record) -> None:
        self.records += 1
        decoded = decode(record, self.now_ms)
        if isinstance(decoded, Rejection):
            self.rejected[decoded.code] += 1
            self.examples.setdefault(decoded.code, (record.where, decoded.detail))
            return
        self.members.setdefault(decoded["member_id"], []).append(record.value)
        self.referrals.extend(referral_links((decoded,)))
        at = event_time_ms(decoded)
        self.first_ms = at if self.first_ms is None else min(self.first_ms, at)
        self.last_ms = at if self.last_ms is None else max(self.last_ms, at)


class KafkaHistoryError(RuntimeError):
    """The input topics cannot be read (missing topics, a stalled read)."""


async def kafka_records(bootstrap: str, prefix: str, since_ms: int | None, until_ms: int | None,
                        progress: Callable[[int, int], None] | None = None) -> list[Record]:
    """The records of every input topic from `since_ms` to `until_ms` (record timestamps), in
    (timestamp, topic, partition, offset) order.

    Per partition: from the first record at or after `since_ms` (else the beginning) to the first
    at or after `until_ms`, and never past the end offset found at the start. `progress(done, total)`
    is called as records arrive.
    """
    from aiokafka import AIOKafkaConsumer

    kinds = TopicNames(prefix).inputs
    partitions = await _partitions(bootstrap, list(kinds))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                client_id="loyalty-simulate")
    await consumer.start()
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        start = (await consumer.beginning_offsets(partitions) if since_ms is None
                 else await _offsets_at(consumer, partitions, since_ms, end))
        stop = end if until_ms is None else await _offsets_at(consumer, partitions, until_ms, end)
        stop = {tp: max(start[tp], min(stop[tp], end[tp])) for tp in partitions}
        total = sum(stop[tp] - start[tp] for tp in partitions)
        rows: list[tuple[int, str, int, int, bytes | None, bytes | None]] = []
        waiting = [tp for tp in partitions if stop[tp] > start[tp]]
        for tp in waiting:
            consumer.seek(tp, start[tp])
        last_record = time.monotonic()
        while waiting:
            batches = await consumer.getmany(*waiting, timeout_ms=500, max_records=10_000)
            for tp, records in batches.items():
                rows.extend((r.timestamp, r.topic, r.partition, r.offset, r.key, r.value)
                            for r in records if r.offset < stop[tp])
            if batches:
                last_record = time.monotonic()
            elif time.monotonic() - last_record > STALL_SECONDS:
                raise KafkaHistoryError(f"no record for {STALL_SECONDS:.0f} s with {total - len(rows)} to read")
            for tp in list(waiting):
                if await consumer.position(tp) >= stop[tp]:
                    waiting.remove(tp)
                    consumer.pause(tp)  # read up to its stop: fetch no more of it
            if progress:
                progress(len(rows), total)
    finally:
        await consumer.stop()
    rows.sort(key=lambda row: row[:4])
    return [Record(f"{topic}[{partition}]@{offset}", kinds[topic], key, value)
            for _, topic, partition, offset, key, value in rows]


async def _partitions(bootstrap: str, topics: list[str]) -> list:
    """Every partition of `topics`; KafkaHistoryError when one of them does not exist."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loyalty-simulate")
    await admin.start()
    try:
        # The metadata of every topic: asking for topics by name may create them on a broker that auto-creates.
        described = {topic["topic"]: topic for topic in await admin.describe_topics()}
    finally:
        await admin.close()
    missing = [topic for topic in topics if topic not in described]
    if missing:
        raise KafkaHistoryError(f"no topic {', '.join(missing)}: is the prefix right?")
    return [TopicPartition(topic, p) for topic in topics
            for p in sorted(part["partition"] for part in described[topic]["partitions"])]


async def _offsets_at(consumer, partitions: list, at_ms: int, default: dict) -> dict:
    """Per partition, the first offset whose timestamp is at or after `at_ms` (`default` when none)."""
    found = await consumer.offsets_for_times({tp: at_ms for tp in partitions})
    return {tp: found[tp].offset if found.get(tp) is not None else default[tp] for tp in partitions}


def read_kafka(bootstrap: str, prefix: str, since_ms: int | None, until_ms: int | None,
               progress: Callable[[int, int], None] | None = None) -> list[Record]:
    """`kafka_records`, from synchronous code."""
    return asyncio.run(kafka_records(bootstrap, prefix, since_ms, until_ms, progress))

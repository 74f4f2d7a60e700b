"""Every faust-streaming internal the project relies on, in one place, checked against the version.

The service leans on a few parts of faust-streaming that are not public API:

- the current-event context variable Faust's tables read to find the partition of a write
  (`faust.streams._current_event`);
- `Message.incref`/`ack` to hold a message past `take_events`' own ack;
- the aiokafka producer behind `app.producer`, its batch API (`create_batch`, `send_batch`) and its
  metadata wait (`client._wait_on_metadata`);
- `Consumer._committed_offset`, the committed offset per partition;
- `Table.send_changelog`, overridden to route changelog records through the agents' batch
  (tables/changelog.py), and `Store.set_persisted_offset`; `Table.partition_for_key`, overridden
  there too (Faust's partition-count check fails on a changelog topic created a moment ago);
- the web server's blueprint list, to serve none of Faust's built-in pages;
- `Consumer.force_commit`, replaced on the consumer instance by `refuse_commits` after a fail-stop
  (stream_app/failstop.py): every commit path (the commit timer, `broker_commit_every`,
  `wait_empty` at rebalances and shutdown, task errors, `app.commit`) goes through it;
- aiokafka's `GroupCoordinator.request_rejoin`, called from Faust's consumer thread by
  `request_rejoin`, when a static member was handed a stale assignment (stream_app/assignment.py);
- the partition stores of a table (`RocksDB._dbs_for_actives`, `_visible_items`, `_db_for_partition`;
  the memory store's dict), read and written as raw bytes by the member index's scans
  (agents/member_index.py): Faust's `Store.items()` decodes every key and value through its
  serializer registry, ~20 us an item, twenty times what reading an index entry costs;
- `FlowControlEvent.resume` (mode-streaming, under `app.flow_control`), replaced by
  `keep_delivered_on_resume`: as released it empties every stream queue on each call, and Faust's
  recovery calls it once more after seeking the stream partitions, while the flow is already on and
  the queues hold events fetched since; those events were dropped unprocessed and a later commit
  moved past them (docs/scaling.md, "Events lost after a restart or a rebalance").

`check()` runs when the app is built: a faust-streaming release outside `SUPPORTED` refuses to start
rather than misbehave quietly. tests/unit/shell/test_faust_compat.py fails when any of these changes
shape underneath (names, signatures, the source of what is overridden), so an upgrade is a
deliberate step.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)

#: The faust-streaming releases whose internals were read for this module (pyproject pins <0.16).
SUPPORTED = ("0.15.3",)
#: Faust's built-in blueprints (`/`, `/router`, `/table`, `/graph`, `/stats`, `/performance`): none is served.
BUILTIN_BLUEPRINT_PREFIX = "faust.web.apps."
#: `Table.send_changelog`'s parameters, as overridden in tables/changelog.py.
SEND_CHANGELOG_PARAMETERS = ("self", "partition", "key", "value", "key_serializer", "value_serializer")
#: `Table.partition_for_key`'s parameters, as overridden in tables/changelog.py.
PARTITION_FOR_KEY_PARAMETERS = ("self", "key")
#: `FlowControlEvent.resume` as released, the one `keep_delivered_on_resume` replaces (sha256 of its source).
FLOW_RESUME = FlowControlEvent.resume
FLOW_RESUME_SHA256 = "4dcdc1253fd0dcb40de18a3702503c01d21e9da7e5e55b122fb92615f27648d9"


class UnsupportedFaust(RuntimeError):
    """The installed faust-streaming is not one whose internals this module was checked against."""


def check() -> None:
    """Refuse a faust-streaming release this module was not checked against."""
    if faust.__version__ not in SUPPORTED:
        raise UnsupportedFaust(f"faust-streaming {faust.__version__} is installed; this release of the service "
                               f"was checked against {', '.join(SUPPORTED)} (stream_app/faust_compat.py)")
    for method, expected in ((Collection.send_changelog, SEND_CHANGELOG_PARAMETERS),
                             (Collection.partition_for_key, PARTITION_FOR_KEY_PARAMETERS)):
        params = tuple(inspect.signature(method).parameters)
        if params != expected:
            raise UnsupportedFaust(f"Table.{method.__name__}{params} changed; tables/changelog.py overrides it")
    if source_sha256(FLOW_RESUME) != FLOW_RESUME_SHA256:
        raise UnsupportedFaust("mode's FlowControlEvent.resume changed; faust_compat.keep_delivered_on_resume "
                               "replaces it")


def source_sha256(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def resume_keeping_delivered(self: FlowControlEvent) -> None:
    """`FlowControlEvent.resume` that empties the managed queues only if the flow was suspended.

    What a queue holds after a suspension was fetched before the rebalance and is read again from
    the committed offsets, so it is dropped as before. What it holds while the flow is on was
    fetched in the current assignment and nothing fetches it again: it must reach the agents.
    """
    suspended = not self.is_active()
    self._suspend.clear()
    self._resume.set()
    if suspended:
        self.clear()


def keep_delivered_on_resume() -> None:
    """Install `resume_keeping_delivered` (every app of the process: `app.flow_control` is created lazily)."""
    FlowControlEvent.resume = resume_keeping_delivered


def set_current_event(event: Any) -> None:
    """Make `event` the current event of this task, so a table write goes to its partition.

    Only the context variable Faust's tables read (faust.streams.current_event()), never
    `Stream.current_event`: take_events' background task reads that attribute to collect the next
    batch, and would collect the wrong event.
    """
    _current_event.set(weakref.ref(event))


def hold(message: Any) -> None:
    """One more reference on `message`: its offset is not committable until `message.ack()` is called
    once more (take_events acks each event once by itself)."""
    message.incref()


def raw_producer(app: faust.App) -> Any:
    """The aiokafka producer behind `app.producer`, for its batch API (create_batch, send_batch)."""
    return app.producer._ensure_producer()


async def partition_count(producer: Any, topic: str) -> int:
    """How many partitions `topic` has, from the aiokafka producer's metadata (fetched if unknown)."""
    await producer.client._wait_on_metadata(topic)
    return len(producer.client.cluster.partitions_for_topic(topic))


def committed_offset(consumer: Consumer, tp: Any) -> int | None:
    """The committed offset of one partition (None: none known yet)."""
    return getattr(consumer, "_committed_offset", {}).get(tp)


def committed_offsets(consumer: Consumer) -> dict:
    """The committed offset per partition (seeded from the broker on assignment, updated after each commit)."""
    return {tp: offset for tp, offset in getattr(consumer, "_committed_offset", {}).items() if offset is not None}


def changelog_send_result(partition: int) -> SimpleNamespace:
    """What `Table.on_key_set`/`on_key_del` read of `send_changelog`'s result: only `.message.partition`."""
    return SimpleNamespace(message=SimpleNamespace(partition=partition))


def drop_builtin_pages(app: faust.App) -> None:
    """Serve none of Faust's built-in pages (they expose tables, the partition map and app internals).

    Routing `/members/{id}` to the owning worker does not need them: `app.table_route` forwards the
    request to the same path on the owner. Must run before the web server starts.
    """
    manager = app.web.blueprints
    manager._enabled = [(prefix, bp) for prefix, bp in manager._enabled
                        if not (isinstance(bp, str) and bp.startswith(BUILTIN_BLUEPRINT_PREFIX))]


def refuse_commits(consumer: Consumer) -> None:
    """From now on every offset commit of `consumer` (a Faust Consumer) commits nothing."""
    log.warning("offset commits refused from now on: the worker has failed and is stopping")

    async def _refused(*args: Any, **kwargs: Any) -> bool:
        return False

    consumer.force_commit = _refused


async def request_rejoin(app: faust.App) -> None:
    """Ask the group to rebalance: the consumer rejoins at its next poll (from the consumer's own thread)."""
    thread = app.consumer._thread

    async def rejoin() -> None:
        thread._ensure_consumer()._coordinator.request_rejoin()

    await thread.call_thread(rejoin)


def raw_items(table: Any) -> Iterator[tuple[bytes, bytes]]:
    """A table's stored (key, value) bytes in the partitions this worker owns, without Faust's decoding.

    RocksDB iterates each owned partition's database (a consistent view while the agent writes); the
    memory store (one dict for every partition it holds) is copied first: a dict cannot change under
    its iterator."""
    store = table.data
    if isinstance(store, MemoryStore):
        yield from list(store.data.items())
        return
    for db in store._dbs_for_actives():
        yield from store._visible_items(db)


def raw_get(table: Any, partition: int, key: bytes) -> bytes | None:
    """The stored value of `key` in `partition` (one read; Faust's lookup without an event tries every partition)."""
    store = table.data
    return store.data.get(key) if isinstance(store, MemoryStore) else store._db_for_partition(partition).get(key)


def raw_put(table: Any, partition: int, key: bytes, value: bytes | None) -> None:
    """Store `value` (None: delete) under `key` in `partition`'s store, bypassing the table (no changelog)."""
    store = table.data
    if isinstance(store, MemoryStore):
        if value is None:
            store.data.pop(key, None)
        else:
            store.data[key] = value
    elif value is None:
        store._db_for_partition(partition).delete(key)
    else:
        store._db_for_partition(partition).put(key, value)

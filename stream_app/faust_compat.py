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
  aiokafka's `pause`/`resume`, called there by `pause_fetching` for the event-time merge's pacing
  (agents/intake.py), as Faust's own `pause_partitions` can lose records (see `pause_fetching`);
- the partition stores of a table (`RocksDB._dbs_for_actives`, `_visible_items`, `_db_for_partition`;
  the memory store's dict), read and written as raw bytes by the member index's scans
  (agents/member_index.py): Faust's `Store.items()` decodes every key and value through its
  serializer registry, ~20 us an item, twenty times what reading an index entry costs;
- `FlowControlEvent.resume` (mode-streaming, under `app.flow_control`), replaced by
  `keep_delivered_on_resume`: as released it empties every stream queue on each call, and Faust's
  recovery calls it once more after seeking the stream partitions, while the flow is already on and
  the queues hold events fetched since; those events were dropped unprocessed and a later commit
  moved past them (docs/scaling.md, "Events lost after a restart or a rebalance").

- `Consumer._drain_messages` (the fetcher's loop), replaced by `drain_messages` when
  `fast_hand_off()` is installed: as released it hands each message to the conductor through
  `Service.wait_first(callback(message), suspend_flow.wait())`, three tasks and an `asyncio.wait`
  per message (about 30 µs here), only so that a rebalance can interrupt a hand-off blocked on the
  flow. The replacement awaits the callback itself and keeps what `wait_first` guaranteed, by
  checking the flow and the consumer generation around each hand-off (see `drain_messages`).

`check()` runs when the app is built: a faust-streaming release outside `SUPPORTED` refuses to start
rather than misbehave quietly. tests/unit/shell/test_faust_compat.py fails when any of these changes
shape underneath (names, signatures, the source of what is overridden), so an upgrade is a
deliberate step.
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka.structs import TopicPartition
from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event
from faust.tables.base import Collection
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
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
#: `Consumer._drain_messages` as released, the one `drain_messages` replaces (sha256 of its source).
DRAIN_MESSAGES = Consumer._drain_messages
DRAIN_MESSAGES_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


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
    if source_sha256(DRAIN_MESSAGES) != DRAIN_MESSAGES_SHA256:
        raise UnsupportedFaust("Faust's Consumer._drain_messages changed; faust_compat.drain_messages replaces it")


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


async def drain_messages(self: Consumer, fetcher: Any) -> None:
    """`Consumer._drain_messages` handing each message to the conductor without `Service.wait_first`.

    What `wait_first(callback(message), suspend_flow.wait())` bought, kept here:

    - a rebalance that begins (the flow suspended) stops the hand-off of the rest of the fetch: the
      loop checks the flow before each message and leaves the fetch at once;
    - a hand-off that completed across a rebalance must not move the read offset. While the callback
      waited (on the flow, a full stream queue or the producer), the rebalance may have sought the
      partitions back to their committed offsets, resetting `_read_offset`; writing this message's
      offset after that makes the fetcher drop every re-fetched message below it as already read
      ("DROPPED MESSAGE"), while later ones are applied and acked, so the next commit passes events
      nobody applied. That is how the naive override (a plain `await callback(message)`) lost events
      in the two-worker SIGKILL failover test. So after each hand-off, if the flow is suspended or
      the consumer generation is not the message's, the loop leaves the fetch without recording
      the offset (the stale message itself is skipped, unacked, by the stream).

    Everything else (gap tracking, commit_every, the periodic yield, stop and error handling) is the
    released code's, unchanged.
    """
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    suspended = self.suspend_flow.is_set
    app = self.app

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                try:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                if acks_enabled_for(message.topic):
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            if suspended():
                                break  # a rebalance began: hand over nothing more of this fetch
                            await callback(message)
                            if suspended() or message.generation_id != app.consumer_generation_id:
                                break  # rebalanced meanwhile: the read offsets are the new assignment's
                            set_read_offset(tp, offset)
                finally:
                    await ait.aclose()
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


def fast_hand_off() -> None:
    """Install `drain_messages` (every Faust consumer of the process)."""
    Consumer._drain_messages = drain_messages


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


async def pause_fetching(app: faust.App, tps: set, pause: bool) -> None:
    """Stop (`pause`) or start again fetching the topic partitions `tps` that are still assigned: aiokafka's
    own `pause`/`resume`, in the consumer's thread, where a rebalance cannot come between the assignment
    read and the call.

    Not Faust's `Consumer.pause_partitions`: `getmany` skips the records of a partition that is no longer
    active while it hands over a fetch, and the fetch position has passed them, so pausing a partition
    mid-fetch would lose them and a later commit would move past them. aiokafka keeps a partition's
    position at the last record it returned and throws away only what it prefetched, which it fetches
    again on resume; a rebalance gives every partition a fresh, unpaused state."""
    thread = app.consumer._thread
    partitions = [TopicPartition(tp.topic, tp.partition) for tp in tps]

    async def act() -> None:
        consumer = thread._ensure_consumer()
        assigned = consumer.assignment()
        mine = [tp for tp in partitions if tp in assigned]
        if mine:
            (consumer.pause if pause else consumer.resume)(*mine)

    await thread.call_thread(act)


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

"""The faust-streaming internals the service relies on are still there, with the shape it expects.

Any failure here means faust-streaming changed underneath stream_app/faust_compat.py: read the
new release's code for that internal before widening SUPPORTED.
"""
from __future__ import annotations

import asyncio
import inspect
import re
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from weakref import WeakSet

import aiokafka
import aiokafka.consumer.group_coordinator as group_coordinator
import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from faust.channels import Channel
from faust.stores.base import Store
from faust.streams import _current_event, current_event
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import Producer as FaustProducer
from faust.types import TP, ConsumerMessage, Message
from faust.web.base import BlueprintManager
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from stream_app import faust_compat
from stream_app.compose import build_parts
from stream_app.core.program import load_program
from stream_app.faust_compat import pause_fetching, refuse_commits, request_rejoin
from stream_app.settings import load_settings


def test_the_installed_release_is_supported() -> None:
    faust_compat.check()


def test_another_release_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(faust_compat.UnsupportedFaust, match="0.16.0"):
        faust_compat.check()


def test_a_changed_send_changelog_signature_is_refused(monkeypatch) -> None:
    def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None, headers=None):
        raise AssertionError("never called")

    monkeypatch.setattr(Collection, "send_changelog", send_changelog)
    with pytest.raises(faust_compat.UnsupportedFaust, match="send_changelog"):
        faust_compat.check()


def test_the_current_event_variable_is_what_tables_read() -> None:
    class Event:  # anything weak-referenceable
        pass

    event = Event()
    token = _current_event.set(None)
    try:
        faust_compat.set_current_event(event)
        assert current_event() is event
    finally:
        _current_event.reset(token)


def test_a_held_message_needs_one_more_ack() -> None:
    message = Message(topic="t", partition=0, offset=0, timestamp=0.0, timestamp_type=0, headers=None, key=None,
                      value=None, checksum=None)
    message.incref()  # the stream's own reference
    faust_compat.hold(message)
    assert message.ack(None) is False and not message.acked  # take_events' own ack: still held
    assert message.ack(None) is True and message.acked


def test_the_producer_batch_api_and_store_offsets_exist() -> None:
    assert {"create_batch", "send_batch"} <= set(dir(AIOKafkaProducer))
    assert "batch" in inspect.signature(AIOKafkaProducer.send_batch).parameters
    assert callable(Store.set_persisted_offset)
    assert "_ensure_producer" in dir(FaustProducer)
    assert list(inspect.signature(AIOKafkaClient._wait_on_metadata).parameters) == ["self", "topic"]


def test_the_consumer_keeps_committed_offsets_where_we_read_them() -> None:
    assert "_committed_offset" in inspect.getsource(Consumer.__init__)


def test_blueprints_are_a_list_the_web_server_applies_later() -> None:
    manager = BlueprintManager([("/table", "faust.web.apps.tables.blueprint"), ("/mine", "my.module:bp")])
    assert manager._enabled == [("/table", "faust.web.apps.tables.blueprint"), ("/mine", "my.module:bp")]
    assert "self._enabled" in inspect.getsource(BlueprintManager.apply)


# -- FlowControlEvent.resume: the override that keeps fetched events (faust_compat.keep_delivered_on_resume) --

TP_LOGINS = TP("t.logins", 1)


class Offsets:
    """faust-streaming's consumer bookkeeping on its own (Consumer.ack, _add_gap, _new_offset), no broker."""

    ack = Consumer.ack
    _add_gap = Consumer._add_gap
    _new_offset = Consumer._new_offset

    def __init__(self, committed: int | None) -> None:
        self._gap, self._acked, self._acked_index = defaultdict(IntervalTree), defaultdict(list), defaultdict(set)
        self._committed_offset: defaultdict = defaultdict(lambda: None)
        self._committed_offset[TP_LOGINS] = committed
        self._unacked_messages: WeakSet = WeakSet()
        self._n_acked, self._waiting_for_ack = 0, None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))

    def commit(self) -> int | None:
        """What the commit timer does, until nothing more is committable: the committed offset."""
        while (offset := self._new_offset(TP_LOGINS)) is not None:
            committed = self._committed_offset[TP_LOGINS]
            if committed is None or offset > committed:
                self._committed_offset[TP_LOGINS] = offset
        return self._committed_offset[TP_LOGINS]


def fetched(offset: int) -> ConsumerMessage:
    message = ConsumerMessage(topic=TP_LOGINS.topic, partition=TP_LOGINS.partition, offset=offset, timestamp=0.0,
                      timestamp_type=0, headers=None, key=None, value=None, checksum=None, tp=TP_LOGINS)
    message.incref()  # the one stream it is delivered to
    return message


async def restart_on(resume, committed: int | None, taken: range, queued: range, after: range,
                     read_offset: int | None) -> tuple[int | None, set[int]]:
    """What Faust's recovery does to a stream partition, as in the failed runs (docs/scaling.md).

    The events `taken` reached the agent and are processed; `queued` were delivered to the agent's
    queue meanwhile; then the seek to the committed offsets sets the read offset to `read_offset`,
    `resume(flow)` runs (Recovery.on_recovery_completed), and the fetch goes on with `after`: its
    first offset is past the read offset, so Faust's fetcher records the offsets in between as a
    gap (Consumer._drain_messages). Every event that reaches the agent is processed and acked.
    Returns the committed offset and the offsets processed.
    """
    offsets, flow = Offsets(committed), FlowControlEvent(initially_suspended=True)
    queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    resume(flow)  # the flow is on since the changelogs were read
    processed: set[int] = set()

    def process_queue() -> None:
        while not queue.empty():
            message = queue.get_nowait()
            processed.add(message.offset)
            message.ack(offsets)  # the last reference: Consumer.ack records the offset

    for offset in taken:
        queue.put_nowait(fetched(offset))
    process_queue()
    offsets.commit()
    for offset in queued:
        queue.put_nowait(fetched(offset))
    resume(flow)  # after the seek, with the flow already on
    if read_offset is not None and after[0] - read_offset > 1:
        await offsets._add_gap(TP_LOGINS, read_offset + 1, after[0])
    for offset in after:
        queue.put_nowait(fetched(offset))
    process_queue()
    return offsets.commit(), processed


#: (committed at the restart, taken, queued when the flow resumed, fetched after, read offset after the seek)
FAILED_RUNS = {
    # test_crash (SIGKILL, restart): a chunk of each partition, committed past through the gap.
    "restart after SIGKILL": (10, range(10, 37), range(37, 97), range(97, 125), 10),
    # test_scale_out (second worker joins): nothing committed yet, one event dropped; Consumer._new_offset
    # lets the commit pass one missing offset right after the committed one.
    "rebalance, nothing committed": (None, range(0, 12), range(12, 13), range(13, 27), None),
}


@pytest.mark.parametrize("run", FAILED_RUNS.values(), ids=FAILED_RUNS.keys())
async def test_the_released_resume_drops_fetched_events_and_the_commit_passes_them(run) -> None:
    committed, processed = await restart_on(faust_compat.FLOW_RESUME, *run)

    never = set(run[2])
    assert not never & processed and committed > max(never)  # committed, never processed: lost


@pytest.mark.parametrize("run", FAILED_RUNS.values(), ids=FAILED_RUNS.keys())
async def test_with_the_override_every_offset_below_the_commit_is_processed(run) -> None:
    committed, processed = await restart_on(faust_compat.resume_keeping_delivered, *run)

    assert committed == run[3][-1] + 1 and set(range(run[1][0], committed)) <= processed


def test_a_resume_after_a_suspension_still_drops_what_was_fetched_before_it() -> None:
    flow = FlowControlEvent(initially_suspended=False)
    queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait(fetched(1))
    faust_compat.resume_keeping_delivered(flow)
    assert queue.qsize() == 1 and flow.is_active()

    flow.suspend()  # a rebalance: read again from the committed offsets once assigned
    faust_compat.resume_keeping_delivered(flow)
    assert queue.empty() and flow.is_active()


def test_building_an_app_installs_the_override() -> None:
    build_parts(load_settings({"LOYALTY_STORE": "memory://", "LOYALTY_APP_ID": "compat-test"}), load_program(""))
    assert FlowControlEvent.resume is faust_compat.resume_keeping_delivered


def test_a_changed_flow_resume_is_refused(monkeypatch) -> None:
    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()

    monkeypatch.setattr(faust_compat, "FLOW_RESUME", resume)
    with pytest.raises(faust_compat.UnsupportedFaust, match="FlowControlEvent.resume"):
        faust_compat.check()


def test_recovery_still_resumes_the_flow_after_seeking_the_stream_partitions() -> None:
    """What makes the override necessary: if this changes, read Recovery again (it may be fixed)."""
    for method in (Recovery._resume_streams, Recovery.on_recovery_completed):
        lines = [line.strip() for line in inspect.getsource(method).splitlines()]
        resumed = next(i for i, line in enumerate(lines) if line.startswith("consumer.resume_partitions("))
        seek = next(i for i, line in enumerate(lines) if "consumer.perform_seek()" in line)
        flow = next(i for i, line in enumerate(lines) if line.endswith("app.flow_control.resume()"))
        assert resumed < seek < flow, method.__name__
    assert "clear_on_resume=True" in inspect.getsource(Channel.queue.fget)  # the agents' queues are cleared


def calls_in(cls, name: str) -> list[str]:
    """Names of the methods of `cls` (its own source) whose body calls `self.<name>(`."""
    source = inspect.getsource(cls)
    methods = re.split(r"\n    (?:async )?def ", source)
    return [m.split("(", 1)[0] for m in methods[1:] if re.search(rf"self\.{name}\(", m)]


def test_every_commit_goes_through_force_commit():
    assert calls_in(Consumer, "force_commit") == ["commit"]
    assert calls_in(Consumer, "_commit_tps") == ["force_commit"]
    assert calls_in(Consumer, "_commit_offsets") == ["_commit_tps"]
    assert calls_in(Consumer, "_commit") == ["_commit_offsets"]
    assert list(inspect.signature(Consumer.force_commit).parameters) == ["self", "topics", "start_new_transaction"]
    # and nothing else in Faust calls the internals directly
    for path in Path(inspect.getfile(faust)).parent.rglob("*.py"):
        text = path.read_text()
        if path.name != "consumer.py":
            assert "._commit_tps(" not in text and "._commit_offsets(" not in text, path


async def test_refused_commits_commit_nothing():
    committed = []

    class Probe:
        async def force_commit(self, *args, **kwargs):
            committed.append(args)
            return True

        commit = Consumer.commit  # Faust's own commit(), which delegates to force_commit
        maybe_wait_for_commit_to_finish = Consumer.maybe_wait_for_commit_to_finish

    probe = Probe()
    probe.app = SimpleNamespace(client_only=False)
    probe._commit_fut = None
    probe.loop = None
    assert await probe.commit() is True and len(committed) == 1
    refuse_commits(probe)
    assert await probe.commit() is False and await probe.force_commit() is False
    assert len(committed) == 1


def test_faust_passes_the_group_instance_id_to_aiokafka():
    source = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "group_instance_id=conf.consumer_group_instance_id" in source


def test_the_consumer_thread_and_the_coordinator_offer_what_request_rejoin_uses():
    from mode.threads import QueueServiceThread

    assert issubclass(faust_aiokafka.AIOKafkaConsumerThread, QueueServiceThread)
    assert list(inspect.signature(QueueServiceThread.call_thread).parameters)[:2] == ["self", "fun"]
    assert hasattr(faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer")
    assert "self._rejoin_needed_fut.set_result(None)" in inspect.getsource(
        group_coordinator.GroupCoordinator.request_rejoin)
    assert "self._consumer._coordinator" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.topic_partitions)
    from faust.transport.consumer import ThreadDelegateConsumer
    assert "self._thread = self._new_consumer_thread()" in inspect.getsource(ThreadDelegateConsumer.__init__)


async def test_request_rejoin_runs_in_the_consumer_thread():
    requested, ran_in = [], []

    class Thread:
        def _ensure_consumer(self):
            return SimpleNamespace(_coordinator=SimpleNamespace(request_rejoin=lambda: requested.append(True)))

        async def call_thread(self, fun):
            ran_in.append("thread")
            return await fun()

    await request_rejoin(SimpleNamespace(consumer=SimpleNamespace(_thread=Thread())))
    assert ran_in == ["thread"] and requested == [True]



async def test_pause_fetching_pauses_and_resumes_only_assigned_partitions_in_the_consumer_thread():
    from aiokafka.structs import TopicPartition

    calls, ran_in = [], []
    assigned = {TopicPartition("t", 0), TopicPartition("t", 1)}

    class Consumer:
        def assignment(self):
            return assigned

        def pause(self, *tps):
            calls.append(("pause", sorted(tps)))

        def resume(self, *tps):
            calls.append(("resume", sorted(tps)))

    class Thread:
        def _ensure_consumer(self):
            return Consumer()

        async def call_thread(self, fun):
            ran_in.append("thread")
            return await fun()

    app = SimpleNamespace(consumer=SimpleNamespace(_thread=Thread()))
    await pause_fetching(app, {faust.types.TP("t", 0), faust.types.TP("t", 5)}, pause=True)  # 5: revoked since
    await pause_fetching(app, {faust.types.TP("t", 1)}, pause=False)
    await pause_fetching(app, {faust.types.TP("t", 7)}, pause=True)
    assert calls == [("pause", [TopicPartition("t", 0)]), ("resume", [TopicPartition("t", 1)])]
    assert all(isinstance(tp, TopicPartition) for _, tps in calls for tp in tps)  # aiokafka checks the type
    assert ran_in == ["thread"] * 3


def test_aiokafka_keeps_a_paused_partitions_position_and_drops_only_its_prefetched_records():
    """What pause_fetching relies on: a paused partition returns nothing and keeps its position (so the
    records are fetched again on resume), and Faust's own pause_partitions would skip records instead."""
    from aiokafka.consumer import fetcher

    source = inspect.getsource(fetcher.FetchResult.check_assignment)
    assert "if tp_state.paused:" in source and "self._partition_records = None" in source
    assert "consumed_to" in inspect.getsource(fetcher.FetchResult._update_position)
    assert list(inspect.signature(aiokafka.AIOKafkaConsumer.pause).parameters) == ["self", "partitions"]
    assert list(inspect.signature(aiokafka.AIOKafkaConsumer.resume).parameters) == ["self", "partitions"]
    assert "or tp in active_partitions" in inspect.getsource(Consumer.getmany)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_raw_store_access_reads_and_writes_what_the_table_holds_in_the_owned_partitions(store, tmp_path) -> None:
    settings = load_settings({"LOYALTY_STORE": store, "LOYALTY_DATA_DIR": str(tmp_path),
                              "LOYALTY_APP_ID": f"compat-raw-{store[:3]}", "LOYALTY_PARTITIONS": "4"})
    table = build_parts(settings, load_program("")).member_index.table
    owned = {TP(table.changelog_topic_name, 1), TP(table.changelog_topic_name, 2)}
    table.app.assignor.assigned_actives = lambda: owned
    for partition in range(4):
        faust_compat.raw_put(table, partition, b"k%d" % partition, b"v%d" % partition)
    faust_compat.raw_put(table, 2, b"gone", b"x")
    faust_compat.raw_put(table, 2, b"gone", None)

    assert faust_compat.raw_get(table, 1, b"k1") == b"v1"
    assert faust_compat.raw_get(table, 2, b"gone") is None
    assert table.data.get(b"k2") == b"v2"  # where Faust's own lookup finds it
    items = dict(faust_compat.raw_items(table))
    if store == "rocksdb://":  # one database per partition: the owned ones only
        assert items == {b"k1": b"v1", b"k2": b"v2"}
    else:  # one dict for every partition the store holds
        assert items == {b"k0": b"v0", b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"}


# -- the fetcher's hand-off without wait_first (faust_compat.drain_messages) ------------------------------------

class _Fetching:
    """What `drain_messages` reads of a Faust Consumer, with scripted fetches and a conductor callback."""

    def __init__(self, fetches: list[list[int]], during=None) -> None:
        self.fetches, self.during = fetches, during or (lambda consumer, message: None)
        self._stopped, self.suspend_flow = asyncio.Event(), asyncio.Event()
        self._read_offset: dict = defaultdict(lambda: None)
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
                                   consumer_generation_id=1)
        self.transport, self.should_stop, self.consumer_stopped_errors = SimpleNamespace(app=self.app), False, ()
        self.app.should_stop = False
        self.log = SimpleNamespace(info=print, exception=print, dev=lambda *a: None)
        self.delivered: list[tuple[int, int]] = []  # (generation, offset)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def getmany(self, timeout: float):
        if not self.fetches:
            self._stopped.set()
            return
        generation = self.app.consumer_generation_id
        for offset in self.fetches.pop(0):
            yield TP_LOGINS, SimpleNamespace(offset=offset, topic=TP_LOGINS.topic, generation_id=generation)

    async def callback(self, message) -> None:
        self.delivered.append((message.generation_id, message.offset))
        self.during(self, message)


def _rebalance_during(offset: int, committed: int):
    """While offset `offset` is handed over: a rebalance seeks the partition back to `committed`."""
    def during(consumer: _Fetching, message) -> None:
        if message.offset == offset and message.generation_id == 1:
            consumer.app.consumer_generation_id = 2
            consumer._read_offset[TP_LOGINS] = committed
    return during


async def test_a_hand_off_across_a_rebalance_leaves_the_reset_read_offset_alone() -> None:
    consumer = _Fetching([list(range(10, 15)), list(range(10, 17))], _rebalance_during(12, committed=10))
    await faust_compat.drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event()))
    # The old generation's fetch ends at the hand-off that crossed the rebalance; the new one is
    # handed over whole from the committed offset. A plain `await callback(message)` would record
    # offset 12 (then 13, 14) after the seek, and the fetcher would drop 10..13 of the new fetch as
    # already read: the events the two-worker failover test lost with the naive override.
    assert consumer.delivered == [(1, 10), (1, 11), (1, 12)] + [(2, o) for o in range(10, 17)]


async def test_a_suspended_flow_ends_the_fetch_before_the_next_hand_off() -> None:
    def suspend(consumer: _Fetching, message) -> None:
        if message.offset == 11:
            consumer.suspend_flow.set()

    consumer = _Fetching([list(range(10, 15))], suspend)
    await faust_compat.drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event()))
    assert consumer.delivered == [(1, 10), (1, 11)] and consumer._read_offset[TP_LOGINS] == 10


def test_building_an_app_installs_the_fast_hand_off() -> None:
    build_parts(load_settings({"LOYALTY_STORE": "memory://", "LOYALTY_APP_ID": "compat-test"}), load_program(""))
    assert Consumer._drain_messages is faust_compat.drain_messages


def test_a_changed_drain_messages_is_refused(monkeypatch) -> None:
    async def _drain_messages(self, fetcher) -> None:
        await self.wait_first(self.callback(None))

    monkeypatch.setattr(faust_compat, "DRAIN_MESSAGES", _drain_messages)
    with pytest.raises(faust_compat.UnsupportedFaust, match="_drain_messages"):
        faust_compat.check()


def test_the_released_drain_still_hands_off_through_wait_first() -> None:
    """What makes the override worth having: if this changes, read the release's fetcher again."""
    source = inspect.getsource(faust_compat.DRAIN_MESSAGES)
    assert "await self.wait_first(" in source and "callback(message), self.suspend_flow.wait()" in source
    assert "set_read_offset(tp, offset)" in source and "DROPPED MESSAGE" in source

"""What stream_app/faust_compat.py relies on in faust-streaming and aiokafka: these tests fail when an
upgrade changes the code underneath (version, call paths, signatures), so each override is re-checked."""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import aiokafka.consumer.group_coordinator as group_coordinator
import faust
import pytest
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream_app.faust_compat import (
    CHECKED_FAUST_VERSION,
    refuse_commits,
    request_rejoin,
    verify_source_partitions,
)


def calls_in(cls, name: str) -> list[str]:
    """Names of the methods of `cls` (its own source) whose body calls `self.<name>(`."""
    source = inspect.getsource(cls)
    methods = re.split(r"\n    (?:async )?def ", source)
    return [m.split("(", 1)[0] for m in methods[1:] if re.search(rf"self\.{name}\(", m)]


def test_the_faust_version_is_the_checked_one():
    assert faust.__version__ == CHECKED_FAUST_VERSION, (
        "faust-streaming changed: re-check every item of stream_app/faust_compat.py, then update "
        "CHECKED_FAUST_VERSION")


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


def test_the_partition_check_reads_the_consumers_snapshot_where_a_missing_topic_counts_zero():
    source = inspect.getsource(Collection._verify_source_topic_partitions)
    assert "self.app.consumer.topic_partitions(source_topic)" in source
    assert "self.app.consumer.topic_partitions(change_topic)" in source and "PartitionsMismatch" in source
    assert "self._verified_source_topics_for_partitions.add(source_topic)" in source
    assert "partitions_for_topic(topic) or []" in inspect.getsource(
        group_coordinator.BaseCoordinator._get_metadata_snapshot)
    assert "._coordinator._metadata_snapshot.get(topic)" in inspect.getsource(
        faust_aiokafka.AIOKafkaConsumerThread.topic_partitions)


@pytest.mark.parametrize(("counts", "checked"), [
    ({"src": 4, "changelog": 4}, True),
    ({"src": 4, "changelog": 2}, True),  # a real mismatch: Faust's check raises
    ({"src": 4, "changelog": 0}, False),  # the changelog topic was not in the metadata at the join
    ({"src": 0, "changelog": 4}, False),
])
def test_the_partition_check_waits_for_both_counts(counts, checked):
    calls = []
    table = SimpleNamespace(changelog_topic_name="changelog",
                            app=SimpleNamespace(consumer=SimpleNamespace(topic_partitions=counts.get)))
    verify_source_partitions(table, "src", calls.append)
    assert calls == (["src"] if checked else [])


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

"""The members/devices table class: partition of a write, and its partition-count check."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.exceptions import PartitionsMismatch
from faust.streams import _current_event

from stream_app.compose import build_parts
from stream_app.core.program import load_program
from stream_app.faust_compat import set_current_event
from stream_app.settings import load_settings


class Event:
    def __init__(self, topic: str, partition: int) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition)


@pytest.fixture
def members(monkeypatch):
    parts = build_parts(load_settings({"LOYALTY_STORE": "memory://", "LOYALTY_APP_ID": "changelog-test"}),
                        load_program(""))
    counts: dict[str, int | None] = {}
    monkeypatch.setattr(type(parts.app.consumer), "topic_partitions", lambda self, topic: counts.get(topic))
    token = _current_event.set(None)
    yield parts.members, counts
    _current_event.reset(token)


def test_a_write_goes_to_the_partition_of_the_event_being_processed(members) -> None:
    table, counts = members
    counts.update({"loyalty.orders": 8, table.changelog_topic_name: 8})
    event = Event("loyalty.orders", 5)
    set_current_event(event)
    assert table.partition_for_key(b"m1") == 5


def test_a_changelog_created_a_moment_ago_is_no_mismatch_and_is_checked_again_later(members) -> None:
    """Faust's own check raised PartitionsMismatch here (changelog known with 0 partitions): the batch
    writer failed on a fresh deployment's first events."""
    table, counts = members
    counts.update({"loyalty.orders": 8, table.changelog_topic_name: 0})
    event = Event("loyalty.orders", 3)
    set_current_event(event)
    assert table.partition_for_key(b"m1") == 3
    counts[table.changelog_topic_name] = 4  # now known, and different
    with pytest.raises(PartitionsMismatch, match="4"):
        table.partition_for_key(b"m1")


def test_outside_an_event_a_write_has_no_partition(members) -> None:
    table, _ = members
    with pytest.raises(TypeError):
        table.partition_for_key(b"m1")


def test_a_write_stores_the_bytes_and_sends_the_record_faust_s_table_write_would(members, monkeypatch) -> None:
    """`write` bypasses Faust's `table[key] = value` and its wrappers: the changelog record has
    the key and value bytes Faust's raw serializers give, the event's partition, and a read finds it."""
    table, counts = members
    counts.update({"loyalty.orders": 8, table.changelog_topic_name: 8})
    sent: list[tuple] = []
    monkeypatch.setattr(table.outgoing, "add", lambda *record: sent.append(record))
    event = Event("loyalty.orders", 5)  # held: the context keeps only a weak reference
    set_current_event(event)
    table.write(b"m1", {"points": 3})
    key, _ = table.changelog_topic.prepare_key(b"m1", table.key_serializer)
    value, _ = table.changelog_topic.prepare_value(b'{"points":3}', table.value_serializer)
    assert sent == [(table.changelog_topic_name, key, value, 5)]
    assert table.read(b"m1") == {"points": 3}
    _current_event.set(None)
    assert table.read(b"m1") == {"points": 3}  # outside an event: Faust's lookup finds it too
    set_current_event(event)
    table.write(b"m1", None)
    assert sent[-1] == (table.changelog_topic_name, b"m1", None, 5)
    assert table.read(b"m1") is None

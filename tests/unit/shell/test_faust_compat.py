"""The faust-streaming internals the service relies on are still there, with the shape it expects.

Any failure here means faust-streaming changed underneath stream_app/faust_compat.py: read the
new release's code for that internal before widening SUPPORTED.
"""
from __future__ import annotations

import inspect

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from faust.stores.base import Store
from faust.streams import _current_event, current_event
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Producer as FaustProducer
from faust.types import Message
from faust.web.base import BlueprintManager

from stream_app import faust_compat


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

"""Delivery rules of the outgoing batches (topics/outgoing.py): retry what can pass, never what cannot."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from topics import outgoing as outgoing_module
from topics.outgoing import MAX_RECORD_BYTES, DeliveryFailed, OutgoingBatches, record_size, retriable


class Sink:
    """A producer stand-in: hands off and acknowledges, or fails as scripted, and says whether topics exist."""

    def __init__(self, failures: list[BaseException | str] | None = None, exists: bool | None = True) -> None:
        self.failures = list(failures or [])  # per try: an exception at hand-off, "delivery:<exc>" ... see below
        self.exists = exists
        self.handed: list[tuple[str, int, list]] = []
        self.checked: list[str] = []

    async def partition_count(self, topic: str) -> int:
        return 4

    async def topic_exists(self, topic: str) -> bool | None:
        self.checked.append(topic)
        return self.exists

    async def hand_off(self, topic, partition, records):
        self.handed.append((topic, partition, list(records)))
        failure = self.failures.pop(0) if self.failures else None
        if isinstance(failure, BaseException):
            raise failure
        delivered = asyncio.get_running_loop().create_future()
        if isinstance(failure, tuple):  # ("delivery", exc): handed off, then the delivery fails
            delivered.set_exception(failure[1])
        else:
            delivered.set_result(0)
        return delivered


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(outgoing_module, "RETRY_BACKOFF", (0.0,))


async def test_what_can_pass_is_retried_until_delivered():
    sink = Sink([KafkaConnectionError(), ("delivery", KafkaTimeoutError()), ("delivery", NotEnoughReplicasError()),
                 UnknownTopicOrPartitionError()])
    batches = OutgoingBatches(sink)
    batches.add("rewards", b"m1", b"{}", partition=0)
    await batches.flush()
    assert len(sink.handed) == 5  # four failed tries, then delivered
    assert sink.checked == ["rewards"] * 4  # the topic still exists each time


@pytest.mark.parametrize("error", [InvalidTopicError(), MessageSizeTooLargeError(), RecordTooLargeError(),
                                   TopicAuthorizationFailedError("rewards")], ids=lambda e: type(e).__name__)
async def test_what_cannot_pass_is_not_retried_at_hand_off_or_delivery(error):
    for failure in (error, ("delivery", error)):
        sink = Sink([failure])
        batches = OutgoingBatches(sink)
        batches.add("rewards", b"m1", b"{}", partition=2)
        with pytest.raises(DeliveryFailed) as raised:
            await batches.flush()
        assert len(sink.handed) == 1
        assert (raised.value.topic, raised.value.partition, raised.value.cause) == ("rewards", 2, error)
        assert raised.value.authorization is isinstance(error, TopicAuthorizationFailedError)


async def test_a_topic_that_no_longer_exists_is_not_retried():
    sink = Sink([("delivery", KafkaTimeoutError())], exists=False)
    batches = OutgoingBatches(sink)
    batches.add("members-changelog", b"m1", b"{}", partition=1)
    with pytest.raises(DeliveryFailed, match="the topic does not exist"):
        await batches.flush()
    assert len(sink.handed) == 1


async def test_an_unanswered_existence_check_keeps_retrying():
    sink = Sink([KafkaConnectionError(), KafkaConnectionError()], exists=None)
    batches = OutgoingBatches(sink)
    batches.add("rewards", b"m1", b"{}", partition=0)
    await batches.flush()
    assert len(sink.handed) == 3


async def test_a_failed_partition_lookup_is_retried_like_a_hand_off():
    class LookupFails(Sink):
        calls = 0

        async def partition_count(self, topic):
            self.calls += 1
            if self.calls == 1:
                raise UnknownTopicOrPartitionError()
            return 4

    sink = LookupFails()
    batches = OutgoingBatches(sink)
    batches.add("rewards", b"m1", b"{}")
    await batches.flush()
    assert sink.calls == 2 and len(sink.handed) == 1


async def test_a_record_over_the_limit_goes_to_the_handler_and_is_not_sent():
    sink, seen = Sink(), []
    batches = OutgoingBatches(sink)
    batches.on_too_large(lambda topic, key, size: seen.append((topic, key, size)))
    big = b"x" * MAX_RECORD_BYTES
    batches.add("rewards", b"m1", big)
    batches.add("rewards", b"m1", b"{}")
    await batches.flush()
    assert seen == [("rewards", b"m1", record_size(b"m1", big))]
    assert [records for _, _, records in sink.handed] == [[(b"m1", b"{}")]]


async def test_a_record_just_under_the_limit_is_sent():
    sink = Sink()
    batches = OutgoingBatches(sink)
    batches.on_too_large(lambda *args: pytest.fail("not too large"))
    value = b"x" * (MAX_RECORD_BYTES - 100)
    assert record_size(b"m1", value) <= MAX_RECORD_BYTES
    batches.add("members-changelog", b"m1", value, partition=0)
    await batches.flush()
    assert [records for _, _, records in sink.handed] == [[(b"m1", value)]]


def test_without_a_handler_a_record_over_the_limit_raises():
    batches = OutgoingBatches(Sink())
    with pytest.raises(DeliveryFailed, match="limit 1048576"):
        batches.add("members-changelog", b"m1", b"x" * MAX_RECORD_BYTES, partition=3)


def test_the_limit_counts_the_whole_record_batch():
    assert record_size(b"k", b"") >= 61  # the record batch header the broker counts too
    assert record_size(b"k", b"x" * (MAX_RECORD_BYTES - 100)) <= MAX_RECORD_BYTES
    assert record_size(b"k", b"x" * (MAX_RECORD_BYTES - 50)) > MAX_RECORD_BYTES


def test_retriable_follows_aiokafka_for_broker_errors_and_retries_client_errors():
    assert retriable(NotEnoughReplicasError()) and retriable(UnknownTopicOrPartitionError())
    assert retriable(KafkaTimeoutError()) and retriable(KafkaConnectionError()) and retriable(ConnectionError())
    assert not retriable(InvalidTopicError()) and not retriable(TopicAuthorizationFailedError())
    assert not retriable(MessageSizeTooLargeError()) and not retriable(RecordTooLargeError())


def test_the_app_gives_the_producer_this_limit_and_the_worker_name():
    from stream_app.compose import faust_app
    from stream_app.settings import load_settings

    conf = faust_app(load_settings({"LOYALTY_WORKER_NAME": "w-3"})).conf
    assert conf.producer_max_request_size == MAX_RECORD_BYTES
    assert conf.consumer_group_instance_id == "w-3"
    assert MAX_RECORD_BYTES <= 1_048_588  # the brokers' default message.max.bytes


#: Kafka's own test vectors for its murmur2 (org.apache.kafka.common.utils.UtilsTest#testMurmur2).
KAFKA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                 b"a-little-bit-longer-string": -1486304829,
                 b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}


@pytest.mark.parametrize("count", [1, 8, 12, 64])
def test_a_keyed_partition_is_kafkas_default_partitioner_also_when_memoised(count):
    for key, murmur in KAFKA_MURMUR2.items():
        expected = (murmur & 0x7FFFFFFF) % count
        assert outgoing_module.partition_for(key, count) == expected
        assert outgoing_module.partition_for(key, count) == expected  # the memoised answer

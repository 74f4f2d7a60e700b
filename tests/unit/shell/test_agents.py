"""Unit tests of the Faust agents, in Faust's test context (`agent.test_context()`), no broker.

How the pipeline is driven:

- Each test builds its own app with the composition root (stream_app/compose.py), the memory
  store and a program of its choice (default: the packaged one): nothing is imported from a
  global app and no environment is rewritten.
- `process.test_context()` runs the real agent body on an in-memory channel. Its own `put()`
  cannot name one topic of a multi-topic subscription (messages arrive as "<internal>"), so
  `Pipeline.put` builds the Kafka message itself, with the topic name of the kind under test,
  and puts it on the wrapper's channel.
- A message counts as processed once the stream acks it, which happens when the agent asks for
  the next one, i.e. after the whole body (table write, sends) ran for it.
- The event-time merge (agents/intake.py) reads each partition's lag from the consumer's highwater,
  which needs a started consumer: the fixture reports every partition caught up (highwater 0), so
  only the grace holds an event (none for the past-dated events most tests use).
- Topics are created by the worker before it starts (topics/declare.py), which the test context
  does not run. What the agents send goes through the outgoing batches (topics/outgoing.py), whose
  sink is a recorder (`Pipeline.sent`, and `Pipeline.changelog()` for the members changelog); the
  due timer's Faust topic sends are recorded in the same log.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, replace
from datetime import datetime

import orjson
import pytest
from aiokafka.errors import InvalidTopicError, MessageSizeTooLargeError, TopicAuthorizationFailedError
from faust.types import TP, Message
from prometheus_client import REGISTRY

import agents.batch as batch_module
import agents.process
import topics.outgoing as outgoing_module
from agents import devices as device_agent
from agents import member_index as member_index_agent
from agents import observe, schedule
from stream_app.compose import build_parts
from stream_app.core.due import next_due
from stream_app.core.event_ids import id_hash
from stream_app.core.member import Member
from stream_app.core.program import Program, default_program_text, load_program, parse_program
from stream_app.failstop import FailStop
from stream_app.settings import load_settings
from tables import member_index
from tests.unit.conftest import iso
from topics.outgoing import partition_for
from topics.validation import validate_output

_APP_IDS = itertools.count()


exits: list[int] = []  # what a FailStop of these tests would have exited with


def build_test_parts(program: Program | None = None, grace: str = "PT2S"):
    """A fresh app of its own: memory store, its own app id, `program` (default: the packaged one), and a
    FailStop that records its exit instead of leaving the process."""
    settings = load_settings({"LOYALTY_STORE": "memory://", "LOYALTY_APP_ID": f"agents-test-{next(_APP_IDS)}",
                              "LOYALTY_ORDER_GRACE": grace})
    parts = build_parts(settings, program or load_program(""))
    return replace(parts, failstop=FailStop(exit=exits.append, timer=lambda seconds, action: None))


M1 = b"m1"
DAY = 24 * 60 * 60 * 1000
PAID_AT = "2025-03-03T10:00:00.000+08:00"  # not the 18th: the default "member day" campaign is off
PAID_AT_MS = int(datetime.fromisoformat(PAID_AT).timestamp() * 1000)
RELEASE_AT_MS = PAID_AT_MS + 7 * DAY  # orders.return_window = P7D


def share(event_id: str = "e1", member_id: str = "m1", at: str = PAID_AT, **fields) -> dict:
    return {"event_id": event_id, "member_id": member_id, "occurred_at": at, "type": "share",
            "share_id": f"sh-{event_id}", "channel": "wechat", "target": "friend", **fields}


def order(event_id: str = "o1", member_id: str = "m1", at: str = PAID_AT, amount_cents: int = 12345) -> dict:
    return {"event_id": event_id, "member_id": member_id, "occurred_at": at, "type": "order_paid",
            "order_id": f"ord-{event_id}", "amount_cents": amount_cents, "currency": "CNY"}


def raw(event: dict) -> bytes:
    return orjson.dumps(event)


@dataclass(frozen=True)
class Sent:
    kind: str
    key: bytes | None
    value: bytes

    @property
    def json(self) -> dict:
        return orjson.loads(self.value)


class RecordingTopic:
    """Stands in for one produced Faust topic: keeps every send, in order, in a shared log."""

    def __init__(self, kind: str, log: list[Sent]) -> None:
        self.kind, self.log = kind, log

    async def send(self, *, key=None, value=None, **kwargs) -> asyncio.Future:
        """Record the message; like Faust's send, return its delivery future (here: delivered)."""
        self.log.append(Sent(self.kind, key, value))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


class RecordingSink:
    """Stands in for the producer behind the outgoing batches: keeps every record, in order."""

    def __init__(self, parts, log: list[Sent], changelog: list[tuple[bytes, bytes | None]]) -> None:
        self.parts, self.log, self.changelog, self._next_offset = parts, log, changelog, 0
        self.index_changelog: list[tuple[int, bytes, bytes | None]] = []  # (partition, key, value)

    async def partition_count(self, topic: str) -> int:
        return self.parts.settings.partitions

    async def topic_exists(self, topic: str) -> bool:
        return True

    async def hand_off(self, topic: str, partition: int, records: list[tuple]) -> asyncio.Future:
        """Record the records; the delivery future is already done (acknowledged)."""
        if topic == self.parts.members.changelog_topic.get_topic_name():
            self.changelog.extend(records)
        elif topic == self.parts.member_index.table.changelog_topic.get_topic_name():
            self.index_changelog.extend((partition, key, value) for key, value in records)
        elif "-changelog" not in topic:
            self.log.extend(Sent(self.parts.names.kind_of(topic), key, value) for key, value in records)
        first, self._next_offset = self._next_offset, self._next_offset + len(records)
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(first)
        return delivered


class Pipeline:
    """The process agent of one app in its test context, fed with Kafka-like messages."""

    def __init__(self, parts, agent, sent: list[Sent], changelog: list[tuple], due_work, observer,
                 index_changelog: list[tuple]) -> None:
        self.parts, self.agent, self.sent, self._changelog, self._offset = parts, agent, sent, changelog, 0
        self.app, self.members, self.schedule, self.program = parts.app, parts.members, parts.schedule, parts.program
        self.names, self.outgoing = parts.names, parts.outgoing
        self.due_work, self.observer = due_work, observer
        self.failstop = parts.failstop  # the app's own: a failure in one test stays in that test
        self.index, self.index_changelog = parts.member_index.table, index_changelog

    async def put(self, kind: str, value: bytes | None, key: bytes | None = M1,
                  partition: int | None = None) -> Message:
        """Put one message on topic `kind` and wait until the agent has fully processed it."""
        return (await self.put_many([(kind, value, key)], partition))[0]

    async def put_many(self, messages: list[tuple[str, bytes | None, bytes | None]],
                       partition: int | None = None) -> list[Message]:
        """Put (kind, value, key) messages at once (one batch of the agent) and wait until all are processed;
        each in its key's partition (murmur2, as Kafka's default partitioner) unless `partition` is given."""
        channel = self.agent.stream().channel
        put = [self._message(*m, partition) for m in messages]
        for message in put:
            message.incref()  # one reference per subscribed stream, as Faust's conductor does
            await channel.put(await channel.decode(message))
        deadline = asyncio.get_running_loop().time() + 5
        while not all(message.acked for message in put):
            if self.agent._crash_reason is not None:
                raise AssertionError(f"the agent crashed: {self.agent._crash_reason!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"messages {[m.offset for m in put if not m.acked]} were never processed")
            await asyncio.sleep(0)
        return put

    def _message(self, kind: str, value: bytes | None, key: bytes | None, partition: int | None) -> Message:
        if partition is None:
            partition = partition_for(key, self.parts.settings.partitions) if key else 0
        message = Message(topic=self.names.name(kind), partition=partition, offset=self._offset,
                          timestamp=time.time(),
                          timestamp_type=0, headers=None, key=key, value=value, checksum=None,
                          serialized_key_size=0, serialized_value_size=0,
                          generation_id=self.app.consumer_generation_id)
        self._offset += 1
        return message

    def to(self, kind: str) -> list[dict]:
        """The JSON values sent to output topic `kind`, each checked against that topic's contract."""
        values = [s.json for s in self.sent if s.kind == kind]
        for value in values:
            validate_output(kind, value)
        return values

    def changelog(self) -> list[tuple[bytes, dict | None]]:
        """(key, decoded value) of each members-changelog write since the last call, in order."""
        written = [(key, None if value is None else orjson.loads(value)) for key, value in self._changelog]
        self._changelog.clear()
        return written

    def state_of(self, key: bytes = M1) -> Member:
        return Member.from_dict(self.members.read(key))


def summary(rewards: list[dict]) -> list[tuple]:
    return [(r["type"], r["points"], r["rule"]) for r in rewards]


async def run_pipeline(monkeypatch, program: Program | None = None, grace: str = "PT2S"):
    """Build an app with `program`, register its agents, and run the process agent in its test context."""
    parts = build_test_parts(program, grace)
    sent: list[Sent] = []
    changelog: list[tuple] = []
    for kind in list(parts.topics.produced):
        parts.topics.produced[kind] = RecordingTopic(kind, sent)
    sink = RecordingSink(parts, sent, changelog)
    parts.outgoing.sink = parts.changelogs.sink = sink
    monkeypatch.setattr(parts.app.consumer, "highwater", lambda tp: 0)  # every partition caught up
    index_topic = parts.member_index.table.changelog_topic_name
    owned = {TP(index_topic, p) for p in range(parts.settings.partitions)}
    monkeypatch.setattr(parts.app.assignor, "assigned_actives", lambda: owned)  # this worker owns every partition
    agents.process.register(parts.app, parts)
    device_agent.register(parts.app, parts)
    due_work, observer = schedule.DueWork(parts), observe.Observer(parts)
    agent = parts.app.agents[agents.process.AGENT_NAME]
    async with agent.test_context() as running:
        yield Pipeline(parts, running, sent, changelog, due_work, observer, sink.index_changelog)
        assert running._crash_reason is None


@pytest.fixture
def short_grace() -> str:
    """Ask for it before `pipeline`: the processing agent's intake then has a 0.3 s grace (default 2 s)."""
    return "PT0.3S"


@pytest.fixture
async def pipeline(monkeypatch, request):
    grace = request.getfixturevalue("short_grace") if "short_grace" in request.fixturenames else "PT2S"
    async for running in run_pipeline(monkeypatch, grace=grace):
        yield running


# -- agents.process: valid events -----------------------------------------------------------------

async def test_share_earns_points_into_the_member_table(pipeline):
    await pipeline.put("shares", raw(share("e1")))

    member = pipeline.state_of()
    assert (member.ledger.available, member.ledger.pending) == (5, 0)
    assert member.seen.hashes == [id_hash("e1")]
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]
    assert pipeline.to("notifications") == []
    assert [s.key for s in pipeline.sent] == [M1]
    # assigned back: the new state reaches the changelog
    assert pipeline.changelog() == [(M1, pipeline.members.read(M1))]


async def test_order_updates_the_table_and_emits_rewards_and_a_notification(pipeline):
    await pipeline.put("orders", raw(order("o1", amount_cents=12345)))

    member = pipeline.state_of()
    assert (member.ledger.available, member.ledger.pending) == (0, 223)
    assert list(member.orders) == ["ord-o1"]
    rewards = pipeline.to("rewards")
    assert summary(rewards) == [("points_pending", 123, "order"), ("points_pending", 100, "first_order_bonus")]
    assert [r["balance"] for r in rewards] == [{"available": 0, "pending": 123}, {"available": 0, "pending": 223}]
    notifications = pipeline.to("notifications")
    assert [(n["template"], n["params"]["points"], n["params"]["order_id"]) for n in notifications] == [
        ("points_pending", 223, "ord-o1")]
    assert [(s.kind, s.key) for s in pipeline.sent] == [("rewards", M1), ("rewards", M1), ("notifications", M1)]
    assert pipeline.to("dead-letters") == []
    assert pipeline.changelog() == [(M1, pipeline.members.read(M1))]


async def test_events_of_two_members_keep_separate_states(pipeline):
    await pipeline.put("shares", raw(share("e1", member_id="m1")), key=b"m1")
    await pipeline.put("shares", raw(share("e1", member_id="m2")), key=b"m2")  # same event id, other member
    await pipeline.put("shares", raw(share("e2", member_id="m1")), key=b"m1")

    assert pipeline.state_of(b"m1").ledger.available == 10
    assert pipeline.state_of(b"m2").ledger.available == 5
    assert [(s.key, s.json["points"], s.json["balance"]["available"]) for s in pipeline.sent] == [
        (b"m1", 5, 5), (b"m2", 5, 5), (b"m1", 5, 10)]


async def test_the_state_is_written_only_once_the_outputs_are_acknowledged(pipeline, monkeypatch):
    steps: list[str] = []
    hand_off = pipeline.outgoing.sink.hand_off
    acknowledged = asyncio.get_running_loop().create_future()

    async def held(topic, partition, records):
        kind = pipeline.names.kind_of(topic).rsplit("-", 1)[-1]
        steps.append(f"hand off {kind}")
        recorded = await hand_off(topic, partition, records)
        if kind == "changelog":
            return recorded
        return asyncio.ensure_future(_after(acknowledged, steps, kind))

    monkeypatch.setattr(pipeline.outgoing.sink, "hand_off", held)
    put = asyncio.ensure_future(pipeline.put("orders", raw(order("o1"))))
    await asyncio.sleep(0.05)
    assert set(steps) == {"hand off rewards", "hand off notifications"}  # waiting for the broker
    assert M1 not in pipeline.members and not put.done()

    acknowledged.set_result(None)
    await put

    assert steps[-1] == "hand off changelog" and M1 in pipeline.members


async def _after(acknowledged: asyncio.Future, steps: list[str], kind: str) -> int:
    await acknowledged
    steps.append(f"acknowledged {kind}")
    return 0


async def test_a_failed_hand_off_or_delivery_is_sent_again_before_the_event_is_acked(pipeline, monkeypatch):
    hand_off, failures = pipeline.outgoing.sink.hand_off, []

    async def failing(topic, partition, records):
        kind = pipeline.names.kind_of(topic)
        if kind == "rewards" and len(failures) == 0:
            failures.append("hand-off")
            raise ConnectionError("producer buffer full")
        if kind == "rewards" and len(failures) == 1:
            failures.append("delivery")
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(ConnectionError("broker went away"))
            return failed
        return await hand_off(topic, partition, records)

    monkeypatch.setattr(pipeline.outgoing.sink, "hand_off", failing)
    retries = REGISTRY.get_sample_value("loyalty_producer_send_retries_total", {"topic": "rewards"}) or 0

    await pipeline.put("shares", raw(share("e1")))

    assert failures == ["hand-off", "delivery"]
    assert REGISTRY.get_sample_value("loyalty_producer_send_retries_total", {"topic": "rewards"}) == retries + 2
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]  # what the third try handed off
    assert pipeline.changelog() == [(M1, pipeline.members.read(M1))]


async def test_a_batch_writes_each_changed_member_once(pipeline):
    await pipeline.put_many([("shares", raw(share("e1")), M1), ("shares", raw(share("e2", member_id="m2")), b"m2"),
                             ("shares", raw(share("e3")), M1), ("orders", raw(order("o1")), M1)])

    assert sorted(key for key, _ in pipeline.changelog()) == [M1, b"m2"]  # one record per member
    assert pipeline.state_of().ledger.available == 10
    assert pipeline.state_of().seen.hashes == [id_hash(x) for x in ["e1", "e3", "o1"]]
    assert [r["points"] for r in pipeline.to("rewards") if r["member_id"] == "m1"] == [5, 5, 123, 100]


async def test_a_long_batch_hands_the_event_loop_back_between_its_events(pipeline, monkeypatch):
    """Applying 1,000 heavy members' events would hold the loop far past its 50 ms budget: past
    YIELD_AFTER (here 0 s: after every event) the batch lets other tasks run, and still counts each
    event once, in order."""
    monkeypatch.setattr(batch_module, "YIELD_AFTER", 0.0)
    ticks, seen = [0], []

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    set_event = batch_module.at
    monkeypatch.setattr(batch_module, "at", lambda event: (seen.append(ticks[0]), set_event(event)))
    running = asyncio.ensure_future(ticker())
    try:
        await pipeline.put_many([("shares", raw(share(f"e{i}")), M1) for i in range(3)])
    finally:
        running.cancel()

    applied = seen[:3]  # then the writer's own calls, one per changed member
    assert all(later > earlier for earlier, later in itertools.pairwise(applied)), applied
    assert pipeline.state_of().seen.hashes == [id_hash(f"e{i}") for i in range(3)]
    assert [r["source_event_id"] for r in pipeline.to("rewards")] == ["e0", "e1", "e2"]
    assert pipeline.state_of().ledger.available == 15


async def test_events_arriving_while_a_batch_is_delivered_each_count_once(pipeline, monkeypatch):
    """The next batch fills while this one waits for the broker: it must collect the new events."""
    hand_off = pipeline.outgoing.sink.hand_off

    async def slow(topic, partition, records):
        delivered = await hand_off(topic, partition, records)
        await asyncio.sleep(0.05)
        return delivered

    monkeypatch.setattr(pipeline.outgoing.sink, "hand_off", slow)
    first = asyncio.ensure_future(pipeline.put("shares", raw(share("e1"))))
    await asyncio.sleep(0.03)  # the first batch is being delivered now
    await pipeline.put_many([("shares", raw(share("e2")), M1), ("shares", raw(share("e3")), M1)])
    await first

    assert sorted(r["source_event_id"] for r in pipeline.to("rewards")) == ["e1", "e2", "e3"]
    assert pipeline.state_of().seen.hashes == [id_hash(x) for x in ["e1", "e2", "e3"]]


async def test_an_event_replayed_after_its_state_was_lost_sends_the_same_bytes(pipeline):
    """A crash after the outputs were delivered but before the state was written: same outputs, same ids."""
    await pipeline.put("orders", raw(order("o1")))
    first = [(s.kind, s.key, s.value) for s in pipeline.sent]
    pipeline.members.data.clear()  # the state never reached the store

    await pipeline.put("orders", raw(order("o1")))

    assert [(s.kind, s.key, s.value) for s in pipeline.sent] == first * 2  # consumers dedupe by id
    assert pipeline.state_of().ledger.pending == 223


async def test_a_duplicate_event_id_sends_nothing_and_changes_nothing(pipeline):
    await pipeline.put("shares", raw(share("e1")))
    before, sent_before = pipeline.members.read(M1), len(pipeline.sent)
    pipeline.changelog()

    await pipeline.put("shares", raw(share("e1")))  # redelivered
    await pipeline.put("shares", raw(share("e1", at="2025-03-04T10:00:00.000+08:00")))  # same id, other content

    assert pipeline.members.read(M1) == before
    assert len(pipeline.sent) == sent_before == 1
    # The same state written again: after a crash the local store may hold it while the changelog does not.
    assert pipeline.changelog() == [(M1, before), (M1, before)]


async def test_member_erased_removes_the_member_from_the_table(pipeline):
    await pipeline.put("shares", raw(share("e1")))
    pipeline.changelog()
    erased = {"event_id": "x1", "member_id": "m1", "occurred_at": PAID_AT, "type": "member_erased"}

    await pipeline.put("members", raw(erased))

    assert M1 not in pipeline.members
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares"), ("member_erased", 0, "erasure")]
    assert pipeline.changelog() == [(M1, None)]  # a tombstone
    assert len(pipeline.schedule) == 0


# -- agents.process: event-time order across topics (agents/intake.py) ----------------------------

def review(event_id: str, order_event: str, at: str) -> dict:
    return {"event_id": event_id, "member_id": "m1", "occurred_at": at, "type": "review_posted",
            "review_id": f"rv-{event_id}", "order_id": f"ord-{order_event}", "rating": 5, "has_media": False}


def now_iso(offset_ms: int = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_ms / 1000).astimezone().isoformat(timespec="milliseconds")




async def test_a_review_read_before_its_order_is_applied_after_it(pipeline):
    later = "2025-03-03T11:00:00.000+08:00"
    await pipeline.put_many([("reviews", raw(review("r1", "o1", later)), M1), ("orders", raw(order("o1")), M1)])

    assert summary(pipeline.to("rewards")) == [("points_pending", 123, "order"),
                                               ("points_pending", 100, "first_order_bonus"),
                                               ("points_earned", 10, "reviews")]


async def test_a_live_event_is_held_unacked_for_the_grace_then_applied_without_more_input(short_grace, pipeline):
    started = time.monotonic()
    put = asyncio.ensure_future(pipeline.put("shares", raw(share("e1", at=now_iso()))))
    await asyncio.sleep(0.15)
    assert not put.done() and M1 not in pipeline.members  # held: not applied, its offset not acked
    assert REGISTRY.get_sample_value("loyalty_order_held") == 1
    message = await put  # nothing else arrived: the intake woke up on its own when the grace ended
    assert time.monotonic() - started >= 0.25
    assert message.acked and pipeline.state_of().ledger.available == 5


async def test_an_older_event_on_another_topic_within_the_grace_goes_first(short_grace, pipeline):
    reviewed_at, paid_at = now_iso(), now_iso(-50)
    newer = asyncio.ensure_future(pipeline.put("reviews", raw(review("r1", "o1", reviewed_at))))
    await asyncio.sleep(0.1)
    await pipeline.put("orders", raw(order("o1", at=paid_at)))  # published later, occurred earlier
    await newer
    assert [r["rule"] for r in pipeline.to("rewards")] == ["order", "first_order_bonus", "reviews"]


async def put_nowait(pipeline: Pipeline, kind: str, value: bytes) -> Message:
    """Put one message on the agent's channel without waiting for it to be processed."""
    channel = pipeline.agent.stream().channel
    message = pipeline._message(kind, value, M1, None)
    message.incref()
    await channel.put(await channel.decode(message))
    return message


async def test_held_events_are_applied_at_once_when_a_rebalance_begins(short_grace, pipeline):
    """Faust stops its flow and waits for what its agents took: the intake lets go of what it holds."""
    forced = REGISTRY.get_sample_value("loyalty_order_forced_total", {"reason": "rebalance"}) or 0
    message = await put_nowait(pipeline, "shares", raw(share("e1", at=now_iso(10_000))))  # held for the grace
    await asyncio.sleep(0.1)
    assert M1 not in pipeline.members
    pipeline.app.flow_control.suspend()  # what Faust does when partitions are revoked
    try:
        await asyncio.sleep(0.25)  # within the intake's poll, before the grace ends
        assert message.acked and pipeline.state_of().ledger.available == 5
        assert message.refcount == 0  # every holder acked it: the final ack commits its offset
        assert REGISTRY.get_sample_value("loyalty_order_forced_total", {"reason": "rebalance"}) == forced + 1
    finally:
        pipeline.app.flow_control.resume()


async def test_held_events_of_an_older_generation_are_dropped_unacked(short_grace, pipeline, monkeypatch):
    dropped = REGISTRY.get_sample_value("loyalty_order_dropped_total") or 0
    event = raw(share("e1", at=now_iso(10_000)))
    message = await put_nowait(pipeline, "shares", event)
    await asyncio.sleep(0.1)
    # a rebalance went by
    monkeypatch.setattr(pipeline.app, "consumer_generation_id", pipeline.app.consumer_generation_id + 1)
    await asyncio.sleep(0.3)  # the intake's next poll
    assert message.acked and REGISTRY.get_sample_value("loyalty_order_dropped_total") == dropped + 1
    assert M1 not in pipeline.members and pipeline.sent == []
    assert message.refcount > 0  # the intake's hold was never acked: no final ack, no commit
    await pipeline.put("shares", event)  # read again from the committed offset, in the new generation
    assert pipeline.state_of().ledger.available == 5


async def test_an_event_older_than_the_members_clock_is_applied_and_counted_late(pipeline):
    late = REGISTRY.get_sample_value("loyalty_events_late_total", {"topic": "logins"}) or 0
    await pipeline.put("orders", raw(order("o1")))
    login = {"event_id": "l1", "member_id": "m1", "occurred_at": "2025-03-02T10:00:00.000+08:00",
             "type": "login", "device_id": "phone"}
    await pipeline.put("logins", raw(login))
    assert REGISTRY.get_sample_value("loyalty_events_late_total", {"topic": "logins"}) == late + 1
    assert pipeline.state_of().ledger.available == 2 and pipeline.state_of().evaluated_at == PAID_AT_MS


# -- agents.process: keyless messages -------------------------------------------------------------

@pytest.mark.parametrize("key", [None, b""], ids=["no-key", "empty-key"])
async def test_a_keyless_message_is_resent_keyed_by_member_and_then_applied(pipeline, key):
    value = raw(share("e1"))

    await pipeline.put("shares", value, key=key)

    assert pipeline.sent == [Sent("shares", M1, value)]  # same bytes, now keyed by member
    assert M1 not in pipeline.members
    assert pipeline.changelog() == []

    await pipeline.put("shares", pipeline.sent[0].value, key=pipeline.sent[0].key)  # as it comes back
    assert pipeline.state_of().ledger.available == 5
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]


# -- agents.process: placement --------------------------------------------------------------------

async def test_an_event_in_another_partition_than_its_members_is_forwarded_unchanged_and_not_applied(pipeline):
    home = partition_for(M1, pipeline.parts.settings.partitions)
    elsewhere = (home + 1) % pipeline.parts.settings.partitions
    value = raw(share("e1"))

    await pipeline.put("shares", value, partition=elsewhere)  # e.g. published with librdkafka's CRC32

    assert pipeline.members.read(M1) is None
    assert [(s.kind, s.key, s.value) for s in pipeline.sent] == [("shares", M1, value)]
    forwarded = REGISTRY.get_sample_value("loyalty_events_total", {"topic": "shares", "outcome": "forwarded"})
    assert forwarded and forwarded >= 1

    await pipeline.put("shares", value)  # the forwarded copy, now in the member's partition
    assert pipeline.state_of().ledger.available == 5
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]


# -- agents.process: dead letters -----------------------------------------------------------------

MALFORMED = {
    "invalid_json": (b'{"event_id": ', M1, None),
    "not_an_object": (b"[1, 2]", M1, "value is not a JSON object"),
    "unknown_type": (raw({**share("bad"), "type": "tweet"}), M1, "type is none of shares: share"),
    "schema_violation": (raw({k: v for k, v in share("bad").items() if k != "channel"}), M1,
                         "(root): missing required channel"),
    "key_mismatch": (raw(share("bad", member_id="m2")), M1, "key differs from member_id"),
    "invalid_key": (raw(share("bad")), b"\xffm1", "key is not valid UTF-8"),
    "missing_value": (None, M1, "message has no value"),
}


@pytest.mark.parametrize("code", list(MALFORMED))
async def test_a_malformed_message_is_dead_lettered_and_the_stream_goes_on(pipeline, code):
    value, key, detail = MALFORMED[code]

    bad = await pipeline.put("shares", value, key=key)
    await pipeline.put("shares", raw(share("e1")))

    [letter] = pipeline.to("dead-letters")
    assert letter["error"] == code
    if detail is not None:
        assert letter["detail"] == detail
    assert (letter["topic"], letter["partition"], letter["offset"]) == (
        pipeline.names.name("shares"), bad.partition, bad.offset)
    assert letter["value"] == (None if value is None else value.decode())
    assert letter["key"] == (None if code == "invalid_key" else "m1")  # a non-UTF-8 key is not repeated
    assert [s.key for s in pipeline.sent if s.kind == "dead-letters"] == [key]
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]  # the next event applied
    assert pipeline.state_of().seen.hashes == [id_hash(x) for x in ["e1"]]


async def test_an_exception_in_the_core_dead_letters_that_event_only(pipeline, monkeypatch):
    real_apply = agents.process.apply_event_at
    calls = []

    def apply_failing_once(state, event, versions):
        calls.append(event["event_id"])
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real_apply(state, event, versions)

    monkeypatch.setattr(agents.process, "apply_event_at", apply_failing_once)

    failed = await pipeline.put("shares", raw(share("e1")))
    assert M1 not in pipeline.members
    await pipeline.put("shares", raw(share("e2")))

    assert calls == ["e1", "e2"]
    [letter] = pipeline.to("dead-letters")
    assert (letter["error"], letter["detail"], letter["offset"]) == ("processing_error", "RuntimeError",
                                                                     failed.offset)
    assert letter["topic"] == pipeline.names.name("shares")
    assert orjson.loads(letter["value"])["event_id"] == "e1"
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]
    assert pipeline.state_of().seen.hashes == [id_hash(x) for x in ["e2"]]
    assert (pipeline.state_of().ledger.available, pipeline.state_of().ledger.pending) == (5, 0)


async def test_an_output_too_large_to_send_is_replaced_by_a_dead_letter_for_its_event(pipeline, monkeypatch):
    real_size = outgoing_module.record_size

    def size(key, value):  # the points_pending rewards (order, first-order bonus) "over the limit"
        too_large = value and b'"type":"points_pending"' in value
        return outgoing_module.MAX_RECORD_BYTES + 1 if too_large else real_size(key, value)

    monkeypatch.setattr(outgoing_module, "record_size", size)
    monkeypatch.setattr(outgoing_module, "_RECORD_OVERHEAD", outgoing_module.MAX_RECORD_BYTES)  # always measure
    message = await pipeline.put("orders", raw(order("o1")))

    assert pipeline.to("rewards") == []
    letters = pipeline.to("dead-letters")  # one per output not sent
    assert len(letters) == 2
    for letter in letters:
        assert (letter["error"], letter["topic"], letter["offset"]) == (
            "output_too_large", pipeline.names.name("orders"), message.offset)
        assert letter["detail"] == "its rewards record is 1048577 bytes, limit 1048576"
    assert [n["template"] for n in pipeline.to("notifications")] == ["points_pending"]
    assert pipeline.state_of().ledger.pending == 223  # the state keeps the change


# -- agents.batch: fail-stop ------------------------------------------------------------------------

async def put_and_wait(pipeline: Pipeline, kind: str, value: bytes, seconds: float = 0.3) -> Message:
    """Put one message and give the agent `seconds`; the message may stay unacked."""
    channel = pipeline.agent.stream().channel
    message = pipeline._message(kind, value, M1, None)
    message.incref()
    await channel.put(await channel.decode(message))
    await asyncio.sleep(seconds)
    return message


async def test_a_store_that_cannot_write_stops_the_pipeline_and_nothing_is_acked_after_it(pipeline, monkeypatch):
    real_write = pipeline.members.write

    def full(key, state):
        raise Exception("IO error: No space left on device: While appending to file: 000004.log")

    monkeypatch.setattr(pipeline.members, "write", full)
    first = await put_and_wait(pipeline, "shares", raw(share("e1")))

    failure = pipeline.failstop.failure
    assert (failure.reason, failure.exit_code) == ("store", 74) and "No space left" in failure.detail
    assert not first.acked and M1 not in pipeline.members and pipeline.changelog() == []

    monkeypatch.setattr(pipeline.members, "write", real_write)  # space again: still nothing until the restart
    second = await put_and_wait(pipeline, "shares", raw(share("e2")))
    assert not second.acked and M1 not in pipeline.members
    assert summary(pipeline.to("rewards")) == [("points_earned", 5, "shares")]  # e1's, sent before the write
    assert pipeline.agent._crash_reason is None  # halted, not crashed (Faust would ack on a crash)


async def test_a_store_that_cannot_read_stops_the_pipeline_without_a_dead_letter(pipeline, monkeypatch):
    def broken(key):
        raise Exception("IO error: Input/output error")

    monkeypatch.setattr(pipeline.members, "read", broken)
    message = await put_and_wait(pipeline, "shares", raw(share("e1")))
    assert pipeline.failstop.failure.reason == "store" and not message.acked
    assert pipeline.sent == []  # its (processing_error) dead letter never went out: the batch was never sent


@pytest.mark.parametrize(("error", "reason"), [
    (MessageSizeTooLargeError(), "changelog"),
    (TopicAuthorizationFailedError("members-changelog"), "authorization"),
], ids=["too-large", "authorization"])
async def test_a_changelog_record_refused_for_good_stops_the_pipeline(pipeline, monkeypatch, error, reason):
    hand_off = pipeline.outgoing.sink.hand_off

    async def refusing(topic, partition, records):
        if topic == pipeline.members.changelog_topic.get_topic_name():
            raise error
        return await hand_off(topic, partition, records)

    monkeypatch.setattr(pipeline.outgoing.sink, "hand_off", refusing)
    message = await put_and_wait(pipeline, "shares", raw(share("e1")))
    assert pipeline.failstop.failure.reason == reason and not message.acked


async def test_an_output_topic_refusing_records_for_good_stops_the_pipeline_before_any_state_is_written(
        pipeline, monkeypatch):
    async def refusing(topic, partition, records):
        raise InvalidTopicError()

    monkeypatch.setattr(pipeline.outgoing.sink, "hand_off", refusing)
    message = await put_and_wait(pipeline, "shares", raw(share("e1")))
    assert pipeline.failstop.failure.reason == "output" and not message.acked
    assert M1 not in pipeline.members


async def test_a_failure_in_another_pipeline_stops_this_one_from_acking(pipeline):
    pipeline.failstop.fail("store", OSError("the devices store failed"))
    message = await put_and_wait(pipeline, "shares", raw(share("e1")))
    assert not message.acked and M1 not in pipeline.members and pipeline.sent == []


async def test_a_broken_due_message_is_dead_lettered_and_the_stream_goes_on(pipeline):
    await pipeline.put("shares", raw(share("e1")))
    before = pipeline.members.read(M1)

    bad = await pipeline.put("due", b"not json")
    await pipeline.put("shares", raw(share("e2")))

    [letter] = pipeline.to("dead-letters")
    assert (letter["topic"], letter["offset"], letter["error"], letter["detail"]) == (
        pipeline.names.name("due"), bad.offset, "processing_error", "JSONDecodeError")
    assert Member.from_dict(before).seen.hashes == [id_hash(x) for x in ["e1"]]
    assert pipeline.state_of().seen.hashes == [id_hash(x) for x in ["e1", "e2"]]
    assert pipeline.state_of().ledger.available == 10


# -- agents.schedule: due work --------------------------------------------------------------------

async def test_an_order_schedules_the_member_at_the_release_of_its_pending_lots(pipeline):
    await pipeline.put("orders", raw(order("o1")))

    assert len(pipeline.schedule) == 1
    assert pipeline.schedule.pop_due(RELEASE_AT_MS - 1) == []
    assert pipeline.schedule.pop_due(RELEASE_AT_MS) == [(M1, RELEASE_AT_MS)]


async def test_the_schedule_follows_the_next_due_work_and_drops_an_erased_member(pipeline):
    await pipeline.put("shares", raw(share("e1")))
    # a share's lot is available at once: the member is scheduled at the core's next due instant
    due_at = next_due(pipeline.state_of(), pipeline.program, PAID_AT_MS)
    assert due_at is not None and due_at > PAID_AT_MS
    assert pipeline.schedule.pop_due(due_at - 1) == []
    assert pipeline.schedule.pop_due(due_at) == [(M1, due_at)]

    erased = {"event_id": "x1", "member_id": "m1", "occurred_at": PAID_AT, "type": "member_erased"}
    await pipeline.put("shares", raw(share("e2")))
    await pipeline.put("members", raw(erased))
    assert len(pipeline.schedule) == 0


async def test_a_due_message_releases_pending_points(pipeline):
    await pipeline.put("orders", raw(order("o1")))
    del pipeline.sent[:]
    pipeline.changelog()

    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS}))

    member = pipeline.state_of()
    assert (member.ledger.available, member.ledger.pending) == (223, 0)
    rewards = pipeline.to("rewards")
    # lots release in (available_at, lot_id) order: "o1:first_order_bonus" < "o1:order"
    assert summary(rewards) == [("points_earned", 100, "first_order_bonus"), ("points_earned", 123, "order")]
    assert [r["details"] for r in rewards] == [{"released_from_pending": True}] * 2
    assert [r["source_event_id"] for r in rewards] == ["o1", "o1"]
    assert [r["balance"] for r in rewards] == [{"available": 100, "pending": 123}, {"available": 223, "pending": 0}]
    notifications = pipeline.to("notifications")
    assert [(n["template"], n["params"]) for n in notifications] == [
        ("points_earned", {"points": 100, "rule": "first_order_bonus"}),
        ("points_earned", {"points": 123, "rule": "order"})]
    assert {s.key for s in pipeline.sent} == {M1}
    assert pipeline.changelog() == [(M1, pipeline.members.read(M1))]
    # rescheduled at the core's next due instant after the release
    due_at = next_due(member, pipeline.program, RELEASE_AT_MS)
    assert due_at is not None and due_at > RELEASE_AT_MS
    assert pipeline.schedule.pop_due(due_at) == [(M1, due_at)]


async def test_an_early_due_message_changes_nothing(pipeline):
    await pipeline.put("orders", raw(order("o1")))
    before, sent_before = pipeline.members.read(M1), len(pipeline.sent)
    pipeline.changelog()

    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS - 1}))

    assert pipeline.members.read(M1) == before
    assert len(pipeline.sent) == sent_before
    assert pipeline.changelog() == []
    assert pipeline.schedule.pop_due(RELEASE_AT_MS) == [(M1, RELEASE_AT_MS)]


async def test_a_due_message_twice_releases_once(pipeline):
    await pipeline.put("orders", raw(order("o1")))
    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS}))
    after, sent_after = pipeline.members.read(M1), len(pipeline.sent)

    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS + 1}))

    assert pipeline.members.read(M1) == after
    assert len(pipeline.sent) == sent_after


async def test_a_due_message_for_an_unknown_member_unschedules_it(pipeline):
    pipeline.schedule.set(b"gone", RELEASE_AT_MS)

    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS}), key=b"gone")

    assert len(pipeline.schedule) == 0
    assert pipeline.sent == []
    assert b"gone" not in pipeline.members
    assert pipeline.changelog() == []


async def test_a_backlog_does_not_make_the_tick_send_a_member_again_while_its_due_message_is_in_flight(pipeline):
    """From a backlog every event leaves its member due in the wall clock's past: one message covers them."""
    now = RELEASE_AT_MS + 30 * DAY  # the wall clock, a month past the backlog
    await pipeline.put("orders", raw(order("o1")))
    assert pipeline.schedule.pop_due(now) == [(M1, RELEASE_AT_MS)]  # the tick sends a due message dated now
    for day in range(1, 4):  # the backlog's next events, applied while the message waits in the merge
        await pipeline.put("orders", raw(order(f"o{day + 1}", at=iso(PAID_AT_MS + day * DAY))))
        assert pipeline.schedule.pop_due(now) == []

    await pipeline.put("due", orjson.dumps({"at": now}))

    member = pipeline.state_of()
    assert (member.ledger.pending, member.evaluated_at) == (0, now)  # every order's return window done
    due_at = next_due(member, pipeline.program, now)
    assert due_at is not None and due_at > now
    assert pipeline.schedule.pop_due(due_at) == [(M1, due_at)]


async def test_a_member_whose_due_message_was_dead_lettered_is_scheduled_again_for_the_work_it_missed(pipeline):
    await pipeline.put("orders", raw(order("o1")))
    pipeline.schedule.pop_due(RELEASE_AT_MS + DAY)

    await pipeline.put("due", b"not json")  # it did none of the work: the member's clock did not move
    await pipeline.put("orders", raw(order("o2", at=iso(PAID_AT_MS + 1))))

    assert pipeline.schedule.pop_due(RELEASE_AT_MS + DAY) == [(M1, RELEASE_AT_MS)]


def entry(state: dict, due: int | None) -> tuple:
    """The index entry: due instant, tier, segment, points liability (available + pending), reserved."""
    ledger = Member.from_dict(state).ledger
    return due, state["tier"], state.get("segment"), ledger.available + ledger.pending, 0


def index_of(pipeline, key: bytes = M1) -> tuple | None:
    raw = pipeline.index.data.get(key)
    return None if raw is None else tuple(orjson.loads(raw))


def mark_indexed(pipeline) -> None:
    """Every partition's marker, as a worker of this release leaves it after its first rebuild."""
    for p in range(pipeline.parts.settings.partitions):
        pipeline.index.data[member_index.marker_key(p)] = pipeline.parts.member_index.stamp


async def test_the_index_follows_the_member_through_events_due_work_and_erasure(pipeline):
    await pipeline.put("orders", raw(order("o1")))
    state = pipeline.members.read(M1)
    assert index_of(pipeline) == entry(state, RELEASE_AT_MS)
    partition = partition_for(M1, pipeline.parts.settings.partitions)
    assert pipeline.index_changelog == [(partition, M1, orjson.dumps(entry(state, RELEASE_AT_MS)))]
    pipeline.index_changelog.clear()

    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS - 1}))  # nothing changes: nothing written
    assert pipeline.index_changelog == []

    await pipeline.put("due", orjson.dumps({"at": RELEASE_AT_MS}))  # released: the next due instant moves
    due_at = next_due(pipeline.state_of(), pipeline.program, RELEASE_AT_MS)
    assert due_at is not None and due_at > RELEASE_AT_MS
    assert index_of(pipeline) == entry(pipeline.members.read(M1), due_at)
    assert [key for _, key, _ in pipeline.index_changelog] == [M1]
    pipeline.index_changelog.clear()

    erased = {"event_id": "x1", "member_id": "m1", "occurred_at": PAID_AT, "type": "member_erased"}
    await pipeline.put("members", raw(erased))
    assert index_of(pipeline) is None and M1 not in pipeline.members
    assert pipeline.index_changelog == [(partition, M1, None)]


async def test_a_duplicate_writes_the_index_entry_again_with_the_state(pipeline):
    await pipeline.put("shares", raw(share("e1")))
    pipeline.index_changelog.clear()
    pipeline.changelog()

    await pipeline.put("shares", raw(share("e1")))  # a replay: the changelogs may lack both records

    assert [key for key, _ in pipeline.changelog()] == [M1]
    assert [key for _, key, _ in pipeline.index_changelog] == [M1]


async def test_rebuild_schedules_from_the_index_without_decoding_member_states(pipeline, monkeypatch):
    await pipeline.put("orders", raw(order("o1", member_id="m1")), key=b"m1")
    await pipeline.put("shares", raw(share("e1", member_id="m2")), key=b"m2")
    m2_due = next_due(pipeline.state_of(b"m2"), pipeline.program, PAID_AT_MS)
    mark_indexed(pipeline)
    for key in (b"m1", b"m2"):
        pipeline.members.data[key] = b"{not json"  # a rebuild that decoded a state would fail on it
    monkeypatch.setattr(Member, "from_dict", None)  # nor builds a Member
    errors_before = REGISTRY.get_sample_value("loyalty_due_errors_total")
    pipeline.due_work.rebalanced()  # the schedule starts over

    assert await pipeline.due_work.rebuild(int(time.time() * 1000))

    assert len(pipeline.schedule) == 2
    assert pipeline.schedule.pop_due(RELEASE_AT_MS) == [(b"m1", RELEASE_AT_MS)]
    assert pipeline.schedule.pop_due(m2_due) == [(b"m2", m2_due)]
    assert REGISTRY.get_sample_value("loyalty_due_errors_total") == errors_before
    assert pipeline.index_changelog[-1][1] == b"m2"  # nothing written by the rebuild


async def test_the_first_rebuild_after_the_upgrade_indexes_the_member_states_once(pipeline):
    await pipeline.put("orders", raw(order("o1", member_id="m1")), key=b"m1")
    await pipeline.put("shares", raw(share("e1", member_id="m2")), key=b"m2")
    for key in list(pipeline.index.data.keys()):  # states as the previous release left them: no index
        del pipeline.index.data[key]
    pipeline.members.data[b"broken"] = b'{"member_id": "broken"}'  # straight into the store: not a valid member
    pipeline.members.data[b"garbled"] = b"{not json"
    pipeline.index_changelog.clear()
    errors_before = REGISTRY.get_sample_value("loyalty_due_errors_total")
    now = PAID_AT_MS + 1
    pipeline.due_work.rebalanced()

    assert await pipeline.due_work.rebuild(now)

    m1, m2 = pipeline.members.read(b"m1"), pipeline.members.read(b"m2")
    m2_due = next_due(Member.from_dict(m2), pipeline.program, now)
    assert index_of(pipeline, b"m1") == entry(m1, RELEASE_AT_MS)
    assert index_of(pipeline, b"m2") == entry(m2, m2_due)
    assert index_of(pipeline, b"broken") is None and index_of(pipeline, b"garbled") is None
    assert REGISTRY.get_sample_value("loyalty_due_errors_total") == errors_before + 2
    n = pipeline.parts.settings.partitions
    written = {key: partition for partition, key, value in pipeline.index_changelog if value is not None}
    assert written == {b"m1": partition_for(b"m1", n), b"m2": partition_for(b"m2", n),
                       **{member_index.marker_key(p): p for p in range(n)}}
    assert pipeline.schedule.pop_due(RELEASE_AT_MS) == [(b"m1", RELEASE_AT_MS)]
    assert pipeline.schedule.pop_due(m2_due) == [(b"m2", m2_due)]

    pipeline.members.data[b"m1"] = b"{not json"  # indexed now: the next rebuild reads no state
    pipeline.index_changelog.clear()
    pipeline.due_work.rebalanced()
    assert await pipeline.due_work.rebuild(now)
    assert REGISTRY.get_sample_value("loyalty_due_errors_total") == errors_before + 2
    assert pipeline.index_changelog == []
    assert len(pipeline.schedule) == 2


async def test_a_partition_indexed_under_another_program_is_indexed_again(pipeline):
    await pipeline.put("orders", raw(order("o1", member_id="m1")), key=b"m1")
    mark_indexed(pipeline)
    partition = partition_for(b"m1", pipeline.parts.settings.partitions)
    pipeline.index.data[member_index.marker_key(partition)] = b"1:another-program"
    pipeline.index.data[b"m1"] = orjson.dumps([RELEASE_AT_MS + DAY, "bronze", None])  # as that program had it
    pipeline.index_changelog.clear()
    pipeline.due_work.rebalanced()

    assert await pipeline.due_work.rebuild(PAID_AT_MS + 1)

    assert index_of(pipeline, b"m1") == entry(pipeline.members.read(b"m1"), RELEASE_AT_MS)
    assert [(p, key) for p, key, _ in pipeline.index_changelog] == [
        (partition, b"m1"), (partition, member_index.marker_key(partition))]
    assert pipeline.schedule.pop_due(RELEASE_AT_MS) == [(b"m1", RELEASE_AT_MS)]


async def test_a_rebalance_starts_the_schedule_over_and_asks_for_a_rebuild():
    parts = build_test_parts()
    work = schedule.register(parts.app, parts)
    assert await work.rebuild(PAID_AT_MS)  # nothing owned yet
    parts.schedule.set(b"m1", 5)
    work.needs_rebuild = False

    await parts.app.on_partitions_revoked.send({TP("x", 0)})  # as Faust sends it at a rebalance's start

    assert (len(parts.schedule), parts.schedule.rebuilding) == (0, True)
    work.needs_rebuild = False
    await parts.app.on_rebalance_complete.send()
    assert work.needs_rebuild


async def test_a_rebuild_yields_to_the_event_loop_and_stops_at_a_rebalance(pipeline, monkeypatch):
    mark_indexed(pipeline)
    for i in range(3000):
        pipeline.index.data[b"x%d" % i] = orjson.dumps([RELEASE_AT_MS + i, "bronze", "new"])
    monkeypatch.setattr(member_index_agent, "STEP_SECONDS", 0.0)  # a step ends at every clock check

    assert await pipeline.due_work.rebuild(PAID_AT_MS)
    pacer = pipeline.parts.member_index.last_pacer
    assert pacer.steps >= 3000 // member_index_agent.CHECK_EVERY
    assert len(pipeline.schedule) == 3000

    rebalancing = itertools.chain([False] * 5, itertools.repeat(True))
    monkeypatch.setattr(type(pipeline.app), "rebalancing", property(lambda app: next(rebalancing)))
    pipeline.schedule.set(b"x0", 1)  # the agent, during the rebuild's first steps
    pipeline.due_work.rebalanced()
    pipeline.schedule.set(b"x1", 2)
    assert not await pipeline.due_work.rebuild(PAID_AT_MS)
    assert pipeline.schedule.rebuilding  # the next rebuild still keeps what the agent set
    assert pipeline.schedule.pop_due(2) == [(b"x1", 2)]


async def test_the_due_timer_sends_due_members_to_the_due_topic(pipeline, monkeypatch):
    recovered = asyncio.Event()
    recovered.set()
    monkeypatch.setattr(pipeline.app.tables.recovery, "completed", recovered)
    pipeline.due_work.needs_rebuild = False
    later = int(time.time() * 1000) + DAY
    pipeline.schedule.set(b"m1", 1000)
    pipeline.schedule.set(b"m2", later)
    tick = pipeline.due_work.tick  # the timer body, without Faust's timer loop

    before = int(time.time() * 1000)
    await tick()
    after = int(time.time() * 1000)

    [due] = pipeline.sent
    assert (due.kind, due.key) == ("due", b"m1")
    assert before <= due.json["at"] <= after
    assert pipeline.schedule.pop_due(later) == [(b"m2", later)]


async def test_the_members_recount_counts_by_tier_and_segment_and_skips_unreadable_values(pipeline):
    await pipeline.put("orders", raw(order("o1", member_id="m1")), key=b"m1")
    await pipeline.put("shares", raw(share("e1", member_id="m2")), key=b"m2")
    pipeline.members.data[b"garbled"] = b"{not json"  # no entry: counted by neither

    assert await pipeline.observer.recount_members()

    assert REGISTRY.get_sample_value("loyalty_members_by_tier", {"tier": "bronze"}) == 2
    segments = {s: REGISTRY.get_sample_value("loyalty_members_by_segment", {"segment": s}) or 0
                for s in ("new", "active", "unassigned")}
    assert sum(segments.values()) == 2


async def test_the_members_recount_reads_the_index_not_the_member_states(pipeline):
    await pipeline.put("orders", raw(order("o1", member_id="m1")), key=b"m1")
    mark_indexed(pipeline)
    pipeline.index.data[b"m2"] = orjson.dumps([None, "gold", "loyal"])
    pipeline.members.data[b"m1"] = b"{not json"

    assert await pipeline.observer.recount_members()

    assert REGISTRY.get_sample_value("loyalty_members_by_tier", {"tier": "bronze"}) == 1
    assert REGISTRY.get_sample_value("loyalty_members_by_tier", {"tier": "gold"}) == 1
    assert REGISTRY.get_sample_value("loyalty_members_by_segment", {"segment": "loyal"}) == 1


async def test_the_tier_and_segment_gauges_follow_each_change_between_recounts(pipeline):
    def gauge(name: str, label: str, value: str) -> float:
        return REGISTRY.get_sample_value(name, {label: value}) or 0

    bronze = gauge("loyalty_members_by_tier", "tier", "bronze")
    await pipeline.put("shares", raw(share("e1", member_id="m9")), key=b"m9")  # a new member
    assert gauge("loyalty_members_by_tier", "tier", "bronze") == bronze + 1

    await pipeline.put("shares", raw(share("e2", member_id="m9")), key=b"m9")  # same tier: no move
    erased = {"event_id": "x1", "member_id": "m9", "occurred_at": PAID_AT, "type": "member_erased"}
    await pipeline.put("members", raw(erased), key=b"m9")
    assert gauge("loyalty_members_by_tier", "tier", "bronze") == bronze


async def test_an_app_built_with_another_program_applies_that_program(monkeypatch):
    generous = parse_program(default_program_text().replace("[shares]\npoints = 5", "[shares]\npoints = 40"))
    async for pipeline in run_pipeline(monkeypatch, generous):
        await pipeline.put("shares", raw(share("e1")))
        assert pipeline.state_of().ledger.available == 40
        assert summary(pipeline.to("rewards")) == [("points_earned", 40, "shares")]


async def test_a_failure_outside_the_per_event_handling_stops_the_pipeline_and_acks_nothing(pipeline, monkeypatch):
    """Here the dead-lettering of a failed event fails too: the batch escapes the per-event handling.
    Faust would restart the agent on the next events, and a later commit could pass these."""
    def failing(*args):
        raise RuntimeError("the core failed")

    def no_dead_letter(*args):
        raise RuntimeError("the dead letter failed too")

    monkeypatch.setattr(agents.process, "apply_event_at", failing)
    monkeypatch.setattr(pipeline.parts.emitter, "dead_letter", no_dead_letter)
    message = await put_and_wait(pipeline, "shares", raw(share("e1")))
    assert pipeline.failstop.failure.reason == "internal" and not message.acked
    assert M1 not in pipeline.members and pipeline.sent == []


async def test_an_event_older_than_the_dedupe_window_is_dead_lettered_stale_and_changes_nothing(pipeline):
    """The packaged program remembers event ids for dedupe.window (P30D) behind the member's clock."""
    later = datetime.fromtimestamp(PAID_AT_MS / 1000 + 40 * 86_400).astimezone().isoformat()
    await pipeline.put("shares", raw(share("e1", at=later)))
    before = pipeline.state_of().to_dict()
    old = await pipeline.put("shares", raw(share("e0")))  # forty days older than the member's clock
    [letter] = pipeline.to("dead-letters")
    assert (letter["error"], letter["offset"]) == ("stale", old.offset)
    assert pipeline.state_of().to_dict() == before
    assert [r["source_event_id"] for r in pipeline.to("rewards")] == ["e1"]


# -- referral messages (stream_app/core/referrals.py) -------------------------------------------------

def claim_for(referrer: str, friend: str = "f1") -> dict:
    return {"type": "referral_claimed", "event_id": "rc-1", "member_id": referrer, "friend_id": friend,
            "order_id": "o1", "occurred_at": PAID_AT, "devices": []}


async def test_a_claim_for_a_member_without_a_state_is_answered_referrer_unknown_on_the_friends_key(pipeline):
    await pipeline.put("referrals", raw(claim_for("ghost")), key=b"ghost")
    [reply] = [s for s in pipeline.sent if s.kind == "referrals"]
    assert reply.key == b"f1"
    assert {k: reply.json[k] for k in ("type", "member_id", "claim_id", "accepted", "reason")} == {
        "type": "referral_decided", "member_id": "f1", "claim_id": "rc-1", "accepted": False,
        "reason": "referrer_unknown"}
    assert b"ghost" not in pipeline.members


async def test_a_referral_message_keyed_by_another_member_is_dead_lettered(pipeline):
    await pipeline.put("referrals", raw(claim_for("m2")), key=M1)
    [letter] = pipeline.to("dead-letters")
    assert (letter["error"], letter["detail"]) == ("processing_error", "ValueError")
    assert [s for s in pipeline.sent if s.kind == "referrals"] == []

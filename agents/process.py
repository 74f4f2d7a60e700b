"""The processing agent: decode, apply the loyalty core, write the member table, emit events.

One agent with concurrency 1 consumes every input topic and the internal due topic, so a
member's events and due work are applied in partition order by a single writer. It takes the
events in batches (agents/batch.py: outputs delivered first, then one table write per changed
member). Any failure in one event dead-letters that event and the batch goes on (an exception
escaping a Faust agent would ack the message silently).
"""
from __future__ import annotations

import time

import faust
import orjson

from agents.batch import BatchPipeline, BatchStates
from agents.intake import OrderedIntake
from agents.observe import member_changed
from stream_app import metrics
from stream_app.core.engine import event_time_ms
from stream_app.core.outcomes import DUPLICATE, STALE
from stream_app.core.privacy import scrub
from stream_app.core.versioned import advance_at, apply_event_at, apply_message_at, apply_reply_at
from stream_app.parts import Parts
from tables import member_index
from topics.event_time import event_time_ms as message_time_ms
from topics.outgoing import partition_for
from topics.validation import Rejection, decode_event

#: The agent's name since the first release (the module path Faust used to derive it): kept as is.
AGENT_NAME = "agents.process.process"


class MemberProcessor:
    """What the agent does with each event of a batch."""

    def __init__(self, parts: Parts) -> None:
        self.versions, self.pii_key = parts.versions, parts.settings.pii_key
        self.emit, self.outgoing = parts.emitter, parts.outgoing
        self.schedule, self.projection = parts.schedule, parts.projection
        self.kind_of_topic = {**parts.names.inputs, parts.names.name("due"): "due",
                              parts.names.name("referrals"): "referrals",
                              parts.names.name("reward-replies"): "reward-replies"}
        self.partitions = parts.settings.partitions  # every topic has this many (docs/configuration.md)

    def apply(self, states: BatchStates, event) -> int | None:
        kind = self.kind_of_topic.get(event.message.topic, "unknown")
        if kind == "unknown":
            raise LookupError(f"no handler for topic {event.message.topic}")
        if kind == "due":
            self._due(states, event)
            return None
        if kind == "referrals":
            self._referral(states, event)
            return None
        if kind == "reward-replies":
            self._reply(states, event)
            return None
        return self._input(states, kind, event)

    def event_time(self, event) -> int | None:
        """What the event-time merge orders by: the event's occurred_at, a due message's at (ms)."""
        return message_time_ms(self.kind_of_topic.get(event.message.topic, ""), event.message.value)

    def failed(self, event, exc: Exception) -> None:
        metrics.count_event(self.kind_of_topic.get(event.message.topic, "unknown"), "dead_lettered")
        self.emit.dead_letter(event.message, "processing_error", type(exc).__name__)

    @staticmethod
    def observe_latency(occurred: list[int]) -> None:
        """From each event's occurred_at (ms) to its outputs being handed to the producer."""
        now = time.time()
        for occurred_at in occurred:
            metrics.LATENCY.observe(max(0.0, now - occurred_at / 1000))

    def _input(self, states: BatchStates, kind: str, event) -> int | None:
        """Apply one input event; its occurred_at (ms) if it reached the core."""
        message = event.message
        decoded = decode_event(kind, message.key, message.value, now_ms=int(time.time() * 1000))
        if isinstance(decoded, Rejection):
            metrics.count_event(kind, "dead_lettered")
            self.emit.dead_letter(message, decoded.code, decoded.detail)
            return None
        member_key = decoded["member_id"].encode()
        if not message.key:
            # Keyless: send it back keyed by member so it lands in the member's own partition.
            self.outgoing.add(message.topic, member_key, message.value)
            metrics.count_event(kind, "rekeyed")
            return None
        if partition_for(member_key, self.partitions) != message.partition:
            # Another partitioner put it here (e.g. librdkafka's CRC32): applying it here would give the
            # member a second state. Send it on, unchanged, to the member's partition (murmur2).
            self.outgoing.add(message.topic, message.key, message.value)
            metrics.count_event(kind, "forwarded")
            return None
        before = states.get(member_key)
        result = apply_event_at(before, scrub(decoded, self.pii_key), self.versions)
        if result.outcome in (DUPLICATE, STALE):
            states.keep(member_key, event)
            if result.outcome == STALE:
                self.emit.dead_letter(message, "stale", "occurred_at is older than the member's duplicate-detection "
                                                        "horizon (dedupe.window): it cannot be told from a re-sent "
                                                        "event")
            self.schedule.set(member_key, result.next_due)
            self._index(states, member_key, result.state, result.next_due, event, again=True)
        else:
            self._take(states, member_key, before, result, event, changed=True)
        metrics.count_event(kind, result.outcome)
        if result.late:
            metrics.labelled(metrics.EVENTS_LATE, kind).inc()
        return event_time_ms(decoded)

    def _reply(self, states: BatchStates, event) -> None:
        """The reward agent's answer to a reservation: applied in the member's partition (docs/rewards.md)."""
        key = event.message.key
        state = states.get(key)
        result = apply_reply_at(state, orjson.loads(event.message.value), self.versions)
        self._take(states, key, state, result, event)
        metrics.count_event("reward-replies", result.outcome)

    def _due(self, states: BatchStates, event) -> None:
        key = event.message.key
        self.schedule.arrived(key)  # first: whatever follows (a broken message raises), it is no longer in flight
        state = states.get(key)
        if state is None:
            self.schedule.set(key, None)
            self._index(states, key, None, None, event)
            return
        self._take(states, key, state, advance_at(state, self.versions, orjson.loads(event.message.value)["at"]),
                   event)

    def _take(self, states: BatchStates, key: bytes, before: dict | None, result, event,
              changed: bool | None = None) -> None:
        """What every message the core applied does with its result: its outputs, its state when it
        changed (table, tier and segment gauges, projection; an applied input event always writes, an
        erasure of a member never seen too), the schedule and the index entry. A member that neither was
        nor is (an answer for an unknown or erased member) is neither scheduled nor indexed."""
        self.emit.outputs(key, result)
        if result.state is not before if changed is None else changed:
            states.put(key, result.state, event)
            member_changed(before, result.state)
            self.projection.member_changed(key, result.state)
        if before is not None or result.state is not None or changed:
            self.schedule.set(key, result.next_due)
            self._index(states, key, result.state, result.next_due, event)

    @staticmethod
    def _index(states: BatchStates, key: bytes, state: dict | None, due: int | None, event,
               again: bool = False) -> None:
        """Keep the member's index entry (tables/member_index.py) with its state: written in the same
        batch when its next due instant, tier or segment changed, deleted with the member, and written
        again with a state `keep` writes again (`again`: the changelog may lack both)."""
        entry = member_index.entry_of(state, due)
        encoded = None if entry is None else member_index.encode(entry)
        if again or encoded != states.index_entry(key, event.message.partition):
            states.put_index(key, encoded, event)

    def _referral(self, states: BatchStates, event) -> None:
        """A referral message from another member's partition (stream_app/core/referrals.py); malformed
        ones raise, so `failed` dead-letters them."""
        key, message = event.message.key, orjson.loads(event.message.value)
        if message["member_id"].encode() != key:
            raise ValueError("referral message keyed by another member")
        state = states.get(key)
        result = apply_message_at(state, message, self.versions)
        self._take(states, key, state, result, event)
        metrics.count_event("referrals", result.outcome)


def register(app: faust.App, parts: Parts) -> MemberProcessor:
    """Add the processing agent to `app`; returns what it applies each event with."""
    processor = MemberProcessor(parts)
    pipeline = BatchPipeline(parts.members, parts.outgoing, parts.changelogs, parts.failstop,
                             index=parts.member_index.table)
    # The reward agents' answers are merged in by their time, but nothing waits for their topic: an answer
    # always follows its own request, and a burst of them (a flash sale) must not hold the member's other
    # events for the merge's stall time (docs/rewards.md).
    synchronized = [topic for topic, kind in processor.kind_of_topic.items() if kind != "reward-replies"]
    intake = processor.intake = OrderedIntake(app, synchronized, parts.settings.order_grace_seconds,
                                              processor.event_time)

    async def process(stream) -> None:
        await pipeline.consume(stream, processor.apply, processor.failed, processor.observe_latency, intake)

    app.agent(parts.topics.consumed, name=AGENT_NAME, concurrency=1)(process)
    return processor

"""The processing agent: decode, apply the loyalty core, write the member table, emit events.

One agent with concurrency 1 consumes every input topic and the internal due topic, so a
member's events and due work are applied in partition order by a single writer. It takes the
events in batches (agents/batch.py: outputs delivered first, then one table write per changed
member). Any failure in one event dead-letters that event and the batch goes on (an exception
escaping a Faust agent would ack the message silently).
"""
from __future__ import annotations

import time

import orjson

from agents.batch import BatchPipeline, BatchStates
from agents.emit import emit_dead_letter, emit_outputs
from agents.intake import OrderedIntake
from agents.observe import member_changed
from agents.schedule import schedule
from stream_app import metrics
from stream_app.app import app, program, settings, topic_names
from stream_app.core.engine import advance, apply_event, event_time_ms
from stream_app.core.outcomes import DUPLICATE
from stream_app.core.privacy import scrub
from tables.members import members
from tables.redis_projection import projection
from topics.channels import changelogs, consumed, declare_all, outgoing
from topics.event_time import event_time_ms as message_time_ms
from topics.validation import Rejection, decode_event

KIND_OF_TOPIC = {**topic_names.inputs, topic_names.name("due"): "due"}
pipeline = BatchPipeline(members, outgoing, changelogs)


def _event_time(event) -> int | None:
    """What the event-time merge orders by: the event's occurred_at, a due message's at (ms)."""
    return message_time_ms(KIND_OF_TOPIC.get(event.message.topic, ""), event.message.value)


intake = OrderedIntake(app, list(KIND_OF_TOPIC), settings.order_grace_seconds, _event_time)


@app.agent(consumed, concurrency=1)
async def process(stream) -> None:
    await declare_all()
    await pipeline.consume(stream, _apply, _failed, _observe_latency, intake)


def _apply(states: BatchStates, event) -> int | None:
    kind = KIND_OF_TOPIC.get(event.message.topic, "unknown")
    if kind == "unknown":
        raise LookupError(f"no handler for topic {event.message.topic}")
    if kind == "due":
        _due(states, event)
        return None
    return _input(states, kind, event)


def _failed(event, exc: Exception) -> None:
    metrics.count_event(KIND_OF_TOPIC.get(event.message.topic, "unknown"), "dead_lettered")
    emit_dead_letter(event.message, "processing_error", type(exc).__name__)


def _observe_latency(occurred: list[int]) -> None:
    """From each event's occurred_at (ms) to its outputs being handed to the producer."""
    now = time.time()
    for occurred_at in occurred:
        metrics.LATENCY.observe(max(0.0, now - occurred_at / 1000))


def _input(states: BatchStates, kind: str, event) -> int | None:
    """Apply one input event; its occurred_at (ms) if it reached the core."""
    message = event.message
    decoded = decode_event(kind, message.key, message.value)
    if isinstance(decoded, Rejection):
        metrics.count_event(kind, "dead_lettered")
        emit_dead_letter(message, decoded.code, decoded.detail)
        return None
    member_key = decoded["member_id"].encode()
    if not message.key:
        # Keyless: send it back keyed by member so it lands in the member's own partition.
        outgoing.add(message.topic, member_key, message.value)
        metrics.count_event(kind, "rekeyed")
        return None
    before = states.get(member_key)
    result = apply_event(before, scrub(decoded, settings.pii_key), program)
    if result.outcome == DUPLICATE:
        states.keep(member_key, event)
    else:
        emit_outputs(member_key, result)
        states.put(member_key, result.state, event)
        member_changed(before, result.state)
        projection.member_changed(member_key, result.state)
    schedule.set(member_key, result.next_due)
    metrics.count_event(kind, result.outcome)
    if result.late:
        metrics.labelled(metrics.EVENTS_LATE, kind).inc()
    return event_time_ms(decoded)


def _due(states: BatchStates, event) -> None:
    key = event.message.key
    state = states.get(key)
    if state is None:
        schedule.set(key, None)
        return
    result = advance(state, program, orjson.loads(event.message.value)["at"])
    if result.state is not state:
        emit_outputs(key, result)
        states.put(key, result.state, event)
        member_changed(state, result.state)
        projection.member_changed(key, result.state)
    schedule.set(key, result.next_due)

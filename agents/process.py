"""The processing agent: decode, apply the loyalty core, write the member table, emit events.

One agent with concurrency 1 consumes every input topic and the internal due topic, so a
member's events and due work are applied in partition order by a single writer. Any failure
in one event dead-letters that event and the stream goes on (an exception escaping a Faust
agent would ack the message silently).
"""
from __future__ import annotations

import logging
import time

import orjson

from agents.emit import emit_dead_letter, emit_outputs, outputs_of
from agents.outbox import outbox
from agents.schedule import schedule
from stream_app import metrics
from stream_app.app import app, program, settings, topic_names
from stream_app.engine import DUPLICATE, advance, apply_event, event_time_ms
from stream_app.privacy import scrub
from tables.members import members
from tables.redis_projection import projection
from topics.channels import consumed, declare_all, produced
from topics.validation import Rejection, decode_event

log = logging.getLogger(__name__)
KIND_OF_TOPIC = {**topic_names.inputs, topic_names.name("due"): "due"}


@app.agent(consumed, concurrency=1)
async def process(stream) -> None:
    await declare_all()
    async for event in stream.events():
        message = event.message
        kind = KIND_OF_TOPIC.get(message.topic, "unknown")
        try:
            if kind == "unknown":
                raise LookupError(f"no handler for topic {message.topic}")
            if kind == "due":
                await _due(message.key, message.value)
            else:
                await _input(kind, message)
        except Exception as exc:  # one event's failure must not stop the stream
            log.exception("processing failed: topic=%s partition=%s offset=%s",
                          message.topic, message.partition, message.offset)
            metrics.EVENTS.labels(kind, "dead_lettered").inc()
            await emit_dead_letter(message, "processing_error", type(exc).__name__)


async def _input(kind: str, message) -> None:
    decoded = decode_event(kind, message.key, message.value)
    if isinstance(decoded, Rejection):
        metrics.EVENTS.labels(kind, "dead_lettered").inc()
        await emit_dead_letter(message, decoded.code, decoded.detail)
        return
    member_key = decoded["member_id"].encode()
    if not message.key:
        # Keyless: send it back keyed by member so it lands in the member's own partition.
        await produced[kind].send(key=member_key, value=message.value)
        metrics.EVENTS.labels(kind, "rekeyed").inc()
        return
    state = members.get(member_key)
    result = apply_event(state, scrub(decoded, settings.pii_key), program)
    cause = decoded["event_id"]
    if result.outcome == DUPLICATE:
        recorded = outbox.recorded(state, cause)
        if recorded:  # applied before a crash, its outputs maybe never sent: send them again
            await emit_outputs(member_key, cause, recorded, count=False)
    else:
        outputs = outputs_of(result)
        if result.state is None:
            members.pop(member_key, None)
        else:
            # Assigned back (never mutated in place): this is what reaches the changelog.
            members[member_key] = outbox.attach(result.state, state, cause, outputs)
        projection.member_changed(member_key, result.state)
        await emit_outputs(member_key, cause, outputs)
    schedule.set(member_key, result.next_due)
    metrics.EVENTS.labels(kind, result.outcome).inc()
    metrics.LATENCY.observe(max(0.0, time.time() - event_time_ms(decoded) / 1000))


async def _due(key: bytes, value: bytes) -> None:
    state = members.get(key)
    if state is None:
        schedule.set(key, None)
        return
    at = orjson.loads(value)["at"]
    cause = f"due:{at}"
    result = advance(state, program, at)
    if result.state is not state:
        outputs = outputs_of(result)
        members[key] = outbox.attach(result.state, state, cause, outputs)
        projection.member_changed(key, result.state)
        await emit_outputs(key, cause, outputs)
    elif recorded := outbox.recorded(state, cause):
        await emit_outputs(key, cause, recorded, count=False)
    schedule.set(key, result.next_due)

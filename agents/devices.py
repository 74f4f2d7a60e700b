"""The device agent: keeps the device index and flags referrals that share a device.

Fed by the processing agent on the internal devices topic (keyed by device hash); flags go out
as `member_flagged` admin events keyed by the flagged member, so that member's own partition
applies them.
"""
from __future__ import annotations

from datetime import UTC, datetime

import orjson

from agents.batch import BatchPipeline, BatchStates
from agents.emit import emit_dead_letter
from stream_app import metrics
from stream_app.app import app, failstop, topic_names
from stream_app.core.device_index import RULE, apply_link
from stream_app.core.emitted import stable_id
from tables.devices import devices
from topics.channels import changelogs, outgoing, raw_topic

device_links = raw_topic("devices")
ADMIN = topic_names.name("admin")
pipeline = BatchPipeline(devices, outgoing, changelogs, failstop)


@app.agent(device_links, concurrency=1)
async def index_devices(stream) -> None:
    await pipeline.consume(stream, _link, _failed)


def _failed(event, exc: Exception) -> None:
    metrics.count_event("devices", "dead_lettered")
    emit_dead_letter(event.message, "processing_error", type(exc).__name__)


def _link(states: BatchStates, event) -> None:
    key = event.message.key
    entry, flags = apply_link(states.get(key) or {}, orjson.loads(event.message.value))
    states.put(key, entry or None, event)
    metrics.count_event("devices", "applied")
    for member_id, evidence in flags:
        flag = {"event_id": stable_id("flag", member_id, RULE, evidence["device"], evidence["referrer_id"]),
                "member_id": member_id, "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "type": "member_flagged", "operator_id": "abuse-monitor", "reason": RULE, "rule": RULE,
                "evidence": evidence}
        outgoing.add(ADMIN, member_id.encode(), orjson.dumps(flag))

"""The device agent: keeps the device index and flags referrals that share a device.

Fed by the processing agent on the internal devices topic (keyed by device hash); flags go out
as `member_flagged` admin events keyed by the flagged member, so that member's own partition
applies them.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

from agents.emit import emit_dead_letter
from stream_app import metrics
from stream_app.app import app
from stream_app.devices import RULE, apply_link
from stream_app.outputs import stable_id
from tables.devices import devices
from topics.channels import produced, raw_topic

log = logging.getLogger(__name__)
device_links = raw_topic("devices")


@app.agent(device_links, concurrency=1)
async def index_devices(stream) -> None:
    async for event in stream.events():
        message = event.message
        try:
            await _link(message.key, orjson.loads(message.value))
        except Exception as exc:  # one bad link must not stop the index
            log.exception("device link failed: partition=%s offset=%s", message.partition, message.offset)
            metrics.EVENTS.labels("devices", "dead_lettered").inc()
            await emit_dead_letter(message, "processing_error", type(exc).__name__)


async def _link(key: bytes, link: dict) -> None:
    entry, flags = apply_link(devices.get(key) or {}, link)
    if entry:
        devices[key] = entry
    else:
        devices.pop(key, None)
    metrics.EVENTS.labels("devices", "applied").inc()
    for member_id, evidence in flags:
        flag = {"event_id": stable_id("flag", member_id, RULE, evidence["device"], evidence["referrer_id"]),
                "member_id": member_id, "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "type": "member_flagged", "operator_id": "abuse-monitor", "reason": RULE, "rule": RULE,
                "evidence": evidence}
        await produced["admin"].send(key=member_id.encode(), value=orjson.dumps(flag))

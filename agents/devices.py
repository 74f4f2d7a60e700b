"""The device agent: keeps the device index and flags referrals that share a device.

Fed by the processing agent on the internal devices topic (keyed by device hash); flags go out
as `member_flagged` admin events keyed by the flagged member, so that member's own partition
applies them.
"""
from __future__ import annotations

from datetime import UTC, datetime

import faust
import orjson

from agents.batch import BatchPipeline, BatchStates
from stream_app import metrics
from stream_app.core.device_index import apply_link, flag_event
from stream_app.parts import Parts

#: The agent's name since the first release (the module path Faust used to derive it): kept as is.
AGENT_NAME = "agents.devices.index_devices"


class DeviceIndexer:
    def __init__(self, parts: Parts) -> None:
        self.outgoing, self.emit = parts.outgoing, parts.emitter
        self.admin = parts.names.name("admin")

    def failed(self, event, exc: Exception) -> None:
        metrics.count_event("devices", "dead_lettered")
        self.emit.dead_letter(event.message, "processing_error", type(exc).__name__)

    def link(self, states: BatchStates, event) -> None:
        key = event.message.key
        entry, flags = apply_link(states.get(key) or {}, orjson.loads(event.message.value))
        states.put(key, entry or None, event)
        metrics.count_event("devices", "applied")
        for member_id, evidence in flags:
            flag = flag_event(member_id, evidence, datetime.now(UTC).isoformat(timespec="milliseconds"))
            self.outgoing.add(self.admin, member_id.encode(), orjson.dumps(flag))


def register(app: faust.App, parts: Parts) -> DeviceIndexer:
    indexer = DeviceIndexer(parts)
    pipeline = BatchPipeline(parts.devices, parts.outgoing, parts.changelogs, parts.failstop)

    async def index_devices(stream) -> None:
        await pipeline.consume(stream, indexer.link, indexer.failed)

    app.agent(parts.topics.raw("devices"), name=AGENT_NAME, concurrency=1)(index_devices)
    return indexer

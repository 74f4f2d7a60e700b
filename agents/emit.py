"""Adding the core's outputs and dead letters to the outgoing batch (topics/outgoing.py)."""
from __future__ import annotations

from datetime import UTC, datetime

import orjson

from stream_app import metrics
from stream_app.core.engine import Result
from topics.catalog import TopicNames
from topics.dead_letters import dead_letter
from topics.outgoing import OutgoingBatches


class Emitter:
    """Rewards and notifications keyed by member, device links keyed by device, dead letters as they came."""

    def __init__(self, outgoing: OutgoingBatches, names: TopicNames) -> None:
        self.outgoing = outgoing
        self.rewards, self.notifications, self.devices, self.dead_letters = (
            names.name(kind) for kind in ("rewards", "notifications", "devices", "dead-letters"))

    def outputs(self, key: bytes, result: Result) -> None:
        for reward in result.rewards:
            self.outgoing.add(self.rewards, key, orjson.dumps(reward))
            metrics.count_reward(reward)
        for notification in result.notifications:
            self.outgoing.add(self.notifications, key, orjson.dumps(notification))
        for link in result.device_links:
            self.outgoing.add(self.devices, link["device"].encode(), orjson.dumps(link))

    def dead_letter(self, message, code: str, detail: str) -> None:
        record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                             code, detail, datetime.now(UTC).isoformat(timespec="milliseconds"))
        metrics.DEAD_LETTERS.labels(code).inc()
        self.outgoing.add(self.dead_letters, message.key, orjson.dumps(record))

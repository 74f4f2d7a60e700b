"""Adding the core's outputs and dead letters to the outgoing batch (topics/outgoing.py)."""
from __future__ import annotations

from datetime import UTC, datetime

import orjson

from stream_app import metrics
from stream_app.app import topic_names
from stream_app.core.engine import Result
from topics.channels import outgoing
from topics.dead_letters import dead_letter

REWARDS, NOTIFICATIONS, DEVICES, DEAD_LETTERS = (
    topic_names.name(kind) for kind in ("rewards", "notifications", "devices", "dead-letters"))


def emit_outputs(key: bytes, result: Result) -> None:
    """Rewards and notifications keyed by member, device links keyed by device."""
    for reward in result.rewards:
        outgoing.add(REWARDS, key, orjson.dumps(reward))
        metrics.count_reward(reward)
    for notification in result.notifications:
        outgoing.add(NOTIFICATIONS, key, orjson.dumps(notification))
    for link in result.device_links:
        outgoing.add(DEVICES, link["device"].encode(), orjson.dumps(link))


def emit_dead_letter(message, code: str, detail: str) -> None:
    record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                         code, detail, datetime.now(UTC).isoformat(timespec="milliseconds"))
    metrics.DEAD_LETTERS.labels(code).inc()
    outgoing.add(DEAD_LETTERS, message.key, orjson.dumps(record))

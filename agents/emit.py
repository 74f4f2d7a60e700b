"""Sending the core's outputs and dead letters to their topics."""
from __future__ import annotations

from datetime import UTC, datetime

import orjson

from stream_app import metrics
from stream_app.engine import Result
from topics.channels import produced
from topics.dead_letters import dead_letter


async def emit_result(key: bytes, result: Result) -> None:
    """Send the reward and notification events of one core result, keyed by member."""
    for reward in result.rewards:
        await produced["rewards"].send(key=key, value=orjson.dumps(reward))
        metrics.count_reward(reward)
    for notification in result.notifications:
        await produced["notifications"].send(key=key, value=orjson.dumps(notification))
    for link in result.device_links:
        await produced["devices"].send(key=link["device"].encode(), value=orjson.dumps(link))


async def emit_dead_letter(message, code: str, detail: str) -> None:
    record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                         code, detail, datetime.now(UTC).isoformat(timespec="milliseconds"))
    metrics.DEAD_LETTERS.labels(code).inc()
    await produced["dead-letters"].send(key=message.key, value=orjson.dumps(record))

"""Sending the core's outputs and dead letters to their topics."""
from __future__ import annotations

from datetime import UTC, datetime

import orjson

from agents.outbox import outbox
from stream_app import metrics
from stream_app.engine import Result
from topics.channels import produced
from topics.dead_letters import dead_letter


def outputs_of(result: Result) -> dict:
    """The outputs of one core result, as stored in the outbox."""
    return {"rewards": result.rewards, "notifications": result.notifications, "device_links": result.device_links}


async def emit_outputs(key: bytes, cause: str, outputs: dict, count: bool = True) -> None:
    """Send rewards, notifications and device links keyed by member (links by device), and have the
    outbox confirm `cause` once the broker acknowledged them all."""
    deliveries = []
    for reward in outputs["rewards"]:
        deliveries.append(await produced["rewards"].send(key=key, value=orjson.dumps(reward)))
        if count:
            metrics.count_reward(reward)
    for notification in outputs["notifications"]:
        deliveries.append(await produced["notifications"].send(key=key, value=orjson.dumps(notification)))
    for link in outputs["device_links"]:
        deliveries.append(await produced["devices"].send(key=link["device"].encode(), value=orjson.dumps(link)))
    outbox.confirm_when_delivered(cause, deliveries)


async def emit_dead_letter(message, code: str, detail: str) -> None:
    record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                         code, detail, datetime.now(UTC).isoformat(timespec="milliseconds"))
    metrics.DEAD_LETTERS.labels(code).inc()
    await produced["dead-letters"].send(key=message.key, value=orjson.dumps(record))

"""Adding the core's outputs and dead letters to the outgoing batch (topics/outgoing.py).

An output too large to send (topics/outgoing.py MAX_RECORD_BYTES) is replaced by a dead letter
`output_too_large` for the event being processed: the member's state keeps the change, and the
event can be fetched from its topic, partition and offset to see what it produced.
"""
from __future__ import annotations

from datetime import UTC, datetime

import orjson
from faust.streams import current_event

from stream_app import metrics
from stream_app.core.engine import Result
from topics.catalog import TopicNames
from topics.dead_letters import dead_letter, dead_letter_key
from topics.outgoing import MAX_RECORD_BYTES, DeliveryFailed, OutgoingBatches


class Emitter:
    """Rewards and notifications keyed by member, device links keyed by device, dead letters as they came."""

    def __init__(self, outgoing: OutgoingBatches, names: TopicNames) -> None:
        self.outgoing, self.names = outgoing, names
        self.rewards, self.notifications, self.devices, self.dead_letters, self.referrals, self.reward_requests = (
            names.name(kind) for kind in ("rewards", "notifications", "devices", "dead-letters", "referrals",
                                          "reward-requests"))
        outgoing.on_too_large(self._output_too_large)

    def outputs(self, key: bytes, result: Result) -> None:
        for reward in result.rewards:
            self.outgoing.add(self.rewards, key, orjson.dumps(reward))
            metrics.count_reward(reward)
        for notification in result.notifications:
            self.outgoing.add(self.notifications, key, orjson.dumps(notification))
        for link in result.device_links:
            self.outgoing.add(self.devices, link["device"].encode(), orjson.dumps(link))
        for message in result.messages:  # to another member's partition: keyed by that member
            self.outgoing.add(self.referrals, message["member_id"].encode(), orjson.dumps(message))
        for request in result.reward_requests:  # to the reward agent of that code (agents/rewards.py)
            self.outgoing.add(self.reward_requests, request["reward_code"].encode(), orjson.dumps(request))

    def dead_letter(self, message, code: str, detail: str) -> None:
        record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                             code, detail, datetime.now(UTC).isoformat(timespec="milliseconds"))
        metrics.DEAD_LETTERS.labels(code).inc()
        self.outgoing.add(self.dead_letters, dead_letter_key(message.key), orjson.dumps(record))

    def _output_too_large(self, topic: str, key: bytes | None, size: int) -> None:
        event = current_event()  # agents/batch.py `at(event)`: the event whose output this is
        if event is None or topic == self.dead_letters:  # dead letters are capped well below the limit
            raise DeliveryFailed(topic, None, f"a record of {size} bytes, limit {MAX_RECORD_BYTES}")
        self.dead_letter(event.message, "output_too_large",
                         f"its {self.names.kind_of(topic)} record is {size} bytes, limit {MAX_RECORD_BYTES}")

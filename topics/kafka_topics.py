"""The Kafka topics of one deployment as Faust topic objects: raw bytes in and out (values are JSON we
encode ourselves), one partition count for all, so a member's partition is the same in every topic."""
from __future__ import annotations

import faust

from topics.catalog import CATALOG_KINDS, INPUT_KINDS, INTERNAL_KINDS, OUTPUT_KINDS, TopicNames

#: The operators' reward topics are compacted; nothing younger than a week is compacted away, so a
#: forwarder that lags (or a deployment that starts late) still reads every update and import.
CATALOG_TOPIC_CONFIG = {"min.compaction.lag.ms": str(7 * 24 * 3600 * 1000)}


class KafkaTopics:
    """What the agents consume (`consumed`) and every topic of the contract (`produced`, created by
    topics/declare.py before the worker starts)."""

    def __init__(self, app: faust.App, names: TopicNames, partitions: int) -> None:
        self._app, self.names, self.partitions = app, names, partitions
        #: Everything the processing agent consumes: the input topics, the internal due-work topic, the
        #: referral messages between members' partitions and the reward agents' answers.
        self.consumed = self.raw(*INPUT_KINDS, "due", "referrals", "reward-replies")
        self.produced = {kind: self.raw(kind) for kind in OUTPUT_KINDS + INTERNAL_KINDS + INPUT_KINDS}
        self.produced |= {kind: self.compacted(kind) for kind in CATALOG_KINDS}

    def raw(self, *kinds: str) -> faust.TopicT:
        """A Faust topic over the named kinds: raw key and value bytes, the deployment's partition count."""
        return self._app.topic(*(self.names.name(k) for k in kinds), key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=self.partitions,
                               internal=True)

    def compacted(self, *kinds: str) -> faust.TopicT:
        """Like `raw`, over compacted topics (the operators' catalogue and coupon-code topics)."""
        return self._app.topic(*(self.names.name(k) for k in kinds), key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=self.partitions,
                               compacting=True, config=CATALOG_TOPIC_CONFIG, internal=True)

"""The Kafka topics of one deployment as Faust topic objects: raw bytes in and out (values are JSON we
encode ourselves), one partition count for all, so a member's partition is the same in every topic."""
from __future__ import annotations

import faust

from topics.catalog import INPUT_KINDS, INTERNAL_KINDS, OUTPUT_KINDS, TopicNames


class KafkaTopics:
    """What the agents consume (`consumed`), every topic of the contract (`produced`), and their creation."""

    def __init__(self, app: faust.App, names: TopicNames, partitions: int) -> None:
        self._app, self.names, self.partitions = app, names, partitions
        #: Everything the processing agent consumes: the input topics, the internal due-work topic and the
        #: referral messages between members' partitions.
        self.consumed = self.raw(*INPUT_KINDS, "due", "referrals")
        self.produced = {kind: self.raw(kind) for kind in OUTPUT_KINDS + INTERNAL_KINDS + INPUT_KINDS}

    def raw(self, *kinds: str) -> faust.TopicT:
        """A Faust topic over the named kinds: raw key and value bytes, the deployment's partition count."""
        return self._app.topic(*(self.names.name(k) for k in kinds), key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=self.partitions,
                               internal=True)

    async def declare_all(self) -> None:
        """Create every topic of the contract that does not exist yet."""
        for topic in self.produced.values():
            await topic.maybe_declare()

"""Faust topic objects for the app: raw bytes in and out, values are JSON we encode ourselves."""
from __future__ import annotations

from stream_app.app import app, settings, topic_names
from topics.catalog import INPUT_KINDS, INTERNAL_KINDS, OUTPUT_KINDS
from topics.outgoing import OutgoingBatches, ProducerSink


def raw_topic(*kinds: str):
    """A Faust topic over the named kinds: raw key and value bytes, the app's partition count."""
    return app.topic(*(topic_names.name(k) for k in kinds), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw", partitions=settings.partitions, internal=True)


#: Everything the processing agent consumes: the input topics and the internal due-work topic.
#: They share one partition count, so one worker owns a member's partition in all of them.
consumed = raw_topic(*INPUT_KINDS, "due")
produced = {kind: raw_topic(kind) for kind in OUTPUT_KINDS + INTERNAL_KINDS + INPUT_KINDS}


async def declare_all() -> None:
    """Create every topic of the contract that does not exist yet."""
    for topic in produced.values():
        await topic.maybe_declare()


#: What the agents send for a batch of events: outputs and dead letters, handed over first...
outgoing = OutgoingBatches(ProducerSink(app), kind_of=topic_names.kind_of)
#: ...and the table changelog records, handed over once those are acknowledged (agents/batch.py).
changelogs = OutgoingBatches(ProducerSink(app), kind_of=topic_names.kind_of)

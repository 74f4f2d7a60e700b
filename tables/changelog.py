"""A Faust table whose changelog records go out with the agent's batch (topics/outgoing.py).

Faust sends one changelog message per table write through its own producer buffer. Here
`send_changelog` appends the same record (Faust's own key and value encoding, the partition of
the event being processed) to the outgoing batch instead, and the persisted changelog offset that
lets a restart skip recovery is stored once the batch is delivered, as Faust does per message.
Reads, writes to the local store, recovery and standbys are Faust's, unchanged.

Checked against faust-streaming 0.15.3: `Table.on_key_set`/`on_key_del` call `send_changelog`
and read only `.message.partition` of its result; `Store.set_persisted_offset` is the store API
Faust's own `_on_changelog_sent` calls.
"""
from __future__ import annotations

from types import SimpleNamespace

import faust
from faust.types import TP

from topics.outgoing import OutgoingBatches


class BatchedChangelogTable(faust.Table):
    """`faust.Table` with its changelog written through an `OutgoingBatches`."""

    def __init__(self, app, *, outgoing: OutgoingBatches, **kwargs) -> None:
        super().__init__(app, beacon=app.tables.beacon, **kwargs)
        self.outgoing = outgoing
        outgoing.on_delivered(self.changelog_topic.get_topic_name(), self._persist_offset)

    def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None):
        if partition is None:
            raise RuntimeError(f"table {self.name}: a write outside an event has no partition")
        topic = self.changelog_topic
        key_bytes, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        value_bytes = None
        if value is not None:
            value_bytes, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        self.outgoing.add(topic.get_topic_name(), key_bytes, value_bytes, partition)
        return SimpleNamespace(message=SimpleNamespace(partition=partition))

    def _persist_offset(self, partition: int, offset: int) -> None:
        self.data.set_persisted_offset(TP(self.changelog_topic.get_topic_name(), partition), offset)

"""A Faust table of JSON objects whose changelog records go out with the agent's batch (topics/outgoing.py).

Values are stored as the JSON bytes orjson makes, once (Faust's json codec would encode each
write twice, for the store and for the changelog): `read`/`write` convert, `decode` reads `items()`.

Faust sends one changelog message per table write through its own producer buffer. Here a write
(`write`, `write_raw`, `write_at`) puts the bytes in the partition's store and appends the same
record (the key and value bytes, the partition of the event being processed) to the outgoing batch
instead, without Faust's per-write wrappers; `send_changelog` routes any write through Faust's own
path (`table[key] = value`) the same way. The persisted changelog offset that lets a restart skip
recovery is stored once the batch is delivered, as Faust does per message. A read during an event
reads that partition's store raw. Recovery and standbys are Faust's, unchanged.

The Faust internals this relies on are listed and checked in stream_app/faust_compat.py.
"""
from __future__ import annotations

import faust
import orjson
from faust.exceptions import PartitionsMismatch
from faust.streams import current_event
from faust.types import TP

from stream_app.failstop import StoreFailure
from stream_app.faust_compat import changelog_send_result, raw_get, raw_put
from topics.outgoing import OutgoingBatches

MiB = 1024 * 1024

#: RocksDB per partition database (each table has one per partition). Faust's defaults (64 MiB
#: write buffers x 3 and a 2 GiB block cache, per database) let 16 databases grow a worker past
#: 1.4 GiB at 100,000 members; a member's state is 1-5 KiB and is read back mostly from the
#: memtable or the OS page cache, so small buffers cost little (docs/benchmarks.md).
ROCKSDB_OPTIONS = {"write_buffer_size": 8 * MiB, "max_write_buffer_number": 2, "block_cache_size": 16 * MiB}

#: Changelog topics stay compacted (Faust's default), and roll and clean often enough that a
#: fresh worker restores about one record per member rather than one per change. A member's earlier
#: states (an erased member's included) are compacted away within a day whatever the dirty ratio.
CHANGELOG_TOPIC_CONFIG = {"segment.bytes": str(64 * MiB), "segment.ms": str(15 * 60 * 1000),
                          "min.cleanable.dirty.ratio": "0.1", "max.compaction.lag.ms": str(24 * 3600 * 1000)}


class BatchedChangelogTable(faust.Table):
    """`faust.Table` with its changelog written through an `OutgoingBatches`."""

    def __init__(self, app, *, outgoing: OutgoingBatches, **kwargs) -> None:
        super().__init__(app, beacon=app.tables.beacon, options=ROCKSDB_OPTIONS, key_type=bytes,
                         value_type=bytes, extra_topic_configs=CHANGELOG_TOPIC_CONFIG, **kwargs)
        self.outgoing = outgoing
        self._checked_sources: set[str] = set()
        outgoing.on_delivered(self.changelog_topic.get_topic_name(), self._persist_offset)

    def read(self, key: bytes) -> dict | None:
        """The JSON object stored under `key` (None: none). During an event, one raw read of the event's
        partition store (Faust's Store.get decodes key and value through its serializer registry,
        ~8 us against ~2); outside one (the HTTP lookups), Faust's lookup over the partitions."""
        event = current_event()
        raw = self.data.get(key) if event is None else raw_get(self, event.message.partition, key)
        return None if raw is None else self.decode(raw)

    @staticmethod
    def decode(raw: bytes) -> dict:
        """A stored value as its JSON object (orjson.JSONDecodeError if it is not JSON)."""
        return orjson.loads(raw)

    def write(self, key: bytes, state: dict | None) -> None:
        """Store `state` under `key` (None: delete); needs the current event's partition."""
        self.write_raw(key, None if state is None else orjson.dumps(state))

    def write_raw(self, key: bytes, raw: bytes | None) -> None:
        """Store the encoded `raw` (None: delete) in the current event's partition."""
        self.write_at(self.partition_for_key(key), key, raw)

    def write_at(self, partition: int, key: bytes, raw: bytes | None) -> None:
        """Write `raw` (None: delete) to `partition`'s store and its changelog record to the agents'
        outgoing batch: what Faust's `table[key] = raw` does (`send_changelog`, then the store), without
        its serializer-registry encoding, sensor calls and key lookups per write. The record's key and
        value are the bytes Faust's raw serializers would send (test_changelog_table.py)."""
        self.outgoing.add(self.changelog_topic_name, key, raw, partition)
        raw_put(self, partition, key, raw)

    def partition_for_key(self, key) -> int:
        """The partition of the event being processed (the table is co-partitioned with its sources).

        Faust's own check compares the source topic's partition count with the changelog's, and on a
        fresh deployment it may run before the new changelog topic's partitions are in the metadata
        (0 partitions): it then raises PartitionsMismatch, failing the batch writer. Here the counts
        are compared only once both are known, and a real mismatch still refuses the write.
        """
        event = current_event()
        if event is None:
            raise TypeError("Cannot modify table key from outside of stream iteration")
        source = event.message.topic
        if source not in self._checked_sources:
            source_n = self.app.consumer.topic_partitions(source)
            changelog_n = self.app.consumer.topic_partitions(self.changelog_topic_name)
            if source_n and changelog_n:
                if source_n != changelog_n:
                    raise PartitionsMismatch(f"table {self.name}: source topic {source} has {source_n} partitions, "
                                             f"its changelog {self.changelog_topic_name} {changelog_n}")
                self._checked_sources.add(source)
        return event.message.partition

    def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None):
        if partition is None:
            raise RuntimeError(f"table {self.name}: a write outside an event has no partition")
        topic = self.changelog_topic
        key_bytes, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        value_bytes = None
        if value is not None:
            value_bytes, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        self.outgoing.add(topic.get_topic_name(), key_bytes, value_bytes, partition)
        return changelog_send_result(partition)

    def _persist_offset(self, partition: int, offset: int) -> None:
        try:
            self.data.set_persisted_offset(TP(self.changelog_topic.get_topic_name(), partition), offset)
        except Exception as exc:  # RocksDB cannot write (disk full): the batch pipeline fail-stops
            raise StoreFailure(f"persisting the changelog offset of {self.name}[{partition}]: {exc}") from exc


def json_table(app: faust.App, name: str, help: str, *, changelogs: OutgoingBatches,
               partitions: int) -> BatchedChangelogTable:
    """A table of `app` with its changelog sent with the agents' batches.

    The name fixes the changelog topic (`{app id}-{name}-changelog`): renaming a table orphans its data.
    """
    return app.tables.add(BatchedChangelogTable(app, name=name, outgoing=changelogs, partitions=partitions,
                                                help=help))

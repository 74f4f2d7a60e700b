"""A Faust table of JSON objects whose changelog records go out with the agent's batch (topics/outgoing.py).

Values are stored as the JSON bytes orjson makes, once (Faust's json codec would encode each
write twice, for the store and for the changelog): `read`/`write` convert, `decode` reads `items()`.

Faust sends one changelog message per table write through its own producer buffer. Here
`send_changelog` appends the same record (Faust's own key and value encoding, the partition of
the event being processed) to the outgoing batch instead, and the persisted changelog offset that
lets a restart skip recovery is stored once the batch is delivered, as Faust does per message.
Reads, writes to the local store, recovery and standbys are Faust's, unchanged.

Checked against faust-streaming 0.15.3: `Table.on_key_set`/`on_key_del` call `send_changelog`
and read only `.message.partition` of its result; `Store.set_persisted_offset` is the store API
Faust's own `_on_changelog_sent` calls. The partition-count check at the first write waits for the
consumer's metadata (stream_app/faust_compat.py `verify_source_partitions`).
"""
from __future__ import annotations

from types import SimpleNamespace

import faust
import orjson
from faust.types import TP

from stream_app.app import app, settings
from stream_app.failstop import StoreFailure
from stream_app.faust_compat import verify_source_partitions
from topics.channels import changelogs
from topics.outgoing import OutgoingBatches

MiB = 1024 * 1024

#: RocksDB per partition database (each table has one per partition). Faust's defaults (64 MiB
#: write buffers x 3 and a 2 GiB block cache, per database) let 16 databases grow a worker past
#: 1.4 GiB at 100,000 members; a member's state is 1-5 KiB and is read back mostly from the
#: memtable or the OS page cache, so small buffers cost little (docs/benchmarks.md).
ROCKSDB_OPTIONS = {"write_buffer_size": 8 * MiB, "max_write_buffer_number": 2, "block_cache_size": 16 * MiB}

#: Changelog topics stay compacted (Faust's default), and roll and clean often enough that a
#: fresh worker restores about one record per member rather than one per change.
CHANGELOG_TOPIC_CONFIG = {"segment.bytes": str(64 * MiB), "segment.ms": str(15 * 60 * 1000),
                          "min.cleanable.dirty.ratio": "0.1"}


class BatchedChangelogTable(faust.Table):
    """`faust.Table` with its changelog written through an `OutgoingBatches`."""

    def __init__(self, app, *, outgoing: OutgoingBatches, **kwargs) -> None:
        super().__init__(app, beacon=app.tables.beacon, options=ROCKSDB_OPTIONS, key_type=bytes,
                         value_type=bytes, extra_topic_configs=CHANGELOG_TOPIC_CONFIG, **kwargs)
        self.outgoing = outgoing
        outgoing.on_delivered(self.changelog_topic.get_topic_name(), self._persist_offset)

    def read(self, key: bytes) -> dict | None:
        """The JSON object stored under `key` (None: none). Reads the store once (Table.get: twice)."""
        raw = self.data.get(key)
        return None if raw is None else self.decode(raw)

    @staticmethod
    def decode(raw: bytes) -> dict:
        """A stored value as its JSON object (orjson.JSONDecodeError if it is not JSON)."""
        return orjson.loads(raw)

    def write(self, key: bytes, state: dict | None) -> None:
        """Store `state` under `key` (None: delete); needs the current event's partition."""
        if state is None:
            self.pop(key, None)
        else:
            self[key] = orjson.dumps(state)

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

    def _verify_source_topic_partitions(self, source_topic: str) -> None:
        verify_source_partitions(self, source_topic, super()._verify_source_topic_partitions)

    def _persist_offset(self, partition: int, offset: int) -> None:
        try:
            self.data.set_persisted_offset(TP(self.changelog_topic.get_topic_name(), partition), offset)
        except Exception as exc:  # RocksDB cannot write (disk full): the batch pipeline fail-stops
            raise StoreFailure(f"persisting the changelog offset of {self.name}[{partition}]: {exc}") from exc


def json_table(name: str, help: str) -> BatchedChangelogTable:
    """A table of the app, with the app's partition count, its changelog sent with the agents' batches."""
    return app.tables.add(BatchedChangelogTable(app, name=name, outgoing=changelogs,
                                                partitions=settings.partitions, help=help))

"""The members table: each member's whole loyalty state, one JSON object per member id.

Values are JSON objects (stored as orjson bytes: `read`/`write`/`decode`), in RocksDB (default) or
memory per LOYALTY_STORE, with a compacted Kafka changelog written with the processing agent's
outgoing batch (tables/changelog.py). Keys are the member id as UTF-8 bytes, exactly the input topics' keys.
"""
from __future__ import annotations

import faust

from tables.changelog import BatchedChangelogTable, json_table
from topics.outgoing import OutgoingBatches

NAME = "members"  # changelog topic `{app id}-members-changelog`: keep it, or existing deployments lose their state


def members_table(app: faust.App, *, changelogs: OutgoingBatches, partitions: int) -> BatchedChangelogTable:
    return json_table(app, NAME, "Loyalty state per member (ledger, tier, counters, recent event ids).",
                      changelogs=changelogs, partitions=partitions)

"""The members table: each member's whole loyalty state, one JSON object per member id.

Values are JSON objects (stored as orjson bytes: `members.read`/`write`/`decode`), in RocksDB
(default) or memory per LOYALTY_STORE, with a compacted Kafka changelog written with the processing
agent's outgoing batch (tables/changelog.py).
Keys are the member id as UTF-8 bytes, exactly the input topics' keys.
"""
from __future__ import annotations

from tables.changelog import json_table

members = json_table("members", "Loyalty state per member (ledger, tier, counters, recent event ids).")

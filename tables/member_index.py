"""The member index: per member, `[next_due or null, tier, segment]`, so that the due schedule and
the tier and segment gauges are rebuilt without decoding member states.

Keyed by member id (UTF-8 bytes, as the members table), stored as compact JSON lists (~30 bytes) in
RocksDB (or memory, per LOYALTY_STORE) with its own compacted changelog,
`{app id}-member-index-changelog`, written with the processing agent's batch, next to the member
state it describes (agents/batch.py).

Each owned partition also holds one marker, `INDEXED_PREFIX + partition`, under a key no member can
have (member keys are UTF-8, the marker is not): present when every member of that partition has
its entry, with the stamp of the program the entries were computed with. A partition without it
(states written by a release before the index) or with another stamp (a new program may move due
work) is indexed again from the member states once (agents/member_index.py).
"""
from __future__ import annotations

import hashlib

import faust
import orjson

from stream_app.core.ledger import Ledger
from stream_app.core.program import Program
from stream_app.core.reward_book import RewardBook
from tables.changelog import BatchedChangelogTable
from topics.outgoing import OutgoingBatches

NAME = "member-index"  # changelog topic `{app id}-member-index-changelog`: keep it
#: Not valid UTF-8, so never a member key (member keys are member ids encoded as UTF-8).
INDEXED_PREFIX = b"\xff\xfeindexed:"
FORMAT = 2  # of the entries: a new format makes every partition be indexed again

#: next_due (ms), tier, segment, points liability (available + pending), points reserved by redemptions
Entry = tuple[int | None, str, str | None, int, int]


def entry_of(state: dict | None, next_due: int | None) -> Entry | None:
    """What the index keeps for a member whose state is `state` (None: erased, no entry)."""
    if state is None:
        return None
    segment = state.get("segment")
    return (next_due, str(state.get("tier")), segment if isinstance(segment, str) or segment is None else str(segment),
            Ledger.stored_liability(state["ledger"]), _reserved(state))


def _reserved(state: dict) -> int:
    return RewardBook.from_dict(state["rewards"]).points_reserved if state.get("rewards") else 0


def encode(entry: Entry) -> bytes:
    return orjson.dumps(entry)


def decode(raw: bytes) -> Entry:
    """A stored entry (ValueError if it is not one)."""
    values = orjson.loads(raw)
    next_due, tier, segment, liability, reserved = values if len(values) == 5 else (*values, 0, 0)
    if next_due is not None and not isinstance(next_due, int):
        raise ValueError(f"next_due is not an integer: {next_due!r}")
    return next_due, tier, segment, liability, reserved


def marker_key(partition: int) -> bytes:
    return INDEXED_PREFIX + str(partition).encode()


def is_marker(key: bytes) -> bool:
    return key.startswith(INDEXED_PREFIX)


def stamp(program: Program) -> bytes:
    """Written in each partition's marker: entries computed under another program or format are redone.
    repr(program) is deterministic (frozen dataclasses, tuples and dicts in file order)."""
    return f"{FORMAT}:{hashlib.sha256(repr(program).encode()).hexdigest()[:16]}".encode()


class MemberIndexTable(BatchedChangelogTable):
    """The index table; `write_at` writes outside an event (the upgrade scan), to a given partition."""

    def read_entry(self, key: bytes) -> Entry | None:
        raw = self.data.get(key)
        return None if raw is None else decode(raw)

    def write_entry(self, key: bytes, entry: Entry | None) -> None:
        """Store `entry` under `key` (None: delete); needs the current event's partition."""
        self.write_raw(key, None if entry is None else encode(entry))


def member_index_table(app: faust.App, *, changelogs: OutgoingBatches, partitions: int) -> MemberIndexTable:
    return app.tables.add(MemberIndexTable(app, name=NAME, outgoing=changelogs, partitions=partitions,
                                           help="Member id -> [next due instant, tier, segment], for the due "
                                                "schedule and the tier and segment gauges."))

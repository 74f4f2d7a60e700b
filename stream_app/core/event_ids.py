"""Duplicate detection with bounded memory: hashes of a member's recent event ids, and a horizon.

A member with years of history must not carry thousands of raw ids. So the core keeps a 48-bit
hash of each applied event id with its event time, for the program's `dedupe.window` of event time
(and at most `dedupe.max_event_ids` of them), and refuses an event older than that horizon as `stale`:
its id may have been forgotten, so applying it could count it twice. Within the horizon detection is
exact but for hash collisions: with n ids remembered, a new event is taken for a duplicate with
probability n / 2**48 (a member remembering 100 ids: about 1 in 2.8e12 events).

Stored as one string of fixed-width records sorted by event time, each the base64 of the hash and the
event time in milliseconds (6 bytes each, big-endian): 16 characters an id, a month of heavy use (240
ids) 3.8 KB. Every event of a member reads and writes this part, so it is used as stored: a lookup is
a search of the string for the hash's 8 characters at a record boundary, remembering inserts one
record, forgetting cuts the oldest off; no Python object is made per remembered id.
"""
from __future__ import annotations

import base64
import hashlib
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache

HASH_BITS = 48
RECORD_CHARS = 16  # base64 of 12 bytes: the hash (6), then the event time (6, signed)
HASH_CHARS = 8  # the hash's 6 bytes: the first 8 characters of a record, whatever follows


@lru_cache(maxsize=16)  # each event's id is hashed to look it up, then again to remember it
def id_hash(event_id: str) -> int:
    """The top HASH_BITS bits of the id's 8-byte BLAKE2b digest (the states of the previous release kept 53)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") >> (64 - HASH_BITS)


@dataclass(slots=True)
class EventIds:
    """Hashes of applied event ids with their event times (`ids`: records sorted by event time), and the
    instant before which events are stale."""

    ids: str = ""
    stale_before: int | None = None

    def to_dict(self) -> dict:
        return {"ids": self.ids, "stale_before": self.stale_before}

    @classmethod
    def from_dict(cls, d: dict) -> EventIds:
        if "ids" in d:
            return cls(d["ids"], d["stale_before"])
        values = _unpack_v2(d["packed"])  # 53-bit hashes then their times, written before this form
        half = len(values) // 2
        return cls._of([h >> (53 - HASH_BITS) for h in values[:half]], values[half:], d["stale_before"])

    @classmethod
    def migrated(cls, event_ids: list[str], at: int) -> EventIds:
        """Ids stored raw by release 047f314 and earlier, remembered from `at` (the member's clock) on."""
        return cls._of([id_hash(x) for x in event_ids], [at] * len(event_ids), None)

    @classmethod
    def _of(cls, hashes: list[int], times: list[int], stale_before: int | None) -> EventIds:
        pairs = sorted(zip(times, range(len(times)), hashes, strict=True))  # by time, then as they were kept
        return cls("".join(_record(h, t) for t, _, h in pairs), stale_before)

    def __len__(self) -> int:
        return len(self.ids) // RECORD_CHARS

    def __contains__(self, event_id: str) -> bool:
        needle = _encoded_hash(id_hash(event_id))
        found = self.ids.find(needle)
        while found >= 0 and found % RECORD_CHARS:
            found = self.ids.find(needle, found + 1)
        return found >= 0

    def entries(self) -> list[tuple[int, int]]:
        """(hash, event time) of each remembered id, oldest first: what the string holds, for reading."""
        return [(_hash_at(self.ids, i), _time_at(self.ids, i)) for i in range(len(self))]

    @property
    def hashes(self) -> list[int]:
        return [h for h, _ in self.entries()]

    def is_stale(self, occurred: int) -> bool:
        return self.stale_before is not None and occurred < self.stale_before

    def remember(self, event_id: str, occurred: int, clock: int, window_ms: int | None, cap: int) -> None:
        """Remember an applied event; forget ids older than `clock - window_ms` and beyond `cap`."""
        at = len(self)
        while at and _time_at(self.ids, at - 1) > occurred:  # a late event: nearly always at the end
            at -= 1
        cut = at * RECORD_CHARS
        self.ids = self.ids[:cut] + _record(id_hash(event_id), occurred) + self.ids[cut:]
        if window_ms is not None:
            self._forget_before(clock - window_ms)
        count = len(self)
        if count > cap:
            self._forget_before(_time_at(self.ids, count - cap - 1) + 1)

    def _forget_before(self, instant: int) -> None:
        self.stale_before = instant if self.stale_before is None else max(self.stale_before, instant)
        count, drop = len(self), 0
        while drop < count and _time_at(self.ids, drop) < instant:
            drop += 1
        if drop:
            self.ids = self.ids[drop * RECORD_CHARS:]


def _encoded_hash(value: int) -> str:
    return base64.b64encode(value.to_bytes(6, "big")).decode()


def _record(value: int, occurred: int) -> str:
    return base64.b64encode(value.to_bytes(6, "big") + occurred.to_bytes(6, "big", signed=True)).decode()


def _hash_at(ids: str, index: int) -> int:
    start = index * RECORD_CHARS
    return int.from_bytes(base64.b64decode(ids[start:start + HASH_CHARS]), "big")


def _time_at(ids: str, index: int) -> int:
    start = index * RECORD_CHARS + HASH_CHARS
    return int.from_bytes(base64.b64decode(ids[start:start + HASH_CHARS]), "big", signed=True)


def _unpack_v2(text: str) -> list[int]:
    packed = array("q")
    packed.frombytes(base64.b64decode(text))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tolist()

"""Duplicate detection with bounded memory: hashes of a member's recent event ids, and a horizon.

A member with years of history must not carry thousands of raw ids. So the core keeps a 53-bit
hash of each applied event id with its event time, for the program's `dedupe.window` of event time
(and at most `dedupe.max_event_ids` of them), and refuses an event older than that horizon as `stale`:
its id may have been forgotten, so applying it could count it twice. Within the horizon detection is
exact but for hash collisions: with n ids remembered, a new event is taken for a duplicate with
probability n / 2**53 (a member remembering 100 ids: about 1 in 9e13 events).
Stored packed: the hashes then their event times as little-endian 64-bit integers, base64 (16 bytes an
id: a month of heavy use, 240 ids, is 5 KB), one JSON string the table's decoder passes over at once.
"""
from __future__ import annotations

import base64
import hashlib
import sys
from array import array
from dataclasses import dataclass, field

HASH_BITS = 53


def id_hash(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") >> (64 - HASH_BITS)


@dataclass(slots=True)
class EventIds:
    """Hashes of applied event ids with their event times, and the instant before which events are stale."""

    hashes: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    stale_before: int | None = None

    def to_dict(self) -> dict:
        return {"packed": _pack(self.hashes + self.times), "stale_before": self.stale_before}

    @classmethod
    def from_dict(cls, d: dict) -> EventIds:
        values = _unpack(d["packed"])
        half = len(values) // 2
        return cls(values[:half], values[half:], d["stale_before"])

    @classmethod
    def migrated(cls, event_ids: list[str], at: int) -> EventIds:
        """Ids stored raw by release 047f314 and earlier, remembered from `at` (the member's clock) on."""
        return cls([id_hash(x) for x in event_ids], [at] * len(event_ids))

    def __contains__(self, event_id: str) -> bool:
        return id_hash(event_id) in self.hashes

    def is_stale(self, occurred: int) -> bool:
        return self.stale_before is not None and occurred < self.stale_before

    def remember(self, event_id: str, occurred: int, clock: int, window_ms: int | None, cap: int) -> None:
        """Remember an applied event; forget ids older than `clock - window_ms` and beyond `cap`."""
        self.hashes.append(id_hash(event_id))
        self.times.append(occurred)
        if window_ms is not None:
            self._forget_before(clock - window_ms)
        if len(self.times) > cap:
            self._forget_before(sorted(self.times)[len(self.times) - cap - 1] + 1)

    def _forget_before(self, instant: int) -> None:
        self.stale_before = instant if self.stale_before is None else max(self.stale_before, instant)
        if self.times and min(self.times) < instant:
            kept = [(h, t) for h, t in zip(self.hashes, self.times, strict=True) if t >= instant]
            self.hashes, self.times = [h for h, _ in kept], [t for _, t in kept]


def _pack(values: list[int]) -> str:
    packed = array("q", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def _unpack(text: str) -> list[int]:
    packed = array("q")
    packed.frombytes(base64.b64decode(text))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tolist()

"""Due-work schedule of one worker: which member falls due when, as a heap with lazy deletion.

Work per tick is proportional to what is due, not to the number of members. A rebuild (from the
member index, in chunks while the agent goes on) `load`s what was stored, and a member the agent
`set` since the rebuild began keeps the agent's newer instant.

The instant per member is kept in `SHARDS` dicts by the key's hash: one dict of a million members
grows by rehashing all of them at once (~30-60 ms), a shard by rehashing its own ~16,000.
"""
from __future__ import annotations

import heapq

SHARDS = 64


class DueSchedule:
    def __init__(self) -> None:
        self._heap: list[tuple[int, bytes]] = []
        self._due_at: list[dict[bytes, int]] = [{} for _ in range(SHARDS)]
        self._touched: set[bytes] | None = None  # members set since the rebuild began (None: none running)

    def __len__(self) -> int:
        return sum(map(len, self._due_at))

    def _shard(self, member: bytes) -> dict[bytes, int]:
        return self._due_at[hash(member) % SHARDS]

    def set(self, member: bytes, due_at: int | None) -> None:
        """Schedule `member` at `due_at` (None: nothing due), replacing any earlier entry."""
        if self._touched is not None:
            self._touched.add(member)
        self._put(member, due_at)

    def _put(self, member: bytes, due_at: int | None) -> None:
        shard = self._shard(member)
        if due_at is None:
            shard.pop(member, None)
        elif shard.get(member) != due_at:
            shard[member] = due_at
            heapq.heappush(self._heap, (due_at, member))

    def pop_due(self, now: int) -> list[tuple[bytes, int]]:
        """(member, due_at) for members due at or before `now`, removed, earliest first."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            at, member = heapq.heappop(self._heap)
            shard = self._shard(member)
            if shard.get(member) == at:
                del shard[member]
                due.append((member, at))
        return due

    def clear(self) -> None:
        self._heap.clear()
        for shard in self._due_at:
            shard.clear()

    def begin_rebuild(self) -> tuple[list, list[dict]]:
        """Empty the schedule for a rebuild: from now on `load` does not undo a `set`. Returns the old
        entries, for the caller to free in steps (freeing a million at once takes ~60 ms)."""
        old = self._heap, self._due_at
        self._heap, self._due_at = [], [{} for _ in range(SHARDS)]
        self._touched = set()
        return old

    def load(self, member: bytes, due_at: int | None) -> None:
        """Schedule a stored instant, unless the member was `set` since the rebuild began."""
        if self._touched is None or member not in self._touched:
            self._put(member, due_at)

    @property
    def rebuilding(self) -> bool:
        return self._touched is not None

    def end_rebuild(self) -> None:
        self._touched = None

"""Due-work schedule of one worker: which member falls due when, as a heap with lazy deletion.

Work per tick is proportional to what is due, not to the number of members. A rebuild (from the
member index, in chunks while the agent goes on) `load`s what was stored, and a member the agent
`set` since the rebuild began keeps the agent's newer instant.

The instant per member is kept in `SHARDS` dicts by the key's hash: one dict of a million members
grows by rehashing all of them at once (~30-60 ms), a shard by rehashing its own ~16,000.

A member whose due message is in flight (sent, not yet applied) is not sent another for work that
message already covers: it advances the member to the instant it was sent at, so a `set` at or before
that instant is absorbed until the member's partition `arrived` at the message. From a backlog, whose
events leave due instants in the past of the wall clock, every event would otherwise reschedule its
member at once and every tick would send it again (a message per member per tick, all held in the
event-time merge until the backlog is read). A message that never arrives is covered by the rebuild
that follows the rebalance or restart which lost it.
"""
from __future__ import annotations

import heapq

SHARDS = 64


class DueSchedule:
    def __init__(self) -> None:
        self._heap: list[tuple[int, bytes]] = []
        self._due_at: list[dict[bytes, int]] = [{} for _ in range(SHARDS)]
        self._touched: set[bytes] | None = None  # members set since the rebuild began (None: none running)
        self._in_flight: dict[bytes, int] = {}  # member -> the instant its due message was sent at

    def __len__(self) -> int:
        return sum(map(len, self._due_at))

    def _shard(self, member: bytes) -> dict[bytes, int]:
        return self._due_at[hash(member) % SHARDS]

    def set(self, member: bytes, due_at: int | None) -> None:
        """Schedule `member` at `due_at` (None: nothing due), replacing any earlier entry."""
        if self._touched is not None:
            self._touched.add(member)
        sent = self._in_flight.get(member)
        if sent is not None and due_at is not None and due_at <= sent:
            self._shard(member).pop(member, None)  # the message in flight does this work
            return
        self._put(member, due_at)

    def arrived(self, member: bytes) -> None:
        """The member's partition took its due message (applied or dead-lettered): schedule it again."""
        self._in_flight.pop(member, None)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _put(self, member: bytes, due_at: int | None) -> None:
        shard = self._shard(member)
        if due_at is None:
            shard.pop(member, None)
        elif shard.get(member) != due_at:
            shard[member] = due_at
            heapq.heappush(self._heap, (due_at, member))

    def pop_due(self, now: int) -> list[tuple[bytes, int]]:
        """(member, due_at) for members due at or before `now`, removed, earliest first; each is in flight
        from `now` on (the caller sends it a due message dated `now`)."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            at, member = heapq.heappop(self._heap)
            shard = self._shard(member)
            if shard.get(member) == at:
                del shard[member]
                due.append((member, at))
                self._in_flight[member] = now
        return due

    def clear(self) -> None:
        self._heap.clear()
        for shard in self._due_at:
            shard.clear()
        self._in_flight.clear()

    def begin_rebuild(self) -> tuple[list, list[dict]]:
        """Empty the schedule for a rebuild: from now on `load` does not undo a `set`. Returns the old
        entries, for the caller to free in steps (freeing a million at once takes ~60 ms)."""
        old = self._heap, self._due_at
        self._heap, self._due_at = [], [{} for _ in range(SHARDS)]
        self._touched, self._in_flight = set(), {}  # a message lost with the old partitions is rebuilt
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

"""Event-time merge of a partition's input topics, after Kafka Streams' timestamp synchronization.

The input topics and the due topic are co-partitioned by member id: one worker holds a member's
partition in all of them. Faust hands their messages over in fetch order, which interleaves the
topics arbitrarily (from a backlog: a whole fetch of one topic, then of another), so a review could
be applied before the order it reviews. `EventTimeMerge` keeps one queue per topic partition, in
the order read, and releases per partition the queue head with the smallest time once no other
topic of its partition can still deliver an older one. A topic partition's own records are never
reordered (as in Kafka Streams): their offsets are then acked in order, which Faust's commit needs
(it commits the first run of consecutive acked offsets). For each other topic the merge knows the
newest time that topic delivered (a topic partition is taken to be in time order; a record older
than one before it is late) and, from the injected `lag`, whether it still has records not read:

- a topic that delivered something at or after the item's time cannot deliver anything older;
- a topic with unread records (lag > 0, or not known yet) is waited for as long as it keeps
  delivering: at most `stall_ms` after the item arrived or that topic last delivered, whichever is
  later (then the item goes anyway: counted as `stalled`). From a backlog that takes minutes to read,
  a due message (its time is the wall clock) waits for the partition's topics to be read past it, or
  it would move its member's clock years ahead of the events still unread (refused as stale);
- a caught-up topic (lag 0) is waited for `grace_ms`, counted from the item's time or its arrival,
  whichever is earlier: an event published within the grace of its `occurred_at` is never
  overtaken by a newer one, and a backlog (old times) is not held for a caught-up topic at all.

Events with the same time on different topics go in arrival order. An item without a time (a
message that cannot be decoded) goes as soon as what was read before it on its topic partition
has gone. Beyond `cap` held items the oldest queue head goes regardless (counted as `cap`); the intake
keeps the merge under it by pausing the fetching of topic partitions whose queues grow (`queued`). The
clock (epoch ms, the same scale as the items' times) and the lag are injected: the class knows
nothing of Faust and is tested on its own.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Lag = Callable[[str, int], "int | None"]  # (topic, partition) -> records not read yet; None: not known


@dataclass
class _Partition(Generic[T]):
    queues: dict[str, deque[tuple[int | None, int, int, T]]] = field(default_factory=dict)  # time, seq, arrived
    newest: dict[str, int] = field(default_factory=dict)  # topic -> newest time it delivered
    delivered: dict[str, int] = field(default_factory=dict)  # topic -> when (clock) it last delivered

    def head(self) -> tuple[str, tuple[int | None, int, int, T]] | None:
        """The queue head that goes next: an untimed one, else the oldest (the earliest read on a tie)."""
        best = None
        for topic, queue in self.queues.items():
            if queue and (best is None or queue[0][0] is None
                          or (best[1][0] is not None and queue[0][:2] < best[1][:2])):
                best = (topic, queue[0])
                if queue[0][0] is None:
                    break
        return best


class EventTimeMerge(Generic[T]):
    """Items added per (topic, partition) with their event time, released per partition in time order
    and per topic partition in the order they were added (so their offsets are acked in order)."""

    def __init__(self, topics: Sequence[str], *, grace_ms: int, stall_ms: int, cap: int, lag: Lag,
                 clock: Callable[[], int], on_forced: Callable[[str], None] = lambda reason: None) -> None:
        if grace_ms < 0 or stall_ms < grace_ms or cap < 1:
            raise ValueError("need 0 <= grace_ms <= stall_ms and cap >= 1")
        self._topics = tuple(topics)
        self._grace, self._stall, self._cap = grace_ms, stall_ms, cap
        self._lag, self._clock, self._on_forced = lag, clock, on_forced
        self._partitions: dict[int, _Partition[T]] = {}
        self._count = 0
        self._seq = 0
        self._wake_at: int | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, topic: str, partition: int, time: int | None, item: T) -> None:
        """Hold `item`, read from `topic` (one of the merged topics) in `partition`, with its event time
        (None: it has none and only waits for what was read before it from the same topic partition)."""
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition()
        queue = part.queues.get(topic)
        if queue is None:
            queue = part.queues[topic] = deque()
        self._seq += 1
        now = part.delivered[topic] = self._clock()
        queue.append((time, self._seq, now, item))
        if time is not None and time > part.newest.get(topic, time - 1):
            part.newest[topic] = time
        self._count += 1

    def release(self) -> list[T]:
        """The items that may go now, in the order to apply them (any forced out by the cap first)."""
        now = self._clock()
        out: list[T] = []
        while self._count > self._cap:
            out.append(self._pop_oldest())
            self._on_forced("cap")
        lags: dict[tuple[str, int], int | None] = {}
        self._wake_at = None
        for number, part in self._partitions.items():
            while (head := part.head()) is not None:
                topic, (time, _, arrived, item) = head
                if time is not None:
                    until, stalled = self._blocked_until(number, part, time, arrived, topic, lags)
                    if until is not None and now < until:
                        self._wake_at = until if self._wake_at is None else min(self._wake_at, until)
                        break
                    if stalled:
                        self._on_forced("stalled")
                part.queues[topic].popleft()
                self._count -= 1
                out.append(item)
        return out

    def queued(self) -> Iterator[tuple[str, int, int]]:
        """(topic, partition, items held) of each topic partition that delivered since the last clear:
        what the intake paces fetching by (a long queue is a topic ahead of another of its partition)."""
        for number, part in self._partitions.items():
            for topic, queue in part.queues.items():
                yield topic, number, len(queue)

    def wake_in_ms(self) -> int | None:
        """How long until the last `release()`'s first blocked item may go by time alone (None: no item
        is waiting for time). Newly read records can free items sooner: release again after adding."""
        if self._wake_at is None:
            return None
        return max(0, self._wake_at - self._clock())

    def flush(self) -> list[T]:
        """Every held item, in the order `release` would give them if every topic had caught up with
        them (a rebalance: the agent finishes what it took before its partitions go)."""
        out: list[T] = []
        for part in self._partitions.values():
            while (head := part.head()) is not None:
                out.append(part.queues[head[0]].popleft()[3])
        self._count, self._wake_at = 0, None
        return out

    def clear(self) -> list[T]:
        """Every held item (in the order read per topic partition); what the topics delivered is
        forgotten, as after a rebalance the partitions are read again from their committed offsets."""
        out = [entry[3] for part in self._partitions.values() for queue in part.queues.values() for entry in queue]
        self._partitions, self._count, self._wake_at = {}, 0, None
        return out

    def _blocked_until(self, number: int, part: _Partition[T], time: int, arrived: int, topic: str,
                       lags: dict[tuple[str, int], int | None]) -> tuple[int | None, bool]:
        """(the instant the item may go by time alone, None: now; whether a lagging topic holds it)."""
        until, stalled = None, False
        for other in self._topics:
            if other == topic or part.newest.get(other, time - 1) >= time:
                continue
            key = (other, number)
            if key not in lags:
                lags[key] = self._lag(other, number)
            lag = lags[key]
            if lag is None or lag > 0:
                wait, lagging = max(arrived, part.delivered.get(other, arrived)) + self._stall, True
            else:
                wait, lagging = min(time, arrived) + self._grace, False
            if until is None or wait > until:
                until, stalled = wait, lagging
        return until, stalled

    def _pop_oldest(self) -> T:
        """The oldest queue head of any partition (the cap is reached)."""
        heads = [(head[1][:2], part, head[0]) for part in self._partitions.values()
                 if (head := part.head()) is not None]
        _, part, topic = min(heads, key=lambda h: (h[0][0] is not None, h[0]))
        self._count -= 1
        return part.queues[topic].popleft()[3]

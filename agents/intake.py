"""The member agent's intake: its stream's events, merged by event time, in batches.

Faust hands over the input topics and the due topic in fetch order; `OrderedIntake.batches` holds
them in an `EventTimeMerge` (agents/merge.py) and yields them per partition in event-time order, so a
member's events are applied in `occurred_at` order across topics (docs/contracts.md, Ordering).

- A reader task takes the stream's batches (`take_events`) into a queue; the loop waits on that
  queue with a timeout, so held events are released when their grace ends even when nothing more
  arrives (take_events never yields an empty batch). Both run inside the one agent (concurrency 1):
  a member's events are still applied by one writer.
- Held events are not acked, so their offsets are not committed: the reader takes a reference to
  each message (`Message.incref`) before take_events acks its own; that reference goes with the
  released batch to the batch pipeline, whose writer acks it once the state is written.
- Rebalances: when partitions are revoked Faust stops its flow and waits (`wait_empty`) until every
  message its agents took is acked. The intake then lets go of everything it holds at once (in
  event-time order, without waiting for lagging topics: `loyalty_order_forced_total{reason=
  "rebalance"}`), so those events are applied and committed by this worker, which still owns their
  partitions, rather than read again by the next owner: faust-streaming's consumer is unreliable
  at re-reading a window it read but did not commit (docs/scaling.md, "Known risk").
- A message of an older consumer generation (read before a rebalance the intake did not see) is
  dropped, unapplied and unacked, as Faust's stream skips such messages. It is marked acked without
  `Consumer.ack`, i.e. without its offset, so `wait_empty` does not wait for it forever; the
  partition's owner reads it again from the committed offset. At shutdown what is held is dropped
  the same way.

Faust internals read here (checked against faust-streaming 0.15.3): `Consumer.highwater(tp)` (the
highwater of the last fetch), the committed offset (stream_app/faust_compat.py), `Message.acked`,
`Message.generation_id`, `app.consumer_generation_id`, `app.flow_control.is_active()` (what
`Stream.__aiter__` itself checks to skip stale messages).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

from faust.types import TP, EventT

from agents.merge import EventTimeMerge
from stream_app import metrics
from stream_app.faust_compat import committed_offset, hold

READ_BATCH = 1000  # events per take_events batch (as agents/batch.py takes them without a merge)
READ_WITHIN = 0.01  # seconds take_events waits to fill a batch
READ_AHEAD = 4  # batches read but not yet merged: the reader waits beyond that (backpressure)
POLL = 0.25  # seconds between checks while events are held (a rebalance began, a lag became known)
STALL_MS = 30_000  # a topic partition with unread records is waited for at most this long
CAP = 20_000  # events held at most; beyond, the oldest goes (loyalty_order_forced_total{reason="cap"})
_END = object()


def _epoch_ms() -> int:
    return int(time.time() * 1000)


class OrderedIntake:
    """What `BatchPipeline.consume` iterates instead of `take_events`: released events, in order."""

    def __init__(self, app, topics: Sequence[str], grace_seconds: float,
                 time_of: Callable[[EventT], int | None], clock: Callable[[], int] = _epoch_ms) -> None:
        self._app, self._time_of = app, time_of
        self._merge: EventTimeMerge[EventT] = EventTimeMerge(
            topics, grace_ms=int(grace_seconds * 1000), stall_ms=max(STALL_MS, int(grace_seconds * 1000)),
            cap=CAP, lag=self._lag, clock=clock, on_forced=lambda reason: metrics.ORDER_FORCED.labels(reason).inc())
        self._next_offset: dict[TP, int] = {}  # per topic partition: the offset after the last one read
        self._tps: dict[tuple[str, int], TP] = {}
        self._generation: int | None = None

    async def batches(self, stream) -> AsyncIterator[list[EventT]]:
        """Released events, at most READ_BATCH at a time, until the stream ends."""
        self._generation = None  # a restarted agent starts afresh (the first batch resets what is known)
        queue: asyncio.Queue = asyncio.Queue(READ_AHEAD)
        reader = asyncio.ensure_future(self._read(stream, queue))
        try:
            while True:
                received = await self._receive(queue)
                if received is _END:
                    if reader.done() and not reader.cancelled() and reader.exception() is not None:
                        raise reader.exception()
                    return
                if self._admit(received):
                    released = self._merge.release()
                else:  # a rebalance began: finish what was taken, as Faust waits for its agents to
                    released = self._merge.flush()
                    metrics.ORDER_FORCED.labels("rebalance").inc(len(released))
                metrics.ORDER_HELD.set(len(self._merge))
                for start in range(0, len(released), READ_BATCH):
                    yield released[start:start + READ_BATCH]
                del released
        finally:
            reader.cancel()
            self._drop(self._merge.clear())
            while not queue.empty():
                item = queue.get_nowait()
                if item is not _END:
                    self._drop(item)
            metrics.ORDER_HELD.set(0)

    async def _read(self, stream, queue: asyncio.Queue) -> None:
        """Take the stream's batches into `queue`, then _END (also after an error, which `batches`
        raises); not when cancelled, as nothing reads the queue any more."""
        try:
            async for events in stream.take_events(READ_BATCH, within=READ_WITHIN):
                for event in events:
                    hold(event.message)  # held until applied (the writer acks it) or dropped
                await queue.put(events)
        except Exception:
            await queue.put(_END)
            raise
        await queue.put(_END)

    async def _receive(self, queue: asyncio.Queue) -> list | object:
        """Everything queued, waiting for the first batch at most until a held event may go."""
        timeout = None
        if len(self._merge):
            wake = self._merge.wake_in_ms()
            timeout = POLL if wake is None else min(POLL, wake / 1000)
        batches = []
        try:
            first = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return batches
        if first is _END:
            return _END
        batches.append(first)
        while not queue.empty():
            item = queue.get_nowait()
            if item is _END:
                queue.put_nowait(_END)  # seen on the next call, after these are merged
                break
            batches.append(item)
        return batches

    def _admit(self, batches: list[list[EventT]]) -> bool:
        """Hold the events read (dropping any of an older consumer generation); whether the flow runs."""
        app = self._app
        generation = app.consumer_generation_id
        if generation != self._generation:
            # Read before the group's last rebalance, and not finished during it: stale.
            self._drop(self._merge.clear())
            self._next_offset.clear()
            self._generation = generation
        for events in batches:
            for event in events:
                message = event.message
                if message.generation_id != generation:
                    self._drop([event])
                    continue
                self._next_offset[message.tp] = message.offset + 1
                self._merge.add(message.topic, message.partition, self._time_of(event), event)
        return app.flow_control.is_active()

    def _drop(self, events: list[EventT]) -> None:
        if not events:
            return
        for event in events:
            event.message.acked = True  # no Consumer.ack: the offset is not committed (see the module doc)
        metrics.ORDER_DROPPED.inc(len(events))

    def _lag(self, topic: str, partition: int) -> int | None:
        """Records of the topic partition not read yet: the last fetch's highwater minus the next offset
        to read (what this intake read, else the committed offset); None while not known."""
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TP(topic, partition)
        consumer = self._app.consumer
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not assigned (any more), or the consumer is stopping
            return None
        if highwater is None or highwater < 0:
            return None
        base = self._next_offset.get(tp)
        if base is None:
            base = committed_offset(consumer, tp) or 0
        return max(0, highwater - base)

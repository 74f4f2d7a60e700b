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
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from faust.types import TP, EventT

from agents.merge import EventTimeMerge
from stream_app import metrics
from stream_app.faust_compat import committed_offset, hold, pause_fetching

READ_BATCH = 1000  # events per take_events batch (as agents/batch.py takes them without a merge)
READ_WITHIN = 0.01  # seconds take_events waits to fill a batch
READ_AHEAD = 2  # batches read but not yet merged: the reader waits beyond that (backpressure)
POLL = 0.25  # seconds between checks while events are held (a rebalance began, a lag became known)
STALL_MS = 30_000  # a topic partition with unread records is waited for until it delivers nothing this long
CAP = 50_000  # events held at most; beyond, the oldest goes (loyalty_order_forced_total{reason="cap"})
PACED = 5_000  # events the queues in the merge hold together at most before their topic partitions pause
PAUSE_AT_LEAST = 50  # a topic partition's queue in the merge pauses its fetching at this length or more
_END = object()
log = logging.getLogger(__name__)


def _logged(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not resume fetching the partitions the event-time merge paused",
                  exc_info=task.exception())


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
        self._paused: set[TP] = set()  # topic partitions this intake paused (`_pace`)
        self._topics = frozenset(topics)
        self._assigned: int | None = None  # topic partitions of the merged topics assigned (this generation)

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
                    await self._pace()
                else:  # a rebalance began: finish what was taken, as Faust waits for its agents to
                    released = self._merge.flush()
                    metrics.ORDER_FORCED.labels("rebalance").inc(len(released))
                metrics.ORDER_HELD.set(len(self._merge))
                for start in range(0, len(released), READ_BATCH):
                    yield released[start:start + READ_BATCH]
                del released
        finally:
            reader.cancel()
            self._resume_paused()
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
            self._paused.clear()  # a rebalance gives every partition a fresh, unpaused fetch state
            self._assigned = None
            metrics.ORDER_PAUSED.set(0)
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

    async def _pace(self) -> None:
        """Pause fetching a topic partition whose queue in the merge has grown, resume it at half that.

        A long queue is a topic ahead in event time of another topic of its partition (from a backlog,
        the fetcher reads every partition at about the same rate in records, so a sparse topic runs ahead
        of a dense one by more every fetch). Without a bound per topic partition the ones ahead fill the
        merge's cap, which then forces events out of order: the ledger would depend on fetch order, and
        an event behind its member's clock by more than the dedupe window would even be refused as stale.
        Paused, they leave the fetcher to the topics behind, as Kafka Streams pauses a partition whose
        buffer holds `buffered.records.per.partition`. The bound shares PACED among every topic partition
        of the merged topics this worker is assigned, delivered yet or not (counting only those that
        delivered, the first fetches of a backlog were allowed long queues that the later ones then
        pushed past the cap). The cap is ten times PACED: it is for what is in flight when a partition is
        paused (Faust's channel and stream buffers of 4,096 events each, the read-ahead, a fetch: the
        year workload held 19,000 with a bound of 5,000), and is reached only if pacing fails. A topic a
        head waits for has nothing queued (else its newest time would free the head), so it is never
        paused: pausing cannot wedge the merge. A rebalance resets every pause."""
        if self._app.rebalancing:
            return
        queued = list(self._merge.queued())
        limit = max(PAUSE_AT_LEAST, PACED // max(1, len(queued), self._assigned_count()))
        over, drained = set(), set()
        for topic, partition, count in queued:
            if count >= limit:
                over.add(self._tp(topic, partition))
            elif count <= limit // 2:
                drained.add(self._tp(topic, partition))
        paused, resumed = over - self._paused, self._paused & drained
        if paused:
            await pause_fetching(self._app, paused, pause=True)
        if resumed:
            await pause_fetching(self._app, resumed, pause=False)
        self._paused = (self._paused - resumed) | paused
        metrics.ORDER_PAUSED.set(len(self._paused))

    def _assigned_count(self) -> int:
        """Topic partitions of the merged topics assigned to this worker, counted once per generation."""
        if self._assigned is None:
            try:
                assignment = self._app.consumer.assignment()
            except Exception:  # the consumer is stopping or not started: count what delivered
                return 0
            self._assigned = sum(1 for tp in assignment if tp.topic in self._topics)
        return self._assigned

    def _resume_paused(self) -> None:
        """The agent stops (or is restarted): fetch again what this intake paused. In a task of its own:
        this runs as the generator closes, maybe cancelled; a failure is logged (a partition left paused
        would not be read until the next rebalance)."""
        paused, self._paused = self._paused, set()
        metrics.ORDER_PAUSED.set(0)
        if paused:
            asyncio.ensure_future(pause_fetching(self._app, paused, pause=False)).add_done_callback(_logged)

    def _tp(self, topic: str, partition: int) -> TP:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TP(topic, partition)
        return tp

    def _lag(self, topic: str, partition: int) -> int | None:
        """Records of the topic partition not read yet: the last fetch's highwater minus the next offset
        to read (what this intake read, else the committed offset); None while not known."""
        tp = self._tp(topic, partition)
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

"""How an agent works through batches of events: states in memory, outputs first, then the table.

For each batch (`stream.take_events`), the agent applies every event to states held in memory
(`BatchStates`, read through the batches still in flight to the table) and adds its outputs to
the outgoing batch. `BatchPipeline.submit` then hands the outputs to the producer and returns at
once, so the agent goes on with the next batch while the broker answers. A writer task finishes
each batch, in order:

1. it waits until the broker has acknowledged every output of the batch;
2. it writes each changed state to the table once (local store and changelog record), and each
   changed entry of the pipeline's index table (the member index: tables/member_index.py) with
   it, and waits until the changelog records are acknowledged;
3. it acks the batch's events (the next commit may include them). Their messages are held
   (`Message.incref`) from the moment the batch arrives to here, so take_events' own ack does not
   release them, whatever happens in between.

A crash before 2 replays the events, which send the same outputs again (same ids: consumers
dedupe); no state claims them yet. A crash during 2 can leave the local store ahead of the
changelog: the replayed event is then a duplicate for this store, and `keep` writes the state
again, so the changelog catches up. Nothing is lost and no event counts twice, whichever worker
replays it. A failed delivery is handed over again while retrying can help (topics/outgoing.py).

When the state cannot be made durable (the store cannot read or write, a changelog or output
record is refused for good) or the pipeline itself breaks, the writer does not raise: it trips
the worker's `FailStop` (stream_app/failstop.py). From then on no pipeline acks anything, `submit`
waits for the exit instead of taking more batches, and the wiring refuses offset commits, so
nothing is committed past the last durable batch; the worker exits non-zero and is restarted.
Any other failure of a batch (an exception outside the per-event handling) trips the FailStop too
(`internal`): Faust would restart the agent on the events after the batch, and a later commit
could pass events that were never written.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from stream_app.failstop import FailStop, StoreFailure
from stream_app.faust_compat import hold, raw_get, set_current_event
from topics.outgoing import DeliveryFailed, OutgoingBatches

if TYPE_CHECKING:
    from agents.intake import OrderedIntake

log = logging.getLogger(__name__)

BATCH_MAX = 1000  # events per batch at most
BATCH_WITHIN = 0.01  # seconds a batch waits to fill up: what a quiet stream adds to latency
MAX_IN_FLIGHT = 4  # batches submitted but not yet written: the agent waits beyond that
#: Seconds of applying events after which a batch hands the event loop back once: a batch of 1,000
#: heavy members' events takes far longer than the loop's 50 ms budget (timers, fetches, the web server).
YIELD_AFTER = 0.02


def at(event: EventT) -> None:
    """Make `event` the current event of this task: the table reads and writes its partition."""
    set_current_event(event)


class BatchStates:
    """The states one batch changed, each to be written once, with its last event."""

    def __init__(self, pipeline: BatchPipeline) -> None:
        self._pipeline = pipeline
        self.changed: dict[bytes, tuple[dict | None, EventT]] = {}
        self.indexed: dict[bytes, tuple[bytes | None, EventT]] = {}  # index entries, encoded (None: deleted)

    def get(self, key: bytes) -> dict | None:
        changed = self.changed.get(key)
        return changed[0] if changed is not None else self._pipeline.latest(key)

    def put(self, key: bytes, state: dict | None, event: EventT) -> None:
        """The new state (None: deleted), to be written once the batch's outputs are acknowledged."""
        self.changed[key] = (state, event)

    def index_entry(self, key: bytes, partition: int) -> bytes | None:
        """The key's newest stored index entry (encoded), through this batch and those in flight."""
        indexed = self.indexed.get(key)
        return indexed[0] if indexed is not None else self._pipeline.latest_index(key, partition)

    def put_index(self, key: bytes, entry: bytes | None, event: EventT) -> None:
        """A new index entry (None: deleted), written with the batch's states."""
        self.indexed[key] = (entry, event)

    def keep(self, key: bytes, event: EventT) -> None:
        """Write the current state again (a duplicate event: the changelog may lack this state)."""
        if key not in self.changed and (state := self.get(key)) is not None:
            self.changed[key] = (state, event)


class BatchPipeline:
    """One agent's batches between `submit` and their acks, and the task that writes them."""

    def __init__(self, table, outputs: OutgoingBatches, changelogs: OutgoingBatches, failstop: FailStop,
                 index=None) -> None:
        self._table, self._outputs, self._changelogs, self._index = table, outputs, changelogs, index
        self._failstop = failstop
        self._in_flight: deque[BatchStates] = deque()  # submitted, not yet written; oldest first
        self._queue: asyncio.Queue | None = None
        self._writer: asyncio.Task | None = None

    async def consume(self, stream, apply: Callable[[BatchStates, EventT], Any],
                      failed: Callable[[EventT, Exception], None],
                      submitted: Callable[[list], None] | None = None,
                      intake: OrderedIntake | None = None) -> None:
        """Work through `stream` batch by batch until it ends: `apply` each event to the batch's
        states (an exception goes to `failed` and the batch goes on: escaping a Faust agent it
        would ack the message silently), submit the batch, then call `submitted` with what
        `apply` returned for each event (None left out). With an `intake` the events come through
        it, in event-time order (agents/intake.py), held from the moment the intake read them."""
        batches = (stream.take_events(BATCH_MAX, within=BATCH_WITHIN) if intake is None
                   else intake.batches(stream))
        try:
            async for events in batches:
                if intake is None:  # the intake holds what it releases already: that hold is the writer's
                    for event in events:
                        hold(event.message)  # take_events' own ack leaves it held: the writer acks it
                try:
                    await self._consume_batch(events, apply, failed, submitted)
                except Exception as exc:  # a defect outside the per-event handling: stop, ack nothing
                    self._failstop.fail("internal", exc)
                    await self._failstop.halted()
        finally:
            if intake is not None:
                await batches.aclose()  # what the intake still holds is dropped, unapplied and unacked
            await self.stop()

    async def _consume_batch(self, events: list[EventT], apply: Callable[[BatchStates, EventT], Any],
                             failed: Callable[[EventT, Exception], None],
                             submitted: Callable[[list], None] | None) -> None:
        states, returned = BatchStates(self), []
        yield_at = time.perf_counter() + YIELD_AFTER
        for event in events:
            if time.perf_counter() >= yield_at:
                await asyncio.sleep(0)  # each event sets its own current event again below
                yield_at = time.perf_counter() + YIELD_AFTER
            at(event)
            try:
                returned.append(apply(states, event))
            except StoreFailure:
                raise
            except Exception as exc:  # one event's failure must not stop the stream
                message = event.message
                log.exception("processing failed: topic=%s partition=%s offset=%s",
                              message.topic, message.partition, message.offset)
                failed(event, exc)
        await self.submit(states, events)
        if submitted is not None:
            submitted([r for r in returned if r is not None])

    def latest(self, key: bytes) -> dict | None:
        """The member's newest state: from the newest batch in flight that changed it, else the table."""
        return self._newest(key, "changed", self._table.read, "")

    def latest_index(self, key: bytes, partition: int) -> bytes | None:
        """The key's newest index entry: from the newest batch in flight that changed it, else the index
        table's store, read raw (the entry is compared encoded)."""
        return self._newest(key, "indexed", lambda k: raw_get(self._index, partition, k), "the index entry of ")

    def _newest(self, key: bytes, held: str, read, what: str):
        """`key`'s value in the newest batch in flight holding it (`held`: which of its dicts), else `read`."""
        for batch in reversed(self._in_flight):
            entries = getattr(batch, held)
            if key in entries:
                return entries[key][0]
        try:
            return read(key)
        except ValueError:  # a stored value that is not JSON: this member's problem, dead-lettered by the agent
            raise
        except Exception as exc:  # the store itself: stop before anything is acked past it
            self._failstop.fail("store", exc)
            raise StoreFailure(f"reading {what}{key!r}: {exc}") from exc

    async def submit(self, batch: BatchStates, events: list[EventT]) -> None:
        """Hand the batch's outputs to the producer and queue it for the writer; after a failure,
        wait for the worker's exit instead (the events stay unacked)."""
        if self._failstop.failure is None:
            try:
                if self._writer is None or self._writer.done():
                    self._queue = asyncio.Queue(MAX_IN_FLIGHT)
                    self._writer = asyncio.ensure_future(self._write_batches(self._queue))
                delivered = await self._outputs.send()
            except Exception as exc:
                self._failstop.fail(_reason(exc, "output"), exc)
            else:
                self._in_flight.append(batch)
                await self._queue.put((batch, events, delivered))
                return
        await self._failstop.halted()

    async def stop(self) -> None:
        """Cancel the writer: batches not yet written stay unacked and are consumed again."""
        if self._writer is not None:
            self._writer.cancel()
        self._writer = self._queue = None
        self._in_flight.clear()

    async def _write_batches(self, queue: asyncio.Queue) -> None:
        """Finish the batches in order; the first failure trips the FailStop and ends the writer."""
        stage = "output"
        try:
            while True:
                batch, events, delivered = await queue.get()
                stage = "output"
                await delivered
                stage = "changelog"
                self._write(batch)
                await self._changelogs.flush()
                if self._failstop.failure is not None:
                    return  # another pipeline failed: ack nothing more
                for event in events:
                    event.ack()
                self._in_flight.popleft()
                queue.task_done()
        except Exception as exc:  # not CancelledError: stop() cancels a healthy writer
            self._failstop.fail(_reason(exc, stage), exc)

    def _write(self, batch: BatchStates) -> None:
        """Write each changed state once (local store, and its changelog record to the outgoing batch),
        then each changed index entry: in one pass, with nothing else running on the loop in between."""
        for key, (state, event) in batch.changed.items():
            # assigned, never mutated in place: this reaches the changelog
            _store(self._table.write, key, state, event, "")
        for key, (entry, event) in batch.indexed.items():
            _store(self._index.write_raw, key, entry, event, "the index entry of ")


def _store(write, key: bytes, value, event: EventT, what: str) -> None:
    """`write(key, value)` in `event`'s partition; a failure other than a delivery's is the store's."""
    at(event)
    try:
        write(key, value)
    except DeliveryFailed:
        raise
    except Exception as exc:
        raise StoreFailure(f"writing {what}{key!r}: {exc}") from exc


def _reason(exc: Exception, stage: str) -> str:
    """The FailStop reason of a failure at `stage` ("output": outputs; "changelog": table writes)."""
    if isinstance(exc, DeliveryFailed):
        return "authorization" if exc.authorization else stage
    if isinstance(exc, StoreFailure):
        return "store"
    return "internal"

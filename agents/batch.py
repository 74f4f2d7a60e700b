"""How an agent works through a batch of events: states in memory, outputs first, then the table.

For each batch (`stream.take_events`), the agent applies every event to the states held here
(read through from the table), adds its outputs to the outgoing batch, and at the end:

1. flushes the outgoing batch: every output is acknowledged by the broker;
2. writes each changed state to the table once (local store, changelog record) and flushes again;
3. returns, and Faust acks the events (the next commit may include them).

A crash before 1 completes replays the events and re-sends their outputs (same ids: consumers
dedupe). A crash between 1 and 2 replays them too: no state claims them yet. A crash during 2
can leave the local store ahead of the changelog: the replayed event is then a duplicate for
this store, and `keep` writes the state again, so the changelog catches up. Nothing is lost and
no event counts twice, whichever worker replays it.
"""
from __future__ import annotations

import weakref

from faust.streams import _current_event
from faust.types import EventT

from topics.channels import outgoing

BATCH_MAX = 1000  # events per batch at most
BATCH_WITHIN = 0.01  # seconds a batch waits to fill up: what a quiet stream adds to latency


class BatchStates:
    """States of one table changed by the batch, each written once with its last event."""

    def __init__(self, table) -> None:
        self._table = table
        self._changed: dict[bytes, tuple[dict | None, EventT]] = {}

    @staticmethod
    def at(event: EventT) -> None:
        """Make `event` the current event of this task: the table reads and writes its partition.

        Only the context variable Faust's tables read (faust.streams.current_event(), checked
        against faust-streaming 0.15.3), never `Stream.current_event`: take_events' background
        task reads that attribute to collect the next batch, and would collect the wrong event.
        """
        _current_event.set(weakref.ref(event))


    def get(self, key: bytes) -> dict | None:
        changed = self._changed.get(key)
        return changed[0] if changed is not None else self._table.get(key)

    def put(self, key: bytes, state: dict | None, event: EventT) -> None:
        """The new state (None: deleted), to be written at the end of the batch."""
        self._changed[key] = (state, event)

    def keep(self, key: bytes, event: EventT) -> None:
        """Write the current state again (a duplicate event: the changelog may lack this state)."""
        if key not in self._changed and (state := self._table.get(key)) is not None:
            self._changed[key] = (state, event)

    async def commit(self) -> None:
        """Deliver the outputs, then write and deliver the states (steps 1 and 2 above)."""
        await outgoing.flush()
        for key, (state, event) in self._changed.items():
            self.at(event)
            if state is None:
                self._table.pop(key, None)
            else:
                self._table[key] = state  # assigned, never mutated in place: this reaches the changelog
        self._changed.clear()
        await outgoing.flush()

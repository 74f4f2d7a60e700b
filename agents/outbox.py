"""Outputs not yet confirmed delivered, stored with the member's state so a crash cannot lose them.

A member's new state reaches RocksDB at once, while its reward events may still sit in the
producer's buffer when the worker dies. The replayed event is then a duplicate and would emit
nothing. So the state written to the table carries, under OUTBOX, the outputs of its recent
changes that this process has not seen acknowledged by the broker; a duplicate re-sends the
outputs recorded for it (same deterministic ids, so consumers dedupe). Entries confirmed
delivered are dropped at the member's next write.
"""
from __future__ import annotations

import asyncio

OUTBOX = "_outbox"  # a key of the stored state dict; the core ignores it
MAX_ENTRIES = 32


class Outbox:
    def __init__(self) -> None:
        self._delivered: set[str] = set()  # acknowledged; pruned from the state at the next write
        self._in_flight: set[str] = set()  # sent by this process, not yet acknowledged

    def attach(self, new_state: dict, old_state: dict | None, cause: str, outputs: dict) -> dict:
        """`new_state` carrying the old state's unconfirmed entries plus this change's outputs."""
        old_entries = (old_state or {}).get(OUTBOX, [])
        entries = [e for e in old_entries if e["cause"] not in self._delivered]
        self._delivered.difference_update(e["cause"] for e in old_entries)
        if any(outputs.values()):
            entries.append({"cause": cause, **outputs})
        return {**new_state, OUTBOX: entries[-MAX_ENTRIES:]} if entries else new_state

    def recorded(self, state: dict | None, cause: str) -> dict | None:
        """The outputs recorded for `cause` that may never have left: neither acknowledged nor still
        in flight in this process (after a restart, that is every recorded entry)."""
        for entry in (state or {}).get(OUTBOX, []):
            if entry["cause"] == cause and cause not in self._delivered and cause not in self._in_flight:
                return {k: v for k, v in entry.items() if k != "cause"}
        return None

    def confirm_when_delivered(self, cause: str, deliveries: list[asyncio.Future]) -> None:
        """Mark `cause` delivered once every one of its messages is acknowledged."""
        if not deliveries:
            return
        self._in_flight.add(cause)
        pending = {"left": len(deliveries), "failed": False}

        def done(fut: asyncio.Future) -> None:
            pending["left"] -= 1
            pending["failed"] |= fut.cancelled() or fut.exception() is not None
            if pending["left"] == 0:
                self._in_flight.discard(cause)
                if not pending["failed"]:
                    self._delivered.add(cause)

        for fut in deliveries:
            fut.add_done_callback(done)


outbox = Outbox()

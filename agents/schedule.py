"""Wall-clock due work: a timer turns due members into messages on the internal due topic.

The schedule lives in this worker's memory and covers the partitions it owns: the processing
agent updates it after every change, and it is rebuilt from the member index (tables/member_index.py:
each member's next due instant, no member state decoded) after each rebalance (tables recovered),
so due work survives restarts and moves with its partitions. The rebuild is a task of its own that
yields to the event loop every few milliseconds (agents/member_index.py); what the agent schedules
meanwhile stays (DueSchedule.load), and due work already loaded is sent while the rest loads.
The due message is processed by the member's own partition, in order with its events.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust
import orjson

from stream_app import metrics
from stream_app.parts import Parts

log = logging.getLogger(__name__)

FREE_STEP = 10_000  # entries of an old schedule freed between two yields (~5 ms of CPU at most)


class DueWork:
    """Rebuilds the schedule after rebalances and sends what is due."""

    def __init__(self, parts: Parts, clock: Callable[[], float] = time.time) -> None:
        self.app, self.index = parts.app, parts.member_index
        self.schedule, self.topic = parts.schedule, parts.topics.produced["due"]
        self.clock, self.interval = clock, parts.settings.due_tick_seconds
        self.needs_rebuild = True
        self._rebuilding: asyncio.Task | None = None
        self._discarded: list[tuple[list, list[dict]]] = []  # old schedules, freed in steps by the rebuild
        self.schedule.begin_rebuild()  # what the agent schedules before the first rebuild stays

    def rebalanced(self) -> None:
        """The owned partitions change: the schedule starts over, keeping what the agent sets from now on."""
        self._discarded.append(self.schedule.begin_rebuild())
        self.needs_rebuild = True

    async def _free_discarded(self) -> None:
        """Drop the old schedules FREE_STEP entries at a time, yielding in between."""
        while self._discarded:
            heap, shards = self._discarded.pop()  # a rebalance meanwhile may add another
            while heap:
                del heap[-FREE_STEP:]
                await asyncio.sleep(0)
            while shards:  # a shard holds ~1/64 of the members: freed whole
                del shards[-max(1, FREE_STEP * len(shards) // (sum(map(len, shards)) + 1)):]
                await asyncio.sleep(0)

    async def rebuild(self, now: int) -> bool:
        """Schedule every member of the partitions this worker now owns, from the index (indexing the
        partitions that have none first); False if a rebalance cut it short."""
        started = time.monotonic()
        if not self.schedule.rebuilding:  # a rebuild asked for without a rebalance (tests, benchmarks)
            self._discarded.append(self.schedule.begin_rebuild())
        await self._free_discarded()
        if not await self.index.ensure(now):
            return False
        load = self.schedule.load
        if not await self.index.scan(lambda key, entry: load(key, entry[0])):
            return False
        self.schedule.end_rebuild()
        pacer = self.index.last_pacer
        log.info("due schedule rebuilt: %d members scheduled in %.2f s (longest step %.1f ms, cpu %.1f ms)",
                 len(self.schedule), time.monotonic() - started, pacer.longest * 1000, pacer.longest_cpu * 1000)
        return True

    async def _rebuild(self, now: int) -> None:
        try:
            if not await self.rebuild(now):
                self.needs_rebuild = True
        except Exception:  # e.g. a store closed by a rebalance mid-scan: try again at the next tick
            log.exception("due schedule rebuild failed; retrying")
            self.needs_rebuild = True

    async def tick(self) -> None:
        if self.app.rebalancing or not self.app.tables.recovery.completed.is_set():
            return
        now = int(self.clock() * 1000)
        if self.needs_rebuild and (self._rebuilding is None or self._rebuilding.done()):
            self.needs_rebuild = False  # a rebalance during the rebuild sets it again
            self._rebuilding = asyncio.ensure_future(self._rebuild(now))  # a task: the timer keeps its pace
        due = self.schedule.pop_due(now)
        for key, _ in due:
            await self.topic.send(key=key, value=orjson.dumps({"at": now}))
        metrics.DUE_SENT.inc(len(due))
        metrics.DUE_LAG.set((now - due[0][1]) / 1000 if due else 0)
        metrics.DUE_SCHEDULED.set(len(self.schedule))


def register(app: faust.App, parts: Parts) -> DueWork:
    work = DueWork(parts)

    @app.on_partitions_revoked.connect
    async def _before_rebalance(sender, revoked, **kwargs) -> None:
        work.rebalanced()

    @app.on_rebalance_complete.connect
    async def _after_rebalance(sender, **kwargs) -> None:
        work.needs_rebuild = True

    async def send_due_work() -> None:
        await work.tick()

    app.timer(interval=work.interval, name="agents.schedule.send_due_work")(send_due_work)
    return work

"""Reading the member index (tables/member_index.py) in chunks, and indexing what has no entry yet.

The due schedule (agents/schedule.py) and the tier and segment recount (agents/observe.py) read
the index of the partitions this worker owns, never the member states: ~1 us per entry instead of
a JSON decode of a whole state. Both work in steps of at most `STEP_SECONDS` and yield to the event
loop in between, so events go on being processed; a rebalance (or a new consumer generation) ends
the scan early, and the caller tries again after it.

A partition whose marker is missing or carries another program's stamp (the first start after
the upgrade that brought the index, or a new program file) is indexed once from its member states,
in the same steps: each member's current state is read, its entry computed at `now` and written to
the index and its changelog, then the partition's marker. The processing agent writes an entry
with every change meanwhile, and every step runs between two of its batch writes, so a scan never
puts back an older entry than the one the agent wrote.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust

from stream_app import metrics
from stream_app.core.due import next_due
from stream_app.core.member import Member
from stream_app.core.program import Program
from stream_app.failstop import FailStop
from stream_app.faust_compat import raw_get, raw_items
from tables import member_index
from tables.changelog import BatchedChangelogTable
from tables.member_index import Entry, MemberIndexTable
from topics.outgoing import DeliveryFailed, OutgoingBatches, partition_for

log = logging.getLogger(__name__)

STEP_SECONDS = 0.01  # longest run on the event loop between two yields (the target is < 50 ms)
CHECK_EVERY = 64  # entries between two looks at the clock (a look costs about as much as an entry)


class Pacer:
    """Yields to the event loop once a step has run STEP_SECONDS; measures the longest step."""

    def __init__(self, app: faust.App, step: float | None = None) -> None:
        self.app, self.step = app, STEP_SECONDS if step is None else step
        self.generation = app.consumer_generation_id
        self.started = self.began = time.perf_counter()
        self.cpu_started = time.thread_time()
        self.longest = self.longest_cpu = 0.0  # wall and CPU time of the longest step: a busy host shows
        self.steps = 0                         # the difference (the step was preempted, not slow)

    def due(self) -> bool:
        return time.perf_counter() - self.started >= self.step

    async def pause(self) -> bool:
        """Yield to the loop; False if a rebalance began meanwhile (the scan stops)."""
        self._end_step()
        # Twice: after one, this task is ready again ahead of the timers and I/O callbacks that fell due
        # during the step (the loop appends those after it), and would run a second step before them.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.started, self.cpu_started = time.perf_counter(), time.thread_time()
        return not self.interrupted()

    def interrupted(self) -> bool:
        return bool(self.app.rebalancing) or self.app.consumer_generation_id != self.generation

    def finish(self) -> float:
        """End the last step; the whole scan's duration (s)."""
        self._end_step()
        return time.perf_counter() - self.began

    def _end_step(self) -> None:
        self.longest = max(self.longest, time.perf_counter() - self.started)
        self.longest_cpu = max(self.longest_cpu, time.thread_time() - self.cpu_started)
        self.steps += 1


class MemberIndex:
    """The index table with the scans over it; one scan at a time (the schedule's and the recount's)."""

    def __init__(self, app: faust.App, table: MemberIndexTable, members: BatchedChangelogTable, program: Program,
                 changelogs: OutgoingBatches, partitions: int, failstop: FailStop) -> None:
        self.app, self.table, self.members, self.program = app, table, members, program
        self.changelogs, self.partitions, self.failstop = changelogs, partitions, failstop
        self.stamp = member_index.stamp(program)
        self._lock = asyncio.Lock()
        self.last_pacer: Pacer | None = None  # of the last scan: its longest step (logs, benchmarks, tests)
        self.last_indexing: Pacer | None = None  # of the last indexing from the member states

    def owned_partitions(self) -> set[int]:
        topic = self.table.changelog_topic_name
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def unindexed(self) -> set[int]:
        """Owned partitions whose entries are missing or were computed under another program."""
        return {p for p in self.owned_partitions() if self.table.data.get(member_index.marker_key(p)) != self.stamp}

    async def scan(self, visit: Callable[[bytes, Entry], None]) -> bool:
        """Call `visit(key, entry)` for every entry of the owned partitions, in steps; False if a
        rebalance cut it short. An entry that cannot be read is logged and counted (loyalty_due_errors)."""
        async with self._lock:
            pacer = self.last_pacer = Pacer(self.app)
            decode, is_marker = member_index.decode, member_index.is_marker
            for i, (key, raw) in enumerate(raw_items(self.table)):
                if not i % CHECK_EVERY and pacer.due() and not await pacer.pause():
                    return False
                if is_marker(key):
                    continue
                try:
                    entry = decode(raw)
                except Exception:  # one unreadable entry must not stop the others
                    log.exception("member index: cannot read the entry of %r", key)
                    metrics.DUE_ERRORS.inc()
                    continue
                visit(key, entry)
            pacer.finish()
            return True

    async def ensure(self, now: int) -> bool:
        """Index every owned partition that needs it from its member states (see the module doc);
        False if a rebalance cut it short (the partitions stay unmarked: the next scan starts over)."""
        async with self._lock:
            todo = self.unindexed()
            if not todo:
                return True
            log.info("member index: indexing partitions %s from the member states (no index yet, or a new "
                     "program)", sorted(todo))
            pacer = self.last_indexing = Pacer(self.app)
            try:
                delivered: list[asyncio.Future] = []
                indexed = await self._index_members(todo, now, pacer, delivered)
                for done in delivered:  # every entry acknowledged, even those of a scan cut short...
                    await done
                if indexed is None:
                    return False
                for partition in sorted(todo):  # ...before a marker says the partition is indexed
                    self.table.write_at(partition, member_index.marker_key(partition), self.stamp)
                await self.changelogs.flush()
            except DeliveryFailed as exc:  # a changelog refused for good: as the agent's batches, fail-stop
                self.failstop.fail("authorization" if exc.authorization else "changelog", exc)
                raise
            seconds = pacer.finish()
            log.info("member index: %d members of partitions %s indexed in %.1f s (%d steps, longest %.0f ms, "
                     "cpu %.0f ms)", indexed, sorted(todo), seconds, pacer.steps, pacer.longest * 1000,
                     pacer.longest_cpu * 1000)
            return True

    async def _index_members(self, todo: set[int], now: int, pacer: Pacer,
                             delivered: list[asyncio.Future]) -> int | None:
        """Write the entries of the members of `todo`; their deliveries go to `delivered`. None if cut short."""
        count = 0
        for key, _ in raw_items(self.members):
            if pacer.due():  # each member costs tens of microseconds: the clock is read every time
                delivered.append(await self.changelogs.send())  # hand the step's records over
                if not await pacer.pause():
                    delivered.append(await self.changelogs.send())
                    return None
            partition = partition_for(key, self.partitions)
            if partition not in todo:
                continue
            raw = raw_get(self.members, partition, key)  # now, not as the iterator saw it: the agent may have
            if raw is None:                               # written since
                continue  # erased meanwhile: the agent deleted its entry
            self.table.write_at(partition, key, self._entry(key, raw, now))
            count += 1
        delivered.append(await self.changelogs.send())
        return count

    def _entry(self, key: bytes, raw: bytes, now: int) -> bytes | None:
        try:
            state = self.members.decode(raw)
            entry = member_index.entry_of(state, next_due(Member.from_dict(state), self.program, now))
        except Exception:  # one unreadable member must not stop due work for the others
            log.exception("member index: cannot index member %r", key)
            metrics.DUE_ERRORS.inc()
            return None
        return member_index.encode(entry)

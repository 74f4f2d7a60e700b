"""What a rebuild of the due schedule costs, and how long it holds the event loop, at N members.

Fills a real RocksDB members table (LOYALTY_PARTITIONS partitions, in a temporary data dir) with N
member states made by the core (a few varieties of one to three events, renamed per member) and, for
the index runs, the member index with each member's entry, straight into the partition stores (no
broker: nothing is sent). Then, in one process, measures:

- `members scan (previous release)`: the rebuild as it was, decoding every member state and computing
  its next due instant in one synchronous pass;
- `index`: DueWork.rebuild from the member index (agents/member_index.py); `again`: the same with the
  schedule full beforehand, as after a rebalance (the old schedule is freed in steps first);
- `upgrade fallback`: the same rebuild when the index is empty (the first start after the upgrade:
  each member indexed from its state, written to the index store; the changelog records are dropped);
- `recount`: Observer.recount_members from the index.

For each: the wall time, the longest step between two yields (`Pacer.longest`), the event loop's
longest stall seen by a probe task that sleeps 1 ms in a loop (how late it woke up), and the garbage
collector's longest pause (gc.callbacks), which falls inside whichever step happens to allocate.

    python -m bench.due_index --members 100000 [--members 1000000] [--skip-old] [--skip-fallback]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from contextlib import contextmanager

import orjson
from faust.types import TP

from agents import observe, schedule
from stream_app.compose import build_parts
from stream_app.core.due import next_due
from stream_app.core.engine import apply_event
from stream_app.core.member import Member
from stream_app.core.program import load_program
from stream_app.settings import load_settings
from tables import member_index
from topics.outgoing import partition_for

NOW_MS = 1_767_225_600_000  # 2026-01-01: after every template's events, so due work is in the future or now


def templates(program) -> list[dict]:
    """A few member states, as the core leaves them after one to three events."""
    at = "2025-12-20T10:00:00.000+08:00"
    order = {"type": "order_paid", "order_id": "A", "amount_cents": 25_000, "currency": "CNY"}
    share = {"type": "share", "share_id": "s", "channel": "wechat", "target": "friend"}
    login = {"type": "login", "device_id": "d1", "ip": "10.0.0.1"}
    histories = [[order], [share], [login], [order, share], [login, order, share], [share, login]]
    states = []
    for i, history in enumerate(histories):
        state = None
        for n, fields in enumerate(history):
            event = {"event_id": f"t{i}-{n}", "member_id": f"t{i}", "occurred_at": at, **fields}
            state = apply_event(state, event, program).state
        states.append(state)
    return states


class GcTimer:
    """The garbage collector's pauses (gc.callbacks): they fall inside whichever step allocates."""

    def __init__(self) -> None:
        self.longest, self.full, self._started = 0.0, 0, 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)
            self.full += info["generation"] == 2

    @contextmanager
    def running(self):
        self.longest, self.full = 0.0, 0
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


class LoopProbe:
    """A task that sleeps 1 ms in a loop: its latest wake-up is the longest stretch the loop was held."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    @contextmanager
    def running(self):
        self.worst = 0.0
        self._task = asyncio.ensure_future(self._run())
        try:
            yield self
        finally:
            self._task.cancel()


def fill(parts, n: int, with_index: bool) -> None:
    """N members straight into the RocksDB partition stores (and their index entries)."""
    members, index, program = parts.members.data, parts.member_index.table.data, parts.program
    partitions = parts.settings.partitions
    variants = []
    for state in templates(program):
        variants.append((state, next_due(Member.from_dict(state), program, NOW_MS)))
    for i in range(n):
        key = f"member-{i:07d}".encode()
        state, due = variants[i % len(variants)]
        p = partition_for(key, partitions)
        members._db_for_partition(p).put(key, orjson.dumps({**state, "member_id": key.decode()}))
        if with_index:
            index._db_for_partition(p).put(key, member_index.encode(member_index.entry_of(state, due)))
    if with_index:
        stamp = parts.member_index.stamp
        for p in range(partitions):
            index._db_for_partition(p).put(member_index.marker_key(p), stamp)


def build(data_dir: str):
    settings = load_settings({"LOYALTY_STORE": "rocksdb://", "LOYALTY_DATA_DIR": data_dir,
                              "LOYALTY_APP_ID": f"bench-due-index-{os.getpid()}"})
    parts = build_parts(settings, load_program(""))
    owned = set()
    for table in (parts.members, parts.member_index.table):
        owned |= {TP(table.changelog_topic_name, p) for p in range(settings.partitions)}
    parts.app.assignor.assigned_actives = lambda: owned
    return parts


def old_rebuild(parts) -> int:
    """The rebuild of the previous release (agents/schedule.py before the index), synchronous."""
    parts.schedule.clear()
    for key, raw in parts.members.items():
        parts.schedule.set(key, next_due(Member.from_dict(parts.members.decode(raw)), parts.program, NOW_MS))
    return len(parts.schedule)


async def measure(name: str, run) -> None:
    probe, collector = LoopProbe(), GcTimer()
    with probe.running(), collector.running():
        await asyncio.sleep(0.01)
        started, cpu = time.perf_counter(), time.process_time()
        result = await run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        await asyncio.sleep(0.01)
    load = os.getloadavg()[0]
    print(f"{name:<34} {seconds:6.2f} s (cpu {cpu:6.2f} s, load {load:.1f})  loop held at most "
          f"{probe.worst * 1000:6.1f} ms  {result}; "
          f"gc: {collector.full} full collections, longest pause {collector.longest * 1000:.1f} ms", flush=True)


async def main(n: int, skip_old: bool, skip_fallback: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="due-index-") as tmp:
        parts = build(tmp)
        dropped = []
        parts.changelogs.add = lambda *record: dropped.append(None)  # no broker: changelog records are counted
        started = time.perf_counter()
        fill(parts, n, with_index=True)
        print(f"filled {n} members and index entries in {time.perf_counter() - started:.1f} s", flush=True)
        work, observer = schedule.DueWork(parts), observe.Observer(parts)
        index = parts.member_index

        def steps(pacer) -> str:
            return f"{pacer.steps} steps, longest {pacer.longest * 1000:.1f} ms (cpu {pacer.longest_cpu * 1000:.1f} ms)"

        async def by_index():
            index.last_indexing = None
            assert await work.rebuild(NOW_MS)
            indexing = "" if index.last_indexing is None else f"indexing {steps(index.last_indexing)}, then "
            return f"{len(parts.schedule)} scheduled; {indexing}index scan {steps(index.last_pacer)}"

        async def recount():
            assert await observer.recount_members()
            return f"index scan {steps(index.last_pacer)}"

        async def old():
            return f"{old_rebuild(parts)} scheduled, one step"

        if not skip_old:
            await measure("members scan (previous release)", old)
        await measure("index", by_index)
        await measure("index again (old schedule freed)", by_index)  # as after a rebalance: N entries to drop
        await measure("recount from the index", recount)
        if not skip_fallback:
            for p in range(parts.settings.partitions):  # the index as the previous release left it: none
                db = index.table.data._db_for_partition(p)
                for key in list(db.keys()):
                    db.delete(key)
            await measure("upgrade fallback (members indexed)", by_index)
            print(f"  {len(dropped)} changelog records of the index queued", flush=True)
            await measure("index, after the fallback", by_index)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--skip-old", action="store_true")
    parser.add_argument("--skip-fallback", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.members, args.skip_old, args.skip_fallback))

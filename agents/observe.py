"""Operator figures that the processing path does not produce itself (docs/metrics.md).

- `LoyaltySensor`, a Faust sensor registered with `app.sensors`: messages received per topic,
  offset commits and their latency, rebalances and their duration.
- `observe_consumer`, a 1 s timer: consumer lag and committed offset per input partition this
  worker owns (highwater from the last fetch response minus the committed offset; no broker
  round trip except one log-start lookup for a partition the group has never committed).
- members by tier and by lifecycle segment: `member_changed`, called by the processing agent for
  every state it changes, moves the gauges at once (only when the tier or segment changed, or a
  member came or went); `count_members`, a task, recounts them from the member index
  (tables/member_index.py: tier and segment per member, no member state decoded) after each
  rebalance (the owned partitions changed) and every LOYALTY_TIER_SCAN_INTERVAL (default PT1H) to
  correct any drift (a change applied while a recount runs may be counted twice or not at all
  until the next one).

A periodic full recount every 30 s used to take 3-13 % of a worker's CPU at 100,000 members and put
a 100-200 ms step into the p99 latency (docs/benchmarks.md), when it decoded every member state
(4-50 us each). It now reads index entries (about a microsecond each) in steps of at most 10 ms
between yields to the event loop (agents/member_index.py), and the next recount still waits at
least 20 times as long as the last one took, so it never takes more than about 5% of the worker's
time. loyalty_members_scan_duration_seconds shows the real figure.

Faust internals read here: the committed offsets (stream_app/faust_compat.py) and
`Consumer.highwater(tp)` (aiokafka's cached highwater, also used by Faust itself).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import faust
from faust.sensors import Sensor

from stream_app import metrics
from stream_app.faust_compat import committed_offsets
from stream_app.parts import Parts

log = logging.getLogger(__name__)

OBSERVE_INTERVAL = 1.0
SCAN_BUDGET = 20  # wait at least 20 times the last recount's duration: recounting takes <= 5% of the time
SEGMENTS = ("new", "active", "loyal", "at_risk", "churned")  # stream_app/core/segments.py; always exported
UNASSIGNED = "unassigned"  # a member stored before it was first given a segment


class _ScanState:
    def __init__(self) -> None:
        self.needed = True  # set by rebalances: the owned partitions changed
        self.last = 0.0  # monotonic time of the last completed scan
        self.duration = 0.0  # how long it took


class LoyaltySensor(Sensor):
    """Counts what Faust reports through its sensor hooks (called on the event loop thread)."""

    def __init__(self, kind_of, scan: _ScanState, log_start: dict, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kind_of, self._scan, self._log_start = kind_of, scan, log_start
        self._received: dict[str, Any] = {}

    def on_message_in(self, tp, offset: int, message) -> None:
        child = self._received.get(tp.topic)
        if child is None:
            child = self._received[tp.topic] = metrics.MESSAGES_RECEIVED.labels(self._kind_of(tp.topic))
        child.inc()

    def on_commit_initiated(self, consumer) -> Any:
        return time.monotonic(), committed_offsets(consumer)

    def on_commit_completed(self, consumer, state: Any) -> None:
        started, before = state
        # Faust runs a commit cycle every broker_commit_interval: count only those that committed.
        if committed_offsets(consumer) != before:
            metrics.COMMITS.inc()
            metrics.COMMIT_LATENCY.observe(time.monotonic() - started)

    def on_rebalance_start(self, app) -> dict:
        metrics.REBALANCES.inc()
        self._log_start.clear()
        self._scan.needed = True
        return {"time_start": time.monotonic()}

    def on_rebalance_end(self, app, state: dict) -> None:
        metrics.REBALANCE_DURATION.observe(time.monotonic() - state["time_start"])
        self._scan.needed = True


def _tier_and_segment(state: dict | None) -> tuple[str, str] | None:
    return None if state is None else (str(state.get("tier")), str(state.get("segment") or UNASSIGNED))


def member_changed(before: dict | None, after: dict | None) -> None:
    """Move the tier and segment gauges for one member whose state went from `before` to `after`."""
    old, new = _tier_and_segment(before), _tier_and_segment(after)
    if old == new:
        return
    if old is not None:
        metrics.labelled(metrics.MEMBERS_BY_TIER, old[0]).dec()
        metrics.labelled(metrics.MEMBERS_BY_SEGMENT, old[1]).dec()
    if new is not None:
        metrics.labelled(metrics.MEMBERS_BY_TIER, new[0]).inc()
        metrics.labelled(metrics.MEMBERS_BY_SEGMENT, new[1]).inc()


def _publish(gauge, label: str, counts: Counter[str], always: set[str]) -> None:
    """Set every label value counted now, always exported or counted before (0 when none now)."""
    exported = {sample.labels[label] for family in gauge.collect() for sample in family.samples}
    for value in always | set(counts) | exported:
        metrics.labelled(gauge, value).set(counts.get(value, 0))


class Observer:
    """Consumer lag and committed offsets per owned input partition, and members by tier and segment."""

    def __init__(self, parts: Parts) -> None:
        self.app, self.index, self.program = parts.app, parts.member_index, parts.program
        self.kind_of = parts.names.kind_of
        self.tier_scan_interval = parts.settings.tier_scan_seconds
        self.scan = _ScanState()
        self.log_start: dict = {}  # tp -> log start offset, for partitions the group has never committed
        self.sensor = LoyaltySensor(self.kind_of, self.scan, self.log_start)
        self._exported: set[tuple[str, str]] = set()
        self._lookup: asyncio.Future | None = None
        for tier in self.program.tiers:
            metrics.MEMBERS_BY_TIER.labels(tier.name).set(0)
        for segment in SEGMENTS:
            metrics.MEMBERS_BY_SEGMENT.labels(segment).set(0)

    # -- consumer lag ----------------------------------------------------------------------------
    async def _look_up_log_start(self, tps: list) -> None:
        try:
            self.log_start.update(await self.app.consumer.earliest_offsets(*tps))
        except Exception:
            log.debug("cannot read log start offsets of %s", tps, exc_info=True)

    def _input_partitions(self) -> set:
        changelogs = self.app.tables.changelog_topics
        return {tp for tp in self.app.consumer.assignment() if tp.topic not in changelogs}

    async def observe_consumer(self) -> None:
        try:
            tps = self._input_partitions()
        except Exception:  # consumer not started yet, or stopping
            return
        consumer = self.app.consumer
        committed = committed_offsets(consumer)
        unknown = [tp for tp in tps if tp not in committed and tp not in self.log_start]
        if unknown and (self._lookup is None or self._lookup.done()):
            # A broker round trip: off the timer, so a slow answer never delays the next tick.
            self._lookup = asyncio.ensure_future(self._look_up_log_start(unknown))
        current: set[tuple[str, str]] = set()
        for tp in tps:
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not assigned any more, or not fetched yet
                highwater = None
            base = committed.get(tp, self.log_start.get(tp))
            if highwater is None or base is None:
                continue
            labels = (self.kind_of(tp.topic), str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(max(0, highwater - base))
            metrics.COMMITTED_OFFSET.labels(*labels).set(base)
            current.add(labels)
        for labels in self._exported - current:  # partitions this worker no longer owns
            for gauge in (metrics.CONSUMER_LAG, metrics.COMMITTED_OFFSET):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        self._exported = current
        metrics.ASSIGNED_PARTITIONS.set(len(tps))

    # -- members by tier and segment -------------------------------------------------------------
    async def recount_members(self) -> bool:
        """Count the members of the partitions this worker owns by tier and segment.

        False if a rebalance cut the scan short (the gauges then keep their previous values).
        """
        started = time.monotonic()
        tiers: Counter[str] = Counter()
        segments: Counter[str] = Counter()
        totals = [0, 0]  # points liability, points reserved

        def count(key: bytes, entry) -> None:
            tiers[entry[1]] += 1
            segments[entry[2] or UNASSIGNED] += 1
            totals[0] += entry[3]
            totals[1] += entry[4]

        if not await self.index.ensure(int(time.time() * 1000)) or not await self.index.scan(count):
            return False
        liability, reserved = totals
        _publish(metrics.MEMBERS_BY_TIER, "tier", tiers, {t.name for t in self.program.tiers})
        _publish(metrics.MEMBERS_BY_SEGMENT, "segment", segments, set(SEGMENTS))
        metrics.POINTS_LIABILITY.set(liability)
        metrics.POINTS_RESERVED.set(reserved)
        metrics.MEMBERS_SCAN_DURATION.set(time.monotonic() - started)
        metrics.MEMBERS_SCAN_TIMESTAMP.set(time.time())
        return True

    async def count_members(self) -> None:
        """A task rather than a timer: a long recount must not make Faust warn of an overlapping timer."""
        scan = self.scan
        while True:
            await asyncio.sleep(OBSERVE_INTERVAL)
            if self.app.rebalancing or not self.app.tables.recovery.completed.is_set():
                continue
            wait = max(self.tier_scan_interval, SCAN_BUDGET * scan.duration)
            if not scan.needed and time.monotonic() - scan.last < wait:
                continue
            scan.needed = False
            started = time.monotonic()
            try:
                if await self.recount_members():
                    scan.last = time.monotonic()
                    scan.duration = scan.last - started
                else:
                    scan.needed = True
            except Exception:  # e.g. a store closed by a rebalance mid-scan: try again on the next tick
                log.debug("members recount failed", exc_info=True)
                scan.needed = True


def register(app: faust.App, parts: Parts) -> Observer:
    observer = Observer(parts)
    app.sensors.add(observer.sensor)

    async def observe_consumer() -> None:
        await observer.observe_consumer()

    async def count_members() -> None:
        await observer.count_members()

    app.timer(interval=OBSERVE_INTERVAL, name="agents.observe.observe_consumer")(observe_consumer)
    app.task(count_members)
    return observer

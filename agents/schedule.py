"""Wall-clock due work: a timer turns due members into messages on the internal due topic.

The schedule lives in this worker's memory and covers the partitions it owns: the processing
agent updates it after every change, and it is rebuilt from the members table after each
rebalance (tables recovered), so due work survives restarts and moves with its partitions.
The due message is processed by the member's own partition, in order with its events.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import faust
import orjson

from stream_app import metrics
from stream_app.core.due import next_due
from stream_app.core.member import Member
from stream_app.parts import Parts

log = logging.getLogger(__name__)


class DueWork:
    """Rebuilds the schedule after rebalances and sends what is due."""

    def __init__(self, parts: Parts, clock: Callable[[], float] = time.time) -> None:
        self.app, self.program, self.members = parts.app, parts.program, parts.members
        self.schedule, self.topic = parts.schedule, parts.topics.produced["due"]
        self.clock, self.interval = clock, parts.settings.due_tick_seconds
        self.needs_rebuild = True

    def rebuild(self, now: int) -> None:
        """Schedule every member of the partitions this worker now owns."""
        self.schedule.clear()
        for key, raw in self.members.items():
            try:
                self.schedule.set(key, next_due(Member.from_dict(self.members.decode(raw)), self.program, now))
            except Exception:  # one unreadable member must not stop due work for the others
                log.exception("cannot schedule member %r", key)
                metrics.DUE_ERRORS.inc()
        log.info("due schedule rebuilt: %d members scheduled", len(self.schedule))

    async def tick(self) -> None:
        if self.app.rebalancing or not self.app.tables.recovery.completed.is_set():
            return
        now = int(self.clock() * 1000)
        if self.needs_rebuild:
            self.rebuild(now)
            self.needs_rebuild = False
        due = self.schedule.pop_due(now)
        for key, _ in due:
            await self.topic.send(key=key, value=orjson.dumps({"at": now}))
        metrics.DUE_SENT.inc(len(due))
        metrics.DUE_LAG.set((now - due[0][1]) / 1000 if due else 0)
        metrics.DUE_SCHEDULED.set(len(self.schedule))


def register(app: faust.App, parts: Parts) -> DueWork:
    work = DueWork(parts)

    @app.on_rebalance_complete.connect
    async def _after_rebalance(sender, **kwargs) -> None:
        work.needs_rebuild = True

    async def send_due_work() -> None:
        await work.tick()

    app.timer(interval=work.interval, name="agents.schedule.send_due_work")(send_due_work)
    return work

"""Wall-clock due work: a timer turns due members into messages on the internal due topic.

The schedule lives in this worker's memory and covers the partitions it owns: the processing
agent updates it after every change, and it is rebuilt from the members table after each
rebalance (tables recovered), so due work survives restarts and moves with its partitions.
The due message is processed by the member's own partition, in order with its events.
"""
from __future__ import annotations

import logging
import time

import orjson

from stream_app import metrics
from stream_app.app import app, program, settings
from stream_app.core.due_schedule import DueSchedule
from stream_app.core.engine import next_due
from stream_app.core.member import Member
from tables.members import members
from topics.channels import produced

log = logging.getLogger(__name__)
schedule = DueSchedule()
_needs_rebuild = True


@app.on_rebalance_complete.connect
async def _after_rebalance(sender, **kwargs) -> None:
    global _needs_rebuild
    _needs_rebuild = True


def _rebuild(now: int) -> None:
    """Schedule every member of the partitions this worker now owns."""
    schedule.clear()
    for key, raw in members.items():
        try:
            schedule.set(key, next_due(Member.from_dict(members.decode(raw)), program, now))
        except Exception:  # one unreadable member must not stop due work for the others
            log.exception("cannot schedule member %r", key)
            metrics.DUE_ERRORS.inc()
    log.info("due schedule rebuilt: %d members scheduled", len(schedule))


@app.timer(interval=settings.due_tick_seconds)
async def send_due_work() -> None:
    global _needs_rebuild
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    now = int(time.time() * 1000)
    if _needs_rebuild:
        _rebuild(now)
        _needs_rebuild = False
    due = schedule.pop_due(now)
    for key, _ in due:
        await produced["due"].send(key=key, value=orjson.dumps({"at": now}))
    metrics.DUE_SENT.inc(len(due))
    metrics.DUE_LAG.set((now - due[0][1]) / 1000 if due else 0)
    metrics.DUE_SCHEDULED.set(len(schedule))

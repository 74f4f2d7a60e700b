"""The worker process's runtime: its event loop, its garbage collector, and how late its loop runs.

- **uvloop** (`prepare_process`, called by the two entry points before any loop exists:
  `loyalty worker` and `faust -A stream_app.app worker`): libuv's event loop instead of asyncio's
  selector loop, Faust's own supported choice (`faust worker --loop uvloop` does the same).
- **Garbage collector.** A batch of up to 1,000 member states (dicts of dicts and lists) lives
  through up to four batches in flight (agents/batch.py), so with Python's default thresholds
  (700, 10, 10) those objects are promoted and every tenth second-generation collection walks them
  all: full collections of tens of ms, about 25 µs per event (docs/benchmarks.md). The first
  threshold is raised to `GC_THRESHOLD` (a young collection per 50,000 allocations, which a batch
  makes in a few ms, instead of per 700) and, once the tables are recovered, `gc.freeze()` moves
  everything alive then (modules, the program, Faust's and aiokafka's objects) to a permanent
  generation no collection walks again. Reference cycles are still collected, less often.
- **Collector time**, which no sampling profiler shows: `gc.callbacks` timers feed
  `loyalty_gc_pause_seconds{generation}`.
- **Faust's Monitor** (`QuietMonitor`, the app's `Monitor` setting): Faust calls its monitor for
  every message in and out (and its partition's end offset), every stream event and every table
  access, to keep figures for its own `/stats` pages, which the service does not serve
  (stream_app/compose.py); those hooks do nothing here. The commit, rebalance, assignment and web
  hooks keep Faust's behaviour.
- **Loop lag**: a task asks to wake every `LAG_INTERVAL` s and records how late it woke in
  `loyalty_event_loop_lag_seconds`: anything that holds the loop (a long batch, a scan, a full
  collection) shows there. Faust's timers log "Timer ... woke up too late" (mode.timers, INFO)
  for the same cause when the drift passes their limit.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import time

import faust
from faust.sensors import Monitor

from stream_app import metrics

log = logging.getLogger(__name__)

GC_THRESHOLD = (50_000, 20, 20)
LAG_INTERVAL = 0.1  # seconds between the loop-lag task's wake-ups
_gc_started: dict[int, float] = {}


def _nothing(*args, **kwargs) -> None:
    return None


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message, per-event, per-send and per-table-access bookkeeping."""

    PER_MESSAGE_HOOKS = ("on_message_in", "on_stream_event_in", "on_stream_event_out", "on_message_out",
                         "on_topic_buffer_full", "on_table_get", "on_table_set", "on_table_del",
                         "on_send_initiated", "on_send_completed", "on_send_error", "track_tp_end_offset")


for _hook in QuietMonitor.PER_MESSAGE_HOOKS:
    setattr(QuietMonitor, _hook, _nothing)


def prepare_process() -> None:
    """uvloop and the collector's thresholds and timers, for a worker process (before its loop exists)."""
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    gc.set_threshold(*GC_THRESHOLD)
    if _time_collection not in gc.callbacks:
        gc.callbacks.append(_time_collection)


def _time_collection(phase: str, info: dict) -> None:
    generation = info["generation"]
    if phase == "start":
        _gc_started[generation] = time.perf_counter()
    elif (started := _gc_started.pop(generation, None)) is not None:
        metrics.GC_PAUSE[generation].observe(time.perf_counter() - started)


async def freeze_after_recovery(app: faust.App) -> None:
    """Once the tables are recovered: collect once, then exempt what is alive from later collections."""
    await app.tables.recovery.completed.wait()
    gc.collect()
    gc.freeze()
    log.info("garbage collector: %d objects frozen after start", gc.get_freeze_count())


async def measure_loop_lag(clock=time.perf_counter, sleep=asyncio.sleep) -> None:
    """Forever: sleep LAG_INTERVAL and record how much later than asked the loop woke this task."""
    while True:
        asked = clock()
        await sleep(LAG_INTERVAL)
        metrics.LOOP_LAG.observe(max(0.0, clock() - asked - LAG_INTERVAL))


def register(app: faust.App) -> None:
    async def freeze() -> None:
        await freeze_after_recovery(app)

    async def loop_lag() -> None:
        loop = asyncio.get_running_loop()
        log.info("event loop: %s.%s", type(loop).__module__, type(loop).__name__)
        await measure_loop_lag()

    app.task(freeze)
    app.task(loop_lag)

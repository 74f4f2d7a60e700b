"""The worker's runtime tuning (stream_app/runtime.py): the quiet Monitor, loop lag, collector timers."""
from __future__ import annotations

import gc

from faust.sensors import Monitor

from stream_app import metrics, runtime
from stream_app.compose import build_parts
from stream_app.core.program import load_program
from stream_app.settings import load_settings


def count(histogram) -> float:
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


def gc_count(generation: str) -> float:
    return next(s.value for s in metrics._GC_PAUSE.collect()[0].samples
                if s.name.endswith("_count") and s.labels["generation"] == generation)


def test_every_silenced_hook_is_one_faust_calls_on_its_monitor() -> None:
    for hook in runtime.QuietMonitor.PER_MESSAGE_HOOKS:
        assert callable(getattr(Monitor, hook)), hook  # renamed in Faust: this list must follow
        assert getattr(runtime.QuietMonitor, hook) is not getattr(Monitor, hook)


def test_the_quiet_monitor_keeps_no_per_message_figures() -> None:
    monitor = runtime.QuietMonitor()
    monitor.on_message_in(None, 1, None)
    monitor.track_tp_end_offset(None, 5)
    assert monitor.messages_received_total == 0 and not monitor.tp_end_offsets


def test_the_app_uses_the_quiet_monitor_and_the_cython_fast_paths() -> None:
    parts = build_parts(load_settings({"LOYALTY_STORE": "memory://", "LOYALTY_APP_ID": "runtime-test"}),
                        load_program(""))
    assert isinstance(parts.app.monitor, runtime.QuietMonitor)
    assert parts.app.conf.cython_optimizations is True


async def test_loop_lag_is_how_much_later_than_asked_the_task_woke() -> None:
    now = [100.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds + 0.3  # woke 0.3 s late
        if len(woken) == 2:
            raise StopAsyncIteration
        woken.append(seconds)

    woken: list[float] = []
    before = count(metrics.LOOP_LAG)
    sum_before = next(s.value for s in metrics.LOOP_LAG.collect()[0].samples if s.name.endswith("_sum"))
    try:
        await runtime.measure_loop_lag(clock=lambda: now[0], sleep=sleep)
    except StopAsyncIteration:
        pass
    assert woken == [runtime.LAG_INTERVAL] * 2
    assert count(metrics.LOOP_LAG) == before + 2
    total = next(s.value for s in metrics.LOOP_LAG.collect()[0].samples if s.name.endswith("_sum"))
    assert abs(total - sum_before - 0.6) < 1e-9


def test_collections_are_timed_by_generation() -> None:
    installed = runtime._time_collection in gc.callbacks
    if not installed:
        gc.callbacks.append(runtime._time_collection)
    try:
        before = gc_count("2"), gc_count("0")
        gc.collect(2)
        gc.collect(0)
        assert (gc_count("2"), gc_count("0")) == (before[0] + 1, before[1] + 1)
    finally:
        if not installed:
            gc.callbacks.remove(runtime._time_collection)

"""The long-history run's own figures (`bench.run --workload year`): state sizes, CPU by history length.

- `changelog_sizes`: the members changelog read from the beginning: bytes written per input event,
  and each member's last state (its size now): median, p99 and max, over all members and over the
  heavy members with at least 1,000 events.
- `probe_cpu`: after the throughput run, with the worker idle, a small backlog of the heavy day's mix
  per history bucket (bench/year.py BUCKETS); the worker process's CPU time over each, less what it
  spends idle (measured just before, polled the same way), per event.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.year import BUCKETS, YearPlan, probe_messages
from stream_app.loadgen import produce

IDLE_S = 5.0
POLL_S = 0.5


def _quantiles(sizes: list[int]) -> dict:
    if not sizes:
        return {"members": 0}
    sizes = sorted(sizes)
    return {"members": len(sizes), "median": sizes[len(sizes) // 2],
            "p99": sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))], "max": sizes[-1]}


async def changelog_sizes(bootstrap: str, topic: str, plan: YearPlan, client_options: dict) -> dict:
    """Records and bytes (keys and values) on `topic` so far, and the size of each member's last state."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024, client_id="bench-changelog", **client_options)
    await consumer.start()
    last: dict[bytes, int] = {}
    records = total = 0
    started = time.monotonic()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, messages in batch.items():
                for m in messages:
                    records += 1
                    size = len(m.value) if m.value is not None else 0
                    total += size + len(m.key or b"")
                    if m.value is None:
                        last.pop(m.key, None)
                    else:
                        last[m.key] = size
                if messages and messages[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    long_ids = {plan.member_id(k).encode() for k in plan.heavy_in(1000, 10 ** 9)}
    return {"records": records, "bytes": total, "read_s": time.monotonic() - started,
            "all": _quantiles(list(last.values())),
            "heavy_1000": _quantiles([size for key, size in last.items() if key in long_ids])}


def probe_cpu(worker, plan: YearPlan, bootstrap: str, prefix: str, count: int, client_options: dict,
              log: Callable[[str], None]) -> dict:
    """CPU µs per event of the worker for `count` events per history bucket (see the module doc)."""
    proc = psutil.Process(worker.proc.pid)

    def cpu() -> float:
        times = proc.cpu_times()
        return times.user + times.system

    started, cpu0 = time.monotonic(), cpu()
    while time.monotonic() - started < IDLE_S:
        worker.processed()
        time.sleep(POLL_S)
    idle_rate = (cpu() - cpu0) / (time.monotonic() - started)
    rows = []
    for bucket in BUCKETS:
        messages = probe_messages(plan, bucket, count, int(time.time() * 1000) - 30_000, f"{int(time.time())}")
        if not messages:
            rows.append({"bucket": bucket, "events": 0})
            continue
        members = len({key for _, key, _ in messages})
        base = worker.processed() or 0
        t0, c0 = time.monotonic(), cpu()
        asyncio.run(produce(iter(messages), bootstrap, prefix, None, client_options=client_options))
        worker.wait_processed(int(base) + len(messages), timeout=1800)
        t1, c1 = time.monotonic(), cpu()
        used = max(0.0, c1 - c0 - idle_rate * (t1 - t0))
        rows.append({"bucket": bucket, "events": len(messages), "members": members, "wall_s": t1 - t0,
                     "cpu_s": c1 - c0, "us_per_event": used / len(messages) * 1e6})
        log(f"probe history {bucket}: {rows[-1]['us_per_event']:,.0f} µs CPU per event over {len(messages)} events")
    return {"idle_cpu_per_s": idle_rate, "rows": rows}


def render(report: dict) -> list[str]:
    """Markdown lines of the long-history figures (empty for the default workload)."""
    year = report.get("year")
    if not year:
        return []
    plan = year["plan"]
    lines = ["", f"### Long history (scale {plan['scale']:g}: {plan['heavy']:,} heavy members, "
                 f"{plan['light']:,} light, {plan['events']:,} events over 365 days)", ""]
    sizes = year.get("changelog")
    if sizes:
        events = report["args"]["events"]
        lines += ["Members changelog after the throughput run: "
                  f"{sizes['records']:,} records, {sizes['bytes'] / 1048576:,.1f} MiB, "
                  f"**{sizes['bytes'] / events:,.0f} bytes per input event** (read in {sizes['read_s']:.0f} s).", "",
                  "| members | count | median state | p99 | max |", "|---|---:|---:|---:|---:|"]
        for label, key in (("all", "all"), ("heavy, >= 1,000 events", "heavy_1000")):
            q = sizes[key]
            if q.get("members"):
                lines.append(f"| {label} | {q['members']:,} | {q['median']:,} B | {q['p99']:,} B | {q['max']:,} B |")
    probes = year.get("probes")
    if probes:
        idle = probes["idle_cpu_per_s"] * 1000
        lines += ["", "CPU of the worker per event by the member's history length (a backlog of the heavy day's "
                      f"mix per bucket, worker otherwise idle; its idle CPU, {idle:.0f} ms/s, subtracted):", "",
                  "| history (events) | events | members | wall | CPU µs/event |", "|---|---:|---:|---:|---:|"]
        for row in probes["rows"]:
            low, high = row["bucket"]
            label = "new (< 10)" if low == 0 else f"{low:,}-{high:,}" if high < 10_000 else f">= {low:,}"
            if not row["events"]:
                lines.append(f"| {label} | 0 | | | |")
                continue
            lines.append(f"| {label} | {row['events']:,} | {row['members']:,} | {row['wall_s']:.1f} s | "
                         f"{row['us_per_event']:,.0f} |")
    return lines

"""Measured at scale: throughput, latency and recovery of the service against two peers.

    .venv/bin/python -m bench.run                                # full size: 1,000,000 events, 100,000 members
    .venv/bin/python -m bench.run --events 20000 --members 2000  # smoke size, about a minute or two

Needs the local broker (`make up`). What it does, in order (bench/README.md has the details):

1. creates its own input topics (unique prefix `bench<tag>.`, never `loyalty.`) and produces the
   workload from `stream_app.loadgen.generate` into them before anything is measured;
2. throughput, each contender alone, from the beginning, with a fresh consumer group and fresh
   state: the plain aiokafka loop (`bench.baseline`), the Quix Streams peer (`bench.quix_peer`),
   then the service (one `faust -A stream_app.app worker`, RocksDB, full default program);
3. end-to-end latency at a fixed offered load on the still-running service worker (produce time
   to the reward's arrival on the rewards topic, matched by `source_event_id`);
4. recovery of the service: restart with its RocksDB data kept, then a fresh worker with an empty
   data dir and the same app id that rebuilds the members table from the changelog; process
   start to GET /ready 200;
5. latency of the peers (they start at the end of the input topics: no state to warm);
6. prints Markdown tables, writes them to --doc (docs/benchmarks.md), deletes its topics.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/run.py`
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from stream_app.kafka_security import client_options  # noqa: E402
from stream_app.loadgen import DEFAULT_MIX, Progress, generate, produce  # noqa: E402
from stream_app.settings import load_kafka_security  # noqa: E402
from stream_app.worker_process import WorkerProcess  # noqa: E402
from topics.catalog import INPUT_KINDS  # noqa: E402

CONTENDERS = ("service", "baseline", "quix", "fair")
PEERS = ("baseline", "quix", "fair")
SAMPLE_EVERY_S = 0.5
STALL_S = 180.0  # no progress for this long aborts a contender
READY_LIMIT_S = 1800.0  # recovery: a worker not ready by then is reported as such
TARGETS = {"ratio_baseline": 0.5, "ratio_fair": 0.5, "p99_ms": 250.0, "recovery_s": 60.0, "rss_bytes": 1 << 30}
#: The bench's own clients connect like the service (LOYALTY_KAFKA_*); the workers and peers inherit them.
KAFKA = client_options(load_kafka_security())


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine ----------------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    jars = sorted((ROOT / ".cache" / "kafka-libs").glob("kafka_2.13-*.jar"))
    kafka = jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "unknown"

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"nproc": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "kafka": kafka, "os": platform.platform(),
            "faust-streaming": version("faust-streaming"), "aiokafka": version("aiokafka"),
            "quixstreams": version("quixstreams"), "confluent-kafka": version("confluent-kafka"),
            "rocksdict": version("rocksdict"), "commit": _commit()}


def _commit() -> str:
    """The work tree's commit, read from .git without running git."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return "unknown"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- process sampling ---------------------------------------------------------------------------------

class Sampler(threading.Thread):
    """RSS (process and its children) and CPU seconds of one process, every SAMPLE_EVERY_S."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []  # (wall time, rss bytes, cpu seconds)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
                    cpu_s = cpu.user + cpu.system
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        rss += child.memory_info().rss
                        cpu_s += sum(child.cpu_times()[:2])
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                return
            self.samples.append((time.time(), rss, cpu_s))
            self._halt.wait(SAMPLE_EVERY_S)

    def stop(self) -> Sampler:
        self._halt.set()
        self.join(timeout=5)
        return self

    @property
    def peak_rss(self) -> int:
        return max((s[1] for s in self.samples), default=0)

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used between two wall-clock instants (nearest samples inside the window)."""
        inside = [s for s in self.samples if start - SAMPLE_EVERY_S <= s[0] <= end + SAMPLE_EVERY_S]
        if len(inside) < 2:
            return None
        (t0, _, c0), (t1, _, c1) = inside[0], inside[-1]
        return (c1 - c0) * (end - start) / (t1 - t0) if t1 > t0 else None


# -- kafka helpers ------------------------------------------------------------------------------------

async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin", **KAFKA)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
        for _ in range(100):  # wait until every partition has a leader
            if set(names) <= set(await admin.list_topics()):
                described = await admin.describe_topics(names)
                if all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
                       for t in described):
                    await asyncio.sleep(0.5)
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError("the bench's topics have no leaders after 20 s")
    finally:
        await admin.close()


LEFTOVER = re.compile(r"(^|__)bench[0-9a-f]{8}[.-]")


async def delete_topics(bootstrap: str, tag: str | None) -> list[str]:
    """Delete every topic whose name contains this run's tag (inputs, outputs, changelogs); with
    no tag, every topic any bench run left behind (`--cleanup`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin", **KAFKA)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if (tag in t if tag else LEFTOVER.search(t)))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str, wait_s: float = 20.0) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin", **KAFKA)
    await admin.start()
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if topic in set(await admin.list_topics()):
                (described,) = await admin.describe_topics([topic])
                if described["error_code"] == 0 and described["partitions"]:
                    return sorted(p["partition"] for p in described["partitions"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no topic {topic}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Messages in each topic (sum of its partitions' end offsets; no deletes happen here)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **KAFKA)
    await consumer.start()
    try:
        out = {}
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
            offsets = await consumer.end_offsets(tps) if tps else {}
            out[topic] = sum(offsets.values())
        return out
    finally:
        await consumer.stop()


# -- workload -------------------------------------------------------------------------------------------

def produce_workload(args, prefix: str) -> dict:
    """The throughput workload: events spaced 1 ms apart, ending about a minute ago; or (`--workload
    year`) a year of a platform ending a minute ago (bench/year.py)."""
    if args.workload == "year":
        messages = args.plan.messages()
    else:
        step_ms = 1.0
        start_ms = int(time.time() * 1000) - int(args.events * step_ms) - 60_000
        messages = generate(args.members, args.events, args.seed, DEFAULT_MIX, start_ms, step_ms)
    progress = Progress(args.events, interval=10.0)
    delivery = asyncio.run(produce(messages, args.bootstrap, prefix, None, progress, client_options=KAFKA))
    progress.finish(delivery.sent)
    if delivery.failed:
        raise RuntimeError(f"{delivery.failed} deliveries failed: {delivery.first_error}")
    return {"sent": delivery.sent, "seconds": delivery.seconds}


# -- the service ------------------------------------------------------------------------------------------

class ServiceWorker(WorkerProcess):
    """A WorkerProcess sampled from its first instant: `spawn()` returns at once, readiness polled every 0.1 s."""

    def wait_ready(self, timeout: float = 90, poll: float = 0.1) -> float:
        return super().wait_ready(timeout, poll)

    def at_port(self, port: int) -> ServiceWorker:
        """Serve on `port` (a worker taking over the static member identity keeps its address: the group
        hands it the previous assignment, whose metadata names that address; Faust's assignor asserts it)."""
        self.port, self.env["LOYALTY_WEB_PORT"] = port, str(port)
        return self

    def metric_sum(self, name: str) -> float | None:
        status, body = self.get("/metrics")
        if status != 200 or not isinstance(body, str):
            return None
        total, seen = 0.0, False
        for line in body.splitlines():
            if line.startswith(name) and (line[len(name):len(name) + 1] in ("{", " ")):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        return total if seen else None

    def processed(self) -> float | None:
        """Input events processed: loyalty_events_total over the input topic kinds (internal kinds,
        such as the device index fed by the worker itself, are left out)."""
        counts = outcome_counts(self, by="topic")
        return sum(v for k, v in counts.items() if k in INPUT_KINDS) if counts else None

    def wait_processed(self, target: int, sampler_samples: list | None = None,
                       timeout: float | None = None) -> list[tuple[float, float]]:
        """Sample loyalty_events_total every SAMPLE_EVERY_S until it reaches `target`."""
        samples: list[tuple[float, float]] = []
        last_change, last = time.monotonic(), -1.0
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            now, count = time.time(), self.processed()
            if count is not None:
                samples.append((now, count))
                if count >= target:
                    return samples
                if count > last:
                    last, last_change = count, time.monotonic()
            if time.monotonic() - last_change > STALL_S:
                raise TimeoutError(f"service stalled at {last:.0f}/{target} events:\n{self.log_tail()}")
            if timeout and time.monotonic() - started > timeout:
                raise TimeoutError(f"service at {last:.0f}/{target} events after {timeout}s")
            time.sleep(SAMPLE_EVERY_S)

    def stop_timed(self) -> dict:
        started = time.monotonic()
        self.stop()
        return {"seconds": round(time.monotonic() - started, 1), "returncode": self.proc.returncode}


def rate_from_samples(samples: list[tuple[float, float]], target: int) -> dict:
    """events/s between the first sample showing progress and the first showing `target`."""
    first = next(((t, c) for t, c in samples if c > 0), None)
    last = next(((t, c) for t, c in samples if c >= target), None)
    if first is None or last is None or last[0] <= first[0]:
        return {"events_per_s": None, "first_at": first and first[0], "last_at": last and last[0]}
    return {"events_per_s": (last[1] - first[1]) / (last[0] - first[0]), "first_at": first[0],
            "last_at": last[0], "window_events": last[1] - first[1]}


def service_env(args, tag: str, prefix: str) -> dict[str, str]:
    env = {"LOYALTY_BROKER": f"kafka://{args.bootstrap}", "LOYALTY_APP_ID": f"{tag}-service",
           "LOYALTY_TOPIC_PREFIX": prefix, "LOYALTY_PARTITIONS": str(args.partitions),
           "LOYALTY_STORE": "rocksdb://", "LOYALTY_WEB_HOST": "127.0.0.1",
           # One static member identity for every service worker of the run: the recovery runs take over
           # the stopped worker's place at once instead of waiting out its session (60 s) for a rebalance.
           "LOYALTY_WORKER_NAME": f"{tag}-service"}
    if args.order_grace:
        env["LOYALTY_ORDER_GRACE"] = args.order_grace
    return env


def service_throughput(args, tag: str, prefix: str, work: Path) -> tuple[ServiceWorker, dict]:
    worker = ServiceWorker(service_env(args, tag, prefix), work / "service-data", work / "service.log")
    (work / "service-data").mkdir()
    worker.spawn()
    sampler = Sampler(worker.proc.pid)
    sampler.start()
    try:
        ready_s = worker.wait_ready(timeout=180)
        log(f"service ready after {ready_s:.1f}s; processing {args.events} events")
        profiler: list[subprocess.Popen | None] = []
        if args.profile:  # start once the worker is past its start-up, in the steady state
            timer = threading.Timer(15.0, lambda: profiler.append(
                start_profiler(worker.proc.pid, args.profile, work / "service-profile.txt")))
            timer.start()
        samples = worker.wait_processed(args.events)
    except BaseException:
        sampler.stop()
        worker.stop()
        raise
    sampler.stop()
    if args.profile:
        timer.cancel()
        if profiler and profiler[0]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler[0].wait(timeout=args.profile + 60)
    rate = rate_from_samples(samples, args.events)
    result = {"contender": "service", "ready_s": ready_s, **rate,
              "startup_to_first_s": (rate["first_at"] - worker.spawned_at) if rate["first_at"] else None,
              "drain_s": samples[-1][0] - worker.spawned_at, "peak_rss": sampler.peak_rss,
              "cpu_s": sampler.cpu_between(rate["first_at"], rate["last_at"]) if rate["events_per_s"] else None,
              "outcomes": outcome_counts(worker, inputs_only=True), "profile": bool(args.profile),
              **runtime_figures(worker)}
    return worker, result


def runtime_figures(worker: ServiceWorker) -> dict:
    """Collector time and loop lag so far (stream_app/runtime.py metrics; absent before them), and how often
    Faust's timers logged that they woke up too late."""
    status, body = worker.get("/metrics")
    out: dict = {"timer_late_warnings": worker.log_path.read_text(errors="replace").count("woke up too late")}
    if status != 200 or not isinstance(body, str):
        return out
    out["gc_s"] = worker.metric_sum("loyalty_gc_pause_seconds_sum")
    out["due_sent"] = worker.metric_sum("loyalty_due_sent_total")
    out["forced"] = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^loyalty_order_forced_total\{reason="([^"]+)"\} (\S+)$', body, re.M)}
    buckets = sorted((float(m.group(1)), float(m.group(2))) for m in re.finditer(
        r'^loyalty_event_loop_lag_seconds_bucket\{le="([^"+]+)"\} (\S+)$', body, re.M))
    total = worker.metric_sum("loyalty_event_loop_lag_seconds_count")
    if buckets and total:
        out["loop_lag_p99_le"] = next((le for le, n in buckets if n >= 0.99 * total), None)
        out["loop_lag_over_50ms"] = total - next((n for le, n in buckets if le >= 0.05), total)
        out["loop_lag_samples"] = total
    return out


def year_figures(args, tag: str, prefix: str, worker: ServiceWorker, report: dict) -> int:
    """The long-history figures on the worker after its throughput run; returns the events it sent."""
    from bench import long_history

    plan = args.plan
    year = report["year"] = {"plan": {"scale": args.scale, "heavy": plan.heavy, "light": plan.light,
                                      "events": plan.events}}
    time.sleep(3)  # the writer's last batch reaches the changelog
    changelog = f"{tag}-service-members-changelog"
    log(f"reading {changelog}")
    year["changelog"] = asyncio.run(long_history.changelog_sizes(args.bootstrap, changelog, plan, KAFKA))
    log(f"changelog: {year['changelog']['bytes'] / args.events:,.0f} bytes per input event; states "
        f"{year['changelog']['all']}")
    year["probes"] = long_history.probe_cpu(worker, plan, args.bootstrap, prefix, args.probe_events, KAFKA, log)
    return sum(row["events"] for row in year["probes"]["rows"])


def outcome_counts(worker: ServiceWorker, by: str = "outcome", inputs_only: bool = False) -> dict[str, float]:
    """loyalty_events_total summed by one label (`outcome` or `topic`)."""
    status, body = worker.get("/metrics")
    out: dict[str, float] = {}
    if status == 200 and isinstance(body, str):
        for line in body.splitlines():
            m = re.match(r'loyalty_events_total\{(.*)\} (\S+)$', line)
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
                if inputs_only and labels.get("topic") not in INPUT_KINDS:
                    continue
                key = labels.get(by, "?")
                out[key] = out.get(key, 0) + float(m.group(2))
    return out


# -- the peers --------------------------------------------------------------------------------------------

def peer_config(args, tag: str, prefix: str, work: Path, contender: str, mode: str) -> dict:
    return {"bootstrap": args.bootstrap,
            "topics": [f"{prefix}{kind}" for kind in INPUT_KINDS],
            "output": f"{prefix}{contender}-rewards", "group": f"{tag}-{contender}-{mode}",
            "reset": "earliest" if mode == "throughput" else "latest",
            "stop_after": args.events if mode == "throughput" else 0,
            "state_dir": str(work / f"{contender}-{mode}-state"), "commit_interval": 1.0,
            "partitions": args.partitions,
            "result": str(work / f"{contender}-{mode}.json")}


def spawn_peer(contender: str, cfg: dict, work: Path) -> subprocess.Popen:
    path = work / f"{contender}-{cfg['group']}.cfg.json"
    path.write_bytes(orjson.dumps(cfg))
    module = {"baseline": "bench.baseline", "quix": "bench.quix_peer", "fair": "bench.fair"}[contender]
    log_file = open(work / f"{contender}.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([sys.executable, "-m", module, str(path)], cwd=ROOT, stdout=log_file,
                            stderr=subprocess.STDOUT)


def peer_throughput(args, tag: str, prefix: str, work: Path, contender: str) -> dict:
    cfg = peer_config(args, tag, prefix, work, contender, "throughput")
    spawned_at = time.time()
    proc = spawn_peer(contender, cfg, work)
    sampler = Sampler(proc.pid)
    sampler.start()
    limit = max(600.0, args.events / 200)
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise TimeoutError(f"{contender} did not finish {args.events} events in {limit:.0f}s") from None
    finally:
        sampler.stop()
    if proc.returncode != 0 or not Path(cfg["result"]).exists():
        raise RuntimeError(f"{contender} failed ({proc.returncode}):\n{tail(work / f'{contender}.log')}")
    res = orjson.loads(Path(cfg["result"]).read_bytes())
    if res["count"] < args.events or not res["last_at"]:
        raise RuntimeError(f"{contender} stopped at {res['count']}/{args.events} events")
    seconds = res["last_at"] - res["first_at"]
    return {"contender": contender, "events_per_s": (res["count"] - 1) / seconds if seconds > 0 else None,
            "first_at": res["first_at"], "last_at": res["last_at"],
            "startup_to_first_s": res["first_at"] - spawned_at, "drain_s": res["last_at"] - spawned_at,
            "peak_rss": sampler.peak_rss, "cpu_s": sampler.cpu_between(res["first_at"], res["last_at"]),
            "rewards": res["rewards"]}


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- latency --------------------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


async def measure_latency(args, prefix: str, out_topic: str, seed: int, rate: float | None = None) -> dict:
    """Offer `rate` (default: the first --latency-rate) events/s for `latency_seconds`; time each from its
    hand-over to the producer until the first reward naming it as `source_event_id` arrives on `out_topic`."""
    rate = rate or args.latency_rate
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=10, client_id="bench-latency", **KAFKA)
    await consumer.start()
    arrivals: dict[str, float] = {}
    collector: asyncio.Task | None = None
    try:
        tps = [TopicPartition(out_topic, p) for p in await partitions_of(args.bootstrap, out_topic)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)

        async def collect() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for messages in batch.values():
                    for m in messages:
                        sid = orjson.loads(m.value).get("source_event_id")
                        if sid is not None and sid not in arrivals:
                            arrivals[sid] = now

        collector = asyncio.create_task(collect())
        warmup_sent = await _warm_up(args, prefix, seed, arrivals)
        n = int(rate * args.latency_seconds)
        sent_at = [0.0] * n
        start_ms = int(time.time() * 1000)

        def messages():
            for i, message in enumerate(generate(args.members, n, seed, DEFAULT_MIX, start_ms,
                                                 1000 / rate)):
                sent_at[i] = time.time()
                yield message

        log(f"latency: offering {rate}/s for {args.latency_seconds}s to {prefix}* -> {out_topic}")
        delivery = await produce(messages(), args.bootstrap, prefix, rate, client_options=KAFKA)
        ids = [f"lg-{seed}-{i}" for i in range(n)]
        # drain: until no new matched arrival for 5 s (at most 120 s)
        deadline, seen, quiet_since = time.monotonic() + 120, -1, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 5:
            matched = sum(1 for i in ids if i in arrivals)
            if matched != seen:
                seen, quiet_since = matched, time.monotonic()
            await asyncio.sleep(0.5)
    finally:
        if collector is not None:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await collector
        await consumer.stop()
    latencies = sorted((arrivals[i] - sent_at[k]) * 1000 for k, i in enumerate(ids) if i in arrivals)
    offered = delivery.sent / delivery.seconds if delivery.seconds else 0.0
    return {"sent": delivery.sent, "offered_per_s": offered, "matched": len(latencies),
            "warmup_sent": warmup_sent,
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "max_ms": latencies[-1] if latencies else float("nan")}


async def _warm_up(args, prefix: str, seed: int, arrivals: dict) -> int:
    """Send small batches of the mix until a reward for one comes back (the contender is assigned and
    hot). The whole mix, not just orders: Quix Streams' time alignment of concatenated topics holds a
    partition group back until each of its partitions has had a message since a `latest` reset."""
    sent = 0
    for attempt in range(60):
        wseed = seed * 1000 + attempt
        batch = list(generate(args.members, 200, wseed, DEFAULT_MIX, int(time.time() * 1000), 1.0))
        await produce(iter(batch), args.bootstrap, prefix, None, client_options=KAFKA)
        sent += len(batch)
        ids = [f"lg-{wseed}-{i}" for i in range(len(batch))]
        for _ in range(30):
            if any(i in arrivals for i in ids):
                await asyncio.sleep(2.0)  # let the rest of the warm-up through
                return sent
            await asyncio.sleep(0.1)
    raise TimeoutError("no reward for the warm-up events in 3 minutes")


def peer_latency(args, tag: str, prefix: str, work: Path, contender: str, seed: int) -> dict:
    cfg = peer_config(args, tag, prefix, work, contender, "latency")
    proc = spawn_peer(contender, cfg, work)
    sampler = Sampler(proc.pid)
    sampler.start()
    try:
        result = asyncio.run(measure_latency(args, prefix, cfg["output"], seed))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sampler.stop()
    return {**result, "peak_rss": sampler.peak_rss, "state": "empty (started at the end of the inputs)"}


# -- recovery ---------------------------------------------------------------------------------------------------

def recovery(args, tag: str, prefix: str, work: Path, kept_dir: Path, probe_ids: list[str],
             port: int) -> list[dict]:
    env = service_env(args, tag, prefix)
    results = []
    fresh_dir = work / "service-data-fresh"
    fresh_dir.mkdir()
    for label, data_dir, log_name in (("restart, RocksDB data dir kept", kept_dir, "service-restart.log"),
                                      ("fresh worker, empty data dir (rebuild from changelog)", fresh_dir,
                                       "service-fresh.log")):
        worker = ServiceWorker(env, data_dir, work / log_name).at_port(port)
        worker.spawn()
        sampler = Sampler(worker.proc.pid)
        sampler.start()
        ready_s, found, members, schedule_s = None, 0, None, None
        try:
            try:
                ready_s = worker.wait_ready(timeout=READY_LIMIT_S)
            except TimeoutError:
                log(f"recovery [{label}]: not ready after {READY_LIMIT_S:.0f}s")
                results.append({"scenario": label, "ready_s": None, "probes_found": 0, "probes": len(probe_ids),
                                "members": None, "peak_rss": sampler.peak_rss, "stop": None,
                                "note": f"not ready after {READY_LIMIT_S:.0f} s"})
                continue
            schedule_s = schedule_rebuilt_s(worker)
            found = sum(1 for m in probe_ids if worker.member(m) is not None)
            members = None
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:  # the tier recount (if wired in) runs after the rebalance
                status, body = worker.get("/metrics")
                if status != 200 or "loyalty_members{" not in body:
                    break
                members = worker.metric_sum("loyalty_members")
                if members:
                    break
                time.sleep(0.5)
        finally:
            sampler.stop()
            stopped = worker.stop_timed()
            if results and results[-1]["scenario"] == label:
                results[-1]["stop"] = stopped
        log(f"recovery [{label}]: ready after {ready_s:.1f}s; probes found {found}/{len(probe_ids)}; "
            f"members {members}")
        results.append({"scenario": label, "ready_s": ready_s, "probes_found": found, "probes": len(probe_ids),
                        "members": members, "peak_rss": sampler.peak_rss, "stop": stopped,
                        "schedule_s": schedule_s})
    return results


def schedule_rebuilt_s(worker: ServiceWorker, timeout: float = READY_LIMIT_S) -> float | None:
    """Seconds from the worker's start until it logged `due schedule rebuilt` (its first due tick after
    the tables are recovered; polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.alive():
        if "due schedule rebuilt" in worker.log_path.read_text(errors="replace"):
            return time.time() - worker.spawned_at
        time.sleep(0.1)
    return None


# -- report -------------------------------------------------------------------------------------------------------

def fmt_rate(x: float | None) -> str:
    return f"{x:,.0f}" if x else "n/a"


def fmt_mib(b: int | None) -> str:
    return f"{b / 1048576:,.0f} MiB" if b else "n/a"


def fmt_s(x: float | None) -> str:
    return f"{x:.1f} s" if x is not None else "n/a"


def fmt_ms(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:,.0f} ms" if x >= 10 else f"{x:.1f} ms"


def render(report: dict) -> str:
    a, m = report["args"], report["machine"]
    thr = report["throughput"]
    base = thr.get("baseline", {}).get("events_per_s")
    quix = thr.get("quix", {}).get("events_per_s")
    fair = thr.get("fair", {}).get("events_per_s")
    if "workload" not in report:
        return f"Run {report['started']} failed before the workload was produced: {report.get('error')}\n"
    lines = [f"Run {report['started']} (UTC), commit `{m['commit']}`, tag `{report['tag']}`.", "",
             f"Workload: {a['events']:,} events over {a['members']:,} members, seed {a['seed']}, "
             + (f"a year of a platform at scale {a['scale']:g} (bench/year.py)" if a.get("workload") == "year" else
                "mix " + ", ".join(f"{k} {v:g}%" for k, v in DEFAULT_MIX.items()))
             + f"; {a['partitions']} partitions per input topic; produced in "
             f"{report['workload']['seconds']:.1f} s before any measurement.", "",
             "### Throughput (each contender alone, from the beginning, fresh group and state)", "",
             "| contender | events/s | vs baseline | vs Quix | vs fair ceiling | CPU ms/event | peak RSS "
             "| start to first event | start to last event |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in CONTENDERS:
        r = thr.get(name)
        if not r:
            continue
        eps = r.get("events_per_s")
        cpu = r.get("cpu_s")
        events = r.get("window_events") or a["events"]
        lines.append(
            f"| {name} | {fmt_rate(eps)} | {f'{eps / base:.2f}' if eps and base else 'n/a'} | "
            f"{f'{eps / quix:.2f}' if eps and quix else 'n/a'} | "
            f"{f'{eps / fair:.2f}' if eps and fair else 'n/a'} | "
            f"{f'{cpu / events * 1000:.3f}' if cpu else 'n/a'} | {fmt_mib(r.get('peak_rss'))} | "
            f"{fmt_s(r.get('startup_to_first_s'))} | {fmt_s(r.get('drain_s'))} |")
    svc = thr.get("service")
    if svc and svc.get("outcomes"):
        lines += ["", "Service outcomes: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(svc["outcomes"].items()))
                  + "."]
    if svc and "timer_late_warnings" in svc:
        events = svc.get("window_events") or a["events"]
        lines += ["", "Service runtime: "
                  + (f"garbage collector {svc['gc_s'] / a['events'] * 1e6:.1f} µs per event"
                     if svc.get("gc_s") is not None else "garbage collector not timed")
                  + (f"; event-loop lag p99 ≤ {svc['loop_lag_p99_le'] * 1000:g} ms, "
                     f"{svc['loop_lag_over_50ms']:,.0f} of {svc['loop_lag_samples']:,.0f} wake-ups over 50 ms"
                     if svc.get("loop_lag_p99_le") is not None else "; loop lag not measured")
                  + f"; Faust timers late {svc['timer_late_warnings']:,} times (over {events:,.0f} events)"
                  + (f"; due messages sent {svc['due_sent']:,.0f}" if svc.get("due_sent") is not None else "")
                  + "".join(f"; forced by the merge ({reason}) {n:,.0f}" for reason, n in svc.get("forced", {}).items())
                  + "."]
    if report.get("outputs"):
        lines += ["Messages written: " + ", ".join(f"`{k}` {v:,}" for k, v in report["outputs"].items()) + "."]
    if report.get("latency"):
        rates = " and ".join(f"{r:,.0f}" for r in a.get("latency_rates") or [a["latency_rate"]])
        lines += ["", f"### End-to-end latency at {rates} events/s offered for "
                      f"{a['latency_seconds']:g} s", "",
                  "From the event's hand-over to the producer (load generator, linger 10 ms, acks=1) to the "
                  "first reward naming it (`source_event_id`) arriving at a consumer of the output topic. "
                  "Events that earn nothing (a second login the same day, a capped share) have no reward and "
                  "are not counted.", "",
                  "| contender | state | offered/s | events | matched | p50 | p95 | p99 | max | peak RSS |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in report["latency"].items():
            if "error" in r:
                lines.append(f"| {name} | error: {r['error']} | | | | | | | | |")
                continue
            lines.append(f"| {name} | {r['state']} | {r['offered_per_s']:,.0f} | {r['sent']:,} | {r['matched']:,} | "
                         f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p95_ms'])} | {fmt_ms(r['p99_ms'])} | "
                         f"{fmt_ms(r['max_ms'])} | {fmt_mib(r.get('peak_rss'))} |")
    lines += long_history_lines(report)
    if report.get("recovery"):
        lines += ["", "### Recovery of the service (process start to GET /ready 200)", "",
                  f"Members-table changelog: {report.get('changelog_records', 0):,} records.", "",
                  "| scenario | start to ready | start to due schedule rebuilt | members in table | "
                  "probe members found | peak RSS |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in report["recovery"]:
            members = f"{r['members']:,.0f}" if r["members"] else "n/a"
            lines.append(f"| {r['scenario']} | {fmt_s(r['ready_s']) if r['ready_s'] else r.get('note')} | "
                         f"{fmt_s(r.get('schedule_s'))} | {members} | "
                         f"{r['probes_found']}/{r['probes']} | {fmt_mib(r['peak_rss'])} |")
    if report.get("error"):
        lines += ["", f"**The run failed:** {report['error'][:500]}"]
    lines += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for target, measured, met in targets(report):
        lines.append(f"| {target} | {measured} | {met} |")
    lines += ["", "### Machine", "",
              f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, {m['os']}",
              f"- Python {m['python']}; Kafka {m['kafka']} (single KRaft node on 127.0.0.1, ops/kafka.sh)",
              f"- faust-streaming {m['faust-streaming']}, aiokafka {m['aiokafka']}, rocksdict {m['rocksdict']}, "
              f"quixstreams {m['quixstreams']}, confluent-kafka {m['confluent-kafka']}",
              f"- load average at start / end: {report['load_start']} / {report.get('load_end', '?')} "
              "(the broker, the bench and the contender share the 2 cores)", "",
              "Command:", "", "```sh", report["command"], "```"]
    return "\n".join(lines) + "\n"


def long_history_lines(report: dict) -> list[str]:
    if not report.get("year"):
        return []
    from bench import long_history

    return long_history.render(report)


def targets(report: dict) -> list[tuple[str, str, str]]:
    thr = report["throughput"]
    out = []
    svc, base, quix = (thr.get(k, {}).get("events_per_s") for k in ("service", "baseline", "quix"))
    if svc and base:
        ratio = svc / base
        out.append(("service ≥ 50% of the plain aiokafka baseline", f"{ratio:.0%}",
                    "yes" if ratio >= TARGETS["ratio_baseline"] else "**no**"))
    fair = thr.get("fair", {}).get("events_per_s")
    if svc and fair:
        out.append(("service ≥ 50% of the fair ceiling (aiokafka loop running the same core)", f"{svc / fair:.0%}",
                    "yes" if svc / fair >= TARGETS["ratio_fair"] else "**no**"))
    if svc and quix:
        out.append(("service ahead of Quix Streams", f"{svc / quix:.2f}×", "yes" if svc > quix else "**no**"))
    lat = report.get("latency", {}).get("service")
    if lat and "p99_ms" in lat:
        out.append((f"p99 < 250 ms at {report['args']['latency_rate']:,.0f} events/s", fmt_ms(lat["p99_ms"]),
                    "yes" if lat["p99_ms"] < TARGETS["p99_ms"] else "**no**"))
    fresh = next((r for r in report.get("recovery", []) if "fresh" in r["scenario"]), None)
    if fresh:
        n = report["args"]["members"]
        ok = fresh["ready_s"] is not None and fresh["ready_s"] < TARGETS["recovery_s"]
        out.append((f"recovery of {n:,} members < 60 s", fmt_s(fresh["ready_s"]) if fresh["ready_s"] else
                    fresh.get("note", "n/a"), "yes" if ok else "**no**"))
    if svc:
        rss = max([thr["service"].get("peak_rss") or 0] + [r["peak_rss"] for r in report.get("recovery", [])]
                  + [report.get("latency", {}).get("service", {}).get("peak_rss") or 0])
        out.append(("service RSS < 1 GiB", fmt_mib(rss), "yes" if rss < TARGETS["rss_bytes"] else "**no**"))
    return out


# -- main --------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--members", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=int(os.environ.get("LOYALTY_PARTITIONS") or 8))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", default=",".join(CONTENDERS),
                   help="comma-separated contenders among service,baseline,quix,fair (default: all)")
    p.add_argument("--workload", choices=("default", "year"), default="default",
                   help="default: --events over --members, 1 ms apart; year: a year of a platform (bench/year.py)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="--workload year: multiplies its 20,000 heavy and 200,000 light members")
    p.add_argument("--probe-events", type=int, default=3000,
                   help="--workload year: events per history bucket of the CPU-per-event probes")
    p.add_argument("--latency-rate", default="",
                   help="offered events/s of the latency runs, comma-separated (default 2000; year: 2000,5000)")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-recovery", action="store_true")
    p.add_argument("--order-grace", default="", metavar="DURATION",
                   help="LOYALTY_ORDER_GRACE of the service worker, e.g. PT0S or PT2S (default: the worker's)")
    p.add_argument("--bootstrap", default=os.environ.get("LOYALTY_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"),
                   help="Markdown file to write the results to ('' to skip)")
    p.add_argument("--json", default="", help="also write the raw results here")
    p.add_argument("--keep", action="store_true", help="keep the topics and the work dir (debugging)")
    p.add_argument("--cleanup", action="store_true",
                   help="only delete the topics that earlier bench runs left behind (bench<hex>.*), then exit")
    p.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                   help="py-spy the service worker for this long during its throughput run (raw stacks "
                        "to the work dir; distorts the service's figures a little)")
    args = p.parse_args(argv)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    try:
        args.latency_rates = [float(r) for r in (args.latency_rate or ("2000,5000" if args.workload == "year"
                                                                       else "2000")).split(",") if r.strip()]
    except ValueError:
        p.error("--latency-rate takes numbers, comma-separated")
    if not args.latency_rates or min(args.latency_rates) <= 0:
        p.error("--latency-rate must be positive")
    args.latency_rate = args.latency_rates[0]
    if args.workload == "year":
        from bench.year import YearPlan

        args.plan = YearPlan.at_scale(args.scale, args.seed, int(time.time() * 1000) - 60_000)
        args.events, args.members = args.plan.events, args.plan.members
    unknown = set(args.only) - set(CONTENDERS)
    if unknown or not args.only:
        p.error(f"--only takes {','.join(CONTENDERS)}; got {','.join(sorted(unknown)) or 'nothing'}")
    if args.scale <= 0 or args.probe_events < 1:
        p.error("--scale and --probe-events must be positive")
    if args.events < 1 or args.members < 1 or args.partitions < 1:
        p.error("--events, --members and --partitions must be positive")
    return args


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        log("py-spy not found: pip install py-spy")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
                             "--format", "raw", "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cleanup:
        deleted = asyncio.run(delete_topics(args.bootstrap, None))
        log(f"deleted {len(deleted)} topics: {', '.join(deleted)}")
        return 0
    tag = f"bench{uuid.uuid4().hex[:8]}"
    prefix = f"{tag}."
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    report: dict = {"tag": tag, "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
                    "args": {k: v for k, v in vars(args).items() if k not in ("doc", "json", "plan")},
                    "machine": machine_info(), "load_start": loadavg(), "throughput": {}, "latency": {},
                    "command": ".venv/bin/python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])}
    log(f"tag {tag}, work dir {work}, topics {prefix}*")
    worker: ServiceWorker | None = None
    try:
        inputs = [f"{prefix}{k}" for k in INPUT_KINDS]
        outputs = [f"{prefix}{c}-rewards" for c in PEERS if c in args.only]
        if "fair" in args.only:
            outputs += [f"{prefix}fair-rewards-notifications", f"{prefix}fair-rewards-changelog"]
        asyncio.run(create_topics(args.bootstrap, inputs + outputs, args.partitions))
        log(f"producing {args.events:,} events over {args.members:,} members")
        report["workload"] = produce_workload(args, prefix)
        log(f"produced in {report['workload']['seconds']:.1f}s")

        for contender in PEERS:
            if contender in args.only:
                log(f"{contender}: throughput")
                report["throughput"][contender] = r = peer_throughput(args, tag, prefix, work, contender)
                log(f"{contender}: {fmt_rate(r['events_per_s'])} events/s, peak RSS {fmt_mib(r['peak_rss'])}")
                save(report, work, args)

        if "service" in args.only:
            log("service: throughput")
            worker, r = service_throughput(args, tag, prefix, work)
            if r.pop("profile", None):
                report["profile"] = str(work / "service-profile.txt")
            report["throughput"]["service"] = r
            log(f"service: {fmt_rate(r['events_per_s'])} events/s, peak RSS {fmt_mib(r['peak_rss'])}")
            save(report, work, args)
            extra = 0
            if args.workload == "year":
                extra = year_figures(args, tag, prefix, worker, report)
                save(report, work, args)
            if not args.skip_latency:
                for i, rate in enumerate(args.latency_rates):
                    sampler = Sampler(worker.proc.pid)
                    sampler.start()
                    try:
                        lat = asyncio.run(measure_latency(args, prefix, f"{prefix}rewards", args.seed + 1 + 10 * i,
                                                          rate))
                    finally:
                        sampler.stop()
                    name = "service" if i == 0 else f"service @{rate:,.0f}/s"
                    report["latency"][name] = {**lat, "peak_rss": sampler.peak_rss,
                                               "state": f"warm ({args.members:,} members after the throughput run)"}
                    extra += lat["sent"] + lat["warmup_sent"]
                    log(f"service latency at {rate:,.0f}/s: p50 {fmt_ms(lat['p50_ms'])}, p99 {fmt_ms(lat['p99_ms'])}")
                    save(report, work, args)
                    worker.wait_processed(args.events + extra, timeout=1800)  # drained before the next rate
            report["service_stop"] = worker.stop_timed()
            port, worker = worker.port, None
            changelog = f"{tag}-service-members-changelog"
            report["changelog_records"] = asyncio.run(end_offsets(args.bootstrap, [changelog]))[changelog]
            report["outputs"] = asyncio.run(end_offsets(args.bootstrap, [f"{prefix}rewards",
                                                                         f"{prefix}notifications",
                                                                         f"{prefix}dead-letters"]))
            if not args.skip_recovery:
                probes = sorted({key.decode() for _, key, _ in generate(args.members, 20, args.seed, DEFAULT_MIX,
                                                                        0, 1.0)})
                report["recovery"] = recovery(args, tag, prefix, work, work / "service-data", probes, port)
                save(report, work, args)

        if not args.skip_latency:
            for i, contender in enumerate(PEERS):
                if contender in args.only:
                    try:
                        report["latency"][contender] = peer_latency(args, tag, prefix, work, contender,
                                                                    args.seed + 2 + i)
                        lat = report["latency"][contender]
                        log(f"{contender} latency: p50 {fmt_ms(lat['p50_ms'])}, p99 {fmt_ms(lat['p99_ms'])}")
                    except Exception as exc:  # a peer's latency is context, not the point
                        log(f"{contender} latency failed: {exc}")
                        report["latency"][contender] = {"error": str(exc)[:200]}
        report["load_end"] = loadavg()
    except Exception as exc:  # report what was measured before the failure
        import traceback

        traceback.print_exc()
        report["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    finally:
        if worker is not None:
            worker.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                deleted = asyncio.run(delete_topics(args.bootstrap, tag))
                log(f"deleted {len(deleted)} topics")
    text = render(report)
    print(text)
    if args.doc and "error" not in report:
        write_doc(Path(args.doc), text)
        log(f"wrote {args.doc}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if "error" in report:
        log(f"FAILED: {report['error'][:300]} (work dir {work} kept)")
        return 1
    if not args.keep and "error" not in report:
        keep = [p for p in (report.get("profile"),) if p]
        for path in keep:
            shutil.copy(path, Path(tempfile.gettempdir()) / f"{tag}-{Path(path).name}")
            log(f"profile: {Path(tempfile.gettempdir()) / f'{tag}-{Path(path).name}'}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


def save(report: dict, work: Path, args) -> None:
    """The results so far (JSON), so a run that fails late still leaves what it measured."""
    text = json.dumps(report, indent=2, default=str)
    (work / "report.json").write_text(text)
    if args.json:
        Path(args.json).write_text(text)


def write_doc(path: Path, results: str) -> None:
    head = path.read_text().split("<!-- results -->")[0] if path.exists() else DOC_HEAD
    if "<!-- results -->" not in (path.read_text() if path.exists() else ""):
        head = DOC_HEAD
    path.write_text(head + "<!-- results -->\n\n" + results)


DOC_HEAD = """# Benchmarks

Throughput, end-to-end latency and recovery of the service, measured on the real broker against a
plain aiokafka loop (the ceiling) and a Quix Streams peer. `bench/run.py` produced everything
below the results marker; bench/README.md says what each contender does and how each figure is taken.

"""


if __name__ == "__main__":
    sys.exit(main())

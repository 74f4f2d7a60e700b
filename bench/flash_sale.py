"""A flash sale: many members asking for one limited reward within seconds (docs/rewards.md).

    .venv/bin/python -m bench.flash_sale                          # 20,000 requests, stock 1,000 (make bench)
    .venv/bin/python -m bench.flash_sale --requests 2000 --stock 100

Needs the local broker (`make up`). One service worker (RocksDB, the packaged program plus the
reward `FLASH`); every member is funded first (one `points_adjusted` each), then every member
sends one `redemption_requested` for `FLASH`, as fast as the producer goes. All requests for the
reward go to one partition of the reward agent. Measured: the reward agent's throughput (its
answers per second, from `loyalty_reward_redemptions_total`), from each request's produce time to
its outcome on the rewards topic (`reward_issued` or `redemption_rejected`, matched by
`redemption_id`) p50 / p99 / max, and the exact outcome counts (issued = stock, the rest
`out_of_stock`). Writes its section of docs/benchmarks.md (between the flash-sale markers) and
deletes its topics.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402

from bench.run import KAFKA, ServiceWorker, delete_topics, log, machine_info, percentile  # noqa: E402
from stream_app.core.program import default_program_text  # noqa: E402
from stream_app.loadgen import produce  # noqa: E402

START, END = "<!-- flash-sale -->", "<!-- /flash-sale -->"
PRICE = 10
MERGE_COUNTERS = ("loyalty_order_forced_total", "loyalty_events_late_total")


def program_text(stock: int) -> str:
    return default_program_text() + f"""
[[rewards.catalog]]
code = "FLASH"
name = "Flash sale"
kind = "gift"
points = {PRICE}
stock = {stock}
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def funding(members: list[str]):
    for m in members:
        yield "admin", m.encode(), orjson.dumps({"event_id": f"fund-{m}", "member_id": m, "occurred_at": now_iso(),
                                                 "type": "points_adjusted", "operator_id": "bench",
                                                 "reason": "flash sale", "points": PRICE})


def requests(members: list[str], sent_at: dict[str, float]):
    for m in members:
        rid = f"flash-{m}"
        sent_at[rid] = time.time()
        yield "redemptions", m.encode(), orjson.dumps({
            "event_id": f"req-{m}", "member_id": m, "occurred_at": now_iso(), "type": "redemption_requested",
            "redemption_id": rid, "reward_code": "FLASH", "quantity": 1, "points": PRICE})


async def outcomes(bootstrap: str, topic: str, expected: int, timeout: float) -> dict[str, tuple[str, str, float]]:
    """redemption id -> (type, reason, arrival time) of each final outcome on the rewards topic."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, **KAFKA)
    await consumer.start()
    seen: dict[str, tuple[str, str, float]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                arrived = time.time()
                for message in messages:
                    reward = orjson.loads(message.value)
                    if reward["type"] in ("reward_issued", "redemption_rejected"):
                        rid = reward["details"]["redemption_id"]
                        seen.setdefault(rid, (reward["type"], reward["details"].get("reason", ""), arrived))
    finally:
        await consumer.stop()
    return seen


def applied(worker: ServiceWorker, topic: str) -> float:
    """loyalty_events_total{topic=..., outcome="applied"} (labels come in any order)."""
    status, body = worker.get("/metrics")
    if status != 200 or not isinstance(body, str):
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("loyalty_events_total{") and f'topic="{topic}"' in line
               and 'outcome="applied"' in line)


def labelled_sums(worker: ServiceWorker, name: str) -> dict[str, float]:
    """A counter's samples by their label set, as the worker exposes them."""
    status, body = worker.get("/metrics")
    if status != 200 or not isinstance(body, str):
        return {}
    return {line[len(name):].rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
            if line.startswith(name + "{")}


def answered(worker: ServiceWorker) -> float:
    return worker.metric_sum("loyalty_reward_redemptions_total") or 0.0


def sample_answers(worker: ServiceWorker, samples: list[tuple[float, float]], done: threading.Event) -> None:
    while not done.wait(0.5):
        samples.append((time.time(), answered(worker)))


def peak_rate(samples: list[tuple[float, float]], window_s: float = 2.0) -> float | None:
    """The highest answers/s of the reward agent over any `window_s` of the samples."""
    best = None
    for i, (t0, c0) in enumerate(samples):
        later = next(((t, c) for t, c in samples[i:] if t - t0 >= window_s), None)
        if later is not None:
            rate = (later[1] - c0) / (later[0] - t0)
            best = rate if best is None else max(best, rate)
    return best


def run(args) -> dict:
    tag = f"bench{uuid.uuid4().hex[:8]}"
    prefix, work = f"{tag}.", Path(tempfile.mkdtemp(prefix=f"{tag}-flash-"))
    rules = work / "flash.toml"
    rules.write_text(program_text(args.stock), "utf-8")
    env = {"LOYALTY_BROKER": f"kafka://{args.bootstrap}", "LOYALTY_APP_ID": f"{tag}-flash",
           "LOYALTY_TOPIC_PREFIX": prefix, "LOYALTY_PARTITIONS": str(args.partitions), "LOYALTY_STORE": "rocksdb://",
           "LOYALTY_WEB_HOST": "127.0.0.1", "LOYALTY_RULES": str(rules)}
    if args.order_grace:
        env["LOYALTY_ORDER_GRACE"] = args.order_grace
    (work / "data").mkdir()
    worker = ServiceWorker(env, work / "data", work / "worker.log")
    members = [f"fm{i:06d}" for i in range(args.requests)]
    try:
        worker.spawn()
        log(f"flash sale: worker ready after {worker.wait_ready(timeout=180):.1f}s; funding {len(members)} members")
        asyncio.run(produce(funding(members), args.bootstrap, prefix, client_options=KAFKA))
        deadline = time.monotonic() + 600
        while applied(worker, "admin") < len(members):
            if time.monotonic() > deadline:
                raise TimeoutError(f"funding not applied in 600 s:\n{worker.log_tail()}")
            time.sleep(0.5)
        log(f"flash sale: {len(members)} requests for FLASH (stock {args.stock})")
        sent_at: dict[str, float] = {}
        samples: list[tuple[float, float]] = []
        started = time.time()
        delivery = asyncio.run(produce(requests(members, sent_at), args.bootstrap, prefix, client_options=KAFKA))
        produced_s = time.time() - started
        sampling = threading.Event()
        sampler = threading.Thread(target=sample_answers, args=(worker, samples, sampling), daemon=True)
        sampler.start()
        seen = asyncio.run(outcomes(args.bootstrap, f"{prefix}rewards", len(members), args.timeout))
        sampling.set()
        sampler.join()
        samples.append((time.time(), answered(worker)))
        merge = {name: labelled_sums(worker, name) for name in MERGE_COUNTERS}
        load = os.getloadavg()[1]  # the last 5 minutes: the machine is often shared
    finally:
        worker.stop()
        if not args.keep:
            asyncio.run(delete_topics(args.bootstrap, tag))
    latencies = sorted(max(0.0, arrived - sent_at[rid]) for rid, (_, _, arrived) in seen.items() if rid in sent_at)
    arrivals = sorted(arrived for _, _, arrived in seen.values())
    issued = sum(1 for kind, _, _ in seen.values() if kind == "reward_issued")
    reasons: dict[str, int] = {}
    for kind, reason, _ in seen.values():
        if kind == "redemption_rejected":
            reasons[reason] = reasons.get(reason, 0) + 1
    span = (arrivals[-1] - started) if arrivals else None
    return {"tag": tag, "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "requests": len(members),
            "stock": args.stock, "partitions": args.partitions, "order_grace": args.order_grace or "default (PT2S)",
            "produced": delivery.sent, "produce_s": produced_s, "outcomes": len(seen), "issued": issued,
            "rejected": reasons, "span_s": span, "answers": samples[-1][1], "peak_answers": peak_rate(samples),
            "rate": len(seen) / span if span else None,
            "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
            "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
            "max_ms": latencies[-1] * 1000 if latencies else None, "merge": merge, "load": load,
            "machine": machine_info()}


def render(r: dict) -> str:
    rejected = ", ".join(f"{n:,} `{reason}`" for reason, n in sorted(r["rejected"].items())) or "none"
    exact = r["issued"] == r["stock"] and r["outcomes"] == r["requests"]
    counts = f"{r['issued']:,} `reward_issued`, {rejected} ({'exact' if exact else 'NOT exact'})"
    peak = f"{r['peak_answers']:,.0f} /s" if r["peak_answers"] else "n/a"
    merge = "; ".join(f"`{name.removeprefix('loyalty_')}{labels}` {value:,.0f}"
                      for name, counts in r["merge"].items() for labels, value in sorted(counts.items()) if value)
    merge = merge or "none"
    return f"""{START}
## Flash sale: one reward, {r['requests']:,} requests, stock {r['stock']:,}

`bench/flash_sale.py` (part of `make bench`), run {r['at']} (tag `{r['tag']}`), one worker, {r['partitions']}
partitions, `LOYALTY_ORDER_GRACE` {r['order_grace']}, load average {r['load']:.1f} on {r['machine']['nproc']} CPUs
at the end: {r['requests']:,} funded members each send one
`redemption_requested` for the same reward at once (produced in {r['produce_s']:.2f} s); all of them go to
one partition of the reward agent ([rewards.md](rewards.md)).

| figure | value |
|---|---|
| outcomes on `loyalty.rewards` | {r['outcomes']:,} of {r['requests']:,}: {counts} |
| request to outcome, p50 / p99 / max | {r['p50_ms']:,.0f} ms / {r['p99_ms']:,.0f} ms / {r['max_ms']:,.0f} ms |
| outcomes per second (first request to last outcome) | {r['rate']:,.0f} /s over {r['span_s']:.1f} s |
| reward agent answers (`loyalty_reward_redemptions_total`): total, best 2 s | {r['answers']:,.0f}; {peak} |
| member agent's event-time merge: events let go early, applied late | {merge} |

All requests arrive within about a second, so the latency is mostly the queue the burst builds: the
last outcome comes when the whole flow has drained. Each redemption crosses the member agent twice
(the request, then the answer), each time through its event-time merge (`LOYALTY_ORDER_GRACE`). How to
read these figures, and why a reward's stock is not split across keys: [rewards.md](rewards.md#flash-sales).
{END}
"""


def write_doc(path: Path, section: str) -> None:
    text = path.read_text("utf-8")
    if START in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1].lstrip("\n")
    else:  # before the results marker bench/run.py rewrites
        head, marker, tail = text.partition("<!-- results -->")
        text = head + section + "\n" + marker + tail
    path.write_text(text, "utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.flash_sale", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--stock", type=int, default=1_000)
    p.add_argument("--partitions", type=int, default=int(os.environ.get("LOYALTY_PARTITIONS") or 8))
    p.add_argument("--order-grace", default="", metavar="DURATION")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every outcome")
    p.add_argument("--bootstrap", default=os.environ.get("LOYALTY_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="'' to skip")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    report = run(args)
    section = render(report)
    print(section)
    if args.doc:
        write_doc(Path(args.doc), section)
    exact = report["issued"] == args.stock and report["outcomes"] == args.requests
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())

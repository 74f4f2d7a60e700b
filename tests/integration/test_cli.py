"""The `loyalty` command line against a real worker: produce a seeded load, replay a file, show a member."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from stream_app.loadgen import DEFAULT_MIX, generate
from tests.integration.harness import wait_for
from topics.catalog import INPUT_KINDS

LOYALTY = Path(sys.executable).with_name("loyalty")


def loyalty(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOYALTY), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def events_total(worker) -> float:
    """Sum of loyalty_events_total over the input topics and every outcome."""
    status, text = worker.get("/metrics")
    if status != 200:
        return -1
    inputs = tuple(f'topic="{kind}"' for kind in INPUT_KINDS)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("loyalty_events_total{") and any(label in line for label in inputs))


def test_produce_replay_and_member(deployment, tmp_path):
    worker = deployment.worker().start()
    env = deployment.env  # LOYALTY_BROKER is kafka://host:port: produce must strip the scheme

    produced = loyalty("produce", "--members", "50", "--events", "2000", "--seed", "1",
                       "--prefix", deployment.prefix, env=env)
    assert produced.returncode == 0, produced.stderr
    assert "2000/2000 100.0%" in produced.stderr and "sent 2000 events" in produced.stderr
    wait_for(lambda: events_total(worker) >= 2000, timeout=120, show=lambda: events_total(worker))

    replayed = tmp_path / "events.jsonl"
    login = {"event_id": "replay-1", "member_id": "replayed", "occurred_at": "2025-01-01T00:00:00Z",
             "type": "login", "device_id": "d"}
    replayed.write_bytes(orjson.dumps(login) + b'\n{"type": "login"}\n')
    result = loyalty("replay", str(replayed), "--prefix", deployment.prefix, env=env)
    assert result.returncode == 1
    assert f"{replayed}:2: schema_violation: " in result.stderr and "sent 1 events" in result.stderr
    wait_for(lambda: events_total(worker) >= 2001 and worker.member("replayed") is not None, timeout=60)
    assert events_total(worker) == 2001

    buyer = next(key.decode() for kind, key, _ in generate(50, 2000, 1, DEFAULT_MIX, 0, 0) if kind == "orders")
    view = worker.member(buyer)
    assert view["points"]["pending"] > 0
    url = f"http://127.0.0.1:{worker.port}"
    shown = loyalty("member", buyer, "--url", url, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:2] == [f"Member     {buyer}", f"Tier       {view['tier']}"]
    points = view["points"]
    assert (f"Points     {points['available']:,} available, {points['pending']:,} pending, "
            f"{points['lifetime_earned']:,} earned in total") in lines

    missing = loyalty("member", "nobody", "--url", url, env=env)
    assert (missing.returncode, missing.stderr) == (1, f"loyalty: no member 'nobody' at {url}\n")

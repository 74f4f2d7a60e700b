"""Kafka security end to end, on a second broker of its own (tests/integration/secure_kafka.py).

A worker, `loyalty produce`, `replay` and `member` over SASL_SSL (SCRAM-SHA-512, password from a
file) and mutual TLS; a wrong password stops the CLI and the worker with a clear error, quickly.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import ROOT, Deployment, Worker, wait_for
from tests.integration.secure_kafka import MECHANISM, USER, SecureKafka
from topics.catalog import INPUT_KINDS, TopicNames

BOUND_S = 30.0  # a wrong password must stop the CLI and the worker within this


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    with SecureKafka(tmp_path_factory.mktemp("secure-kafka")) as broker:
        yield broker


def loyalty(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """The CLI of this checkout (`python -m`, not the installed script) and how long it took."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stream_app.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def create_topics(deployment: Deployment) -> None:
    """Create the deployment's topics (docs/configuration.md, existing cluster, step 5) and wait for their leaders.

    A worker that creates them itself on a broker that has just started can see the changelogs with no
    partitions yet, and its agent then stops at the first event (Faust's PartitionsMismatch): a start-up
    race of its own, not this test's subject.
    """
    env, broker = deployment.env, deployment.broker
    changelogs = [f"{env['LOYALTY_APP_ID']}-{table}-changelog" for table in ("members", "devices")]
    partitions = int(env["LOYALTY_PARTITIONS"])

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, **broker.options)
        await admin.start()
        try:
            names = TopicNames(deployment.prefix).all() + changelogs
            await admin.create_topics([NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"}
                                                if name in changelogs else {}) for name in names])
            for _ in range(100):
                described = await admin.describe_topics(names)
                if all(t["error_code"] == 0 and len(t["partitions"]) == partitions
                       and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
                    return
                await asyncio.sleep(0.2)
            raise TimeoutError(f"topics without leaders after 20 s: {described}")
        finally:
            await admin.close()

    asyncio.run(run())


def outcomes(worker: Worker) -> Counter:
    """loyalty_events_total of the input topics, by outcome."""
    status, text = worker.get("/metrics")
    counts: Counter = Counter()
    for line in text.splitlines() if status == 200 else ():
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if line.startswith("loyalty_events_total{") and labels.get("topic") in INPUT_KINDS:
            counts[labels["outcome"]] += float(line.rsplit(" ", 1)[1])
    return counts


def test_worker_produce_replay_and_member_over_sasl_ssl_and_mutual_tls(kafka, tmp_path):
    secret = tmp_path / "kafka-password"
    secret.write_text(kafka.password + "\n")  # as `echo` writes it: the newline is not part of the password
    deployment = Deployment(tmp_path, kafka.sasl_env(password_file=secret), broker=kafka.sasl_broker())
    try:
        create_topics(deployment)
        worker = deployment.worker().start()

        produced, _ = loyalty("produce", "--members", "20", "--events", "300", "--seed", "7",
                              "--prefix", deployment.prefix, env=deployment.env)  # --bootstrap from LOYALTY_BROKER
        assert produced.returncode == 0, produced.stderr
        assert f"sent 300 events to {kafka.sasl_bootstrap}" in produced.stderr

        login = {"event_id": "tls-1", "member_id": "over-tls", "occurred_at": "2025-01-01T00:00:00Z",
                 "type": "login", "device_id": "d"}
        events = tmp_path / "events.jsonl"
        events.write_bytes(orjson.dumps(login) + b"\n")
        no_sasl = dict.fromkeys(("LOYALTY_KAFKA_SASL_USERNAME", "LOYALTY_KAFKA_SASL_PASSWORD_FILE"), "")
        mutual_tls = {**deployment.env, **no_sasl, **kafka.tls_env(), "LOYALTY_BROKER": f"kafka://{kafka.tls_bootstrap}"}
        replayed, _ = loyalty("replay", str(events), "--prefix", deployment.prefix, env=mutual_tls)
        assert replayed.returncode == 0, replayed.stderr
        assert f"sent 1 events to {kafka.tls_bootstrap}" in replayed.stderr

        wait_for(lambda: sum(outcomes(worker).values()) >= 301, timeout=60, show=lambda: outcomes(worker))
        assert sum(outcomes(worker).values()) == 301 and outcomes(worker)["dead_lettered"] == 0, outcomes(worker)

        url = f"http://127.0.0.1:{worker.port}"
        for member in ("over-tls", "m07"):
            view = worker.member(member)
            assert view is not None, member
            shown, _ = loyalty("member", member, "--url", url, env=deployment.env)
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.splitlines()[:2] == [f"Member     {member}", f"Tier       {view['tier']}"]
    finally:
        deployment.close()


def test_a_wrong_password_stops_the_cli_and_the_worker_quickly_with_a_clear_error(kafka, tmp_path):
    wrong = f"wrong-{kafka.password[:6]}"
    deployment = Deployment(tmp_path, kafka.sasl_env(password=wrong), broker=kafka.sasl_broker())
    expected = f"cannot connect to Kafka at {kafka.sasl_bootstrap} over SASL_SSL, {MECHANISM} as user '{USER}'"
    try:
        produced, took = loyalty("produce", "--members", "5", "--events", "10", "--prefix", deployment.prefix,
                                 env=deployment.env)
        assert produced.returncode != 0 and took < BOUND_S, (produced.returncode, took)
        assert produced.stderr.startswith(f"loyalty: {expected}: {kafka.sasl_bootstrap}: authentication failed")
        assert wrong not in produced.stderr and "Traceback" not in produced.stderr

        worker = deployment.worker()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="worker exited with 2"):
            worker.start(ready_timeout=BOUND_S)  # a worker still running after BOUND_S raises TimeoutError instead
        assert time.monotonic() - started < BOUND_S
        log = worker.log_path.read_text(errors="replace")
        assert f"loyalty: {expected}: {kafka.sasl_bootstrap}: authentication failed" in log, log
        assert wrong not in log
    finally:
        deployment.close()

"""A real Prometheus scrapes a real worker: business and consumer figures read back through its query API.

Prometheus and promtool come from `ops/prometheus.sh install`; ops/prometheus.sh up starts the
server on a free loopback port with a 1 s scrape interval and the alert rules loaded.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stream_app.worker_process import free_port
from tests.integration.harness import ROOT, event_message, produce, wait_for

SCRIPT = ROOT / "ops" / "prometheus.sh"
DASHBOARD = ROOT / "ops" / "grafana" / "loyalty.json"
NOW = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=0)
if NOW.day == 18:  # keep the member-day campaign out of these totals (the day before: never in the future)
    NOW -= timedelta(days=1)


def tool(name: str) -> str:
    done = subprocess.run([str(SCRIPT), f"{name}-path"], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"{name} is not installed: run `ops/prometheus.sh install` (make up does it)")
    return done.stdout.strip()


def observe_env(tmp: Path) -> dict[str, str]:
    """Worker environment: recount members by tier and segment every second."""
    return {"LOYALTY_TIER_SCAN_INTERVAL": "PT1S"}


class Prometheus:
    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = free_port()
        self.env = {**os.environ, "PROMETHEUS_PORT": str(self.port), "PROMETHEUS_TARGETS": f"127.0.0.1:{target_port}",
                    "PROMETHEUS_SCRAPE_INTERVAL": "1s", "PROMETHEUS_DIR": str(tmp / "prometheus")}

    def run(self, command: str) -> str:
        done = subprocess.run([str(SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[str, str]:
        """An instant query: {series labels as text: value as text}."""
        result = self.api("query", query=expr)["result"]
        return {json.dumps(r["metric"], sort_keys=True): r["value"][1] for r in result}

    def value(self, expr: str) -> str | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return next(iter(result.values()), None)


def order(member: str, n: int) -> dict:
    return {"event_id": f"o-{member}-{n}", "member_id": member, "occurred_at": NOW.isoformat(), "type": "order_paid",
            "order_id": f"{member}-{n}", "amount_cents": 25999, "currency": "CNY"}


def test_prometheus_scrapes_the_worker(deployment, tmp_path):
    promtool = tool("promtool")
    tool("prometheus")
    worker = deployment.worker(**observe_env(tmp_path)).start()
    prometheus = Prometheus(tmp_path, worker.port)
    prometheus.run("up")
    try:
        p = deployment.prefix
        produce([event_message(p, "orders", order("bob", 1)), event_message(p, "orders", order("carol", 1)),
                 (f"{p}orders", b"dave", b'{"event_id": ')])
        # Each first order: 259 pending for 259.99 CNY, plus the 100-point first-order bonus, pending too.
        wait_for(lambda: prometheus.value('sum(loyalty_points_total{job="loyalty", flow="pending"})') == "718",
                 timeout=30, show=lambda: prometheus.query('loyalty_points_total'))
        assert prometheus.value('loyalty_events_total{topic="orders", outcome="applied"}') == "2"
        assert prometheus.value('loyalty_dead_letters_total{code="invalid_json"}') == "1"
        assert prometheus.value('up{job="loyalty"}') == "1"

        # Faust-level figures: the worker owns every orders partition, catches up and commits.
        wait_for(lambda: prometheus.value('count(loyalty_consumer_lag_messages{topic="orders"})') == "4"
                 and prometheus.value('sum(loyalty_consumer_lag_messages{topic="orders"})') == "0"
                 and prometheus.value('sum(loyalty_consumer_committed_offset{topic="orders"})') == "3",
                 timeout=15, show=lambda: prometheus.query('loyalty_consumer_lag_messages{topic="orders"}'))
        assert prometheus.value('loyalty_consumer_messages_received_total{topic="orders"}') == "3"
        # Every input partition (8 topic kinds or more, 4 partitions each) is this worker's, with a lag figure.
        wait_for(lambda: int(prometheus.value("loyalty_consumer_assigned_partitions")) >= 32
                 and prometheus.value("count(loyalty_consumer_lag_messages)")
                 == prometheus.value("loyalty_consumer_assigned_partitions"),
                 timeout=10, show=lambda: prometheus.query("count by (topic) (loyalty_consumer_lag_messages)"))
        assert float(prometheus.value("loyalty_consumer_commits_total")) >= 1
        assert float(prometheus.value("loyalty_consumer_rebalances_total")) >= 1
        # Members by tier and segment, recounted from the table every second here (LOYALTY_TIER_SCAN_INTERVAL).
        wait_for(lambda: prometheus.value('loyalty_members_by_tier{tier="bronze"}') == "2", timeout=15,
                 show=lambda: prometheus.query("loyalty_members_by_tier"))
        assert prometheus.value('loyalty_members_by_tier{tier="gold"}') == "0"
        assert prometheus.value("sum(loyalty_members_by_segment)") == "2"
        assert prometheus.value('loyalty_members_by_segment{segment="churned"}') == "0"

        # A real scrape passes promtool's exposition lint.
        status, text = worker.get("/metrics")
        assert status == 200
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr

        # The alert rules loaded and evaluate cleanly; every dashboard query runs against real data.
        groups = prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 10 and all(r["health"] == "ok" for r in rules), rules
        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
                prometheus.query(expr)
        assert prometheus.value('sum by (tier) (loyalty_members_by_tier{instance=~".*", tier="bronze"})') == "2"
    finally:
        prometheus.run("down")

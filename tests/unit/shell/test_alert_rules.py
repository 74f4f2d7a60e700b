"""The operator surface as files: alert rules (promtool), their unit tests, and the Grafana dashboard.

promtool comes from `ops/prometheus.sh install` (Debian's prometheus package); these tests fail,
not skip, when it is missing. The PromQL in the dashboard and the rules may only name metrics that
stream_app/metrics.py or agents/observe.py define (plus Prometheus's own `up` in alert rules).
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "loyalty.json"
METRIC_SOURCES = [ROOT / "stream_app" / "metrics.py", ROOT / "agents" / "observe.py"]

SUFFIXES = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"],
            "Summary": ["", "_sum", "_count"], "Info": ["_info"], "Enum": [""],
            "CounterMetricFamily": ["_total"], "GaugeMetricFamily": [""],
            "HistogramMetricFamily": ["_bucket", "_sum", "_count"]}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                "offset", "bool", "atan2", "inf", "nan", "start", "end"}


def promtool() -> str:
    done = subprocess.run([str(ROOT / "ops" / "prometheus.sh"), "promtool-path"], capture_output=True, text=True)
    path = done.stdout.strip()
    if done.returncode != 0 or not path:
        pytest.fail("promtool is not installed: run `ops/prometheus.sh install` (make up does it)")
    return path


def exposed_metric_names() -> set[str]:
    """Every sample name the worker can expose, from the metric constructors in the source files."""
    names: set[str] = set()
    for source in METRIC_SOURCES:
        if not source.exists():
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            kind = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if kind in SUFFIXES and isinstance(node.args[0].value, str):
                base = node.args[0].value.removesuffix("_total") if kind.startswith("Counter") else node.args[0].value
                names.update(base + suffix for suffix in SUFFIXES[kind])
    return names


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a small lexer: enough for the PromQL in this repo)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    found = set()
    for match in re.finditer(r"(?<![\w.:])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()", expr):
        if match.group().lower() not in PROMQL_WORDS:
            found.add(match.group())
    return found


# -- the rules file, read without a YAML library (it is kept in this simple form) ---------------------
def alert_exprs() -> dict[str, str]:
    """alert name -> its expression, from alerts.yml."""
    alerts: dict[str, str] = {}
    lines = RULES.read_text().splitlines()
    name = None
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- alert:\s*(\S+)", line):
            name = m.group(1)
        elif (m := re.match(r"(\s*)expr:\s*(.*)$", line)) and name:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in ("|", ">", "|-", ">-"):
                body = []
                for follow in lines[i + 1:]:
                    if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                        break
                    body.append(follow.strip())
                rest = " ".join(body)
            alerts[name] = rest
    return alerts


def rule_test_cases() -> list[tuple[str, bool]]:
    """(alertname, fires) for every alert_rule_test entry of alerts_test.yml."""
    cases = []
    lines = RULE_TESTS.read_text().splitlines()
    for i, line in enumerate(lines):
        if m := re.match(r"\s*alertname:\s*(\S+)", line):
            following = next(ln.strip() for ln in lines[i + 1:] if ln.strip())
            assert following.startswith("exp_alerts:"), f"alerts_test.yml line {i + 2}: expected exp_alerts"
            cases.append((m.group(1), following != "exp_alerts: []"))
    return cases


def test_rules_pass_promtool_check():
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_exprs())} rules found" in done.stdout


def test_rule_unit_tests_pass():
    done = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                          cwd=RULE_TESTS.parent, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    alerts = set(alert_exprs())
    cases = rule_test_cases()
    assert {"LoyaltyConsumerLagGrowing", "LoyaltyNoCommits", "LoyaltyDeadLetterRate", "LoyaltyProcessingLatencyHigh",
            "LoyaltyRedemptionRejectionSpike", "LoyaltyPointsIssuanceAbnormal"} <= alerts
    assert {name for name, _ in cases} <= alerts
    for alert in sorted(alerts):
        assert (alert, True) in cases, f"{alert}: no firing case in alerts_test.yml"
        assert (alert, False) in cases, f"{alert}: no quiet case in alerts_test.yml"


def test_alert_rules_use_only_defined_metrics():
    known = exposed_metric_names() | {"up"}
    for alert, expr in alert_exprs().items():
        names = promql_metric_names(expr)
        assert names, f"{alert}: no metric found in {expr!r}"
        assert names <= known, f"{alert}: unknown metrics {sorted(names - known)}"


# -- the dashboard -----------------------------------------------------------------------------------
def dashboard_panels() -> list[dict]:
    board = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return panels


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard_panels() if p["type"] != "row" for t in p["targets"]]


def test_dashboard_is_an_importable_grafana_export():
    board = json.loads(DASHBOARD.read_text())
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"] and board.get("id") is None
    assert [(i["name"], i["type"], i["pluginId"]) for i in board["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")]
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_dashboard_has_the_operator_panels():
    titles = {p["title"] for p in dashboard_panels()}
    for wanted in ("Throughput by topic", "Processing latency p50 / p99", "Consumer lag by topic",
                   "Dead letters by code", "Points flow", "Redemption rate", "Tier mix", "Segment mix",
                   "Reward redemptions by outcome", "Stock and codes left", "Points reserved and liability"):
        assert wanted in titles
    exprs = " ".join(e for _, e in dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_dashboard_queries_use_only_defined_metrics():
    known = exposed_metric_names()
    board = json.loads(DASHBOARD.read_text())
    variables = [(f"variable {v['name']}", re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"]))
                 for v in board["templating"]["list"]]
    queries = dashboard_exprs() + variables
    for title, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        assert names <= known, f"{title}: {expr!r} names unknown metrics {sorted(names - known)}"


def test_dashboard_queries_are_valid_promql(tmp_path):
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        rules += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(rules) + "\n")
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_metric_lexer():
    assert promql_metric_names(
        'sum by (le) (rate(a_bucket{x="y",z=~"$v"}[5m])) / ignoring(q) b_total offset 10m > 1e-9 and c'
    ) == {"a_bucket", "b_total", "c"}
    assert promql_metric_names("avg_over_time(sum(rate(p_total[10m]))[1d:5m] offset 10m) or vector(0)") == {"p_total"}
    assert {"loyalty_events_total", "loyalty_processing_latency_seconds_bucket", "loyalty_members_by_tier",
            "loyalty_consumer_lag_messages"} <= exposed_metric_names()

"""The `loyalty` command line: check-program locations, replay parsing, member rendering, produce wiring."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from stream_app import cli
from stream_app.core.program import default_program_text
from stream_app.loadgen import DEFAULT_MIX, Delivery, generate
from tests.unit.shell.test_loadgen import FakeProducer, all_topics

DEFAULT = default_program_text()


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the `occurrence`-th line starting with `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(needle)]
    return hits[occurrence - 1]


def check(tmp_path, capsys, text: str) -> tuple[int, str, str]:
    path = tmp_path / "rules.toml"
    path.write_text(text, "utf-8")
    status = cli.main(["check-program", str(path)])
    out, err = capsys.readouterr()
    return status, out.replace(str(path), "FILE"), err.replace(str(path), "FILE")


# -- check-program ------------------------------------------------------------------------------

def test_check_program_default_file_is_ok(tmp_path, capsys):
    status, out, err = check(tmp_path, capsys, DEFAULT)
    assert (status, err) == (0, "")
    assert out == "FILE: ok (4 tiers: bronze 0, silver 1000, gold 5000, platinum 20000; 1 campaign: member day)\n"


def test_check_program_lists_each_version_and_refuses_a_bad_one_with_its_line(tmp_path, capsys):
    version = '[[versions]]\nname = "v2"\neffective_from = 2030-01-01T00:00:00Z\n[versions.shares]\npoints = 9\n'
    status, out, err = check(tmp_path, capsys, DEFAULT + version)
    assert (status, err) == (0, "")
    summary, listed = out.splitlines()
    assert summary.startswith("FILE: ok (4 tiers: ")
    assert re.fullmatch(r"  version v2: from 2030-01-01T00:00:00.000Z, sha256 [0-9a-f]{12}", listed)
    status, out, err = check(tmp_path, capsys, DEFAULT + version.replace("points = 9", "points = -9"))
    lines = len((DEFAULT + version).splitlines())
    assert (status, out) == (1, "") and err == f"FILE:{lines}: versions[0].shares.points: must be >= 0\n"


def test_check_program_syntax_error_names_tomls_line(tmp_path, capsys):
    text = DEFAULT.replace("points = 10\n", "points = = 10\n", 1)
    status, out, err = check(tmp_path, capsys, text)
    assert status == 1 and out == ""
    assert err == f"FILE:{line_of(text, 'points = = 10')}: TOML syntax: Invalid value\n"


def test_check_program_syntax_error_at_end_of_document(tmp_path, capsys):
    status, _, err = check(tmp_path, capsys, 'timezone = "UTC"\nname = "unterminated')
    assert status == 1 and err.startswith("FILE:2: TOML syntax: Unterminated string")


def test_check_program_bad_duration_names_the_keys_line(tmp_path, capsys):
    text = DEFAULT.replace('return_window = "P7D"', 'return_window = "7 days"')
    status, _, err = check(tmp_path, capsys, text)
    assert status == 1
    assert err == (f"FILE:{line_of(text, 'return_window =')}: orders.return_window: "
                   "not an ISO 8601 duration (PnWnDTnHnMnS): '7 days'\n")


def test_check_program_tiers_not_increasing_names_the_offending_threshold(tmp_path, capsys):
    text = DEFAULT.replace("threshold = 5000", "threshold = 900")
    status, _, err = check(tmp_path, capsys, text)
    assert status == 1
    assert err == (f"FILE:{line_of(text, 'threshold = 900')}: tiers.levels[2].threshold: thresholds must increase "
                   "strictly: 900 is not above 1000 (silver)\n")


def test_check_program_counts_array_table_elements(tmp_path, capsys):
    text = DEFAULT.replace("multiplier = 1.5", "multiplier = -1")
    status, _, err = check(tmp_path, capsys, text)
    assert status == 1
    assert err.startswith(f"FILE:{line_of(text, 'multiplier = -1')}: tiers.levels[2].multiplier: ")


def test_check_program_falls_back_to_the_table_of_a_missing_key(tmp_path, capsys):
    text = DEFAULT.replace('name = "member day"\n', "")
    status, _, err = check(tmp_path, capsys, text)
    assert (status, err) == (1, f"FILE:{line_of(text, '[[campaigns]]')}: campaigns[0].name: missing\n")


def test_check_program_unreadable_file(tmp_path, capsys):
    status = cli.main(["check-program", str(tmp_path / "absent.toml")])
    assert status == 1 and "cannot read: No such file or directory" in capsys.readouterr().err


def test_check_program_misspelled_key_names_its_line_and_the_likely_key(tmp_path, capsys):
    text = DEFAULT.replace("first_order_bonus = 100", "first_order_bouns = 100")
    status, out, err = check(tmp_path, capsys, text)
    assert (status, out) == (1, "")
    assert err == (f"FILE:{line_of(text, 'first_order_bouns')}: orders.first_order_bouns: unknown key; "
                   "did you mean first_order_bonus?\n")


def test_worker_refuses_to_start_on_a_bad_program(tmp_path, capsys, monkeypatch):
    """`loyalty worker` with LOYALTY_RULES naming a bad file: the error and exit 1, no worker."""
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT.replace("threshold = 5000", "threshold = 900"), "utf-8")
    monkeypatch.setenv("LOYALTY_RULES", str(path))
    monkeypatch.delitem(sys.modules, "stream_app.app", raising=False)
    assert cli.main(["worker"]) == 1
    line = line_of(path.read_text("utf-8"), "threshold = 900")
    assert capsys.readouterr().err == (f"loyalty: {path}:{line}: tiers.levels[2].threshold: thresholds must increase "
                                       "strictly: 900 is not above 1000 (silver)\n")
    assert "stream_app.app" not in sys.modules


def test_faust_worker_refuses_to_start_on_a_bad_program(tmp_path):
    """`faust -A stream_app.app worker` as Faust users start it: non-zero exit, the located error last."""
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT.replace("first_order_bonus = 100", "first_order_bouns = 100"), "utf-8")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "LOYALTY_RULES": str(path), "LOYALTY_DATA_DIR": str(tmp_path / "data"),
           "LOYALTY_BROKER": "kafka://127.0.0.1:1", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "faust", "-A", "stream_app.app", "worker"], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)
    line = line_of(path.read_text("utf-8"), "first_order_bouns")
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(f"ProgramError: {path}:{line}: orders.first_order_bouns: unknown key; "
                                         "did you mean first_order_bonus?")
    assert not (tmp_path / "data").exists()


# -- replay -------------------------------------------------------------------------------------

NOW_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z: the clock read_events judges by, the events' occurred_at


def event(event_type: str, **fields) -> dict:
    return {"event_id": f"e-{event_type}", "member_id": "ann", "occurred_at": "2025-01-01T00:00:00Z",
            "type": event_type, **fields}


VALID = {
    "order_paid": ("orders", {"order_id": "A1", "amount_cents": 100, "currency": "CNY"}),
    "order_refunded": ("orders", {"order_id": "A1", "refund_cents": 1}),
    "review_posted": ("reviews", {"review_id": "R", "order_id": "A1", "rating": 5, "has_media": False}),
    "share": ("shares", {"share_id": "S", "channel": "wechat", "target": "A1"}),
    "login": ("logins", {"device_id": "d"}),
    "member_joined": ("members", {"birthday": "03-14"}),
    "member_updated": ("members", {"birthday": None}),
    "member_erased": ("members", {}),
    "redemption_requested": ("redemptions", {"redemption_id": "X", "points": 5, "reward_code": "C"}),
    "member_frozen": ("admin", {"operator_id": "op", "reason": "r"}),
    "member_unfrozen": ("admin", {"operator_id": "op", "reason": "r"}),
    "points_adjusted": ("admin", {"operator_id": "op", "reason": "r", "points": 5}),
}


def test_read_events_routes_every_type_to_its_topic_keyed_by_member():
    lines = [orjson.dumps(event(t, **fields)) + b"\n" for t, (_, fields) in VALID.items()]
    assert list(cli.read_events(lines, NOW_MS)) == [
        (kind, b"ann", line.strip()) for (kind, _), line in zip(VALID.values(), lines, strict=True)]


def test_read_events_reports_invalid_lines_by_number():
    lines = [
        orjson.dumps(event("login", device_id="d")),      # 1 ok
        b"{not json",                                      # 2
        b"   \n",                                          # 3 blank: ignored
        b"[1, 2]",                                         # 4
        orjson.dumps(event("dance")),                      # 5
        orjson.dumps(event("login")),                      # 6 no device_id
        orjson.dumps({**event("share"), "type": 5}),       # 7
        orjson.dumps(event("share", share_id="S", channel="c", target="t")),  # 8 ok
    ]
    found = list(cli.read_events(lines, NOW_MS))
    assert [item[0] for item in found if not isinstance(item, cli.Skipped)] == ["logins", "shares"]
    skipped = [item for item in found if isinstance(item, cli.Skipped)]
    assert [(s.line, s.reason.split(":")[0]) for s in skipped] == [
        (2, "invalid_json"), (4, "not_an_object"), (5, "unknown_type"), (6, "schema_violation"),
        (7, "schema_violation")]
    assert skipped[3].reason == "schema_violation: (root): missing required device_id"


def test_replay_publishes_the_valid_lines_and_exits_1_when_some_were_skipped(tmp_path, capsys, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(event("login", device_id="d")) + b"\nnope\n"
                     + orjson.dumps(event("member_erased")) + b"\n")
    published: list[tuple] = []

    async def fake_produce(messages, bootstrap, prefix, client_options):
        published.extend(messages)
        return Delivery(len(published), 0, 0.5)

    monkeypatch.setattr(cli, "produce", fake_produce)
    status = cli.main(["replay", str(path), "--bootstrap", "b:1", "--prefix", "p."])
    err = capsys.readouterr().err
    assert status == 1
    assert [kind for kind, _, _ in published] == ["logins", "members"]
    assert f"{path}:2: invalid_json: " in err
    assert "sent 2 events to b:1 (p.*)" in err and "skipped 1 invalid line(s)" in err


# -- member -------------------------------------------------------------------------------------

VIEW = {
    "member_id": "alice", "tier": "bronze",
    "tier_progress": {"qualifying_points": 259, "next_tier": "silver", "points_needed": 741, "at_risk_since": None},
    "points": {"available": 1039, "pending": 359, "lifetime_earned": 1398},
    "expiring_soon": [{"points": 120, "expires_at": "2025-03-01T16:00:00.000Z"},
                      {"points": 5, "expires_at": "2025-03-02T00:30:00.000Z"}],
    "active_campaigns": [{"name": "member day", "multiplier": 2.0, "applies_to": ["orders", "reviews"]}],
    "frozen": False,
}


def test_format_member():
    assert cli.format_member(VIEW).splitlines() == [
        "Member     alice",
        "Tier       bronze",
        "Progress   [#####---------------]  26%  259 qualifying points, 741 more for silver",
        "Points     1,039 available, 359 pending, 1,398 earned in total",
        "Expiring   120 points on 2025-03-01 16:00 UTC",
        "           5 points on 2025-03-02 00:30 UTC",
        "Campaigns  member day (x2 on orders, reviews)",
    ]


def test_format_member_top_tier_at_risk_frozen_nothing_expiring():
    view = {**VIEW, "tier": "platinum", "frozen": True, "expiring_soon": [], "active_campaigns": [],
            "tier_progress": {"qualifying_points": 19000, "next_tier": None, "points_needed": 0,
                              "at_risk_since": "2025-02-01T00:00:00.000Z"}}
    assert cli.format_member(view).splitlines() == [
        "Member     alice  (FROZEN)",
        "Tier       platinum",
        "Progress   top tier, 19,000 qualifying points",
        "At risk    since 2025-02-01 00:00 UTC: below the platinum threshold",
        "Points     1,039 available, 359 pending, 1,398 earned in total",
        "Expiring   nothing in the next 30 days",
        "Campaigns  none active",
    ]


@pytest.fixture
def member_server() -> Iterator[str]:
    """A stand-in worker: /members/alice is VIEW, any other member 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            known = self.path == "/members/alice"
            body = json.dumps(VIEW if known else {"error": "unknown_member"}).encode()
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_member_command_prints_the_member(member_server, capsys):
    assert cli.main(["member", "alice", "--url", member_server + "/"]) == 0
    assert capsys.readouterr().out == cli.format_member(VIEW) + "\n"


def test_member_command_unknown_member(member_server, capsys):
    assert cli.main(["member", "bob", "--url", member_server]) == 1
    assert capsys.readouterr().err == f"loyalty: no member 'bob' at {member_server}\n"


def test_member_command_connection_refused(capsys):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    assert cli.main(["member", "alice", "--url", url]) == 1
    assert capsys.readouterr().err.startswith(f"loyalty: cannot reach {url}: ")


def test_member_url_defaults_to_loyalty_web_port(monkeypatch):
    monkeypatch.setenv("LOYALTY_WEB_PORT", "7001")
    assert cli.build_parser().parse_args(["member", "x"]).url == "http://127.0.0.1:7001"


# -- produce ------------------------------------------------------------------------------------

def test_produce_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOYALTY_BROKER", "kafka://k1:9092;kafka://k2:9093")
    monkeypatch.setenv("LOYALTY_TOPIC_PREFIX", "acme.")
    args = cli.build_parser().parse_args(["produce", "--members", "3", "--events", "9"])
    assert (args.bootstrap, args.prefix, args.rate, args.seed, args.mix) == ("k1:9092,k2:9093", "acme.", None, 0,
                                                                             DEFAULT_MIX)


@pytest.mark.parametrize("bad", [["--members", "0"], ["--rate", "0"], ["--mix", "orders=-1"], ["--mix", "x=1"]])
def test_produce_rejects_bad_options(bad, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["produce", "--members", "3", "--events", "9", *bad])


def test_produce_command_sends_the_seeded_events_from_the_clocks_now(capsys):
    args = cli.build_parser().parse_args(["produce", "--members", "5", "--events", "300", "--seed", "4",
                                          "--rate", "2000", "--mix", "orders=1,reviews=1", "--prefix", "p."])
    fake = FakeProducer(all_topics("p."))
    assert cli._produce(args, clock=lambda: 1_760_000_000.5, producer=fake) == 0
    expected = generate(5, 300, 4, {**dict.fromkeys(DEFAULT_MIX, 0.0), "orders": 1.0, "reviews": 1.0},
                        1_760_000_000_500, 0.5)
    assert fake.sent == [(f"p.{kind}", key, value) for kind, key, value in expected]
    err = capsys.readouterr().err
    assert "300/300 100.0%" in err and "ETA done" in err and "sent 300 events to " in err


def test_produce_command_fails_on_failed_deliveries(capsys):
    args = cli.build_parser().parse_args(["produce", "--members", "5", "--events", "20", "--prefix", "p."])
    assert cli._produce(args, producer=FakeProducer(all_topics("p."), fail=True)) == 1
    assert "loyalty: 20 deliveries failed, first: RuntimeError: broker said no" in capsys.readouterr().err


def test_produce_command_fails_on_missing_topics(capsys):
    args = cli.build_parser().parse_args(["produce", "--members", "5", "--events", "20", "--prefix", "q."])
    assert cli._produce(args, producer=FakeProducer(all_topics("p."))) == 1
    assert "loyalty: no topic q.admin, q.logins" in capsys.readouterr().err


# -- rewards and import-codes -----------------------------------------------------------------------

def test_rewards_are_shown_as_a_table_with_live_stock() -> None:
    view = {"rewards": [
        {"code": "TOTE-BAG", "kind": "gift", "points": 2000, "tier": None, "unlimited": False, "stock_left": 7,
         "codes_left": None, "paused": False, "live": True},
        {"code": "RACE", "kind": "coupon", "points": 100, "tier": "gold", "unlimited": False, "stock_left": 50,
         "codes_left": 80, "paused": True, "live": False}]}
    lines = cli.format_rewards(view).splitlines()
    assert lines[0].split() == ["CODE", "KIND", "POINTS", "TIER", "STOCK", "LEFT", "CODES", "LEFT", "STATE"]
    assert lines[1].split() == ["TOTE-BAG", "gift", "2000", "any", "7", "-", "on", "sale"]
    assert lines[2].split() == ["RACE", "coupon", "100", "gold", "50*", "80", "paused"]
    assert lines[3].startswith("* not held")


def test_codes_are_read_one_a_line_and_sent_in_messages_with_ids_from_the_file() -> None:
    codes = cli.read_codes(["A1\n", "\n", "# header\n", " B2 \n", "A1\n"] + [f"C{i}\n" for i in range(600)])
    assert codes[:2] == ["A1", "B2"] and len(codes) == 602
    messages = cli.code_messages("RACE", codes, "tag", lambda: "2026-12-01T00:00:00.000+00:00")
    assert [key for _, key, _ in messages] == [b"RACE:tag-0", b"RACE:tag-1"]
    from topics.validation import decode_catalog_message

    decoded = [decode_catalog_message("coupon-codes", key, value) for _, key, value in messages]
    assert [len(d["codes"]) for d in decoded] == [500, 102]


def test_import_codes_refuses_a_reward_without_a_pool(tmp_path, capsys) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("A1\n", "utf-8")
    assert cli.main(["import-codes", "TOTE-BAG", str(path)]) == 1
    assert "not a coupon with codes = \"pool\"" in capsys.readouterr().err

"""`loyalty simulate` on files: programs checked first, bad lines counted by code, the three outputs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from stream_app import cli
from stream_app.core.program import default_program_text
from stream_app.loadgen import DEFAULT_MIX, generate
from stream_app.simulate import chunks
from tests.unit.conftest import DAY, utc
from tests.unit.shell.test_cli import line_of

ROOT = Path(__file__).resolve().parents[3]
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFAULT = default_program_text()
DOUBLE_SHARES = DEFAULT.replace("[shares]\npoints = 5\n", "[shares]\npoints = 10\n")


@pytest.fixture
def files(tmp_path):
    """A generated history (default mix) and a candidate that doubles shares.points."""
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"".join(value + b"\n" for _, _, value in
                                 generate(60, 600, 4, DEFAULT_MIX, START, 60 * DAY / 600)))
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(DOUBLE_SHARES, "utf-8")
    assert DOUBLE_SHARES != DEFAULT
    return history, candidate


def simulate(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["simulate", *args])
    out, err = capsys.readouterr()
    return status, out, err


def report(capsys, tmp_path, history: Path, *args: str, name: str = "report.json") -> dict:
    path = tmp_path / name
    status, _, err = simulate(capsys, str(history), "--json", str(path), *args)
    assert status == 0, err
    return json.loads(path.read_text())


def test_the_table_shows_both_programs_and_the_difference(files, capsys):
    history, candidate = files
    status, out, err = simulate(capsys, str(history), "--candidate", str(candidate), "--jobs", "1")
    assert status == 0, err
    shares = next(line for line in out.splitlines() if line.strip().startswith("shares "))
    current, doubled, difference = (int(n.replace(",", "")) for n in shares.split()[1:])
    assert current > 0 and doubled == 2 * current and difference == current
    assert "members whose outcome differs most" in out
    assert "600/600 100.0%" in err and "simulated 600 events of" in err  # the progress line, then the rate


def test_an_invalid_candidate_exits_2_with_its_line_and_simulates_nothing(files, tmp_path, capsys):
    history, candidate = files
    text = DEFAULT.replace('return_window = "P7D"', 'return_window = "7 days"')
    candidate.write_text(text, "utf-8")
    outputs = tmp_path / "r.json", tmp_path / "r.html"
    status, out, err = simulate(capsys, str(history), "--candidate", str(candidate),
                                "--json", str(outputs[0]), "--html", str(outputs[1]))
    assert status == 2 and out == ""
    line = line_of(text, "return_window =")
    assert err.splitlines()[0] == (f"{candidate}:{line}: orders.return_window: "
                                   "not an ISO 8601 duration (PnWnDTnHnMnS): '7 days'")
    assert cli.main(["check-program", str(candidate)]) == 1  # check-program names the same line
    assert capsys.readouterr().err.splitlines()[0] == err.splitlines()[0]
    assert not any(path.exists() for path in outputs)
    assert "events/s" not in err  # nothing was read or simulated


def test_an_invalid_current_program_exits_2_too(files, tmp_path, capsys):
    history, candidate = files
    current = tmp_path / "current.toml"
    current.write_text('timezone = "UTC"\nname = "unterminated', "utf-8")
    status, _, err = simulate(capsys, str(history), "--candidate", str(candidate), "--current", str(current))
    assert status == 2 and err.startswith(f"{current}:2: TOML syntax: Unterminated string")


def test_malformed_lines_are_counted_by_code_and_the_rest_is_simulated(files, tmp_path, capsys):
    history, candidate = files
    good = history.read_bytes()
    login = {"event_id": "x1", "member_id": "m00", "occurred_at": "2026-01-02T00:00:00Z", "type": "login",
             "device_id": "d"}
    bad = [b"not json", b"[1, 2]", b'{"no": "type"}', b'{"type": "teleported"}',
           orjson.dumps({**login, "occurred_at": "yesterday"}),
           orjson.dumps({k: v for k, v in login.items() if k != "device_id"}),
           orjson.dumps({**login, "device_id": "d" * 70_000})]
    history.write_bytes(bad[0] + b"\n" + good + b"\n\n" + b"\n".join(bad[1:]) + b"\n")
    doc = report(capsys, tmp_path, history, "--candidate", str(candidate))
    by_code = {code: counts["current"] for code, counts in doc["dead_letters"]["by_code"].items()}
    assert by_code == {"invalid_json": 1, "not_an_object": 1, "schema_violation": 3, "unknown_type": 1,
                       "oversized": 1}
    assert all(c["current"] == c["candidate"] for c in doc["dead_letters"]["by_code"].values())
    assert doc["history"]["records"] == 600 + len(bad) and doc["history"]["events"] == 600
    assert doc["dead_letters"]["examples"]["invalid_json"]["where"] == f"{history}:1"
    assert doc["dead_letters"]["examples"]["oversized"]["where"] == f"{history}:{600 + 2 + len(bad)}"


def test_jobs_1_and_jobs_2_give_the_same_report(files, tmp_path, capsys):
    history, candidate = files
    one = report(capsys, tmp_path, history, "--candidate", str(candidate), "--jobs", "1", name="1.json")
    two = report(capsys, tmp_path, history, "--candidate", str(candidate), "--jobs", "2", name="2.json")
    assert one == two
    assert one["points"]["issued"]["shares"]["difference"] == one["points"]["issued"]["shares"]["current"] > 0


REFERRING = DEFAULT.replace("referrer_points = 0 ", "referrer_points = 300 ", 1).replace(
    "friend_points = 0 ", "friend_points = 200 ", 1)
DOUBLE_REFERRALS = REFERRING.replace("referrer_points = 300 ", "referrer_points = 600 ", 1).replace(
    "friend_points = 200 ", "friend_points = 400 ", 1)


def _line(member_id: str, n: int, type_: str, at: int, **fields) -> bytes:
    return orjson.dumps({"event_id": f"{member_id}-{n}", "member_id": member_id, "type": type_,
                         "occurred_at": utc(at), **fields})


@pytest.fixture
def referral_files(tmp_path):
    """The generated history with referrals: five referrers join on the first lines, ten friends naming them
    on the last (so that a cut of the file by member would part them); every fourth friend's order is
    refunded inside its return window. (history, current, candidate, paid, refunded)"""
    referrers = [_line(f"ref{n}", 0, "member_joined", START) for n in range(5)]
    friends, refunded = [], 0
    for n in range(10):
        friend, at = f"friend{n}", START + (n + 1) * DAY
        friends += [_line(friend, 0, "member_joined", at - 1000, referrer_id=f"ref{n % 5}"),
                    _line(friend, 1, "order_paid", at, order_id=f"{friend}-o", amount_cents=8000, currency="CNY")]
        if n % 4 == 0:
            friends.append(_line(friend, 2, "order_refunded", at + DAY, order_id=f"{friend}-o", refund_cents=100))
            refunded += 1
    history = tmp_path / "referrals.jsonl"
    generated = [value for _, _, value in generate(60, 600, 4, DEFAULT_MIX, START, 60 * DAY / 600)]
    history.write_bytes(b"".join(line + b"\n" for line in referrers + generated + friends))
    current, candidate = tmp_path / "current.toml", tmp_path / "candidate.toml"
    current.write_text(REFERRING, "utf-8")
    candidate.write_text(DOUBLE_REFERRALS, "utf-8")
    assert REFERRING != DEFAULT and DOUBLE_REFERRALS != REFERRING
    return history, current, candidate, 10 - refunded, refunded


def test_referrals_are_paid_and_jobs_1_and_jobs_2_give_the_same_report(referral_files, tmp_path, capsys):
    history, current, candidate, paid, refunded = referral_files
    args = "--current", str(current), "--candidate", str(candidate)
    one = report(capsys, tmp_path, history, *args, "--jobs", "1", name="1.json")
    two = report(capsys, tmp_path, history, *args, "--jobs", "2", name="2.json")
    assert one == two
    issued = one["points"]["issued"]
    assert issued["referral_referrer"] == {"current": 300 * paid, "candidate": 600 * paid, "difference": 300 * paid}
    assert issued["referral_friend"] == {"current": 200 * paid, "candidate": 400 * paid, "difference": 200 * paid}
    assert one["rewards_by_type"]["referral_rejected"]["current"] == refunded
    assert one["notifications"]["by_template"]["referral_friend_rewarded"]["current"] == paid


def test_a_chunk_holds_whole_groups_of_members_connected_by_referrals():
    members = {m: [b"{}"] * 3 for m in ("a", "b", "c", "d", "e")}
    referrals = [("d", "a"), ("e", "d"), ("c", "ghost")]
    parts = list(chunks(members, referrals, size=1))
    assert parts == [[("a", members["a"]), ("d", members["d"]), ("e", members["e"])], [("b", members["b"])],
                     [("c", members["c"])]]
    assert list(chunks(members, referrals, size=10)) == [parts[0] + parts[1], parts[2]]


def test_identical_programs_differ_in_nothing(files, tmp_path, capsys):
    history, _ = files
    same = tmp_path / "same.toml"
    same.write_text(DEFAULT, "utf-8")
    doc = report(capsys, tmp_path, history, "--candidate", str(same))
    assert doc["differing_members"] == []
    triples = list(_triples(doc))
    assert triples and all(t["difference"] == 0 and t["current"] == t["candidate"] for t in triples)


def _triples(node):
    if isinstance(node, dict):
        if set(node) == {"current", "candidate", "difference"}:
            yield node
        else:
            for value in node.values():
                yield from _triples(value)
    elif isinstance(node, list):
        for value in node:
            yield from _triples(value)


def test_the_html_page_is_self_contained_and_draws_both_series(files, tmp_path, capsys):
    history, candidate = files
    page = tmp_path / "chart.html"
    doc = report(capsys, tmp_path, history, "--candidate", str(candidate), "--html", str(page))
    text = page.read_text("utf-8")
    assert not re.search(r"\b(src|href)\s*=", text) and "http://" not in text and "https://" not in text
    assert "<script" not in text and "@import" not in text and "url(" not in text
    days = len(doc["daily"])
    assert days >= 60
    for chart in ("issued", "liability"):
        for series in ("current", "candidate"):
            points = re.search(rf'data-series="{chart}-{series}" points="([^"]*)"', text)
            assert points is not None, f"{chart}-{series}"
            assert len(points.group(1).split()) == days


def test_every_option_is_documented(capsys):
    with pytest.raises(SystemExit):
        cli.main(["simulate", "--help"])
    options = set(re.findall(r"(?<![\w-])(--[a-z-]+)", capsys.readouterr().out))
    documented = set(re.findall(r"`(--[a-z-]+)", (ROOT / "docs" / "simulation.md").read_text("utf-8")))
    assert options - {"--help"} == documented


def test_since_and_until_are_for_kafka_only(files, capsys):
    history, candidate = files
    status, _, err = simulate(capsys, str(history), "--candidate", str(candidate), "--until", "2026-02-01")
    assert status == 2 and "--from-kafka" in err


def test_an_unreadable_history_exits_1(tmp_path, files, capsys):
    _, candidate = files
    status, _, err = simulate(capsys, str(tmp_path / "missing.jsonl"), "--candidate", str(candidate))
    assert status == 1 and "missing.jsonl" in err


# -- the documented JSON shape ----------------------------------------------------------------------

#: Objects keyed by data (rules, tiers, templates, codes): one entry stands for all.
KEYED_BY_DATA = {"points.issued", "members_by_tier", "members_by_segment", "notifications.by_template",
                 "rewards_by_type", "events_by_outcome", "dead_letters.by_code", "dead_letters.examples"}


def skeleton(node, path: str = ""):
    """The shape of a JSON value: keys of objects, the first element of arrays, types of scalars."""
    if isinstance(node, dict):
        if path in KEYED_BY_DATA:
            return {"*": skeleton(next(iter(node.values())), path + ".*")} if node else {}
        return {key: skeleton(value, f"{path}.{key}".lstrip(".")) for key, value in node.items()}
    if isinstance(node, list):
        return [skeleton(node[0], path)] if node else []
    return "string" if isinstance(node, str) else type(node).__name__


def documented_example() -> dict:
    text = (ROOT / "docs" / "simulation.md").read_text("utf-8")
    section = text.split("## The JSON report", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


def test_the_json_report_has_the_documented_shape(files, tmp_path, capsys):
    history, candidate = files
    history.write_bytes(history.read_bytes() + b"not json\n")
    doc = report(capsys, tmp_path, history, "--candidate", str(candidate))
    assert skeleton(doc) == skeleton(documented_example())
    assert list(doc) == list(documented_example())  # the same keys in the same order

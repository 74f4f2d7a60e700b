"""Stored formats outlive releases: member states in the bounded form (issue 11) load and behave exactly
as the release that wrote them computed.

fixtures/member_states_v<N>.json were written by fixtures/write_member_states.py (its commit is
recorded), one per stored form `"v": N`: for each member, the events applied and what came of each,
the state stored, and what that code did next with it (a view, due work step by step, a later event),
under the program text recorded with it. Later releases must read these states and do the same.

Form 3 changed only how two parts are stored, not what they hold: event ids as one string of sorted
records (hashes of 48 bits: a 53-bit hash of form 2 keeps its top 48), and orders with the reviewable
ones as JSON text inside the state. So a state of an older form is compared in today's form
(`Member.from_dict(old).to_dict()`), its parts decoded; the current form's fixture must load and save
byte for byte unchanged.
"""
from __future__ import annotations

import base64
import json
from array import array
from pathlib import Path

import pytest

from stream_app.core import engine
from stream_app.core.member import STATE_VERSION, Member
from stream_app.core.privacy import scrub
from stream_app.core.program import parse_program
from tests.unit.core.fixtures.write_member_states import replay

FIXTURES = {int(path.stem.rsplit("v", 1)[1]): json.loads(path.read_text("utf-8"))
            for path in (Path(__file__).parent / "fixtures").glob("member_states_v*.json")}
CASES = [(version, m["member_id"]) for version, fixture in sorted(FIXTURES.items()) for m in fixture["members"]]


def fixture_member(version: int, member_id: str) -> tuple[dict, dict]:
    fixture = FIXTURES[version]
    return fixture, next(m for m in fixture["members"] if m["member_id"] == member_id)


def today(state: dict | None) -> dict | None:
    return None if state is None else Member.from_dict(state).to_dict()


def contents(state: dict) -> dict:
    """A state in today's form with its orders decoded: the fixtures of form 2 were written with sorted
    keys, which reordered the reviewable orders (only when housekeeping forgets them can tell)."""
    member = Member.from_dict(state)
    return {**member.to_dict(), "orders": (member.orders, member.reviewable)}


def everything(result: engine.Result) -> dict:
    return {"outcome": result.outcome, "rewards": result.rewards, "notifications": result.notifications}


def test_there_is_a_fixture_of_every_bounded_form_up_to_today_s() -> None:
    assert sorted(FIXTURES) == list(range(2, STATE_VERSION + 1))


@pytest.mark.parametrize("version", sorted(FIXTURES))
def test_the_fixture_holds_every_part_of_the_bounded_state(version: int) -> None:
    """So that the checks below cannot pass on an empty part: buckets (one warned or not), pending lots,
    refundable and reviewable orders, window rows, forgotten event ids, an expiry by bucket."""
    fixture, heavy = fixture_member(version, f"fx{version}-heavy")
    state, member = heavy["state"], Member.from_dict(heavy["state"])
    assert state["v"] == version
    assert len(state["ledger"]["buckets"]) >= 2 and state["ledger"]["pending"]
    assert member.orders and member.reviewable and len(state["windows"]) >= 2
    assert state["seen"]["stale_before"] is not None
    assert len(member.seen.hashes) < 0.7 * len(heavy["events"])
    outcomes = {a["outcome"] for m in fixture["members"] for a in m["applied"]}
    assert {"applied", "ignored"} <= outcomes  # ignored: a refund past the horizon, among others
    assert any(r["type"] == "points_redeemed" for a in heavy["applied"] for r in a["rewards"])
    assert {m["state"]["birthday"] for m in fixture["members"]} == {"04-02", "02-29"}


@pytest.mark.parametrize(("version", "member_id"), CASES)
def test_a_stored_state_loads_and_saves_in_today_s_form(version: int, member_id: str) -> None:
    """The current form unchanged; an older one with the same contents, then stable."""
    stored = fixture_member(version, member_id)[1]["state"]
    saved = today(stored)
    assert saved["v"] == STATE_VERSION and today(saved) == saved
    if version == STATE_VERSION:
        assert saved == stored
        return
    parts = ("v", "seen", "orders", "reviewable")
    assert {k: v for k, v in saved.items() if k not in parts} == {k: v for k, v in stored.items() if k not in parts}
    member = Member.from_dict(saved)
    assert member.orders == {row[0]: row for row in stored["orders"]}
    assert member.reviewable == stored["reviewable"]
    values = array("q", base64.b64decode(stored["seen"]["packed"])).tolist()  # form 2: hashes, then times
    half = len(values) // 2
    assert member.seen.entries() == sorted(((h >> 5, t) for h, t in zip(values[:half], values[half:], strict=True)),
                                           key=lambda entry: entry[1])
    assert member.seen.stale_before == stored["seen"]["stale_before"]


@pytest.mark.parametrize(("version", "member_id"), CASES)
def test_the_same_events_still_give_the_same_state_and_outputs(version: int, member_id: str) -> None:
    fixture, member = fixture_member(version, member_id)
    program, key = parse_program(fixture["program_toml"]), fixture["pii_key"].encode()
    state = None
    for event, then in zip(member["events"], member["applied"], strict=True):
        result = engine.apply_event(state, scrub(event, key), program)
        assert {**everything(result), "device_links": result.device_links, "next_due": result.next_due} == then, \
            event["event_id"]
        state = result.state
    assert contents(state) == contents(member["state"])
    if version == STATE_VERSION:
        assert state == member["state"]


@pytest.mark.parametrize(("version", "member_id"), CASES)
def test_a_stored_state_behaves_as_it_did(version: int, member_id: str) -> None:
    fixture, member = fixture_member(version, member_id)
    program, key = parse_program(fixture["program_toml"]), fixture["pii_key"].encode()
    for step, result in replay(member["state"], member["then"], program, key):
        assert everything(result) == {k: step[k] for k in ("outcome", "rewards", "notifications")}
        assert contents(result.state) == contents(step["state"])
        if version == STATE_VERSION:
            assert result.state == step["state"]

"""Stored formats outlive releases: member states written by an earlier release load and behave the same.

fixtures/member_states_597f40b.json was written once by the core at commit 597f40b (the release before
issue 13.3): for each member, the events applied, the state stored, and what that code did next with it
(views, due work, a later event). Today's code must read those states and do the same, under the
program text recorded with them (a later change of the packaged defaults is not a change of behaviour).

The stored form changed at issue 11 (bounded state: buckets of available points, compact order rows,
hashed event ids; `"v": 2`, and `"v": 3` with event ids and orders stored as text): an old state is
migrated as it loads, so states are compared in today's form (`Member.from_dict(old).to_dict()`), and
remembered event ids as "these ids are known".

One change of behaviour is deliberate (issue 10, "one history, one ledger"): the notification policy
(quiet hours, the daily marketing cap) now judges a notification from due work at the instant it fell
due, not at the moment the due work happened to run, so live and replayed histories notify alike. So
the notifications, what is held for quiet hours, the daily counters and the next due instant (which
includes held notifications' release) are compared only as "loaded"; points, rewards, tiers, segments
and every other field of the state must be exactly as the earlier release computed them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app.core import engine
from stream_app.core.device_index import apply_link
from stream_app.core.member import STATE_VERSION, Member
from stream_app.core.privacy import scrub
from stream_app.core.program import parse_program
from tests.unit.core.fixtures.write_member_states import replay

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "member_states_597f40b.json").read_text("utf-8"))
PROGRAM = parse_program(FIXTURE["program_toml"])
KEY = FIXTURE["pii_key"].encode()
MEMBERS = {m["member_id"]: m for m in FIXTURE["members"]}


POLICY_FIELDS = ("held", "daily")  # the notification policy's own bookkeeping in the state


def outputs(result: engine.Result) -> dict:
    """What the earlier release emitted: reward events have since gained `program_version` (an added
    field), and expiry events are per bucket (see `comparable`)."""
    rewards = [{k: v for k, v in r.items() if k != "program_version"} for r in result.rewards]
    assert all(r["program_version"] == PROGRAM.version for r in result.rewards)
    return {"outcome": result.outcome, "rewards": comparable(rewards)}


def comparable(rewards: list[dict]) -> list[dict]:
    """Rewards as compared across the issue-11 change: a `points_expired` is now one per expiry bucket,
    named by its instant (`expiry:<ms>:<expired before>`, rule `expiry`) rather than by its lot's source
    event; its points, instant, balance and tier must be as before."""
    return [{k: v for k, v in r.items() if k not in ("reward_id", "source_event_id", "rule")}
            if r["type"] == "points_expired" else r for r in rewards]


def without_policy(state: dict | None) -> dict | None:
    """The state in today's form, without the policy's bookkeeping and the event-id memory."""
    if state is None:
        return None
    today = Member.from_dict(state).to_dict()
    return {k: v for k, v in today.items() if k not in (*POLICY_FIELDS, "seen")}


def knows(state: dict, event_ids: list[str]) -> bool:
    member = Member.from_dict(state)
    return all(event_id in member.seen for event_id in event_ids)


def test_the_fixture_covers_a_plain_and_a_leap_day_birthday() -> None:
    assert {m["state"]["birthday"] for m in FIXTURE["members"]} == {"05-17", "02-29"}
    assert FIXTURE["written_by"] == "597f40b"


@pytest.mark.parametrize("member_id", sorted(MEMBERS))
def test_an_old_state_loads_and_saves_in_today_s_form(member_id: str) -> None:
    """Migrated on load, then stable: what is saved loads and saves unchanged; the balances, lots and
    remembered ids are those of the old state."""
    stored = MEMBERS[member_id]["state"]
    today = Member.from_dict(stored).to_dict()
    assert "v" not in stored and today["v"] == STATE_VERSION
    assert Member.from_dict(today).to_dict() == today
    old, new = Member.from_dict(stored).ledger, Member.from_dict(today).ledger
    assert (new.available, new.pending, new.earned, new.redeemed) == (old.available, old.pending, old.earned,
                                                                      old.redeemed)
    assert sum(lot["remaining"] for lot in stored["ledger"]["lots"] if lot["released"]) == sum(
        points for _, points, _ in today["ledger"]["buckets"])
    assert knows(today, stored["event_ids"])
    assert sorted(Member.from_dict(today).orders) == sorted(o["order_id"] for o in stored["orders"])


@pytest.mark.parametrize("member_id", sorted(MEMBERS))
def test_the_same_events_still_give_the_same_state_and_outputs(member_id: str) -> None:
    member, state = MEMBERS[member_id], None
    for event, then in zip(member["events"], member["applied"], strict=True):
        result = engine.apply_event(state, scrub(event, KEY), PROGRAM)
        assert {**outputs(result), "device_links": result.device_links} == {
            "outcome": then["outcome"], "rewards": comparable(then["rewards"]),
            "device_links": then["device_links"]}, event["event_id"]
        state = result.state
    assert without_policy(state) == without_policy(member["state"])
    assert knows(state, member["state"]["event_ids"])


@pytest.mark.parametrize("member_id", sorted(MEMBERS))
def test_an_old_state_behaves_as_it_did(member_id: str) -> None:
    """Views, due work (birthday gifts included) and a later event, step by step from the stored state."""
    member = MEMBERS[member_id]
    for step, result in replay(member["state"], member["then"], PROGRAM, KEY):
        assert outputs(result) == {"outcome": step["outcome"], "rewards": comparable(step["rewards"])}
        assert without_policy(result.state) == without_policy(step["state"])


def test_birthday_gifts_in_the_fixture_fall_where_they_did() -> None:
    """The recorded behaviour itself: 05-17 paid at local midnight; 02-29 on 02-28 in a common year."""
    gifts = {m["member_id"]: [(r["source_event_id"], r["occurred_at"]) for s in m["then"]
                              for r in s.get("rewards", []) if r["rule"] == "birthday"]
             for m in FIXTURE["members"]}
    assert gifts == {"fx-may": [("birthday:2024", "2024-05-16T16:00:00.000Z")],
                     "fx-leap": [("birthday:2024", "2024-02-28T16:00:00.000Z"),
                                 ("birthday:2025", "2025-02-27T16:00:00.000Z")]}


def test_old_device_entries_take_new_links() -> None:
    """A devices-table entry written then still takes links: a forget removes the member."""
    for device, entry in FIXTURE["device_entries"].items():
        after, flags = apply_link(entry, {"op": "forget", "device": device, "member_id": "fx-may",
                                          "referrer_id": None})
        assert (after, flags) == ({}, [])

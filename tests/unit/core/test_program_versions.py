"""Program versions: the TOML shape, which version is in effect when, the hash guard, and that a replay
across a version boundary gives what live processing gave."""
from __future__ import annotations

import pytest

from stream_app.core import engine
from stream_app.core.program import ProgramError, default_program_text, parse_program
from stream_app.core.program_versions import (
    SINCE_ALWAYS,
    ProgramVersions,
    VersionEdited,
    guard,
    parse_versions,
    record_of,
)
from stream_app.core.versioned import advance_at, apply_event_at
from tests.unit.conftest import DAY, FEATURES_OFF, EventFactory, ms, toml_with, utc

BOUNDARY = "2024-06-01T00:00:00+08:00"
V2 = f"""
[[versions]]
name = "summer"
effective_from = {BOUNDARY}
[versions.shares]
points = 50
[versions.birthday]
points = 500

[[versions]]
name = "autumn"
effective_from = "2024-09-01T00:00:00+08:00"
[versions.orders]
points_per_unit = 2
"""


def versioned(extra: str = V2, edits: dict | None = None) -> str:
    return toml_with({**FEATURES_OFF, **(edits or {})}, campaigns=False) + extra


def test_a_file_without_versions_is_one_version_in_effect_since_always():
    versions = parse_versions(default_program_text())
    [only] = versions.versions
    assert (only.name, only.effective_from) == ("base", SINCE_ALWAYS)
    assert versions.at(0) == parse_program(default_program_text())
    assert versions.in_effect(ms("2100-01-01T00:00:00Z")) == []


def test_each_instant_gets_the_version_in_effect_then_each_built_on_the_previous():
    versions = parse_versions(versioned())
    assert [v.name for v in versions.versions] == ["base", "summer", "autumn"]
    before, start = ms(BOUNDARY) - 1, ms(BOUNDARY)
    assert (versions.at(before).version, versions.at(before).share_points) == ("base", 5)
    assert (versions.at(start).version, versions.at(start).share_points, versions.at(start).birthday_points) == (
        "summer", 50, 500)
    autumn = versions.at(ms("2025-01-01T00:00:00Z"))
    assert (autumn.version, autumn.share_points, autumn.points_per_unit) == ("autumn", 50, 2)
    assert versions.boundaries(before, start) == [start] and versions.boundaries(start, start + DAY) == []
    assert [v.name for v in versions.in_effect(start)] == ["summer"]


def test_a_reward_names_the_version_that_produced_it():
    versions = parse_versions(versioned())
    events = EventFactory()
    old = apply_event_at(None, events.share(ms(BOUNDARY) - DAY), versions)
    new = apply_event_at(old.state, events.share(ms(BOUNDARY) + DAY), versions)
    assert [(r["program_version"], r["points"]) for r in old.rewards + new.rewards] == [("base", 5), ("summer", 50)]


def test_the_hash_ignores_comments_and_layout_but_not_a_value():
    plain = parse_versions(versioned())
    shares = "[versions.shares]\npoints = 50\n"
    commented = parse_versions(versioned().replace(shares, "[versions.shares]  # doubled\npoints   =   50\n"))
    changed = parse_versions(versioned().replace(shares, "[versions.shares]\npoints = 51\n"))
    assert [v.hash for v in plain.versions] == [v.hash for v in commented.versions]
    assert plain.versions[1].hash != changed.versions[1].hash
    assert plain.versions[2].hash != changed.versions[2].hash  # autumn is built on summer


@pytest.mark.parametrize("extra, message, line", [
    ("[[versions]]\neffective_from = 2024-06-01T00:00:00Z\n", "versions[0].name: missing", -2),
    ("[[versions]]\nname = \"x\"\n", "versions[0].effective_from: missing", -2),
    ("[[versions]]\nname = \"x\"\neffective_from = 2024-06-01T00:00:00\n", "must be a date-time with an offset", -1),
    ("[[versions]]\nname = \"base\"\neffective_from = 2024-06-01T00:00:00Z\n", "names an earlier version", -2),
    ("[[versions]]\nname = \"x\"\neffective_from = 2024-06-01T00:00:00Z\n[versions.shares]\npoints = -1\n",
     "versions[0].shares.points: must be >= 0", -1),
    ("[[versions]]\nname = \"x\"\neffective_from = 2024-06-01T00:00:00Z\n[versions.shares]\npointz = 1\n",
     "versions[0].shares.pointz: unknown key; did you mean points?", -1),
    ("[[versions]]\nname = \"x\"\neffective_from = 2024-06-01T00:00:00Z\n"
     "[[versions]]\nname = \"y\"\neffective_from = 2024-05-01T00:00:00Z\n", "must be after the previous", -1),
])
def test_a_bad_version_is_refused_with_the_line_at_fault(extra, message, line):
    text = versioned(extra)
    with pytest.raises(ProgramError, match="^line ") as caught:
        parse_versions(text)
    assert message in caught.value.detail
    assert caught.value.line == len(text.splitlines()) + line + 1


def test_a_single_program_reader_refuses_a_file_with_versions_rather_than_ignore_them():
    with pytest.raises(ProgramError, match="versions: a file with"):
        parse_program(versioned())


# -- the guard ------------------------------------------------------------------------------------------

def test_the_guard_records_versions_as_they_take_effect_and_refuses_an_edited_one():
    versions = parse_versions(versioned())
    assert guard(versions, {}, ms(BOUNDARY) - 1) == []  # nothing in effect yet: nothing recorded
    first = guard(versions, {}, ms(BOUNDARY))
    assert [r["name"] for r in first] == ["summer"]
    recorded = {r["name"]: r for r in first}
    assert guard(versions, recorded, ms(BOUNDARY) + DAY) == []
    edited = parse_versions(versioned().replace("points = 50\n", "points = 60\n"))
    with pytest.raises(VersionEdited, match=r"summer \(in effect since 2024-05-31T16:00:00.000Z\) edited"):
        guard(edited, recorded, ms(BOUNDARY) + DAY)
    moved = parse_versions(versioned().replace(BOUNDARY, "2024-06-02T00:00:00+08:00"))
    with pytest.raises(VersionEdited, match="summer .* edited"):
        guard(moved, recorded, ms("2024-07-01T00:00:00Z"))
    postponed = parse_versions(versioned().replace(BOUNDARY, "2024-08-01T00:00:00+08:00"))
    with pytest.raises(VersionEdited, match="summer .* removed or moved later"):
        guard(postponed, recorded, ms("2024-07-01T00:00:00Z"))
    with pytest.raises(VersionEdited, match="summer .* removed or moved later"):
        guard(parse_versions(versioned("")), recorded, ms("2024-07-01T00:00:00Z"))


def test_editing_the_base_or_a_future_version_is_refused_only_once_a_version_built_on_it_is_in_effect():
    versions = parse_versions(versioned())
    recorded = {r["name"]: r for r in guard(versions, {}, ms(BOUNDARY))}
    future_edit = parse_versions(versioned().replace("points_per_unit = 2", "points_per_unit = 3"))
    assert guard(future_edit, recorded, ms(BOUNDARY)) == []
    base_edit = parse_versions(versioned(edits={"logins.points": "3"}))
    with pytest.raises(VersionEdited, match="summer"):
        guard(base_edit, recorded, ms(BOUNDARY))
    assert record_of(versions.versions[1])["effective_from"] == "2024-05-31T16:00:00.000Z"


# -- replay across a boundary ---------------------------------------------------------------------------

def history() -> list[dict]:
    """A member with a birthday before the boundary (paid by due work), orders and shares on both sides."""
    events = EventFactory("m1")
    b = ms(BOUNDARY)
    return [events.joined(b - 90 * DAY, birthday="05-30"),
            events.order(b - 20 * DAY, "o1", 10000), events.share(b - 3 * DAY),
            events.share(b + 5 * DAY), events.order(b + 6 * DAY, "o2", 8000), events.share(b + 60 * DAY),
            events.order(ms("2024-09-02T00:00:00+08:00"), "o3", 8000)]


def live(events: list[dict], versions: ProgramVersions, end: int) -> tuple[dict, list[dict]]:
    """As a worker running through that time: due work at each instant it falls due (the schedule's ticks,
    at the `next_due` of the last result), each event when it happens."""
    state, rewards, due = None, [], None
    for event in [*events, None]:
        upto = engine.event_time_ms(event) if event else end
        while state is not None and due is not None and due <= upto:
            result = advance_at(state, versions, due)
            state, rewards, due = result.state, rewards + result.rewards, result.next_due
        if event is None and state is None:
            break  # erased
        result = apply_event_at(state, event, versions) if event else advance_at(state, versions, end)
        state, rewards, due = result.state, rewards + result.rewards, result.next_due
    return state, rewards


def replay(events: list[dict], versions: ProgramVersions, end: int, *, cross: bool = True) -> tuple[dict, list]:
    """As a worker reading the history as a backlog, long after: no tick in between, then one at the end."""
    state, rewards = None, []
    for event in events:
        if cross:
            result = apply_event_at(state, event, versions)
        else:  # each event under its version, but no step at the boundary
            result = engine.apply_event(state, event, versions.at(engine.event_time_ms(event)))
        state, rewards = result.state, rewards + result.rewards
    if state is None:
        return state, rewards  # erased
    result = advance_at(state, versions, end) if cross else engine.advance(state, versions.at(end), end)
    return result.state, rewards + result.rewards


def test_a_replay_across_version_boundaries_gives_the_same_results_as_live():
    versions = parse_versions(versioned())
    end = ms("2024-12-01T00:00:00Z")
    live_state, live_rewards = live(history(), versions, end)
    replay_state, replay_rewards = replay(history(), versions, end)
    birthday = [r for r in live_rewards if r["rule"] == "birthday"]
    assert [(r["points"], r["program_version"]) for r in birthday] == [(100, "base")]  # paid under the base
    assert {r["program_version"] for r in live_rewards} == {"base", "summer", "autumn"}
    assert sorted(replay_rewards, key=lambda r: r["reward_id"]) == sorted(live_rewards, key=lambda r: r["reward_id"])
    # (a tick that only moves the clock writes nothing: engine.advance)
    assert {**replay_state, "evaluated_at": None} == {**live_state, "evaluated_at": None}
    # Without the step at the boundary, the birthday (due before it, done by the first event after it)
    # would be paid under the new version: the case this test is about.
    _, naive = replay(history(), versions, end, cross=False)
    assert [(r["points"], r["program_version"]) for r in naive if r["rule"] == "birthday"] == [(500, "summer")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_histories_replayed_across_a_boundary_give_what_live_gave(seed):
    """The default mix under a base and a version that changes earning, tiers, expiry warnings and birthdays."""
    import orjson

    from stream_app.core.privacy import scrub
    from stream_app.loadgen import DEFAULT_MIX, generate

    start = ms("2026-01-01T00:00:00Z")
    boundary = start + 45 * DAY
    version = (f'[[versions]]\nname = "v2"\neffective_from = "{utc(boundary)}"\n[versions.shares]\npoints = 9\n'
               "[versions.birthday]\npoints = 333\n[versions.expiry]\nwarn_min_points = 1\n"
               '[versions.orders]\npoints_per_unit = 3\nreturn_window = "P3D"\n'
               '[versions.tiers]\ngrace = "P5D"\n')
    versions = parse_versions(toml_with() + version)
    by_member: dict[str, list[dict]] = {}
    for _, _, value in generate(40, 800, seed, DEFAULT_MIX, start, 90 * DAY / 800):
        event = scrub(orjson.loads(value), b"k")
        by_member.setdefault(event["member_id"], []).append(event)
    end = start + 120 * DAY
    versions_seen = set()
    for events in by_member.values():
        events.sort(key=engine.event_time_ms)
        live_state, live_rewards = live(events, versions, end)
        replay_state, replay_rewards = replay(events, versions, end)
        key = lambda r: r["reward_id"]  # noqa: E731
        assert sorted(replay_rewards, key=key) == sorted(live_rewards, key=key)
        if live_state is not None:
            assert {**replay_state, "evaluated_at": None} == {**live_state, "evaluated_at": None}
        versions_seen |= {r["program_version"] for r in live_rewards}
    assert versions_seen == {"base", "v2"}

"""Lifecycle segments (churned > at_risk > loyal > new > active), changed by events and by the passing
of time at the due instants the core reports; entering at_risk sends the win-back notification."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core import engine, order_history
from stream_app.core.member import Member, Order
from stream_app.core.segments import segment_at, segment_due_at
from tests.unit.conftest import HOUR, MINUTE, build_program, ms, rewards_of, templates, utc

T0 = "2024-03-05T10:00:00+08:00"  # a Tuesday, not a member day
SHORT = {"segments.new_for": '"PT1H"', "segments.loyal_orders": "5", "segments.loyal_window": '"PT12H"',
         "segments.at_risk_after": '"PT3H"', "segments.churned_after": '"PT6H"'}


@pytest.fixture(scope="module")
def short_program():
    return build_program(SHORT, campaigns=False)


def changes(rewards: list[dict]) -> list[tuple[str, str]]:
    return [(r["details"]["from"], r["details"]["to"]) for r in rewards_of(rewards, "segment_changed")]


def test_packaged_durations(make_program):
    program = make_program(features=True)
    day = 24 * HOUR
    assert (program.segment_new_ms, program.segment_loyal_orders, program.segment_loyal_window_ms,
            program.segment_at_risk_ms, program.segment_churned_ms) == (30 * day, 5, 365 * day, 60 * day,
                                                                        180 * day)


def test_first_assignment_emits_nothing(run, short_program):
    r = run(short_program)
    result = r.order(T0, "o1", 10000)
    assert rewards_of(result, "segment_changed") == []
    assert "win_back" not in templates(result.notifications)
    assert r.member.segment == "new"
    assert result.next_due == ms(T0) + HOUR  # new_for ends


def test_member_without_orders_is_new_then_active_from_its_first_event(run, short_program):
    r = run(short_program)
    r.joined(T0)
    assert r.member.segment == "new"
    result = r.share(ms(T0) + HOUR)
    assert changes(result.rewards) == [("new", "active")]


def test_lifecycle_by_due_times(run, short_program):
    r = run(short_program)
    result = r.order(T0, "o1", 10000)
    seen = []
    for _ in range(3):
        at = result.next_due
        result = r.advance(at)
        seen.append((at - ms(T0), changes(result.rewards), templates(result.notifications)))
    assert seen == [
        (HOUR, [("new", "active")], []),
        (3 * HOUR, [("active", "at_risk")], ["win_back"]),
        (6 * HOUR, [("at_risk", "churned")], []),
    ]
    assert r.member.segment == "churned"


def test_segment_changed_reward_and_win_back_notification(run, short_program):
    r = run(short_program)
    r.order(T0, "o1", 10000)
    r.advance(ms(T0) + HOUR)
    at = ms(T0) + 3 * HOUR
    result = r.advance(at)
    [reward] = result.rewards
    assert (reward["type"], reward["points"], reward["rule"], reward["source_event_id"], reward["occurred_at"],
            reward["details"]) == ("segment_changed", 0, "segment:at_risk", f"due:{at}", utc(at),
                                   {"from": "active", "to": "at_risk"})
    [note] = result.notifications
    assert (note["template"], note["priority"], note["params"], note["created_at"]) == (
        "win_back", "marketing", {"segment": "at_risk"}, utc(at))
    assert result.next_due == ms(T0) + 6 * HOUR


def test_no_change_just_before_the_due_time(run, short_program):
    r = run(short_program)
    r.order(T0, "o1", 10000)
    before = r.state
    result = r.advance(ms(T0) + HOUR - 1)
    assert (result.outcome, result.rewards, result.state) == ("ignored", [], before)
    assert result.next_due == ms(T0) + HOUR


def test_activity_without_orders_keeps_off_churned_but_not_off_at_risk(run, short_program):
    r = run(short_program)
    r.order(T0, "o1", 10000)
    for hours in (1, 2, 3, 4, 5, 6, 7):
        r.share(ms(T0) + hours * HOUR)
    assert changes(r.rewards) == [("new", "active"), ("active", "at_risk")]
    assert templates(r.notifications).count("win_back") == 1
    assert r.member.segment == "at_risk"
    result = r.advance(ms(T0) + 13 * HOUR)  # six hours after the last share
    assert changes(result.rewards) == [("at_risk", "churned")]


def test_an_order_brings_an_at_risk_member_back(run, short_program):
    r = run(short_program)
    r.order(T0, "o1", 10000)
    r.advance(ms(T0) + HOUR)
    r.advance(ms(T0) + 3 * HOUR)
    result = r.order(ms(T0) + 4 * HOUR, "o2", 10000)
    assert changes(result.rewards) == [("at_risk", "active")]
    assert "win_back" not in templates(result.notifications)


def test_admin_events_are_not_activity(run, short_program):
    r = run(short_program)
    r.order(T0, "o1", 10000)
    r.apply(r.events.make("points_adjusted", ms(T0) + 5 * HOUR, points=5, operator_id="op", reason="x"))
    result = r.advance(ms(T0) + 6 * HOUR)
    assert changes(result.rewards) == [("at_risk", "churned")]


def test_five_orders_in_the_trailing_window_make_loyal(run):
    program = build_program({**SHORT, "segments.loyal_window": '"PT2H"', "segments.at_risk_after": '"PT10H"',
                             "segments.churned_after": '"PT20H"'}, campaigns=False)
    r = run(program)
    results = [r.order(ms(T0) + i * MINUTE, f"o{i}", 1000) for i in range(5)]
    assert [changes(x.rewards) for x in results] == [[], [], [], [], [("new", "loyal")]]
    assert r.member.segment == "loyal"
    # new_for ends at T0 + 1h, but loyal comes first: nothing changes then
    assert results[-1].next_due == ms(T0) + HOUR
    result = r.advance(ms(T0) + HOUR)
    assert (result.outcome, result.rewards) == ("ignored", [])
    # the first order leaves the two-hour window: four orders, no longer new
    assert result.next_due == ms(T0) + 2 * HOUR
    result = r.advance(ms(T0) + 2 * HOUR)
    assert changes(result.rewards) == [("loyal", "active")]
    assert result.rewards[0]["rule"] == "segment:active"


def test_four_orders_are_not_loyal(run, short_program):
    r = run(short_program)
    for i in range(4):
        r.order(ms(T0) + i * MINUTE, f"o{i}", 1000)
    assert r.member.segment == "new"
    assert changes(r.rewards) == []


# -- segment_at / segment_due_at directly -----------------------------------------------------------

def _member(created: int, orders: list[int], activity: int | None, program) -> Member:
    member = Member("m1", created, "bronze")
    for i, paid in enumerate(sorted(orders)):
        order_history.record(member, program, Order(f"o{i}", f"e{i}", paid, 1000, 10, 0))
    if orders:
        member.first_order_at, member.last_order_at = min(orders), max(orders)
    member.last_activity_at = max([activity or created, *orders]) if activity or orders else None
    return member


def test_segment_at_precedence(short_program):
    start = ms(T0)
    loyal = _member(start, [start + i for i in range(5)], None, short_program)
    assert segment_at(loyal, short_program, start + 10) == "loyal"  # loyal wins over new
    assert segment_at(loyal, short_program, start + 3 * HOUR + 4) == "at_risk"  # at_risk wins over loyal
    assert segment_at(loyal, short_program, start + 6 * HOUR + 4) == "churned"
    assert segment_at(_member(start, [], None, short_program), short_program, start + HOUR - 1) == "new"
    assert segment_at(_member(start, [], None, short_program), short_program, start + HOUR) == "active"


@settings(max_examples=300, deadline=None)
@given(orders=st.lists(st.integers(0, 20 * HOUR), max_size=7), extra=st.integers(0, 20 * HOUR),
       now_offset=st.integers(0, 30 * HOUR), frac=st.floats(0, 1, exclude_max=True))
def test_segment_is_constant_until_its_due_time(short_program, orders, extra, now_offset, frac):
    """No segment change happens between `now` and segment_due_at(now), and one may happen at it."""
    start = ms(T0)
    member = _member(start, [start + o for o in orders], start + extra, short_program)
    now = max(member.last_activity_at or start, start) + now_offset
    due = segment_due_at(member, short_program, now)
    assert due is None or due > now
    segment = segment_at(member, short_program, now)
    end = due if due is not None else now + 100 * HOUR
    probe = now + int((end - now) * frac)
    assert segment_at(member, short_program, min(probe, end - 1)) == segment


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.integers(0, 4 * HOUR), min_size=1, max_size=6))
def test_advancing_at_each_due_time_reaches_churned(short_program, gaps):
    """Orders at random gaps, then only time: advance() at each next_due ends churned, with a win_back
    on every entry to at_risk."""
    state, at = None, ms(T0)
    rewards, notes = [], []
    for i, gap in enumerate(gaps):
        at += gap
        event = {"event_id": f"e{i}", "member_id": "m1", "occurred_at": utc(at), "type": "order_paid",
                 "order_id": f"o{i}", "amount_cents": 1000, "currency": "CNY"}
        result = engine.apply_event(state, event, short_program)
        state = result.state
        rewards += result.rewards
        notes += result.notifications
    for _ in range(10):
        if result.next_due is None or result.next_due > at + 7 * HOUR:
            break
        at = result.next_due
        result = engine.advance(state, short_program, at)
        state = result.state
        rewards += result.rewards
        notes += result.notifications
    assert state["segment"] == "churned"
    path = changes(rewards)
    assert path[-1][1] == "churned"
    assert all(a[1] == b[0] for a, b in zip(path, path[1:], strict=False))
    assert templates(notes).count("win_back") == sum(1 for _, to in path if to == "at_risk")


def test_an_event_after_a_missed_due_time_still_passes_through_at_risk(run, short_program):
    live, replay = run(short_program), run(short_program)
    for r in (live, replay):
        r.order(T0, "o1", 10000)
    live.advance(ms(T0) + HOUR)
    live.advance(ms(T0) + 3 * HOUR)
    live.order(ms(T0) + 4 * HOUR, "o2", 10000)
    replay.order(ms(T0) + 4 * HOUR, "o2", 10000)  # the same events, without the due work having run
    assert changes(live.rewards) == [("new", "active"), ("active", "at_risk"), ("at_risk", "active")]
    assert changes(replay.rewards) == changes(live.rewards)
    assert templates(replay.notifications).count("win_back") == 1

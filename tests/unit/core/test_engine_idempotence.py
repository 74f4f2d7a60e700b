"""Duplicates change nothing, output ids are deterministic, the core never mutates its input, erasure."""
from __future__ import annotations

import copy
import re

import pytest

from stream_app.core import engine
from stream_app.core.emitted import stable_id
from stream_app.core.event_ids import id_hash
from tests.unit.conftest import DAY, EventFactory, ms

T0 = "2024-03-05T10:00:00+08:00"
RELEASE = ms(T0) + 7 * DAY


def script(r) -> None:
    """A member's life touching every rule."""
    r.joined("2024-01-01T10:00:00+08:00", birthday="03-10", referrer_id="friend")
    r.login(T0)
    r.share(T0)
    r.order(T0, "o1", 100000)
    r.review(ms(T0) + 1, "o1", has_media=True)
    r.refund(ms(T0) + 2, "o1", 2000)
    r.advance("2024-03-10T00:00:00+08:00")
    r.advance(RELEASE)
    r.redeem(RELEASE + 1, 300, redemption_id="r1")
    r.redeem(RELEASE + 2, 10**6, redemption_id="r2")
    r.advance(ms(T0) + 400 * DAY)


def test_every_applied_event_is_a_duplicate_the_second_time(run):
    r = run()
    script(r)
    for event in r.applied:
        state = r.state
        result = engine.apply_event(state, event, r.program)
        assert (result.outcome, result.rewards, result.notifications) == ("duplicate", [], [])
        assert result.state is state
        # judged at the member's clock, not at the old event's own instant (which the clock passed)
        assert result.next_due == engine.next_due(r.member, r.program, r.state["evaluated_at"])


def test_duplicate_right_after_applying(run):
    r = run()
    event = r.events.order(T0, "o1", 10000)
    first = r.apply(event)
    second = r.apply(event)
    assert (second.outcome, second.rewards, second.notifications, second.state) == (
        "duplicate", [], [], first.state)
    assert second.next_due == first.next_due == RELEASE


def test_outcomes_other_than_applied_also_count_as_seen(run):
    r = run()
    r.joined(T0)
    r.state["frozen"] = True
    frozen = r.events.share(T0)
    assert r.apply(frozen).outcome == "frozen"
    r.state["frozen"] = False
    assert r.apply(frozen).outcome == "duplicate"
    unknown = r.events.refund(T0, "nope", 1)
    assert [r.apply(unknown).outcome, r.apply(unknown).outcome] == ["ignored", "duplicate"]


def test_event_ids_are_kept_up_to_the_configured_number(run, make_program):
    r = run(make_program({"dedupe.max_event_ids": "3"}))
    events = [r.events.share(ms(T0) + i * DAY) for i in range(5)]
    for event in events:
        r.apply(event)
    assert r.member.seen.hashes == [id_hash(x) for x in ("e3", "e4", "e5")]
    assert r.apply(events[-1]).outcome == "duplicate"
    # e1 and e2 are forgotten: an event as old as them is refused, not counted a second time
    assert [r.apply(events[0]).outcome, r.apply(events[1]).outcome] == ["stale", "stale"]
    assert r.apply(r.events.share(ms(T0) + 2 * DAY)).outcome == "applied"  # as old as e3: still known


def test_event_ids_older_than_the_dedupe_window_are_forgotten_and_such_events_refused(run, make_program):
    r = run(make_program({"dedupe.window": '"P2D"'}))
    events = [r.events.share(ms(T0) + i * DAY) for i in range(5)]
    for event in events:
        assert r.apply(event).outcome == "applied"
    assert [t for _, t in r.member.seen.entries()] == [ms(T0) + i * DAY for i in (2, 3, 4)]
    assert [r.apply(e).outcome for e in events] == ["stale", "stale", "duplicate", "duplicate", "duplicate"]
    late = r.events.share(ms(T0) + 2 * DAY - 1)
    assert r.apply(late).outcome == "stale"
    assert r.apply(r.events.share(ms(T0) + 2 * DAY)).outcome == "applied"


def test_same_inputs_give_the_same_outputs_and_ids(run):
    a, b = run(), run()
    script(a)
    script(b)
    assert a.rewards == b.rewards
    assert a.notifications == b.notifications
    assert a.state == b.state
    ids = [x["reward_id"] for x in a.rewards]
    assert len(ids) == len(set(ids)) == 15
    assert all(re.fullmatch(r"rw-[0-9a-f]{32}", x) for x in ids)
    note_ids = [x["notification_id"] for x in a.notifications]
    assert len(note_ids) == len(set(note_ids))
    assert all(re.fullmatch(r"nt-[0-9a-f]{32}", x) for x in note_ids)


def test_ids_depend_on_the_member(run):
    a, b = run(member_id="a"), run(member_id="b")
    script(a)
    script(b)
    assert not {x["reward_id"] for x in a.rewards} & {x["reward_id"] for x in b.rewards}
    assert not {x["notification_id"] for x in a.notifications} & {x["notification_id"] for x in b.notifications}


def test_due_work_ids_do_not_depend_on_when_advance_runs(run):
    early, late = run(), run()
    for r in (early, late):
        r.order(T0, "o1", 10000)
    early.advance(RELEASE)
    late.advance(RELEASE + 3 * DAY)
    assert early.rewards == late.rewards
    assert early.notifications == late.notifications


def test_stable_id():
    assert stable_id("rw", "m1", "e1", "order", "points_pending") == stable_id("rw", "m1", "e1", "order",
                                                                               "points_pending")
    assert stable_id("rw", "m1", "e1") != stable_id("rw", "m1e1")
    assert stable_id("rw", "a") != stable_id("nt", "a")


@pytest.mark.parametrize("kind", ["order", "refund", "review", "share", "login", "updated", "redeem", "advance"])
def test_the_core_does_not_mutate_its_input_state(run, kind):
    r = run()
    r.joined("2024-01-01T10:00:00+08:00", birthday="03-05")
    r.order(T0, "o1", 10000)
    r.order(T0, "o0", 10000)
    r.share(T0)
    r.login(T0)
    r.review(T0, "o0")
    r.advance(RELEASE)
    state = r.state
    snapshot = copy.deepcopy(state)
    at = RELEASE + 1
    factory = EventFactory("m1", prefix="x")
    events = {"order": factory.order(at, "o2", 5000), "refund": factory.refund(at, "o1", 5000),
              "review": factory.review(at, "o1"), "share": factory.share(at), "login": factory.login(at),
              "updated": factory.updated(at, birthday="12-01"), "redeem": factory.redeem(at, 50)}
    if kind == "advance":
        engine.advance(state, r.program, ms(T0) + 365 * DAY)
    else:
        result = engine.apply_event(state, events[kind], r.program)
        assert result.outcome == "applied"
    assert state == snapshot


def test_advance_without_due_work_returns_the_same_state(run):
    r = run()
    r.share(T0)
    state = r.state
    result = engine.advance(state, r.program, ms(T0) + 1)
    assert (result.outcome, result.state, result.rewards, result.notifications) == ("ignored", state, [], [])
    assert result.state is state
    assert result.next_due == ms(T0) + 335 * DAY  # the expiry warning


def test_member_erased(run):
    r = run()
    r.order(T0, "o1", 10000)
    result = r.erased(ms(T0) + 1)
    assert (result.outcome, result.state, result.notifications, result.next_due) == ("erased", None, [], None)
    [reward] = result.rewards
    assert (reward["type"], reward["points"], reward["rule"], reward["source_event_id"]) == (
        "member_erased", 0, "erasure", "e2")


def test_a_new_member_starts_bronze_with_nothing(run):
    r = run()
    result = r.login(T0)
    assert r.member.created_at == ms(T0)
    assert (r.member.tier, r.member.seen.entries(), result.next_due) == ("bronze", [(id_hash("e1"), ms(T0))],
                                                                     ms(T0) + 335 * DAY)

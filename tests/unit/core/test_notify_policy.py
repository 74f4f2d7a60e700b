"""Notification policy: transactional notifications always go at once; marketing ones are held (or
dropped) during quiet hours in the program's time zone, released after them, and capped per local day."""
from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.member import Member
from stream_app.core.notify_policy import apply_policy, in_quiet_hours, quiet_end_after, release_held
from tests.unit.conftest import DAY, HOUR, MINUTE, SECOND, SHANGHAI, build_program, ms, templates, utc

QUIET = {"notification_policy.quiet_start": '"22:00"', "notification_policy.quiet_end": '"08:00"',
         "notification_policy.marketing_daily_cap": "3", "logins.streak_days": "1"}
NIGHT = "2024-03-05T23:00:00+08:00"
MORNING = "2024-03-06T08:00:00+08:00"


@pytest.fixture(scope="module")
def quiet():
    """22:00-08:00 Asia/Shanghai quiet hours, hold, cap 3; every first login of a day earns the streak
    bonus, whose points_earned notification is marketing."""
    return build_program(QUIET, campaigns=False)


def policy_program(**edits: str):
    return build_program({**QUIET, **{f"notification_policy.{k}": v for k, v in edits.items()}}, campaigns=False)


def note(n: int, priority: str = "marketing", at: str = NIGHT) -> dict:
    return {"notification_id": f"nt-{n}", "member_id": "m1", "template": "points_earned", "priority": priority,
            "params": {"n": n}, "created_at": utc(at)}


def fresh() -> Member:
    return Member("m1", 0, "bronze")


def test_packaged_policy(make_program):
    program = make_program(features=True)
    assert (program.quiet_start_s, program.quiet_end_s, program.quiet_hold, program.hold_at_most_ms,
            program.marketing_daily_cap) == (22 * 3600, 8 * 3600, True, 12 * HOUR, 3)
    assert program.priority("win_back") == "marketing"
    assert program.priority("member_flagged") == "transactional"


# -- quiet hours: hold and release -----------------------------------------------------------------

def test_marketing_created_in_quiet_hours_is_held(run, quiet):
    r = run(quiet)
    result = r.login(NIGHT)
    assert [x["rule"] for x in result.rewards] == ["logins", "login_streak"]
    assert result.notifications == []
    assert result.notifications_dropped == 0
    [held] = r.state["held"]
    assert (held["template"], held["priority"], held["held_at"], held["created_at"]) == (
        "points_earned", "marketing", ms(NIGHT), utc(NIGHT))
    assert result.next_due == ms(MORNING)


def test_held_notification_is_released_at_the_end_of_quiet_hours(run, quiet):
    r = run(quiet)
    r.login(NIGHT)
    [held] = r.state["held"]
    before = r.state
    early = r.advance(ms(MORNING) - 1)
    assert (early.outcome, early.notifications, early.state) == ("ignored", [], before)
    assert early.next_due == ms(MORNING)
    result = r.advance(MORNING)
    expected = {k: v for k, v in held.items() if k != "held_at"}
    assert result.notifications == [expected]  # original id and created_at
    assert result.notifications_dropped == 0
    assert r.state["held"] == []
    assert r.member.count_today("2024-03-06", "marketing") == 1
    assert r.member.count_today("2024-03-05", "marketing") == 0


def test_held_notification_goes_with_the_next_event_after_quiet_hours(run, quiet):
    r = run(quiet)
    r.login(NIGHT)
    result = r.share(ms(MORNING) + HOUR)
    assert templates(result.notifications) == ["points_earned"]
    assert result.notifications[0]["created_at"] == utc(NIGHT)
    assert r.state["held"] == []


def test_quiet_hours_drop(run):
    r = run(policy_program(quiet_hours='"drop"'))
    result = r.login(NIGHT)
    assert (result.notifications, result.notifications_dropped) == ([], 1)
    assert r.state["held"] == []
    assert r.member.count_today("2024-03-05", "marketing") == 0


def test_held_longer_than_hold_at_most_when_quiet_hours_end_is_dropped(run):
    nine_hours = policy_program(hold_at_most='"PT9H"')  # 23:00 to 08:00 is exactly 9 hours
    r = run(nine_hours)
    r.login(NIGHT)
    on_time = r.advance(MORNING)
    assert (templates(on_time.notifications), on_time.notifications_dropped) == (["points_earned"], 0)
    r = run(nine_hours)
    r.login(ms(NIGHT) - 1)
    late = r.advance(MORNING)
    assert (late.notifications, late.notifications_dropped) == ([], 1)
    assert r.state["held"] == []


def test_release_is_judged_when_quiet_hours_end_not_when_the_worker_gets_to_it(run, quiet):
    """A tick long after quiet hours (a worker that was down) sends what the end of quiet hours sent:
    the step runs at its own instant, so live and replayed runs agree."""
    r = run(quiet)
    r.login(NIGHT)
    held = r.state
    on_time = r.advance(MORNING)
    r.state = held
    late = r.advance(ms(NIGHT) + 3 * DAY)
    assert late.notifications == on_time.notifications != []
    assert r.member.count_today("2024-03-06", "marketing") == 1


def test_short_hold_at_most_drops_at_the_end_of_quiet_hours(run):
    r = run(policy_program(hold_at_most='"PT1H"'))
    r.login(NIGHT)
    result = r.advance(MORNING)
    assert (result.notifications, result.notifications_dropped, r.state["held"]) == ([], 1, [])


def test_transactional_goes_at_any_hour(run, quiet):
    r = run(quiet)
    result = r.order(NIGHT, "o1", 10000)
    assert [(n["template"], n["priority"]) for n in result.notifications] == [("points_pending", "transactional")]
    assert r.state["held"] == []
    member = fresh()
    notes = [note(i, "transactional") for i in range(10)]
    assert apply_policy(member, quiet, ms(NIGHT), notes) == (notes, 0)
    assert apply_policy(member, quiet, ms("2024-03-06T12:00:00+08:00"), notes) == (notes, 0)
    assert (member.held, member.daily) == ([], {})


def test_held_ones_use_the_daily_cap_when_released(quiet):
    member = fresh()
    send, dropped = apply_policy(member, quiet, ms(NIGHT), [note(i) for i in range(4)])
    assert (send, dropped, len(member.held)) == ([], 0, 4)
    send, dropped = release_held(member, quiet, ms(MORNING))
    assert ([n["notification_id"] for n in send], dropped) == (["nt-0", "nt-1", "nt-2"], 1)
    assert all("held_at" not in n for n in send)
    assert member.held == []


def test_the_same_notification_is_held_once(quiet):
    member = fresh()
    apply_policy(member, quiet, ms(NIGHT), [note(1)])
    apply_policy(member, quiet, ms(NIGHT) + MINUTE, [note(1)])
    assert [h["notification_id"] for h in member.held] == ["nt-1"]
    assert member.held[0]["held_at"] == ms(NIGHT)


def test_release_waits_for_the_end_of_quiet_hours(quiet):
    member = fresh()
    apply_policy(member, quiet, ms(NIGHT), [note(1)])
    assert release_held(member, quiet, ms(MORNING) - 1) == ([], 0)
    assert len(member.held) == 1


def test_next_due_is_never_in_the_past_with_a_held_notification(run, quiet):
    r = run(quiet)
    r.login(NIGHT)
    later_night = ms(NIGHT) + DAY + 30 * MINUTE  # 23:30 the next night, no due work ran in between
    result = r.share(later_night)
    assert result.next_due > later_night


# -- the daily cap ---------------------------------------------------------------------------------

def test_the_fourth_marketing_notification_of_a_local_day_is_dropped(quiet):
    member = fresh()
    noon = ms("2024-03-05T12:00:00+08:00")
    notes = [note(1), note(2, "transactional"), note(3), note(4), note(5)]
    send, dropped = apply_policy(member, quiet, noon, notes)
    assert ([n["notification_id"] for n in send], dropped) == (["nt-1", "nt-2", "nt-3", "nt-4"], 1)
    assert member.count_today("2024-03-05", "marketing") == 3
    assert apply_policy(member, quiet, noon + HOUR, [note(6)]) == ([], 1)
    assert apply_policy(member, quiet, noon + DAY, [note(7)]) == ([note(7)], 0)


def test_the_daily_cap_counts_local_days(make_program):
    program = make_program({"notification_policy.marketing_daily_cap": "3"}, campaigns=False)  # no quiet hours
    member = fresh()
    late = ms("2024-03-05T23:30:00+08:00")
    assert apply_policy(member, program, late, [note(i) for i in range(3)])[1] == 0
    assert apply_policy(member, program, late + 29 * MINUTE, [note(3)]) == ([], 1)
    # 00:00 in Shanghai, still 2024-03-05 in UTC
    assert apply_policy(member, program, ms("2024-03-05T16:00:00Z"), [note(4)]) == ([note(4)], 0)


def test_cap_through_the_engine(run, make_program):
    program = make_program({"notification_policy.marketing_daily_cap": "3", "orders.return_window": '"PT1S"'},
                           campaigns=False)
    r = run(program)
    noon = ms("2024-03-05T12:00:00+08:00")
    for i in range(3):
        r.order(noon, f"o{i}", 1000)
    result = r.advance(noon + 10 * SECOND)
    # four released lots (o0 with its first order bonus): one release notification each, three sent
    assert [n["params"]["rule"] for n in result.notifications] == ["first_order_bonus", "order", "order"]
    assert result.notifications_dropped == 1


# -- quiet-hour windows ----------------------------------------------------------------------------

def at_local(text: str) -> int:
    return ms(f"2024-03-05T{text}+08:00")


def test_wrapping_window(quiet):
    assert [in_quiet_hours(at_local(t), quiet) for t in ("21:59:59", "22:00:00", "23:59:59", "00:00:00",
                                                          "07:59:59", "08:00:00", "12:00:00")] == [
        False, True, True, True, True, False, False]


def test_equal_start_and_end_means_no_quiet_hours(run):
    program = policy_program(quiet_start='"03:00"', quiet_end='"03:00"')
    assert not any(in_quiet_hours(at_local(t), program) for t in ("02:59:59", "03:00:00", "03:00:01", "23:00:00"))
    r = run(program)
    result = r.login(at_local("03:00:00"))
    assert templates(result.notifications) == ["points_earned"]
    assert (result.notifications_dropped, r.state["held"]) == (0, [])


def test_window_not_wrapping_midnight_with_seconds(run):
    program = policy_program(quiet_start='"12:00:00"', quiet_end='"12:00:10"')
    assert (program.quiet_start_s, program.quiet_end_s) == (43200, 43210)
    assert [in_quiet_hours(at_local(t), program) for t in ("11:59:59.999", "12:00:00", "12:00:09.999",
                                                           "12:00:10", "23:00:00", "03:00:00")] == [
        False, True, True, False, False, False]
    assert quiet_end_after(at_local("12:00:05"), program) == at_local("12:00:10")
    r = run(program)
    result = r.login(at_local("12:00:05"))
    assert result.notifications == []
    assert result.next_due == at_local("12:00:10")
    released = r.advance(at_local("12:00:10"))
    assert templates(released.notifications) == ["points_earned"]
    assert released.notifications[0]["created_at"] == utc(at_local("12:00:05"))


def test_quiet_end_after(quiet):
    assert quiet_end_after(ms(NIGHT), quiet) == ms(MORNING)
    assert quiet_end_after(at_local("07:00:00"), quiet) == at_local("08:00:00")
    assert quiet_end_after(at_local("08:00:00"), quiet) == ms(MORNING)


# -- properties ------------------------------------------------------------------------------------

CLOCK = st.integers(0, 86399)
INSTANT = st.integers(ms("2024-01-01T00:00:00Z"), ms("2025-01-01T00:00:00Z"))


def _clock(seconds: int) -> str:
    return f'"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"'


_PROGRAMS: dict[tuple[int, int], object] = {}


def _window_program(start: int, end: int):
    key = (start, end)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = policy_program(quiet_start=_clock(start), quiet_end=_clock(end))
    return _PROGRAMS[key]


@settings(max_examples=200, deadline=None)
@given(start=CLOCK, end=CLOCK, instant=INSTANT)
def test_quiet_hours_match_a_reference(start, end, instant):
    program = _window_program(start, end)
    local = datetime.fromtimestamp(instant / 1000, SHANGHAI)
    second = local.hour * 3600 + local.minute * 60 + local.second
    if start == end:
        expected = False
    elif start < end:
        expected = start <= second < end
    else:
        expected = not end <= second < start
    assert in_quiet_hours(instant, program) is expected
    finish = quiet_end_after(instant, program)
    assert instant < finish <= instant + DAY
    assert not in_quiet_hours(finish, program)
    end_local = datetime.fromtimestamp(finish / 1000, SHANGHAI)
    assert end_local.hour * 3600 + end_local.minute * 60 + end_local.second == end
    assert finish % SECOND == 0


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.tuples(st.integers(0, 6 * HOUR), st.lists(st.booleans(), max_size=5)), max_size=12))
def test_never_more_than_the_cap_of_marketing_sent_per_local_day(quiet, batches):
    member, now, sent, n = fresh(), ms("2024-03-05T06:00:00+08:00"), {}, 0
    for dt, kinds in batches:
        now += dt
        notes = []
        for marketing in kinds:
            n += 1
            notes.append(note(n, "marketing" if marketing else "transactional"))
        released, stale = release_held(member, quiet, now)
        send, dropped = apply_policy(member, quiet, now, notes)
        day = datetime.fromtimestamp(now / 1000, SHANGHAI).date()
        out = released + send
        assert all(x["notification_id"] in {y["notification_id"] for y in out}
                   for x in notes if x["priority"] == "transactional")
        if in_quiet_hours(now, quiet):
            assert all(x["priority"] == "transactional" for x in out)
        sent[day] = sent.get(day, 0) + sum(1 for x in out if x["priority"] == "marketing")
        assert sent[day] <= 3
        assert len(out) + len(member.held) + stale + dropped >= len(notes)

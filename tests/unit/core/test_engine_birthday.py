"""Birthday gift: 100 points at local midnight of the birthday, once a year, not when the birthday was set
or changed less than 30 days before."""
from __future__ import annotations

from tests.unit.conftest import DAY, due, ms, summary, utc

JAN1 = "2024-01-01T10:00:00+08:00"
BDAY = "2024-03-10T00:00:00+08:00"


def gifts(rewards: list[dict]) -> list[tuple[str, int, str]]:
    return [(x["source_event_id"], x["points"], x["occurred_at"]) for x in rewards if x["rule"] == "birthday"
            and x["type"] == "points_earned"]


def test_birthday_gift_at_local_midnight(run):
    r = run()
    joined = r.joined(JAN1, birthday="03-10")
    assert (joined.outcome, joined.rewards, joined.notifications) == ("applied", [], [])
    assert joined.next_due == ms(BDAY)
    assert ms(BDAY) == ms("2024-03-09T16:00:00Z")
    assert r.advance(ms(BDAY) - 1).rewards == []
    result = r.advance(BDAY)
    assert summary(result.rewards) == [("points_earned", 100, "birthday")]
    assert result.rewards[0]["source_event_id"] == "birthday:2024"
    assert result.rewards[0]["occurred_at"] == "2024-03-09T16:00:00.000Z"
    assert result.rewards[0]["balance"] == {"available": 100, "pending": 0}
    [note] = result.notifications
    assert (note["template"], note["params"], note["priority"], note["created_at"]) == (
        "birthday_gift", {"points": 100}, "marketing", "2024-03-09T16:00:00.000Z")
    assert r.ledger.buckets == [[ms(BDAY) + 365 * DAY, 100, 0]]
    assert r.member.birthday_paid_year == 2024
    later = r.advance(ms(BDAY) + 12 * 3600 * 1000)
    assert (later.outcome, later.rewards, later.notifications) == ("ignored", [], [])


def test_birthday_is_paid_once_a_year_and_again_next_year(run):
    r = run()
    r.joined(JAN1, birthday="03-10")
    r.advance(BDAY)
    assert r.share("2024-03-10T20:00:00+08:00").rewards[0]["rule"] == "shares"
    assert gifts(r.rewards) == [("birthday:2024", 100, "2024-03-09T16:00:00.000Z")]
    # the 2024 gift expires 365 days later, the very instant the 2025 gift is due
    result = r.advance("2025-03-10T00:00:00+08:00")
    assert summary(result.rewards) == [("points_earned", 100, "birthday"),
                                       ("points_expired", -100, "expiry")]
    assert r.balance() == (105, 0)  # the share earned at 20:00 expires at 20:00
    assert gifts(r.rewards)[1] == ("birthday:2025", 100, "2025-03-09T16:00:00.000Z")


def test_a_gift_paid_after_it_would_have_expired_expires_at_once(run, make_program):
    r = run(make_program({"expiry.after": '"P1D"'}))
    r.joined(JAN1, birthday="03-10")
    result = r.advance("2024-03-12T09:00:00+08:00")   # the scheduler ran late
    assert summary(result.rewards) == [("points_earned", 100, "birthday"), ("points_expired", -100, "expiry")]
    assert [x["occurred_at"] for x in result.rewards] == [utc(BDAY), utc(ms(BDAY) + DAY)]
    assert (r.balance(), r.ledger.buckets) == ((0, 0), [])
    assert result.next_due > ms("2024-03-12T09:00:00+08:00")


def test_birthday_paid_by_the_next_event_that_day(run):
    r = run()
    r.joined(JAN1, birthday="03-10")
    result = r.login("2024-03-10T12:00:00+08:00")
    assert summary(result.rewards) == [("points_earned", 100, "birthday"), ("points_earned", 2, "logins")]
    assert result.rewards[0]["occurred_at"] == utc(BDAY)


def test_birthday_set_ten_days_before_is_not_paid(run):
    r = run()
    r.joined("2024-02-29T10:00:00+08:00", birthday="03-10")
    result = r.advance(BDAY)
    assert (result.rewards, result.notifications) == ([], [])
    assert r.member.birthday_paid_year is None
    assert result.next_due == ms("2025-03-10T00:00:00+08:00")
    assert gifts(r.advance("2025-03-10T00:00:00+08:00").rewards) == [
        ("birthday:2025", 100, "2025-03-09T16:00:00.000Z")]


def test_birthday_set_exactly_thirty_days_before_is_paid(run):
    on_the_edge, just_inside = run(member_id="a"), run(member_id="b")
    on_the_edge.joined("2024-02-09T00:00:00+08:00", birthday="03-10")
    just_inside.joined("2024-02-09T00:00:00.001+08:00", birthday="03-10")
    assert gifts(on_the_edge.advance(BDAY).rewards) == [("birthday:2024", 100, utc(BDAY))]
    assert gifts(just_inside.advance(BDAY).rewards) == []


def test_birthday_changed_within_thirty_days_is_not_paid(run):
    r = run()
    r.joined(JAN1, birthday="03-12")
    r.updated("2024-03-01T10:00:00+08:00", birthday="03-10")
    assert r.member.birthday_set_at == ms("2024-03-01T10:00:00+08:00")
    assert gifts(r.advance("2024-03-13T00:00:00+08:00").rewards) == []


def test_repeating_the_same_birthday_is_not_a_change(run):
    r = run()
    r.joined(JAN1, birthday="03-10")
    r.updated("2024-03-01T10:00:00+08:00", birthday="03-10")
    r.updated("2024-03-02T10:00:00+08:00")  # no birthday field: unchanged
    assert r.member.birthday_set_at == ms(JAN1)
    assert gifts(r.advance(BDAY).rewards) == [("birthday:2024", 100, utc(BDAY))]


def test_moving_the_birthday_after_the_gift_does_not_pay_twice_that_year(run):
    r = run()
    r.joined(JAN1, birthday="03-10")
    r.advance(BDAY)
    r.updated("2024-04-01T10:00:00+08:00", birthday="12-25")
    assert gifts(r.advance("2024-12-25T12:00:00+08:00").rewards) == []
    assert gifts(r.advance("2025-12-25T00:00:00+08:00").rewards) == [
        ("birthday:2025", 100, "2025-12-24T16:00:00.000Z")]


def test_a_birthday_already_past_this_year_waits_for_next_year(run):
    r = run()
    result = r.joined("2024-06-01T10:00:00+08:00", birthday="01-10")
    assert result.next_due == ms("2025-01-10T00:00:00+08:00")
    assert gifts(r.advance("2024-12-31T23:00:00+08:00").rewards) == []
    assert gifts(r.advance("2025-01-10T00:00:00+08:00").rewards) == [
        ("birthday:2025", 100, "2025-01-09T16:00:00.000Z")]


def test_february_29_falls_on_february_28_in_common_years(run):
    r = run()
    r.joined("2023-12-01T10:00:00+08:00", birthday="02-29")
    assert gifts(r.advance("2024-02-29T00:00:00+08:00").rewards) == [
        ("birthday:2024", 100, "2024-02-28T16:00:00.000Z")]
    assert gifts(r.advance("2025-02-27T23:59:59+08:00").rewards) == []
    assert gifts(r.advance("2025-02-28T00:00:00+08:00").rewards) == [
        ("birthday:2025", 100, "2025-02-27T16:00:00.000Z")]


def test_cleared_birthday_is_not_paid(run):
    r = run()
    r.joined(JAN1, birthday="03-10")
    result = r.updated("2024-02-01T10:00:00+08:00", birthday=None)
    assert due(result) is None
    assert gifts(r.advance(BDAY).rewards) == []


def test_frozen_member_gets_no_birthday_gift(run):
    r = run()
    r.joined(JAN1, birthday="03-10")
    r.state["frozen"] = True
    result = r.advance(BDAY)
    assert (result.rewards, result.notifications) == ([], [])
    assert r.member.birthday_paid_year is None


def test_no_gift_when_the_program_pays_none(run, make_program):
    r = run(make_program({"birthday.points": "0"}))
    result = r.joined(JAN1, birthday="03-10")
    assert due(result) is None
    assert r.advance(BDAY).rewards == []


def test_joining_keeps_the_referrer(run):
    r = run()
    r.joined(JAN1, referrer_id="friend-1")
    assert (r.member.referrer_id, r.member.birthday, r.member.created_at) == ("friend-1", None, ms(JAN1))


def test_a_birthday_that_fell_while_frozen_is_paid_at_the_next_step_after_unfreezing(run):
    """Not paid while frozen; once unfrozen the gift is due at once (next_due right after the clock), so
    nothing pays it between two due instants that the schedule does not know of."""
    r = run()
    r.joined(JAN1, birthday="03-10")
    r.apply(r.events.make("member_frozen", "2024-03-01T10:00:00+08:00", operator_id="op", reason="check"))
    frozen_through = r.advance(ms(BDAY) + 3600 * 1000)
    assert [x["type"] for x in frozen_through.rewards] == []
    unfrozen = r.apply(r.events.make("member_unfrozen", "2024-03-12T10:00:00+08:00", operator_id="op",
                                     reason="ok"))
    at = ms("2024-03-12T10:00:00+08:00")
    assert unfrozen.next_due == at + 1
    paid = r.advance(at + 1)
    assert [(x["type"], x["points"], x["occurred_at"]) for x in paid.rewards] == [
        ("points_earned", 100, "2024-03-09T16:00:00.000Z")]

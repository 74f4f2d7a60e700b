"""Reviews, shares and logins: points, daily caps by Shanghai calendar day, login streaks."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from tests.unit.conftest import DAY, HOUR, SHANGHAI, ms, summary

T0 = "2024-03-05T10:00:00+08:00"


def earned(result, rule: str) -> list[int]:
    return [x["points"] for x in result.rewards if x["type"] == "points_earned" and x["rule"] == rule]


def local(day: date, hour: int = 9) -> int:
    return ms(datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).isoformat())


# -- reviews -------------------------------------------------------------------------------------

def test_review_points_with_and_without_media(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.order(T0, "o2", 10000)
    with_media = r.review(ms(T0) + HOUR, "o1", has_media=True)
    assert summary(with_media.rewards) == [("points_earned", 20, "reviews")]
    assert with_media.rewards[0]["balance"] == {"available": 20, "pending": 300}
    assert with_media.rewards[0]["source_event_id"] == "e3"
    assert with_media.notifications == []
    assert summary(r.review(ms(T0) + HOUR, "o2", has_media=False).rewards) == [("points_earned", 10, "reviews")]
    assert r.balance() == (30, 300)
    assert [ms(T0) + HOUR + 365 * DAY, 30, 0] in r.ledger.buckets  # both reviews: available, one instant


def test_one_rewarded_review_per_order(run):
    r = run()
    r.order(T0, "o1", 10000)
    assert earned(r.review(ms(T0) + 1, "o1"), "reviews") == [10]
    again = r.review(ms(T0) + 2, "o1", has_media=True)
    assert (again.outcome, again.rewards, again.notifications) == ("ignored", [], [])
    assert r.member.order("o1").reviewed is True


def test_review_needs_an_order_this_member_paid(run):
    a, b = run(member_id="a"), run(member_id="b", prefix="b")
    a.order(T0, "o1", 10000)
    ledger = b.review(ms(T0) + 1, "o1").state["ledger"]
    assert (b.last.outcome, ledger["pending"], ledger["buckets"]) == ("ignored", [], [])
    assert a.review(ms(T0) + 1, "zz").outcome == "ignored"


def test_review_before_the_order_was_paid_is_ignored(run):
    r = run()
    r.order(T0, "o1", 10000)
    assert r.review(ms(T0) - 1, "o1").outcome == "ignored"


def test_review_window_is_90_days_inclusive(run):
    late, in_time = run(member_id="late"), run(member_id="in-time")
    late.order(T0, "o1", 10000)
    assert earned(late.review(ms(T0) + 90 * DAY + 1, "o1"), "reviews") == []
    assert late.last.outcome == "ignored"
    in_time.order(T0, "o1", 10000)
    assert earned(in_time.review(ms(T0) + 90 * DAY, "o1"), "reviews") == [10]


def test_review_of_a_refunded_order_is_still_rewarded(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.refund(ms(T0) + 1, "o1", 10000)
    assert earned(r.review(ms(T0) + 2, "o1"), "reviews") == [10]


def test_at_most_five_rewarded_reviews_per_local_day(run):
    r = run()
    for i in range(7):
        r.order(T0, f"o{i}", 1000)
    outcomes = [r.review(ms(T0) + (i + 1) * HOUR, f"o{i}").outcome for i in range(6)]
    assert outcomes == ["applied"] * 5 + ["ignored"]
    assert r.review("2024-03-05T23:59:59.999+08:00", "o6").outcome == "ignored"
    # midnight in Shanghai starts a new day; a review refused by the cap can be rewarded later
    assert earned(r.review("2024-03-05T16:00:00Z", "o5"), "reviews") == [10]
    assert earned(r.review("2024-03-06T12:00:00+08:00", "o6"), "reviews") == [10]
    assert sum(x["points"] for x in r.rewards if x["rule"] == "reviews") == 70


def test_frozen_member_gets_no_review_points(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.state["frozen"] = True
    assert r.review(ms(T0) + 1, "o1").outcome == "frozen"
    assert r.member.order("o1").reviewed is False


def test_review_campaign(run, make_program):
    extra = """
[[campaigns]]
name = "review week"
start = "2024-03-01T00:00:00+08:00"
end = "2024-03-08T00:00:00+08:00"
multiplier = 1.5
applies_to = ["reviews"]
"""
    r = run(make_program(campaigns=False, extra=extra))
    r.order(T0, "o1", 10000)
    r.order(T0, "o2", 10000)
    assert earned(r.review(ms(T0) + 1, "o1", has_media=True), "reviews") == [30]
    assert earned(r.review("2024-03-08T00:00:00+08:00", "o2"), "reviews") == [10]


# -- shares --------------------------------------------------------------------------------------

def test_shares_earn_five_points_three_times_a_local_day(run):
    r = run()
    results = [r.share(ms(T0) + i) for i in range(4)]
    assert [summary(x.rewards) for x in results] == [[("points_earned", 5, "shares")]] * 3 + [[]]
    assert [x.outcome for x in results] == ["applied"] * 3 + ["ignored"]
    assert r.share("2024-03-05T15:59:59.999Z").outcome == "ignored"   # 23:59:59.999 in Shanghai
    assert earned(r.share("2024-03-05T16:00:00Z"), "shares") == [5]    # 00:00 on the 6th in Shanghai
    assert r.balance() == (20, 0)
    assert r.member.count_today("2024-03-06", "shares") == 1


def test_frozen_member_gets_no_share_points(run):
    r = run()
    r.joined(T0)
    r.state["frozen"] = True
    assert (r.share(T0).outcome, r.balance()) == ("frozen", (0, 0))


def test_daily_counts_keep_three_days(run):
    r = run()
    for day in range(5):
        r.share(ms(T0) + day * DAY)
    assert sorted(r.member.daily) == ["2024-03-07", "2024-03-08", "2024-03-09"]


# -- logins --------------------------------------------------------------------------------------

def test_first_login_of_a_local_day_earns_two_points(run):
    r = run()
    assert summary(r.login("2024-03-05T00:00:00+08:00").rewards) == [("points_earned", 2, "logins")]
    again = r.login("2024-03-05T23:59:59+08:00")
    assert (again.outcome, again.rewards, again.notifications) == ("ignored", [], [])
    assert earned(r.login("2024-03-06T00:00:00+08:00"), "logins") == [2]
    assert r.balance() == (4, 0)
    assert (r.member.last_login_day, r.member.login_streak) == ("2024-03-06", 2)


def test_login_days_are_shanghai_days(run):
    r = run()
    # the same UTC day, two Shanghai days
    assert earned(r.login("2024-03-05T15:00:00Z"), "logins") == [2]
    assert earned(r.login("2024-03-05T17:00:00Z"), "logins") == [2]
    # two UTC days, the same Shanghai day
    assert r.login("2024-03-06T23:30:00Z").outcome == "applied"          # 07:30 on the 7th in Shanghai
    assert r.login("2024-03-07T10:00:00+08:00").outcome == "ignored"     # 02:00 UTC on the 7th
    assert (r.member.last_login_day, r.member.login_streak) == ("2024-03-07", 3)


def test_every_seventh_consecutive_day_earns_the_streak_bonus(run):
    r = run()
    start = date(2024, 2, 26)  # runs over 29 February
    results = [r.login(local(start + timedelta(days=i), hour=8 + i % 5)) for i in range(15)]
    bonus_days = [i + 1 for i, x in enumerate(results) if earned(x, "login_streak")]
    assert bonus_days == [7, 14]
    assert summary(results[6].rewards) == [("points_earned", 2, "logins"), ("points_earned", 20, "login_streak")]
    [note] = results[6].notifications
    assert (note["template"], note["params"], note["priority"]) == (
        "points_earned", {"points": 20, "rule": "login_streak", "streak_days": 7}, "marketing")
    assert results[13].notifications[0]["params"]["streak_days"] == 14
    assert all(x.notifications == [] for i, x in enumerate(results) if i not in (6, 13))
    assert r.balance() == (15 * 2 + 2 * 20, 0)
    assert [(x["source_event_id"], x["rule"]) for x in r.rewards if x["rule"] == "login_streak"] == [
        ("e7", "login_streak"), ("e14", "login_streak")]


def test_a_missed_day_restarts_the_streak(run):
    r = run()
    start = date(2024, 3, 1)
    days = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13]  # day 6 missed
    results = [r.login(local(start + timedelta(days=d))) for d in days]
    assert [d for d, x in zip(days, results, strict=True) if earned(x, "login_streak")] == [13]
    assert r.member.login_streak == 7


def test_extra_logins_on_a_day_do_not_break_the_streak(run):
    r = run()
    start = date(2024, 3, 1)
    for d in range(7):
        r.login(local(start + timedelta(days=d), hour=8))
        r.login(local(start + timedelta(days=d), hour=20))
    assert sum(x["points"] for x in r.rewards) == 7 * 2 + 20
    assert r.member.login_streak == 7


def test_a_login_for_an_earlier_day_is_ignored(run):
    r = run()
    r.login("2024-03-05T10:00:00+08:00")
    late = r.login("2024-03-04T10:00:00+08:00")
    assert (late.outcome, late.rewards) == ("ignored", [])
    assert r.member.last_login_day == "2024-03-05"


def test_frozen_member_gets_no_login_points(run):
    r = run()
    r.joined(T0)
    r.state["frozen"] = True
    assert r.login(T0).outcome == "frozen"
    assert r.member.last_login_day is None


def test_streak_length_and_bonus_are_configurable(run, make_program):
    r = run(make_program({"logins.streak_days": "3", "logins.streak_bonus": "7", "logins.points": "1"}))
    results = [r.login(local(date(2024, 3, 1) + timedelta(days=d))) for d in range(6)]
    assert [summary(x.rewards) for x in results[:3]] == [
        [("points_earned", 1, "logins")], [("points_earned", 1, "logins")],
        [("points_earned", 1, "logins"), ("points_earned", 7, "login_streak")]]
    assert r.balance() == (6 + 14, 0)

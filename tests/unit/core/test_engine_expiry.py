"""Expiry: points expire 365 days after they became available (all points expiring at one instant share
one bucket and one `points_expired` event), warnings 30 days before when at least 100 points expire,
and redemptions spend the soonest-expiring points first."""
from __future__ import annotations

from tests.unit.conftest import DAY, SECOND, due, ms, summary, templates, utc

T0 = "2024-03-05T10:00:00+08:00"
RELEASE = ms(T0) + 7 * DAY
EXPIRE = RELEASE + 365 * DAY
WARN = EXPIRE - 30 * DAY


def remaining(r) -> dict[int, int]:
    """Available points by expiry instant."""
    return {expires_at: points for expires_at, points, _ in r.ledger.buckets}


def test_order_points_expire_365_days_after_release_with_a_warning_30_days_before(run):
    r = run()
    r.order(T0, "o1", 10000)
    assert r.advance(RELEASE).next_due == WARN
    assert r.advance(WARN - 1).notifications == []
    result = r.advance(WARN)
    assert result.rewards == []
    [note] = result.notifications
    assert (note["template"], note["priority"], note["created_at"]) == ("points_expiring", "marketing", utc(WARN))
    assert note["params"] == {"points": 200, "first_expires_at": utc(EXPIRE)}
    assert [warned for _, _, warned in r.ledger.buckets] == [1]
    assert result.next_due == EXPIRE
    again = r.advance(WARN + DAY)
    assert (again.outcome, again.notifications) == ("ignored", [])
    assert r.advance(EXPIRE - 1).rewards == []
    result = r.advance(EXPIRE)
    assert summary(result.rewards) == [("points_expired", -200, "expiry")]
    assert [x["occurred_at"] for x in result.rewards] == [utc(EXPIRE)]
    assert [x["source_event_id"] for x in result.rewards] == [f"expiry:{EXPIRE}:0"]
    assert result.rewards[-1]["balance"] == {"available": 0, "pending": 0}
    assert result.notifications == []
    assert (r.ledger.expired, r.ledger.buckets, due(result)) == (200, [], None)


def test_expiry_when_the_advance_is_late_is_dated_at_expiry(run):
    r = run()
    r.share(T0)
    result = r.advance(ms(T0) + 400 * DAY)
    assert [(x["points"], x["occurred_at"]) for x in result.rewards] == [(-5, utc(ms(T0) + 365 * DAY))]


def test_pending_points_neither_expire_nor_warn(run, make_program):
    r = run(make_program({"orders.return_window": '"P400D"'}))
    r.order(T0, "o1", 10000)
    result = r.advance(ms(T0) + 399 * DAY)
    assert (result.rewards, result.notifications) == ([], [])
    assert r.balance() == (0, 200)


def test_no_warning_below_the_minimum(run, make_program):
    r = run(make_program({"shares.points": "99"}))
    r.share(T0)
    assert r.advance(ms(T0) + 335 * DAY).notifications == []
    assert summary(r.advance(ms(T0) + 365 * DAY).rewards) == [("points_expired", -99, "expiry")]
    assert r.notifications == []


def test_warning_at_exactly_the_minimum(run, make_program):
    r = run(make_program({"shares.points": "100"}))
    r.share(T0)
    assert [n["params"]["points"] for n in r.advance(ms(T0) + 335 * DAY).notifications] == [100]


def test_warning_adds_up_lots_expiring_within_the_warning_window(run, make_program):
    r = run(make_program({"shares.points": "60"}))
    first = r.share(T0)
    r.share(ms(T0) + 10 * DAY)
    assert first.next_due == ms(T0) + 335 * DAY
    result = r.advance(ms(T0) + 335 * DAY)   # only the first lot is inside 30 days: 60 < 100
    assert result.notifications == []
    assert result.next_due == ms(T0) + 345 * DAY
    result = r.advance(ms(T0) + 345 * DAY)
    assert [n["params"] for n in result.notifications] == [
        {"points": 120, "first_expires_at": utc(ms(T0) + 365 * DAY)}]


def test_redemption_spends_soonest_expiring_points_first(run):
    r = run()
    r.share(T0)                     # 5 points expiring T0 + 365 days
    r.order(T0, "o1", 10000)        # 200 points expiring RELEASE + 365 days
    r.advance(RELEASE)
    r.redeem(RELEASE + 1, 3)
    assert remaining(r) == {ms(T0) + 365 * DAY: 2, EXPIRE: 200}
    result = r.advance(ms(T0) + 365 * DAY)
    assert summary(result.rewards) == [("points_expired", -2, "expiry")]
    r.redeem(ms(T0) + 365 * DAY + 1, 150)
    assert remaining(r) == {EXPIRE: 50}   # the order and its bonus expire together: one bucket
    assert summary(r.advance(EXPIRE).rewards) == [("points_expired", -50, "expiry")]
    ledger = r.ledger
    assert (ledger.earned, ledger.redeemed, ledger.expired, ledger.available) == (205, 153, 52, 0)


def test_a_lot_expiring_at_the_instant_of_a_redemption_cannot_be_spent(run):
    r = run()
    r.share(T0)
    result = r.redeem(ms(T0) + 365 * DAY, 5)
    assert summary(result.rewards) == [("points_expired", -5, "expiry"),
                                       ("redemption_rejected", 0, "redemption")]
    assert result.rewards[1]["details"]["reason"] == "insufficient_points"
    assert r.balance() == (0, 0)


def test_a_lot_expiring_a_millisecond_after_a_redemption_can_be_spent(run):
    r = run()
    r.share(T0)
    result = r.redeem(ms(T0) + 365 * DAY - 1, 5)
    assert summary(result.rewards) == [("points_redeemed", -5, "redemption")]
    assert r.advance(ms(T0) + 365 * DAY).rewards == []


def test_spendable_at_an_instant_ignores_lots_due_to_expire(run):
    r = run()
    r.share(T0)
    r.share(ms(T0) + 1)
    assert r.ledger.spendable(ms(T0) + 365 * DAY) == 5
    assert r.ledger.spendable(ms(T0) + 365 * DAY - 1) == 10


def test_expiry_is_done_before_a_later_event(run):
    r = run()
    r.share(T0)
    result = r.share(ms(T0) + 366 * DAY)
    assert summary(result.rewards) == [("points_expired", -5, "expiry"), ("points_earned", 5, "shares")]
    assert r.balance() == (5, 0)


def test_seconds_long_program(run, make_program):
    program = make_program({"orders.return_window": '"PT5S"', "expiry.after": '"PT30S"',
                            "expiry.warn_before": '"PT10S"', "expiry.warn_min_points": "1"})
    r = run(program)
    start = ms(T0)
    assert r.order(start, "o1", 1000).next_due == start + 5 * SECOND
    assert r.advance(start + 5 * SECOND).next_due == start + 25 * SECOND
    assert templates(r.advance(start + 25 * SECOND).notifications) == ["points_expiring"]
    assert r.last.next_due == start + 35 * SECOND
    assert summary(r.advance(start + 35 * SECOND).rewards) == [("points_expired", -110, "expiry")]


def test_warning_ids_are_stable_and_name_the_lots(run):
    a, b = run(), run()
    for r in (a, b):
        r.order(T0, "o1", 10000)
        r.advance(WARN)
    assert a.notifications[-1]["notification_id"] == b.notifications[-1]["notification_id"]
    assert a.notifications[-1]["template"] == "points_expiring"

"""Abuse limits: velocity of reviews, shares and distinct login devices over a sliding window of event
time; a member over a limit is flagged and frozen (earns nothing, redemptions rejected) until an
operator unfreezes it. Admin adjustments still apply to a frozen member."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core.abuse import check_velocity
from stream_app.core.member import Member
from tests.unit.conftest import DAY, HOUR, MINUTE, MemberRun, build_program, iso, ms, rewards_of, summary, templates

T0 = "2024-03-05T10:00:00+08:00"  # a Tuesday, not a member day
NEXT_DAY = ms(T0) + DAY
# The packaged abuse limits, with the other features (segments, quiet hours, marketing cap) left off.
ABUSE = {"abuse.reviews_per_window": "10", "abuse.shares_per_window": "20", "abuse.devices_per_window": "5",
         "abuse.window": '"PT1H"'}
EVIDENCE_REVIEWS = {"count": 11, "limit": 10, "window_ms": HOUR}


@pytest.fixture(scope="module")
def abuse_program():
    return build_program({**ABUSE, "reviews.daily_cap": "100"}, campaigns=False)


def admin(r: MemberRun, type_: str, at, **fields):
    return r.apply(r.events.make(type_, at, operator_id="op7", reason="checked", **fields))


def login(r: MemberRun, at, device: str):
    return r.apply(r.events.make("login", at, device_id=device))


def test_packaged_limits(make_program):
    program = make_program(features=True)
    assert program.abuse_limits == {"reviews": 10, "shares": 20, "devices": 5}
    assert program.abuse_window_ms == HOUR


# -- velocity limits ------------------------------------------------------------------------------

def test_eleventh_review_within_an_hour_flags_and_earns_nothing(run, abuse_program):
    r = run(abuse_program)
    for i in range(11):
        r.order(ms(T0) - HOUR, f"o{i}", 1000)
    results = [r.review(ms(T0) + i * MINUTE, f"o{i}") for i in range(11)]
    assert [x.outcome for x in results] == ["applied"] * 10 + ["frozen"]
    assert [summary(x.rewards) for x in results[:10]] == [[("points_earned", 10, "reviews")]] * 10
    flagged = results[10]
    assert summary(flagged.rewards) == [("member_flagged", 0, "velocity:reviews")]
    [reward] = flagged.rewards
    assert reward["details"] == EVIDENCE_REVIEWS
    assert reward["source_event_id"] == r.applied[-1]["event_id"]
    [note] = flagged.notifications
    assert (note["template"], note["priority"], note["params"]) == (
        "member_flagged", "transactional", {"rule": "velocity:reviews", **EVIDENCE_REVIEWS})
    member = r.member
    assert member.frozen is True
    assert member.flags == [{"rule": "velocity:reviews", "at": ms(T0) + 10 * MINUTE, "evidence": EVIDENCE_REVIEWS}]
    assert member.order("o10").reviewed is False
    assert r.ledger.earned == 11 * 10 + 100 + 10 * 10  # 11 orders of 10.00, the first order bonus, 10 reviews


def test_ten_reviews_within_an_hour_do_not_flag(run, abuse_program):
    r = run(abuse_program)
    r.order(T0, "o1", 1000)
    results = [r.review(ms(T0) + i * MINUTE, "o1") for i in range(10)]
    assert all(not rewards_of(x, "member_flagged") for x in results)
    assert r.member.frozen is False


def test_reviews_spread_over_more_than_an_hour_do_not_flag(run, abuse_program):
    r = run(abuse_program)
    r.order(T0, "o1", 1000)
    # 11 reviews 6 minutes apart: the first is exactly an hour before the 11th, so out of the window
    results = [r.review(ms(T0) + i * 6 * MINUTE, "o1") for i in range(30)]
    assert rewards_of(r.rewards, "member_flagged") == []
    assert all(x.outcome in ("applied", "ignored") for x in results)
    assert r.member.frozen is False
    assert len(r.member.velocity["reviews"]) == 10


def test_eleventh_review_one_millisecond_inside_the_hour_flags(run, abuse_program):
    r = run(abuse_program)
    r.order(T0, "o1", 1000)
    for i in range(10):
        r.review(ms(T0) + i * MINUTE, "o1")
    result = r.review(ms(T0) + HOUR - 1, "o1")
    assert summary(result.rewards) == [("member_flagged", 0, "velocity:reviews")]


def test_eleventh_review_exactly_an_hour_after_the_first_does_not_flag(run, abuse_program):
    r = run(abuse_program)
    r.order(T0, "o1", 1000)
    for i in range(10):
        r.review(ms(T0) + i * MINUTE, "o1")
    result = r.review(ms(T0) + HOUR, "o1")
    assert (result.outcome, result.rewards) == ("ignored", [])
    assert r.member.frozen is False


def test_shares_limit_is_twenty(run, abuse_program):
    r = run(abuse_program)
    results = [r.share(ms(T0) + i * MINUTE) for i in range(21)]
    assert [x.outcome for x in results] == ["applied"] * 3 + ["ignored"] * 17 + ["frozen"]
    assert rewards_of(r.rewards[:-1], "member_flagged") == []
    assert summary(results[-1].rewards) == [("member_flagged", 0, "velocity:shares")]
    assert results[-1].rewards[0]["details"] == {"count": 21, "limit": 20, "window_ms": HOUR}
    assert templates(results[-1].notifications) == ["member_flagged"]


def test_six_distinct_devices_within_an_hour_flag(run, abuse_program):
    r = run(abuse_program)
    results = [login(r, ms(T0) + i * MINUTE, f"device-{i}") for i in range(6)]
    assert [x.outcome for x in results] == ["applied"] + ["ignored"] * 4 + ["frozen"]
    assert summary(results[-1].rewards) == [("member_flagged", 0, "velocity:devices")]
    assert results[-1].rewards[0]["details"] == {"count": 6, "limit": 5, "window_ms": HOUR}
    assert r.member.flags[0]["rule"] == "velocity:devices"


def test_ten_logins_from_one_device_do_not_flag(run, abuse_program):
    r = run(abuse_program)
    results = [login(r, ms(T0) + i * MINUTE, "phone") for i in range(10)]
    assert rewards_of(r.rewards, "member_flagged") == []
    assert [x.outcome for x in results] == ["applied"] + ["ignored"] * 9
    assert r.member.frozen is False


def test_devices_count_distinct_ids_in_the_window(run, abuse_program):
    r = run(abuse_program)
    for i in range(5):
        login(r, ms(T0) + i * MINUTE, f"device-{i}")
    # device-0 was seen exactly an hour ago, so out of the window: five distinct devices in it
    result = login(r, ms(T0) + HOUR, "device-5")
    assert rewards_of(result, "member_flagged") == []
    # device-1 again: still five distinct devices in the window
    assert rewards_of(login(r, ms(T0) + HOUR, "device-1"), "member_flagged") == []
    assert r.member.frozen is False
    result = login(r, ms(T0) + HOUR, "device-0")  # back in the window: six
    assert result.rewards[0]["details"] == {"count": 6, "limit": 5, "window_ms": HOUR}


def test_check_velocity_ignores_other_event_types(abuse_program):
    member = Member("m1", 0, "bronze")
    assert check_velocity(member, {"type": "order_paid"}, abuse_program, 0) is None
    assert member.velocity == {}


def test_limit_zero_flags_the_first_event(run, make_program):
    r = run(make_program({**ABUSE, "abuse.shares_per_window": "0"}))
    result = r.share(T0)
    assert (result.outcome, summary(result.rewards)) == ("frozen", [("member_flagged", 0, "velocity:shares")])
    assert result.rewards[0]["details"] == {"count": 1, "limit": 0, "window_ms": HOUR}


# -- a frozen member ------------------------------------------------------------------------------

@pytest.fixture
def flagged(run, abuse_program):
    """A member with 215 available points and an order o1 to review, flagged by its 21st share."""
    r = run(abuse_program)
    r.order(ms(T0) - 10 * DAY, "o1", 10000)  # 100 + 100 first order bonus, released three days ago
    r.advance(ms(T0) - 3 * DAY)
    for i in range(21):
        r.share(ms(T0) + i * MINUTE)
    assert r.member.frozen is True
    assert r.balance() == (215, 0)
    return r


def test_frozen_member_earns_nothing(flagged):
    at = NEXT_DAY
    for result in (flagged.order(at, "o2", 10000), flagged.share(at + 1), login(flagged, at + 2, "phone"),
                   flagged.review(at + 3, "o1")):
        assert (result.outcome, result.rewards, result.notifications) == ("frozen", [], [])
    assert flagged.balance() == (215, 0)
    assert "o2" not in flagged.member.orders
    assert flagged.member.order("o1").reviewed is False


def test_frozen_member_redemption_is_rejected(flagged):
    result = flagged.redeem(NEXT_DAY, 10, redemption_id="r1", reward_code="TEA")
    assert (result.outcome, summary(result.rewards)) == ("applied", [("redemption_rejected", 0, "redemption")])
    assert result.rewards[0]["details"] == {"redemption_id": "r1", "points": 10, "reward_code": "TEA",
                                            "reason": "member_frozen"}
    assert flagged.balance() == (215, 0)
    assert flagged.member.redemption_ids == []


def test_events_of_a_frozen_member_are_still_recorded(flagged):
    event = flagged.events.share(NEXT_DAY)
    assert flagged.apply(event).outcome == "frozen"
    assert event["event_id"] in flagged.member.seen
    again = flagged.apply(event)
    assert (again.outcome, again.rewards, again.notifications) == ("duplicate", [], [])


def test_the_flagging_event_resent_is_a_duplicate(run, abuse_program):
    r = run(abuse_program)
    for i in range(20):
        r.share(ms(T0) + i)
    event = r.events.share(ms(T0) + 20)
    assert rewards_of(r.apply(event), "member_flagged")
    assert r.apply(event).outcome == "duplicate"
    assert len(r.member.flags) == 1


def test_member_flagged_is_emitted_exactly_once(flagged):
    for i in range(15):  # still over the share limit, and over the review limit too
        flagged.share(ms(T0) + 30 * MINUTE + i)
        flagged.review(ms(T0) + 30 * MINUTE + i, "o1")
    assert len(rewards_of(flagged.rewards, "member_flagged")) == 1
    assert templates(flagged.notifications).count("member_flagged") == 1
    assert [f["rule"] for f in flagged.member.flags] == ["velocity:shares"]


def test_admin_unfreeze_restores_earning(flagged):
    result = admin(flagged, "member_unfrozen", NEXT_DAY)
    assert (result.outcome, summary(result.rewards)) == ("applied", [("member_unfrozen", 0, "admin")])
    assert result.rewards[0]["details"] == {"operator_id": "op7", "reason": "checked"}
    assert flagged.member.frozen is False
    assert [f["rule"] for f in flagged.member.flags] == ["velocity:shares"]  # the flag is kept
    assert summary(flagged.share(NEXT_DAY + 1).rewards) == [("points_earned", 5, "shares")]
    assert summary(login(flagged, NEXT_DAY + 2, "phone").rewards) == [("points_earned", 2, "logins")]
    assert summary(flagged.order(NEXT_DAY + 3, "o2", 10000).rewards) == [("points_pending", 100, "order")]
    assert summary(flagged.review(NEXT_DAY + 4, "o1").rewards) == [("points_earned", 10, "reviews")]
    assert summary(flagged.redeem(NEXT_DAY + 5, 100).rewards) == [("points_redeemed", -100, "redemption")]
    assert flagged.balance() == (215 + 5 + 2 + 10 - 100, 100)
    assert admin(flagged, "member_unfrozen", NEXT_DAY + 6).outcome == "ignored"


def test_positive_adjustment_of_a_frozen_member(flagged):
    earned = flagged.ledger.earned
    result = admin(flagged, "points_adjusted", NEXT_DAY, points=50)
    assert (result.outcome, summary(result.rewards)) == ("applied", [("points_adjusted", 50, "admin")])
    [reward] = result.rewards
    assert reward["details"] == {"operator_id": "op7", "reason": "checked"}
    assert reward["balance"] == {"available": 265, "pending": 0}
    ledger = flagged.ledger
    assert (ledger.adjusted, ledger.earned) == (50, earned)
    assert [NEXT_DAY + 365 * DAY, 50, 0] in ledger.buckets  # available at once, for expiry.after


def test_negative_adjustment_beyond_the_balance_leaves_debt(flagged):
    result = admin(flagged, "points_adjusted", NEXT_DAY, points=-300)
    assert summary(result.rewards) == [("points_adjusted", -300, "admin")]
    assert result.rewards[0]["details"] == {"operator_id": "op7", "reason": "checked"}
    assert result.rewards[0]["balance"] == {"available": -85, "pending": 0}
    assert (flagged.ledger.adjusted, flagged.ledger.debt) == (-300, 85)


def test_admin_events_do_not_count_toward_limits_or_activity(run, abuse_program):
    r = run(abuse_program)
    r.share(T0)
    for i in range(30):
        admin(r, "points_adjusted", ms(T0) + i + 1, points=1)
    assert r.member.velocity == {"shares": [[ms(T0), ""]]}
    assert r.member.last_activity_at == ms(T0)
    assert r.member.frozen is False


# -- property: a frozen member's earned total never grows -------------------------------------------

STEP = st.one_of(
    st.tuples(st.just("order"), st.integers(0, 50000)),
    st.tuples(st.just("share"), st.none()),
    st.tuples(st.just("login"), st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])),
    st.tuples(st.just("review"), st.sampled_from(["o1", "o2"])),
    st.tuples(st.just("redeem"), st.integers(1, 300)),
    st.tuples(st.just("adjust"), st.integers(-200, 200).filter(bool)),
    st.tuples(st.just("refund"), st.integers(1, 20000)),
    st.tuples(st.just("advance"), st.none()),
)
DT = st.sampled_from([0, 1, MINUTE, HOUR, DAY, 3 * DAY, 8 * DAY])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(DT, STEP), min_size=1, max_size=40), via_flag=st.booleans())
def test_frozen_members_earned_total_only_grows_by_adjustments(steps, via_flag):
    program = build_program({**ABUSE, "abuse.shares_per_window": "0"} if via_flag else ABUSE, campaigns=False)
    r = MemberRun(program)
    r.order(T0, "o1", 10000)  # a pending lot that is released while frozen
    if via_flag:
        r.share(ms(T0) + 1)
    else:
        admin(r, "member_frozen", ms(T0) + 1)
    assert r.member.frozen is True
    now, earned = ms(T0) + 1, r.ledger.earned
    for dt, (kind, arg) in steps:
        now += dt
        before = r.ledger.available + r.ledger.pending
        adjusted = 0
        if kind == "order":
            result = r.order(now, f"n{now}", arg)
        elif kind == "share":
            result = r.share(now)
        elif kind == "login":
            result = login(r, now, arg)
        elif kind == "review":
            result = r.review(now, arg)
        elif kind == "redeem":
            result = r.redeem(now, arg)
        elif kind == "adjust":
            result = admin(r, "points_adjusted", now, points=arg)
            adjusted = max(arg, 0)
        elif kind == "refund":
            result = r.refund(now, "o1", arg)
        else:
            result = r.advance(now)
        if kind in ("order", "share", "login", "review"):
            assert result.outcome == "frozen"
        for reward in result.rewards:
            assert reward["type"] not in ("points_pending", "points_redeemed", "member_flagged")
            if reward["type"] == "points_earned":
                assert reward["details"] == {"released_from_pending": True}
        assert r.member.frozen is True
        assert r.ledger.earned == earned
        assert r.ledger.available + r.ledger.pending <= before + adjusted, iso(now)

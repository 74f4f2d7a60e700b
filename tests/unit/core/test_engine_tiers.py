"""Tiers: qualifying = order points earned in the trailing 365 days (pending included, bonus excluded)
less clawbacks; upgrade at once; below threshold -> tier_at_risk, still below after 30 days -> one tier down."""
from __future__ import annotations

from stream_app.core.tiers import qualifying_points, tier_due_at
from tests.unit.conftest import DAY, due, ms, summary, utc

T0 = "2024-03-05T10:00:00+08:00"
RELEASE = ms(T0) + 7 * DAY
YEAR = 365 * DAY
GRACE = 30 * DAY


def tier_changes(rewards: list[dict]) -> list[tuple[str, str, str, int]]:
    return [(x["details"]["from"], x["details"]["to"], x["rule"], x["details"]["qualifying_points"])
            for x in rewards if x["type"] == "tier_changed"]


def at_risk(notifications: list[dict]) -> list[dict]:
    return [n["params"] for n in notifications if n["template"] == "tier_at_risk"]


def drive(r, until: int) -> None:
    """Advance through every due instant up to `until`, as the scheduler would."""
    while r.last.next_due is not None and r.last.next_due <= until:
        r.advance(r.last.next_due)
    r.advance(until)


def qualifying(r, at: int) -> int:
    return qualifying_points(r.member, r.program, at)


def test_upgrade_at_once_with_pending_points(run):
    r = run()
    result = r.order(T0, "o1", 100000)
    assert tier_changes(result.rewards) == [("bronze", "silver", "tier_upgrade", 1000)]
    reward = result.rewards[-1]
    assert (reward["points"], reward["tier"], reward["source_event_id"], reward["occurred_at"]) == (
        0, "silver", "e1", utc(T0))
    [note] = [n for n in result.notifications if n["template"] == "tier_changed"]
    assert (note["params"], note["priority"]) == (
        {"from": "bronze", "to": "silver", "qualifying_points": 1000}, "transactional")
    assert r.member.tier == "silver"
    assert r.balance() == (0, 1100)


def test_the_first_order_bonus_does_not_qualify(run):
    r = run()
    result = r.order(T0, "o1", 99999)
    assert tier_changes(result.rewards) == []
    assert (r.member.tier, qualifying(r, ms(T0)), r.balance()) == ("bronze", 999, (0, 1099))


def test_other_points_do_not_qualify(run):
    r = run()
    r.order(T0, "o1", 99900)
    for day in range(7):
        r.login(ms(T0) + day * DAY)
        r.share(ms(T0) + day * DAY)
    r.review(ms(T0) + DAY, "o1", has_media=True)
    assert r.ledger.earned == 999 + 100 + 7 * 2 + 20 + 7 * 5 + 20
    assert (r.member.tier, qualifying(r, ms(T0) + 7 * DAY)) == ("bronze", 999)


def test_qualifying_adds_orders_and_may_jump_tiers(run):
    r = run()
    assert tier_changes(r.order(T0, "o1", 60000).rewards) == []
    assert tier_changes(r.order(ms(T0) + 1, "o2", 40000).rewards) == [("bronze", "silver", "tier_upgrade", 1000)]
    jump = run(member_id="m2")
    assert tier_changes(jump.order(T0, "o1", 2000000).rewards) == [("bronze", "platinum", "tier_upgrade", 20000)]


def test_campaign_points_qualify(run):
    r = run()
    result = r.order("2024-03-18T10:00:00+08:00", "o1", 50000)
    assert tier_changes(result.rewards) == [("bronze", "silver", "tier_upgrade", 1000)]


def test_thresholds_are_inclusive(run):
    for cents, tier in [(499999, "silver"), (500000, "gold"), (1999999, "gold"), (2000000, "platinum")]:
        r = run(member_id=f"m{cents}")
        r.order(T0, "o1", cents)
        assert r.member.tier == tier


def test_clawback_below_threshold_starts_the_grace_period(run):
    r = run()
    r.order(T0, "o1", 100000)
    refund_at = ms(T0) + DAY
    result = r.refund(refund_at, "o1", 100)
    assert at_risk(result.notifications) == [{"tier": "silver", "qualifying_points": 999, "points_needed": 1,
                                              "grace_ends_at": utc(refund_at + GRACE)}]
    note = [n for n in result.notifications if n["template"] == "tier_at_risk"][0]
    assert (note["priority"], note["created_at"]) == ("marketing", utc(refund_at))
    assert tier_changes(result.rewards) == []
    assert (r.member.tier, r.member.at_risk_since) == ("silver", refund_at)
    assert tier_due_at(r.member, r.program, refund_at) == refund_at + GRACE
    drive(r, refund_at + GRACE - 1)
    assert r.member.tier == "silver"
    assert at_risk(r.notifications) == at_risk(result.notifications)  # told once
    result = r.advance(refund_at + GRACE)
    assert tier_changes(result.rewards) == [("silver", "bronze", "tier_downgrade", 999)]
    assert result.rewards[0]["source_event_id"] == f"tier-grace:{refund_at}"
    assert result.rewards[0]["tier"] == "bronze"
    assert (r.member.tier, r.member.at_risk_since) == ("bronze", None)
    assert r.advance(refund_at + GRACE + DAY).rewards == []


def test_recovering_during_the_grace_period_keeps_the_tier(run):
    r = run()
    r.order(T0, "o1", 100000)
    refund_at = ms(T0) + DAY
    r.refund(refund_at, "o1", 100)
    result = r.order(refund_at + GRACE - 1, "o2", 100)
    assert tier_changes(result.rewards) == []
    assert (r.member.tier, r.member.at_risk_since) == ("silver", None)
    drive(r, refund_at + 2 * GRACE)
    assert tier_changes(r.rewards) == [("bronze", "silver", "tier_upgrade", 1000)]


def test_orders_leave_the_window_after_365_days(run):
    r = run()
    r.order(T0, "o1", 100000)
    drive(r, ms(T0) + YEAR - 1)
    assert (r.member.tier, qualifying(r, ms(T0) + YEAR - 1)) == ("silver", 1000)
    assert at_risk(r.notifications) == []
    assert r.last.next_due == ms(T0) + YEAR
    result = r.advance(ms(T0) + YEAR)
    assert at_risk(result.notifications) == [{"tier": "silver", "qualifying_points": 0, "points_needed": 1000,
                                              "grace_ends_at": utc(ms(T0) + YEAR + GRACE)}]
    drive(r, ms(T0) + YEAR + GRACE - 1)
    assert r.member.tier == "silver"
    result = r.advance(ms(T0) + YEAR + GRACE)
    assert tier_changes(result.rewards) == [("silver", "bronze", "tier_downgrade", 0)]
    assert at_risk(result.notifications) == []
    assert due(result) is None


def test_dropping_is_one_tier_per_grace_period(run):
    r = run()
    r.order(T0, "o1", 500000)
    assert r.member.tier == "gold"
    drive(r, ms(T0) + YEAR + 2 * GRACE)
    assert tier_changes(r.rewards) == [("bronze", "gold", "tier_upgrade", 5000),
                                       ("gold", "silver", "tier_downgrade", 0),
                                       ("silver", "bronze", "tier_downgrade", 0)]
    assert [(x["tier"], x["points_needed"]) for x in at_risk(r.notifications)] == [("gold", 5000), ("silver", 1000)]
    downgrades = [x for x in r.rewards if x["rule"] == "tier_downgrade"]
    assert [x["occurred_at"] for x in downgrades] == [utc(ms(T0) + YEAR + GRACE), utc(ms(T0) + YEAR + 2 * GRACE)]


def test_dropping_one_tier_can_be_enough(run):
    r = run()
    r.order(T0, "o1", 500000)
    r.refund(ms(T0) + DAY, "o1", 100000)       # 5000 -> 4000 qualifying
    drive(r, ms(T0) + DAY + GRACE)
    assert tier_changes(r.rewards)[1:] == [("gold", "silver", "tier_downgrade", 4000)]
    assert [x["points_needed"] for x in at_risk(r.notifications)] == [1000]
    assert (r.member.tier, r.member.at_risk_since) == ("silver", None)


def test_redemptions_never_reduce_qualifying(run):
    r = run()
    r.order(T0, "o1", 100000)
    r.advance(RELEASE)
    result = r.redeem(RELEASE + 1, 1100)
    assert summary(result.rewards) == [("points_redeemed", -1100, "redemption")]
    assert at_risk(result.notifications) == []
    assert (r.member.tier, qualifying(r, RELEASE + 1), r.balance()) == ("silver", 1000, (0, 0))


def test_within_balance_clawback_reduces_qualifying_only_by_what_was_taken(run, make_program):
    r = run(make_program({"orders.refund_policy": '"within_balance"'}))
    r.order(T0, "o1", 100000)
    r.advance(RELEASE)
    r.redeem(RELEASE + 1, 1000)
    r.refund(RELEASE + 2, "o1", 100000)
    assert r.ledger.clawed_back == 100
    assert (r.member.order("o1").qualifying, r.member.tier) == (900, "silver")
    assert at_risk(r.notifications) == [{"tier": "silver", "qualifying_points": 900, "points_needed": 100,
                                         "grace_ends_at": utc(RELEASE + 2 + GRACE)}]


def test_tier_multiplier_follows_the_downgrade(run):
    r = run()
    r.order(T0, "o1", 100000)
    r.refund(ms(T0) + DAY, "o1", 100)
    drive(r, ms(T0) + DAY + GRACE)
    result = r.order(ms(T0) + DAY + GRACE + 1, "o2", 10000)
    assert [x["points"] for x in result.rewards if x["type"] == "points_pending"] == [100]


def test_grace_end_passed_before_an_event_is_applied_first(run):
    """Due work up to an event's instant is done before the event: the same whether or not the scheduler
    got to advance() at the end of the grace period first."""
    outcomes = []
    for scheduled in (True, False):
        r = run()
        r.order(T0, "o1", 100000)
        r.refund(ms(T0) + DAY, "o1", 100)
        r.advance(RELEASE)
        if scheduled:
            r.advance(ms(T0) + DAY + GRACE)
        result = r.order(ms(T0) + DAY + GRACE + 1, "o2", 10000)
        outcomes.append((r.member.tier, [x["points"] for x in r.rewards if x["type"] == "points_pending"],
                         tier_changes(r.rewards), [x["reward_id"] for x in r.rewards if x["type"] == "tier_changed"]))
        assert [x["points"] for x in result.rewards if x["type"] == "points_pending"] == [100]
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] == [("bronze", "silver", "tier_upgrade", 1000), ("silver", "bronze", "tier_downgrade", 999),
                              ("bronze", "silver", "tier_upgrade", 1099)]


def test_tier_due_at(run):
    r = run()
    r.order(T0, "o1", 1000)
    assert tier_due_at(r.member, r.program, ms(T0)) is None          # bronze: nothing to lose
    r.order(ms(T0) + DAY, "o2", 100000)
    assert tier_due_at(r.member, r.program, ms(T0) + DAY) == ms(T0) + YEAR   # the first order leaves first
    assert tier_due_at(r.member, r.program, ms(T0) + YEAR) == ms(T0) + DAY + YEAR

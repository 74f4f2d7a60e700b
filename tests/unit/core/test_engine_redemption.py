"""Redemption: approved when the available balance covers it and the member is not frozen; otherwise
rejected with a reason (insufficient_points, member_frozen, duplicate)."""
from __future__ import annotations

import pytest

from tests.unit.conftest import DAY, ms, summary

T0 = "2024-03-05T10:00:00+08:00"
RELEASE = ms(T0) + 7 * DAY


@pytest.fixture
def funded(run):
    """A member with 200 available points."""
    r = run()
    r.order(T0, "o1", 10000)
    r.advance(RELEASE)
    assert r.balance() == (200, 0)
    return r


def test_approved_redemption(funded):
    result = funded.redeem(RELEASE + 1, 150, redemption_id="r1", reward_code="TEA")
    assert result.outcome == "applied"
    assert summary(result.rewards) == [("points_redeemed", -150, "redemption")]
    [reward] = result.rewards
    assert reward["details"] == {"redemption_id": "r1", "points": 150, "reward_code": "TEA"}
    assert reward["balance"] == {"available": 50, "pending": 0}
    assert reward["source_event_id"] == "e2"
    [note] = result.notifications
    assert (note["template"], note["priority"], note["params"]) == (
        "points_redeemed", "transactional", {"redemption_id": "r1", "points": 150, "reward_code": "TEA"})
    assert (funded.ledger.redeemed, funded.member.redemption_ids) == (150, ["r1"])


def test_redeeming_exactly_the_balance(funded):
    result = funded.redeem(RELEASE + 1, 200)
    assert summary(result.rewards) == [("points_redeemed", -200, "redemption")]
    assert funded.balance() == (0, 0)
    assert (funded.ledger.pending_lots, funded.ledger.buckets) == ([], [])


def test_insufficient_points(funded):
    before = funded.state["ledger"]
    result = funded.redeem(RELEASE + 1, 201, redemption_id="r1", reward_code="TEA")
    assert (result.outcome, summary(result.rewards)) == ("applied", [("redemption_rejected", 0, "redemption")])
    expected = {"redemption_id": "r1", "points": 201, "reward_code": "TEA", "reason": "insufficient_points"}
    assert result.rewards[0]["details"] == expected
    assert result.rewards[0]["balance"] == {"available": 200, "pending": 0}
    [note] = result.notifications
    assert (note["template"], note["priority"], note["params"]) == ("redemption_rejected", "transactional", expected)
    assert funded.state["ledger"] == before
    assert funded.member.redemption_ids == []


def test_pending_points_cannot_be_redeemed(run):
    r = run()
    r.order(T0, "o1", 10000)
    result = r.redeem(ms(T0) + 1, 1)
    assert result.rewards[0]["details"]["reason"] == "insufficient_points"
    assert r.balance() == (0, 200)


def test_a_rejected_redemption_id_can_be_retried(run):
    r = run()
    r.share(T0)
    assert r.redeem(ms(T0) + 1, 10, redemption_id="r1").rewards[0]["details"]["reason"] == "insufficient_points"
    r.share(ms(T0) + 2)
    assert summary(r.redeem(ms(T0) + 3, 10, redemption_id="r1").rewards) == [("points_redeemed", -10, "redemption")]


def test_frozen_member(funded):
    funded.state["frozen"] = True
    result = funded.redeem(RELEASE + 1, 10)
    assert result.rewards[0]["details"]["reason"] == "member_frozen"
    assert funded.balance() == (200, 0)


def test_duplicate_redemption_id(funded):
    funded.redeem(RELEASE + 1, 50, redemption_id="r1")
    result = funded.redeem(RELEASE + 2, 50, redemption_id="r1")
    assert result.outcome == "applied"
    assert summary(result.rewards) == [("redemption_rejected", 0, "redemption")]
    assert result.rewards[0]["details"] == {"redemption_id": "r1", "points": 50, "reward_code": "COUPON",
                                            "reason": "duplicate"}
    assert funded.balance() == (150, 0)
    funded.state["frozen"] = True
    assert funded.redeem(RELEASE + 3, 50, redemption_id="r1").rewards[0]["details"]["reason"] == "duplicate"


def test_the_same_redemption_event_twice_is_a_duplicate_event_not_a_rejection(funded):
    event = funded.events.redeem(RELEASE + 1, 50, redemption_id="r1")
    funded.apply(event)
    result = funded.apply(event)
    assert (result.outcome, result.rewards, result.notifications) == ("duplicate", [], [])
    assert funded.balance() == (150, 0)


def test_a_member_in_debt_cannot_redeem(run):
    r = run()
    r.order(T0, "o1", 10000)
    r.advance(RELEASE)
    r.redeem(RELEASE + 1, 200)
    r.refund(RELEASE + 2, "o1", 5000)
    r.share(RELEASE + 3)
    assert r.balance() == (-45, 0)
    assert r.redeem(RELEASE + 4, 1).rewards[0]["details"]["reason"] == "insufficient_points"

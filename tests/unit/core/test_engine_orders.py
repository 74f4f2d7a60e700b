"""Earning on paid orders: points per unit, tier and campaign multipliers floored once, category weights,
the first-order bonus, and release from pending after the return window."""
from __future__ import annotations

import pytest

from tests.unit.conftest import DAY, ms, summary, templates, utc

T0 = "2024-03-05T10:00:00+08:00"  # a Tuesday, not the 18th
RELEASE = ms(T0) + 7 * DAY


def order_points(result) -> list[int]:
    """Points of the pending order lots a result created (leaving out releases and bonuses)."""
    return [x["points"] for x in result.rewards if x["type"] == "points_pending" and x["rule"] == "order"]


def test_first_order_earns_pending_points_and_bonus(run):
    r = run()
    result = r.order(T0, "o1", 12345)
    assert result.outcome == "applied"
    assert summary(result.rewards) == [("points_pending", 123, "order"),
                                       ("points_pending", 100, "first_order_bonus")]
    first, bonus = result.rewards
    assert first["balance"] == {"available": 0, "pending": 123}
    assert bonus["balance"] == {"available": 0, "pending": 223}
    for reward in result.rewards:
        assert reward["member_id"] == "m1"
        assert reward["tier"] == "bronze"
        assert reward["source_event_id"] == "e1"
        assert reward["occurred_at"] == "2024-03-05T02:00:00.000Z"
        assert reward["details"] == {"available_at": "2024-03-12T02:00:00.000Z"}
        assert reward["reward_id"].startswith("rw-")
    assert first["reward_id"] != bonus["reward_id"]
    [note] = result.notifications
    assert note["template"] == "points_pending"
    assert note["priority"] == "transactional"
    assert note["params"] == {"points": 223, "order_id": "o1", "available_at": "2024-03-12T02:00:00.000Z"}
    assert note["created_at"] == "2024-03-05T02:00:00.000Z"
    assert r.balance() == (0, 223)
    assert result.next_due == RELEASE
    [order_lot, bonus_lot] = r.ledger.pending_lots
    assert (order_lot.lot_id, order_lot.rule, order_lot.points, order_lot.released) == ("e1:order", "order", 123, False)
    assert (bonus_lot.lot_id, bonus_lot.rule, bonus_lot.points) == ("e1:first_order_bonus", "first_order_bonus", 100)
    assert order_lot.available_at == bonus_lot.available_at == RELEASE
    assert order_lot.expires_at == RELEASE + 365 * DAY
    order = r.member.order("o1")
    assert (order.points, order.bonus, order.paid_cents, order.paid_at) == (123, 100, 12345, ms(T0))


def test_only_the_first_paid_order_gets_the_bonus(run):
    r = run()
    r.order(T0, "o1", 5000)
    result = r.order(ms(T0) + DAY, "o2", 5000)
    assert summary(result.rewards) == [("points_pending", 50, "order")]
    assert result.notifications[0]["params"]["points"] == 50
    assert r.balance() == (0, 200)


def test_a_zero_amount_order_is_not_the_first_paid_order(run):
    r = run()
    result = r.order(T0, "free", 0)
    assert (result.outcome, result.rewards, result.notifications) == ("applied", [], [])
    assert r.member.has_ordered is False
    assert "free" in r.member.orders
    result = r.order(ms(T0) + 1, "o2", 100)
    assert summary(result.rewards) == [("points_pending", 1, "order"), ("points_pending", 100, "first_order_bonus")]


def test_an_order_too_small_for_a_point_still_earns_the_bonus(run):
    r = run()
    result = r.order(T0, "o1", 99)
    assert summary(result.rewards) == [("points_pending", 100, "first_order_bonus")]
    assert result.notifications[0]["params"]["points"] == 100


def test_the_same_order_paid_twice_is_ignored(run):
    r = run()
    r.order(T0, "o1", 5000)
    result = r.order(ms(T0) + 1, "o1", 5000)
    assert (result.outcome, result.rewards, result.notifications) == ("ignored", [], [])
    assert r.balance() == (0, 150)


def test_frozen_member_earns_nothing_on_orders(run):
    r = run()
    r.joined(T0)
    r.state["frozen"] = True
    result = r.order(T0, "o1", 5000)
    assert (result.outcome, result.rewards, result.notifications) == ("frozen", [], [])
    assert r.member.orders == {}
    assert r.balance() == (0, 0)


def test_release_after_the_return_window(run):
    r = run()
    r.order(T0, "o1", 12345)
    before = r.state
    result = r.advance(RELEASE - 1)
    assert (result.outcome, result.rewards, result.notifications) == ("ignored", [], [])
    assert result.state is before
    assert result.next_due == RELEASE
    result = r.advance(RELEASE)
    assert result.outcome == "applied"
    # released in (available_at, lot_id) order: "e1:first_order_bonus" sorts before "e1:order"
    assert summary(result.rewards) == [("points_earned", 100, "first_order_bonus"), ("points_earned", 123, "order")]
    for reward in result.rewards:
        assert reward["details"] == {"released_from_pending": True}
        assert reward["occurred_at"] == utc(RELEASE)
        assert reward["source_event_id"] == "e1"
    assert result.rewards[-1]["balance"] == {"available": 223, "pending": 0}
    assert [(n["template"], n["params"], n["priority"]) for n in result.notifications] == [
        ("points_earned", {"points": 100, "rule": "first_order_bonus"}, "marketing"),
        ("points_earned", {"points": 123, "rule": "order"}, "marketing")]
    assert r.balance() == (223, 0)
    assert result.next_due == RELEASE + 335 * DAY  # the expiry warning, 30 days before expiry
    again = r.advance(RELEASE + 1)
    assert (again.outcome, again.rewards, again.notifications) == ("ignored", [], [])


def test_release_when_advance_is_late_still_dates_the_reward_at_release(run):
    r = run()
    r.order(T0, "o1", 5000)
    result = r.advance(RELEASE + 3 * DAY)
    assert [x["occurred_at"] for x in result.rewards] == [utc(RELEASE)] * 2


def test_due_release_happens_before_a_later_event(run):
    r = run()
    r.order(T0, "o1", 5000)
    result = r.share(RELEASE + 1)
    assert summary(result.rewards) == [("points_earned", 100, "first_order_bonus"), ("points_earned", 50, "order"),
                                       ("points_earned", 5, "shares")]
    assert templates(result.notifications) == ["points_earned", "points_earned"]
    assert r.balance() == (155, 0)


def test_seconds_long_return_window(run, make_program):
    r = run(make_program({"orders.return_window": '"PT5S"'}))
    result = r.order(T0, "o1", 5000)
    assert result.next_due == ms(T0) + 5000
    assert r.advance(ms(T0) + 4999).rewards == []
    assert summary(r.advance(ms(T0) + 5000).rewards) == [("points_earned", 100, "first_order_bonus"),
                                                          ("points_earned", 50, "order")]


# -- the member-day campaign, in Shanghai time ----------------------------------------------------

@pytest.mark.parametrize(("occurred_at", "points"), [
    ("2024-03-18T10:00:00+08:00", 200),
    ("2024-03-17T23:59:59+08:00", 100),
    ("2024-03-17T16:00:00Z", 200),           # 00:00 on the 18th in Shanghai
    ("2024-03-17T15:59:59.999Z", 100),
    ("2024-03-18T15:59:59.999Z", 200),       # 23:59:59.999 on the 18th in Shanghai
    ("2024-03-18T16:00:00Z", 100),           # already the 19th in Shanghai
    ("2024-04-18T09:00:00+02:00", 200),
    ("2024-03-17T20:00:00-05:00", 200),      # the 17th in New York, the 18th in Shanghai
    ("2024-02-18T12:00:00+08:00", 200),
    ("2024-02-19T12:00:00+08:00", 100),
])
def test_member_day_doubles_order_points_on_the_local_18th(run, occurred_at, points):
    r = run()
    result = r.order(occurred_at, "o1", 10000)
    assert summary(result.rewards) == [("points_pending", points, "order"),
                                       ("points_pending", 100, "first_order_bonus")]


def test_member_day_does_not_apply_to_other_kinds(run):
    r = run()
    r.order("2024-03-17T10:00:00+08:00", "o1", 1000)
    assert summary(r.share("2024-03-18T10:00:00+08:00").rewards) == [("points_earned", 5, "shares")]
    assert summary(r.login("2024-03-18T10:00:00+08:00").rewards) == [("points_earned", 2, "logins")]
    assert summary(r.review("2024-03-18T10:00:00+08:00", "o1").rewards) == [("points_earned", 10, "reviews")]


def test_campaign_outside_its_dates(run, make_program):
    extra = """
[[campaigns]]
name = "spring"
start = "2024-03-01T00:00:00+08:00"
end = "2024-03-08T00:00:00+08:00"
multiplier = 3
applies_to = ["orders", "shares"]
"""
    r = run(make_program(campaigns=False, extra=extra))
    assert order_points(r.order("2024-02-29T23:59:59+08:00", "o0", 1000)) == [10]
    assert order_points(r.order("2024-03-01T00:00:00+08:00", "o1", 1000)) == [30]
    assert order_points(r.order("2024-03-07T23:59:59+08:00", "o2", 1000)) == [30]
    assert order_points(r.order("2024-03-08T00:00:00+08:00", "o3", 1000)) == [10]
    assert summary(run(r.program, "m2").share("2024-03-05T00:00:00+08:00").rewards) == [
        ("points_earned", 15, "shares")]


def test_overlapping_campaigns_do_not_stack(run, make_program):
    extra = """
[[campaigns]]
name = "march"
start = "2024-03-01T00:00:00+08:00"
end = "2024-04-01T00:00:00+08:00"
multiplier = 1.5
applies_to = ["orders"]
"""
    r = run(make_program(extra=extra))
    assert order_points(r.order("2024-03-18T10:00:00+08:00", "o1", 1000)) == [20]
    assert order_points(r.order("2024-03-19T10:00:00+08:00", "o2", 1000)) == [15]
    assert order_points(r.order("2024-04-18T10:00:00+08:00", "o3", 1000)) == [20]


def test_weekday_campaign_uses_local_weekday(run, make_program):
    extra = """
[[campaigns]]
name = "weekend"
start = "2024-01-01T00:00:00+08:00"
end = "2025-01-01T00:00:00+08:00"
weekdays = [6, 7]
multiplier = 2
applies_to = ["logins"]
"""
    r = run(make_program(campaigns=False, extra=extra))
    # Friday 2024-03-08 17:00 UTC is Saturday 01:00 in Shanghai
    assert summary(r.login("2024-03-08T15:59:59Z").rewards) == [("points_earned", 2, "logins")]
    assert summary(r.login("2024-03-08T17:00:00Z").rewards) == [("points_earned", 4, "logins")]
    assert summary(r.login("2024-03-10T23:59:59+08:00").rewards) == [("points_earned", 4, "logins")]  # Sunday
    assert summary(r.login("2024-03-11T00:00:00+08:00").rewards) == [("points_earned", 2, "logins")]  # Monday


# -- multipliers are applied together and floored once ---------------------------------------------

@pytest.mark.parametrize(("first_cents", "tier", "points"), [
    (1000, "bronze", 333),
    (100000, "silver", 399),       # 333.33 x 1.2 = 399.996
    (500000, "gold", 499),         # 333.33 x 1.5 = 499.995
    (2000000, "platinum", 666),    # 333.33 x 2.0 = 666.66
])
def test_tier_multiplier(run, first_cents, tier, points):
    r = run()
    r.order(T0, "first", first_cents)
    assert r.member.tier == tier
    result = r.order(ms(T0) + DAY, "o2", 33333)
    assert summary(result.rewards) == [("points_pending", points, "order")]
    assert result.rewards[0]["tier"] == tier


def test_the_order_that_reaches_a_tier_earns_at_the_old_tier(run):
    r = run()
    result = r.order(T0, "o1", 100000)
    assert summary(result.rewards) == [("points_pending", 1000, "order"), ("points_pending", 100, "first_order_bonus"),
                                       ("tier_changed", 0, "tier_upgrade")]


def test_tier_and_campaign_multipliers_are_floored_once(run):
    r = run()
    r.order(T0, "o1", 100000)
    assert r.member.tier == "silver"
    # 123.45 x 1.2 x 2 = 296.28; flooring after each step would give 294 or 295
    result = r.order("2024-03-18T12:00:00+08:00", "o2", 12345)
    assert order_points(result) == [296]


@pytest.mark.parametrize(("cents", "points"), [(99, 1), (49, 0), (150, 3), (12399, 247)])
def test_campaign_floor_is_after_doubling(run, cents, points):
    r = run()
    r.order("2024-03-17T12:00:00+08:00", "o0", 1)  # a 1-cent first order takes the bonus
    result = r.order("2024-03-18T12:00:00+08:00", "o1", cents)
    assert order_points(result) == ([points] if points else [])


def test_points_per_unit(run, make_program):
    r = run(make_program({"orders.points_per_unit": "3"}, campaigns=False))
    assert summary(r.order(T0, "o1", 1050).rewards)[0] == ("points_pending", 31, "order")


# -- category multipliers weight the paid amount by item price -----------------------------------

CATEGORIES = {"orders.category_multipliers.electronics": "0.5", "orders.category_multipliers.books": "2.0"}
ITEMS = [
    {"sku": "tv", "category": "electronics", "quantity": 1, "price_cents": 10000},
    {"sku": "novel", "category": "books", "quantity": 2, "price_cents": 5000},
    {"sku": "mug", "category": "kitchen", "quantity": 1, "price_cents": 10000},
]


@pytest.mark.parametrize(("amount", "items", "when", "points"), [
    (30000, ITEMS, T0, 350),                               # (100 x 0.5 + 100 x 2 + 100) / 300 = 7/6
    (24000, ITEMS, T0, 280),                               # a discounted order keeps the weights: 240 x 7/6
    (30000, ITEMS, "2024-03-18T12:00:00+08:00", 700),      # and the campaign on top
    (30000, ITEMS[:1], T0, 150),
    (30000, [], T0, 300),
    (30000, None, T0, 300),
    (30000, [{**ITEMS[0], "price_cents": 0}], T0, 300),     # no priced items: unweighted
    (10001, ITEMS[1:2], T0, 200),                           # 100.01 x 2 = 200.02
])
def test_category_multipliers(run, make_program, amount, items, when, points):
    r = run(make_program(CATEGORIES))
    result = r.order(when, "o1", amount, items=items)
    assert summary(result.rewards) == [("points_pending", points, "order"),
                                       ("points_pending", 100, "first_order_bonus")]


def test_category_weights_with_silver_multiplier_floor_once(run, make_program):
    r = run(make_program(CATEGORIES))
    r.order(T0, "o0", 100000)
    assert r.member.tier == "silver"
    # 100.00 of electronics and 1.00 of books: weight (5000 + 200) / 10100; 101 x 52/101 x 1.2 = 62.4
    items = [{**ITEMS[0]}, {"sku": "b", "category": "books", "quantity": 1, "price_cents": 100}]
    result = r.order(ms(T0) + DAY, "o1", 10100, items=items)
    assert summary(result.rewards) == [("points_pending", 62, "order")]

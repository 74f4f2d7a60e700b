"""The memoised calendar conversions answer what they answer uncached, for any instant and zone."""
from __future__ import annotations

from datetime import date
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core import calendar
from stream_app.core.handlers import _order_points
from stream_app.core.notify_policy import _quiet_end_after
from stream_app.core.program import parse_program
from tests.unit.conftest import toml_with

ZONES = st.sampled_from([ZoneInfo(name) for name in ("UTC", "Asia/Shanghai", "America/New_York", "Europe/London",
                                                     "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Apia")])
INSTANTS = st.integers(-2_000_000_000_000, 4_000_000_000_000)  # 1906 to 2096, both sides of many transitions
MEMOS = (calendar.local_date, calendar.local_day, calendar.second_of_day)


@settings(max_examples=300)
@given(ms=INSTANTS, tz=ZONES, granularity=st.sampled_from(["exact", "day", "month"]))
def test_a_memoised_conversion_gives_what_it_gives_uncached(ms, tz, granularity):
    for function in MEMOS:
        assert function(ms, tz) == function.__wrapped__(ms, tz)
        assert function(ms, tz) == function.__wrapped__(ms, tz)  # asked again: from the memo
    assert calendar.rfc3339(ms) == calendar.rfc3339.__wrapped__(ms)
    assert calendar.period_end(ms, granularity, tz) == calendar.period_end.__wrapped__(ms, granularity, tz)
    day = calendar.local_date(ms, tz)
    assert calendar.local_midnight_ms(day, tz) == calendar.local_midnight_ms.__wrapped__(day, tz)
    end_s = ms % 86_400  # any second of the day as the end of quiet hours
    assert _quiet_end_after(ms, tz, end_s) == _quiet_end_after.__wrapped__(ms, tz, end_s)


def test_a_memo_stays_bounded():
    tz = ZoneInfo("Asia/Shanghai")
    for ms in range(0, 3 * calendar.CACHE * 1000, 1000):
        calendar.local_date(ms, tz)
    assert calendar.local_date.cache_info().currsize <= calendar.CACHE
    assert calendar.local_date(0, tz) == date(1970, 1, 1)


@settings(max_examples=300)
@given(amount=st.integers(-10**7, 10**9), multipliers=st.lists(st.fractions(0, 100, max_denominator=1000), min_size=4,
                                                                 max_size=4),
       prices=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 5)), max_size=3))
def test_order_points_are_the_floor_of_the_exact_product(amount, multipliers, prices):
    per_unit, category, tier, campaign = multipliers
    program = parse_program(toml_with())
    object.__setattr__(program, "points_per_unit", per_unit)
    object.__setattr__(program, "category_multipliers", {"books": category})
    items = [{"price_cents": price, "quantity": quantity, "category": "books" if n % 2 else "toys"}
             for n, (price, quantity) in enumerate(prices)]
    total = sum(i["price_cents"] * i["quantity"] for i in items)
    weight = Fraction(1) if not total else Fraction(sum(
        i["price_cents"] * i["quantity"] * (category if i["category"] == "books" else 1) for i in items)) / total
    expected = floor(Fraction(amount, 100) * per_unit * weight * tier * campaign)
    assert _order_points({"amount_cents": amount, "items": items}, program, tier, campaign) == expected

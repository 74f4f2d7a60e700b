"""Loading the TOML program: the packaged default, ISO 8601 durations, and errors that name the key."""
from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

import pytest

from stream_app.core.program import ProgramError, load_program, parse_duration_ms, parse_program
from tests.unit.conftest import DAY, HOUR, MINUTE, SECOND, build_program, toml_with


def test_default_program_values():
    p = load_program(None)
    assert p.timezone.key == "Asia/Shanghai"
    assert p.points_per_unit == 1
    assert p.return_window_ms == 7 * DAY
    assert p.first_order_bonus == 100
    assert p.refund_policy == "unlimited"
    assert p.category_multipliers == {}
    assert (p.review_points, p.review_media_bonus, p.review_order_window_ms, p.review_daily_cap) == (
        10, 10, 90 * DAY, 5)
    assert (p.share_points, p.share_daily_cap) == (5, 3)
    assert (p.login_points, p.login_streak_days, p.login_streak_bonus) == (2, 7, 20)
    assert (p.birthday_points, p.birthday_min_age_ms) == (100, 30 * DAY)
    assert (p.expiry_after_ms, p.expiry_warn_before_ms, p.expiry_warn_min_points) == (365 * DAY, 30 * DAY, 100)
    assert (p.tier_window_ms, p.tier_grace_ms) == (365 * DAY, 30 * DAY)
    assert [(t.name, t.threshold, t.multiplier) for t in p.tiers] == [
        ("bronze", 0, Fraction(1)), ("silver", 1000, Fraction(6, 5)), ("gold", 5000, Fraction(3, 2)),
        ("platinum", 20000, Fraction(2))]
    [campaign] = p.campaigns
    assert (campaign.name, campaign.monthly_day, campaign.weekdays, campaign.multiplier, campaign.applies_to) == (
        "member day", 18, (), Fraction(2), ("orders",))
    assert p.max_event_ids == 2000
    assert p.priority("points_pending") == "transactional"
    assert p.priority("points_expiring") == "marketing"
    assert p.priority("not_configured") == "transactional"


def test_the_rules_under_test_are_the_packaged_rules(program):
    """conftest switches segments, the marketing-notification policy and abuse limits off; every other
    setting of the program the engine tests use is the packaged default."""
    packaged = load_program(None)
    features = ("segment_", "marketing_", "quiet_", "hold_", "abuse_")
    names = [f.name for f in dataclasses.fields(packaged) if not f.name.startswith(features)]
    assert len(names) >= 26
    assert {n: getattr(program, n) for n in names} == {n: getattr(packaged, n) for n in names}
    assert program.quiet_start_s == program.quiet_end_s  # no quiet hours
    assert program.segment_new_ms == program.segment_churned_ms == 36500 * DAY


def test_tier_lookup_helpers(program):
    assert program.tier("gold").threshold == 5000
    assert program.tier("no-such-tier").name == "bronze"
    assert [program.tier_for(q).name for q in (0, 999, 1000, 4999, 5000, 19999, 20000, 10**9)] == [
        "bronze", "bronze", "silver", "silver", "gold", "gold", "platinum", "platinum"]


def test_load_program_from_a_path(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(toml_with({"orders.return_window": '"PT5S"'}), "utf-8")
    assert load_program(str(path)).return_window_ms == 5 * SECOND
    assert load_program("").return_window_ms == 7 * DAY


@pytest.mark.parametrize(("text", "expected"), [
    ("PT5S", 5 * SECOND),
    ("PT0.5S", 500),
    ("PT1.25S", 1250),
    ("PT12H", 12 * HOUR),
    ("PT90M", 90 * MINUTE),
    ("P7D", 7 * DAY),
    ("P2W", 14 * DAY),
    ("P1DT2H3M4S", DAY + 2 * HOUR + 3 * MINUTE + 4 * SECOND),
    ("PT0S", 0),
])
def test_parse_duration(text, expected):
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("text", [
    "", "P", "PT", "P1DT", "7D", "7 days", "P1Y", "P1M", "-P1D", "P1.5D", "PT-5S", "p7d", " P7D", "P7D ", "P1H",
])
def test_parse_duration_rejects(text):
    with pytest.raises(ProgramError, match="ISO 8601"):
        parse_duration_ms(text)


def test_parse_duration_rejects_non_strings():
    with pytest.raises(ProgramError):
        parse_duration_ms(7)


@pytest.mark.parametrize("key", [
    "orders.return_window", "reviews.order_window", "birthday.min_age_of_birthday", "expiry.after",
    "expiry.warn_before", "tiers.window", "tiers.grace",
])
def test_every_duration_is_iso8601_and_named_in_errors(key):
    assert build_program({key: '"PT5S"'}) is not None
    with pytest.raises(ProgramError, match=rf"^{key}: .*ISO 8601"):
        build_program({key: '"7 days"'})
    with pytest.raises(ProgramError, match=rf"^{key}: "):
        build_program({key: "7"})


def test_seconds_long_program(make_program):
    p = make_program({"orders.return_window": '"PT5S"', "expiry.after": '"PT30S"', "tiers.grace": '"PT1M"'})
    assert (p.return_window_ms, p.expiry_after_ms, p.tier_grace_ms) == (5000, 30000, 60000)


@pytest.mark.parametrize("thresholds", [(0, 1000, 1000, 20000), (0, 5000, 1000, 20000)])
def test_tiers_must_increase_strictly(thresholds):
    text = toml_with()
    for old, new in zip((0, 1000, 5000, 20000), thresholds, strict=True):
        text = text.replace(f"threshold = {old}\n", f"threshold = {new} #\n", 1)
    with pytest.raises(ProgramError, match=r"^tiers\.levels: thresholds must increase strictly"):
        parse_program(text)


def test_first_tier_starts_at_zero():
    text = toml_with().replace("threshold = 0\n", "threshold = 10\n")
    with pytest.raises(ProgramError, match=r"^tiers\.levels\[0\]\.threshold"):
        parse_program(text)


def test_tier_names_unique():
    text = toml_with().replace('name = "gold"', 'name = "silver"')
    with pytest.raises(ProgramError, match=r"^tiers\.levels: names must be unique"):
        parse_program(text)


def test_tier_errors_name_the_level():
    text = toml_with().replace("multiplier = 1.5", 'multiplier = "fast"')
    with pytest.raises(ProgramError, match=r"^tiers\.levels\[2\]\.multiplier"):
        parse_program(text)
    text = toml_with().replace("threshold = 5000", "threshold = -5")
    with pytest.raises(ProgramError, match=r"^tiers\.levels\[2\]\.threshold: must be >= 0"):
        parse_program(text)


def test_tiers_required():
    text = re.sub(r"^\[\[tiers\.levels\]\].*?(?=^\[\[campaigns\]\])", "", toml_with(), flags=re.S | re.M)
    assert "threshold =" not in text
    with pytest.raises(ProgramError, match=r"^tiers\.levels: at least one"):
        parse_program(text)


@pytest.mark.parametrize("zone", ['"Mars/Olympus_Mons"', '"Asia/Shang hai"', '""', '"../etc/passwd"'])
def test_unknown_timezone(zone):
    with pytest.raises(ProgramError, match=r"^timezone: unknown time zone"):
        build_program({"timezone": zone})


def test_timezone_must_be_text():
    # ProgramError is a ValueError, so the type error is reported as an unknown zone: still names the key
    with pytest.raises(ProgramError, match=r"^timezone: "):
        build_program({"timezone": "8"})


def test_timezone_defaults_to_utc():
    assert build_program({"timezone": None}).timezone.key == "UTC"


@pytest.mark.parametrize("policy", ["unlimited", "within_balance", "only_pending"])
def test_refund_policies(policy):
    assert build_program({"orders.refund_policy": f'"{policy}"'}).refund_policy == policy


@pytest.mark.parametrize("policy", ['"none"', '"UNLIMITED"', '""'])
def test_bad_refund_policy(policy):
    with pytest.raises(ProgramError, match=r"^orders\.refund_policy: one of"):
        build_program({"orders.refund_policy": policy})


def test_category_multipliers():
    p = build_program({"orders.category_multipliers.electronics": "0.5", "orders.category_multipliers.books": "2"})
    assert p.category_multipliers == {"electronics": Fraction(1, 2), "books": Fraction(2)}
    with pytest.raises(ProgramError, match=r"^orders\.category_multipliers\.books: a multiplier"):
        build_program({"orders.category_multipliers.books": "-1"})
    with pytest.raises(ProgramError, match=r"^orders\.category_multipliers\.books: a multiplier"):
        build_program({"orders.category_multipliers.books": "true"})


def test_counts_must_be_non_negative_integers():
    with pytest.raises(ProgramError, match=r"^reviews\.daily_cap: must be >= 0"):
        build_program({"reviews.daily_cap": "-1"})
    with pytest.raises(ProgramError, match=r"^shares\.points: must be int, got float"):
        build_program({"shares.points": "5.5"})
    with pytest.raises(ProgramError, match=r"^orders\.first_order_bonus: must be int, got bool"):
        build_program({"orders.first_order_bonus": "true"})
    with pytest.raises(ProgramError, match=r"^logins\.streak_days: must be >= 1"):
        build_program({"logins.streak_days": "0"})


def test_section_must_be_a_table():
    text = "shares = 5\n" + toml_with().replace("[shares]\npoints = 5\ndaily_cap = 3\n", "")
    with pytest.raises(ProgramError, match=r"^shares: must be a table"):
        parse_program(text)


def test_notification_priorities():
    with pytest.raises(ProgramError, match=r"^notifications\.tier_at_risk: priority"):
        build_program({"notifications.tier_at_risk": '"urgent"'})


def test_toml_syntax_error():
    with pytest.raises(ProgramError, match=r"^TOML syntax: .*line"):
        parse_program("timezone = \n")


def test_max_event_ids_at_least_one():
    assert build_program({"dedupe.max_event_ids": "0"}).max_event_ids == 1


CAMPAIGN = """
[[campaigns]]
name = "weekend"
start = "2024-01-01T00:00:00+08:00"
end = "2024-12-31T00:00:00+08:00"
weekdays = [6, 7]
multiplier = 1.5
applies_to = ["shares", "logins"]
"""


def test_custom_campaign():
    p = build_program(campaigns=False, extra=CAMPAIGN)
    [c] = p.campaigns
    assert (c.name, c.weekdays, c.monthly_day, c.multiplier, c.applies_to) == (
        "weekend", (6, 7), None, Fraction(3, 2), ("shares", "logins"))
    assert c.start_ms == 1704038400000
    assert build_program(campaigns=False).campaigns == ()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("weekdays = [6, 7]", "weekdays = [0]", r"^campaigns\[0\]\.weekdays"),
    ("weekdays = [6, 7]", "weekdays = [8]", r"^campaigns\[0\]\.weekdays"),
    ("weekdays = [6, 7]", "monthly_day = 32", r"^campaigns\[0\]\.monthly_day"),
    ('applies_to = ["shares", "logins"]', 'applies_to = ["birthdays"]', r"^campaigns\[0\]\.applies_to"),
    ('end = "2024-12-31T00:00:00+08:00"', 'end = "2023-12-31T00:00:00+08:00"', r"^campaigns\[0\]\.end"),
    ('start = "2024-01-01T00:00:00+08:00"', 'start = "2024-01-01T00:00:00"', r"^campaigns\[0\]\.start"),
    ('start = "2024-01-01T00:00:00+08:00"', 'start = "soon"', r"^campaigns\[0\]\.start"),
    ("multiplier = 1.5", "multiplier = -1", r"^campaigns\[0\]\.multiplier"),
])
def test_bad_campaigns(old, new, message):
    with pytest.raises(ProgramError, match=message):
        build_program(campaigns=False, extra=CAMPAIGN.replace(old, new))


def test_second_campaign_is_numbered():
    with pytest.raises(ProgramError, match=r"^campaigns\[1\]\.weekdays"):
        build_program(extra=CAMPAIGN.replace("[6, 7]", "[9]"))


def test_toml_datetime_campaign_bounds():
    extra = CAMPAIGN.replace('"2024-01-01T00:00:00+08:00"', "2024-01-01T00:00:00+08:00")
    assert build_program(campaigns=False, extra=extra).campaigns[0].start_ms == 1704038400000

"""Loading the TOML program: the packaged default, ISO 8601 durations, and errors that name the key."""
from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

import pytest

from stream_app.core.program import ProgramError, load_program, parse_duration_ms, parse_program
from stream_app.core.program_keys import KEYS, TEMPLATES
from stream_app.core.toml_lines import key_lines, line_of
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
    """conftest switches segments, the marketing-notification policy and abuse limits off, and pins the
    rules at exact instants (no rounding, no forgetting horizons); every other setting of the program the
    engine tests use is the packaged default."""
    packaged = load_program(None)
    features = ("segment_", "marketing_", "quiet_", "hold_", "abuse_", "dedupe_window", "expiry_granularity",
                "refund_horizon", "order_window_granularity")
    names = [f.name for f in dataclasses.fields(packaged) if not f.name.startswith(features)]
    assert len(names) >= 26
    assert {n: getattr(program, n) for n in names} == {n: getattr(packaged, n) for n in names}
    assert program.quiet_start_s == program.quiet_end_s  # no quiet hours
    assert program.segment_new_ms == program.segment_churned_ms == 36500 * DAY
    assert (program.expiry_granularity, program.order_window_granularity, program.dedupe_window_ms) == (
        "exact", "exact", None)
    assert (packaged.expiry_granularity, packaged.order_window_granularity, packaged.dedupe_window_ms) == (
        "month", "month", 30 * DAY)


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


def test_seconds_long_program(make_program):
    p = make_program({"orders.return_window": '"PT5S"', "expiry.after": '"PT30S"', "tiers.grace": '"PT1M"'})
    assert (p.return_window_ms, p.expiry_after_ms, p.tier_grace_ms) == (5000, 30000, 60000)


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


def test_toml_datetime_campaign_bounds():
    extra = CAMPAIGN.replace('"2024-01-01T00:00:00+08:00"', "2024-01-01T00:00:00+08:00")
    assert build_program(campaigns=False, extra=extra).campaigns[0].start_ms == 1704038400000


def test_timezone_defaults_to_utc():
    assert build_program({"timezone": None}).timezone.key == "UTC"


@pytest.mark.parametrize("policy", ["unlimited", "within_balance", "only_pending"])
def test_refund_policies(policy):
    assert build_program({"orders.refund_policy": f'"{policy}"'}).refund_policy == policy


def test_category_multipliers():
    p = build_program({"orders.category_multipliers.electronics": "0.5", "orders.category_multipliers.books": "2"})
    assert p.category_multipliers == {"electronics": Fraction(1, 2), "books": Fraction(2)}


def test_second_campaign_is_numbered():
    text = toml_with(extra=CAMPAIGN.replace("[6, 7]", "[9]"))
    with pytest.raises(ProgramError) as caught:
        parse_program(text)
    assert caught.value.detail.startswith("campaigns[1].weekdays: ")


def test_every_template_has_a_priority_key():
    assert {f"notifications.{t}" for t in TEMPLATES} <= set(KEYS)
    assert build_program({"notifications.win_back": '"transactional"'}).priority("win_back") == "transactional"


# -- errors: each names the key at fault and the line it is written on ------------------------------

def line_with(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the `occurrence`-th line that contains `needle`."""
    return [n for n, line in enumerate(text.splitlines(), 1) if needle in line][occurrence - 1]


def error(text: str) -> ProgramError:
    with pytest.raises(ProgramError) as caught:
        parse_program(text, "rules.toml")
    return caught.value


def check_error(text: str, needle: str, detail: str, occurrence: int = 1) -> None:
    """`text` is refused with `detail` (a regex), located on the line containing `needle`."""
    exc = error(text)
    assert re.fullmatch(detail, exc.detail), exc.detail
    assert exc.line == line_with(text, needle, occurrence), (exc.line, exc.detail)
    assert str(exc) == f"rules.toml:{exc.line}: {exc.detail}"


def replaced(old: str, new: str, text: str | None = None, count: int = 1) -> str:
    text = toml_with() if text is None else text
    assert old in text, old
    return text.replace(old, new, count)


UNKNOWN_KEYS = [
    ("misspelled key", "first_order_bonus = 100", "first_order_bouns = 100", "first_order_bouns",
     r"orders\.first_order_bouns: unknown key; did you mean first_order_bonus\?"),
    ("unknown top-level key", 'timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghai"\ntimezon = "UTC"',
     "timezon =", r"timezon: unknown key; did you mean timezone\?"),
    ("unknown section", "[shares]", "[share]", "[share]", r"share: unknown key; did you mean shares\?"),
    ("key of another section", "[shares]\npoints = 5", "[shares]\nmedia_bonus = 7\npoints = 5", "media_bonus = 7",
     r"shares\.media_bonus: unknown key; known keys of \[shares\]: points, daily_cap"),
    ("misspelled in a tier", "multiplier = 1.5", "multipler = 1.5", "multipler",
     r"tiers\.levels\[2\]\.multipler: unknown key; did you mean multiplier\?"),
    ("misspelled in a campaign", "monthly_day = 18", "monthy_day = 18", "monthy_day",
     r"campaigns\[0\]\.monthy_day: unknown key; did you mean monthly_day\?"),
    ("unknown template", 'win_back = "marketing"', 'win_back = "marketing"\nwin_bak = "marketing"', "win_bak",
     r"notifications\.win_bak: unknown key; did you mean win_back\?"),
    ("table under a key", "[orders.category_multipliers]", "[orders.categories]", "[orders.categories]",
     r"orders\.categories: unknown key; .*"),
]


@pytest.mark.parametrize(("old", "new", "needle", "detail"), [c[1:] for c in UNKNOWN_KEYS],
                         ids=[c[0] for c in UNKNOWN_KEYS])
def test_unknown_keys_are_refused_with_their_line(old, new, needle, detail):
    check_error(replaced(old, new), needle, detail)


def test_category_names_are_free():
    text = replaced("# electronics = 0.5", 'electronics = 0.5\n"home goods" = 0')
    assert parse_program(text).category_multipliers == {"electronics": Fraction(1, 2), "home goods": Fraction(0)}


WRONG_TYPES = [
    ("count as float", "points = 5\n", "points = 5.5\n", "points = 5.5", r"shares\.points: must be int, got float"),
    ("count as bool", "first_order_bonus = 100", "first_order_bonus = true", "first_order_bonus",
     r"orders\.first_order_bonus: must be int, got bool"),
    ("count as string", "daily_cap = 5", 'daily_cap = "5"', "daily_cap", r"reviews\.daily_cap: must be int, got str"),
    ("duration as number", 'return_window = "P7D"', "return_window = 7", "return_window",
     r"orders\.return_window: must be str, got int"),
    ("multiplier as string", "multiplier = 1.5", 'multiplier = "fast"', "fast",
     r"tiers\.levels\[2\]\.multiplier: a multiplier must be a number above 0 and at most 1000"),
    ("timezone as number", 'timezone = "Asia/Shanghai"', "timezone = 8", "timezone",
     r"timezone: must be str, got int"),
    ("section as value", "[shares]\npoints = 5\ndaily_cap = 3\n", "", None, None),
    ("campaigns as a table", "[[campaigns]]", "[campaigns]", "[campaigns]",
     r"campaigns: must be an array of tables \[\[campaigns\]\]"),
    ("weekdays not an array", "monthly_day = 18", "weekdays = 6", "weekdays = 6",
     r"campaigns\[0\]\.weekdays: a non-empty array of ISO weekdays \(Monday = 1\) 1 to 7"),
    ("quiet_start not a time", 'quiet_start = "22:00"', 'quiet_start = "10pm"', "quiet_start",
     r"notification_policy\.quiet_start: a time of day HH:MM or HH:MM:SS"),
    ("campaign start not a date-time", 'start = "2020-01-01T00:00:00+08:00"', "start = 2020", "start = 2020",
     r"campaigns\[0\]\.start: must be str or datetime, got int"),
]


@pytest.mark.parametrize(("old", "new", "needle", "detail"), [c[1:] for c in WRONG_TYPES if c[3]],
                         ids=[c[0] for c in WRONG_TYPES if c[3]])
def test_wrong_types_are_refused_with_their_line(old, new, needle, detail):
    check_error(replaced(old, new), needle, detail)


MINIMAL = '[[tiers.levels]]\nname = "base"\nthreshold = 0\n'


@pytest.mark.parametrize(("text", "needle", "detail"), [
    ('timezone = "UTC"\nexpiry.aftr = "P1D"\n' + MINIMAL, "expiry.aftr",
     r"expiry\.aftr: unknown key; did you mean after\?"),
    ('[tiers.levels]\nname = "base"\nthreshold = 0\n', "[tiers.levels]",
     r"tiers\.levels: must be an array of tables \[\[tiers\.levels\]\]"),
    ("tiers = {levels = [{name = 'a', threshold = 0, multiplier = 1, bonus = 5}]}", "tiers =",
     r"tiers\.levels\[0\]\.bonus: unknown key; known keys of \[tiers\.levels\]: name, threshold, multiplier"),
], ids=["dotted key", "levels as a table", "inline tables"])
def test_small_files_are_checked_the_same(text, needle, detail):
    check_error(text, needle, detail)


def test_a_section_written_as_a_value_is_refused_on_its_line():
    text = "shares = 5\n" + replaced("[shares]\npoints = 5\ndaily_cap = 3\n", "")
    check_error(text, "shares = 5", r"shares: must be a table")


IMPOSSIBLE = [
    ("negative count", "daily_cap = 5", "daily_cap = -1", "daily_cap = -1", r"reviews\.daily_cap: must be >= 0"),
    ("count beyond a billion", "points = 100\n", "points = 1000000001\n", "points = 1000000001",
     r"birthday\.points: must be <= 1,000,000,000"),
    ("streak of 0 days", "streak_days = 7", "streak_days = 0", "streak_days", r"logins\.streak_days: must be >= 1"),
    ("loyal with 0 orders", "loyal_orders = 5", "loyal_orders = 0", "loyal_orders",
     r"segments\.loyal_orders: must be >= 1"),
    ("tier multiplier 0", "multiplier = 1.2", "multiplier = 0", "multiplier = 0",
     r"tiers\.levels\[1\]\.multiplier: a multiplier must be a number above 0 and at most 1000"),
    ("campaign multiplier 0", "multiplier = 2.0\napplies_to", "multiplier = 0.0\napplies_to", "multiplier = 0.0",
     r"campaigns\[0\]\.multiplier: a multiplier must be a number above 0 and at most 1000"),
    ("points per unit 0", "points_per_unit = 1 ", "points_per_unit = 0 ", "points_per_unit",
     r"orders\.points_per_unit: a multiplier must be a number above 0 and at most 1000"),
    ("negative category multiplier", "# electronics = 0.5", "electronics = -0.5", "electronics",
     r"orders\.category_multipliers\.electronics: a multiplier must be a number >= 0 and at most 1000"),
    ("nan multiplier", "multiplier = 1.5", "multiplier = nan", "nan", r"tiers\.levels\[2\]\.multiplier: .*"),
    ("infinite multiplier", "multiplier = 1.5", "multiplier = inf", "inf", r"tiers\.levels\[2\]\.multiplier: .*"),
    ("huge multiplier", "multiplier = 1.5", "multiplier = 1e6", "1e6", r"tiers\.levels\[2\]\.multiplier: .*"),
    ("unparsable duration", 'after = "P365D"', 'after = "1 year"', "1 year",
     r"expiry\.after: not an ISO 8601 duration \(PnWnDTnHnMnS\): '1 year'"),
    ("duration in years", 'window = "P365D"', 'window = "P1Y"', "P1Y", r"tiers\.window: not an ISO 8601 duration .*"),
    ("expiry of 0", 'after = "P365D"', 'after = "PT0S"', "PT0S", r"expiry\.after: must be longer than 0 .*"),
    ("abuse window of 0", 'window = "PT1H"', 'window = "P0D"', "P0D", r"abuse\.window: must be longer than 0 .*"),
    ("duration beyond 100 years", 'churned_after = "P180D"', 'churned_after = "P36501D"', "P36501D",
     r"segments\.churned_after: at most P36500D \(100 years\)"),
    ("unknown timezone", 'timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus_Mons"', "Mars",
     r"timezone: unknown time zone 'Mars/Olympus_Mons'"),
    ("path as timezone", 'timezone = "Asia/Shanghai"', 'timezone = "../etc/passwd"', "passwd",
     r"timezone: unknown time zone '\.\./etc/passwd'"),
    ("thresholds out of order", "threshold = 5000", "threshold = 900", "threshold = 900",
     r"tiers\.levels\[2\]\.threshold: thresholds must increase strictly: 900 is not above 1000 \(silver\)"),
    ("equal thresholds", "threshold = 5000", "threshold = 1000", "threshold = 1000",
     r"tiers\.levels\[2\]\.threshold: thresholds must increase strictly: .*", 2),
    ("first threshold not 0", "threshold = 0\n", "threshold = 10\n", "threshold = 10",
     r"tiers\.levels\[0\]\.threshold: the first tier must start at 0"),
    ("duplicate tier names", 'name = "gold"', 'name = "silver"', 'name = "silver"',
     r"tiers\.levels\[2\]\.name: 'silver' names a lower tier too; names must be unique", 2),
    ("empty tier name", 'name = "gold"', 'name = ""', 'name = ""',
     r"tiers\.levels\[2\]\.name: must be 1 to 64 characters"),
    ("refund policy", 'refund_policy = "unlimited"', 'refund_policy = "none"', "refund_policy",
     r"orders\.refund_policy: one of \['unlimited', 'within_balance', 'only_pending'\], got 'none'"),
    ("priority", 'tier_at_risk = "marketing"', 'tier_at_risk = "urgent"', "tier_at_risk",
     r"notifications\.tier_at_risk: one of \['transactional', 'marketing'\], got 'urgent'"),
    ("quiet hours", 'quiet_hours = "hold"', 'quiet_hours = "skip"', "quiet_hours",
     r"notification_policy\.quiet_hours: one of \['hold', 'drop'\], got 'skip'"),
    ("weekday 0", "monthly_day = 18", "weekdays = [0]", "weekdays = [0]", r"campaigns\[0\]\.weekdays: .*1 to 7"),
    ("no weekday", "monthly_day = 18", "weekdays = []", "weekdays = []", r"campaigns\[0\]\.weekdays: a non-empty .*"),
    ("day 32", "monthly_day = 18", "monthly_day = 32", "monthly_day = 32",
     r"campaigns\[0\]\.monthly_day: a day of the month, 1 to 31"),
    ("day 0", "monthly_day = 18", "monthly_day = 0", "monthly_day = 0", r"campaigns\[0\]\.monthly_day: a day .*"),
    ("unknown kind", 'applies_to = ["orders"]', 'applies_to = ["birthdays"]', "applies_to",
     r"campaigns\[0\]\.applies_to: a non-empty array of kinds from \['orders', 'reviews', 'shares', 'logins'\]"),
    ("no kind", 'applies_to = ["orders"]', "applies_to = []", "applies_to", r"campaigns\[0\]\.applies_to: .*"),
    ("end before start", 'end = "2100-01-01T00:00:00+08:00"', 'end = "2019-01-01T00:00:00+08:00"', "end =",
     r"campaigns\[0\]\.end: must be after start"),
    ("start without offset", 'start = "2020-01-01T00:00:00+08:00"', 'start = "2020-01-01T00:00:00"', "start =",
     r"campaigns\[0\]\.start: must be a date-time with an offset"),
    ("start not a date", 'start = "2020-01-01T00:00:00+08:00"', 'start = "soon"', "start =",
     r"campaigns\[0\]\.start: not an RFC 3339 date-time"),
]


@pytest.mark.parametrize(("old", "new", "needle", "detail", "occurrence"),
                         [(*c[1:], 1) if len(c) == 5 else c[1:] for c in IMPOSSIBLE], ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_values_are_refused_with_their_line(old, new, needle, detail, occurrence):
    check_error(replaced(old, new), needle, detail, occurrence)


def test_duplicate_campaign_names_name_the_second():
    text = toml_with(extra=CAMPAIGN.replace('"weekend"', '"member day"'))
    check_error(text, 'name = "member day"', r"campaigns\[1\]\.name: 'member day' names an earlier campaign too; .*", 2)


def test_a_missing_key_points_at_its_table():
    text = replaced('name = "member day"\n', "")
    check_error(text, "[[campaigns]]", r"campaigns\[0\]\.name: missing")
    text = replaced('name = "gold"\n', "")
    check_error(text, "[[tiers.levels]]", r"tiers\.levels\[2\]\.name: missing", 3)


def test_tiers_required():
    text = re.sub(r"^\[\[tiers\.levels\]\].*?(?=^\[\[campaigns\]\])", "", toml_with(), flags=re.S | re.M)
    assert "threshold =" not in text
    check_error(text, "[tiers]", r"tiers\.levels: at least one \[\[tiers\.levels\]\] is required")


def test_a_missing_table_has_no_line():
    exc = error('timezone = "UTC"\n')
    assert (exc.detail, exc.line, str(exc)) == (
        "tiers.levels: at least one [[tiers.levels]] is required", None,
        "rules.toml: tiers.levels: at least one [[tiers.levels]] is required")


def test_toml_syntax_errors_carry_tomls_line():
    check_error("timezone = \n", "timezone", r"TOML syntax: Invalid value")
    exc = error('timezone = "UTC"\nname = "unterminated')
    assert exc.line == 2 and exc.detail.startswith("TOML syntax: Unterminated string")


def test_errors_without_a_source_name_the_line_only():
    with pytest.raises(ProgramError, match=r"^line 3: orders\.first_order_bouns: unknown key"):
        parse_program('timezone = "UTC"\n[orders]\nfirst_order_bouns = 1\n')


@pytest.mark.parametrize("key", [
    "orders.return_window", "reviews.order_window", "birthday.min_age_of_birthday", "expiry.after",
    "expiry.warn_before", "tiers.window", "tiers.grace", "abuse.window", "segments.new_for",
    "segments.loyal_window", "segments.at_risk_after", "segments.churned_after", "notification_policy.hold_at_most",
])
def test_every_duration_is_iso8601_and_named_in_errors(key):
    assert build_program({key: '"PT5S"'}) is not None
    with pytest.raises(ProgramError) as caught:
        build_program({key: '"7 days"'})
    assert caught.value.detail.startswith(f"{key}: not an ISO 8601 duration")
    with pytest.raises(ProgramError) as caught:
        build_program({key: "7"})
    assert caught.value.detail == f"{key}: must be str, got int"


def test_load_program_names_the_file_and_line(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(replaced("first_order_bonus = 100", "first_order_bouns = 100"), "utf-8")
    with pytest.raises(ProgramError) as caught:
        load_program(str(path))
    line = line_with(path.read_text("utf-8"), "first_order_bouns")
    assert str(caught.value) == f"{path}:{line}: orders.first_order_bouns: unknown key; did you mean first_order_bonus?"
    with pytest.raises(ProgramError, match=r": cannot read: No such file or directory$"):
        load_program(str(tmp_path / "absent.toml"))


def test_key_lines_handles_dotted_keys_nested_tables_and_array_tables():
    text = "\n".join([
        'timezone = "UTC"',                    # 1
        "[orders]",                            # 2
        "category_multipliers.books = 2.0",    # 3
        "[orders.category_multipliers]",       # 4
        '"home goods" = 0.5  # quoted',        # 5
        "[[campaigns]]",                       # 6
        'name = "a"',                          # 7
        "[[campaigns]]",                       # 8
        '  name = "b"',                        # 9
        "[campaigns.extra]",                   # 10
        "x = 1",                               # 11
    ])
    assert key_lines(text) == {
        "timezone": 1, "orders": 2, "orders.category_multipliers.books": 3, "orders.category_multipliers": 4,
        "orders.category_multipliers.home goods": 5, "campaigns": 6, "campaigns[0]": 6, "campaigns[0].name": 7,
        "campaigns[1]": 8, "campaigns[1].name": 9, "campaigns[1].extra": 10, "campaigns[1].extra.x": 11,
    }
    assert (line_of("campaigns[1].start", text), line_of("campaigns[0].extra.y", text), line_of("tiers", text)) == (
        8, 6, None)


def test_referral_keys_and_milestones():
    program = build_program({"referrals.referrer_points": "300", "referrals.friend_points": "200"},
                            extra="[[referrals.milestones]]\ncount = 3\npoints = 50\n")
    rules = program.referrals
    assert (rules.referrer_points, rules.friend_points, rules.min_order_cents, rules.max_per_month) == (300, 200, 0, 10)
    assert [(m.count, m.points) for m in rules.milestones] == [(3, 50)] and rules.active
    assert not parse_program(toml_with()).referrals.active  # the packaged default pays no referral


@pytest.mark.parametrize("milestones, message", [
    ("count = 3\npoints = 50\n[[referrals.milestones]]\ncount = 3\npoints = 60\n",
     "referrals.milestones[1].count: milestone counts must increase strictly"),
    ("count = 3\npoints = 0\n", "referrals.milestones[0].points: must be >= 1"),
    ("count = 3\npoints = 5\nbonus = 1\n", "referrals.milestones[0].bonus: unknown key"),
])
def test_bad_referral_milestones_are_refused_with_their_line(milestones, message):
    text = toml_with() + "[[referrals.milestones]]\n" + milestones
    with pytest.raises(ProgramError, match=re.escape(message)) as caught:
        parse_program(text)
    assert caught.value.line is not None and caught.value.line > len(toml_with().splitlines())

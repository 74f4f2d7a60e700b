"""What the validator accepts, the core can apply: no event it lets through makes the core raise.

Events are drawn anywhere inside the documented contract (every field within its bounds, any
offset, `occurred_at` mostly from 2000 to 24 h past the clock, sometimes in any year from 2 to
9998, which must be refused), written as bytes, decoded, scrubbed and
applied in sequence to one member with the packaged program, then the member's due work is run
two days past the clock. Every output must conform to its output schema and every state must
survive a JSON round trip, as the worker stores and sends them.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core.engine import advance, apply_event
from stream_app.core.privacy import scrub
from stream_app.core.program import load_program
from topics.validation import OCCURRED_AT_MIN, Rejection, decode_event, validate_output

NOW_MS = 1_795_399_200_000  # 2026-11-23T02:00:00Z: the validator's clock
DAY_MS = 86_400_000
PROGRAM = load_program(None)
PII_KEY = b"k" * 32
MEMBER = "m-\u00e9\u4f1a\u5458"

CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def text(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(CHARS, min_size=low, max_size=high)


ID = st.sampled_from(["o1", "o2", "x"]) | text(1, 128)
CENTS = st.integers(0, 10**12)
BIRTHDAY = st.sampled_from(["01-01", "02-28", "02-29", "03-01", "11-23", "11-24", "12-31"])


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = (OCCURRED_AT_MIN - EPOCH) // timedelta(milliseconds=1)
YEAR_2_MS, YEAR_9998_MS = -62104233600000, 253370764800000


def accepted(at_ms: int) -> bool:
    return MIN_MS <= at_ms <= NOW_MS + DAY_MS


@st.composite
def instants(draw: Any) -> tuple[str, int]:
    """An RFC 3339 date-time, mostly within the accepted range, at any offset, with 0 to 9 fraction digits."""
    at_ms = draw(st.integers(MIN_MS, NOW_MS + DAY_MS) | st.integers(NOW_MS - 400 * DAY_MS, NOW_MS + DAY_MS)
                 | st.sampled_from([MIN_MS, MIN_MS - 1, NOW_MS + DAY_MS, NOW_MS + DAY_MS + 1])
                 | st.integers(YEAR_2_MS, YEAR_9998_MS))
    minutes = draw(st.sampled_from([0, 480, -300, 345]) | st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    zone = timezone(timedelta(minutes=minutes))
    moment = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=at_ms)).astimezone(zone)
    stamp = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"  # %Y does not pad years before 1000
    fraction = draw(st.sampled_from(["", f".{moment.microsecond // 1000:03d}", f".{moment.microsecond:06d}",
                                     f".{moment.microsecond:06d}000"]))
    offset = "Z" if minutes == 0 and draw(st.booleans()) else moment.strftime("%z")
    written_ms = at_ms if fraction else at_ms - at_ms % 1000  # without a fraction: the whole second
    return stamp + fraction + (offset if offset == "Z" else f"{offset[:3]}:{offset[3:]}"), written_ms


ITEM = st.fixed_dictionaries({"sku": text(1, 128), "category": st.sampled_from(["electronics", "books"]) | text(0, 128),
                              "quantity": st.integers(1, 2**53 - 1), "price_cents": CENTS})
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | text(0, 8)
                       | st.floats(-1e15, 1e15, allow_nan=False),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(0, 5), inner, max_size=3),
                       max_leaves=6)
OPERATOR = {"operator_id": text(1, 128), "reason": text(0, 1024)}
FIELDS = {
    "order_paid": st.fixed_dictionaries({"order_id": ID, "amount_cents": CENTS,
                                         "currency": st.from_regex(r"\A[A-Z]{3}\Z")},
                                        optional={"items": st.lists(ITEM, max_size=4)}),
    "order_refunded": st.fixed_dictionaries({"order_id": ID, "refund_cents": st.integers(1, 10**12)}),
    "review_posted": st.fixed_dictionaries({"review_id": ID, "order_id": ID, "rating": st.integers(1, 5),
                                            "has_media": st.booleans()}),
    "share": st.fixed_dictionaries({"share_id": ID, "channel": text(0, 64), "target": text(0, 2048)}),
    "login": st.fixed_dictionaries({"device_id": st.sampled_from(["d1", "d2"]) | text(1, 128)},
                                   optional={"ip": text(0, 64)}),
    "member_joined": st.fixed_dictionaries({}, optional={"birthday": BIRTHDAY, "referrer_id": text(1, 64)}),
    "member_updated": st.fixed_dictionaries({}, optional={"birthday": BIRTHDAY | st.none()}),
    "member_erased": st.just({}),
    "redemption_requested": st.fixed_dictionaries({"redemption_id": ID, "points": st.integers(1, 10**9),
                                                   "reward_code": text(1, 128)}),
    "member_frozen": st.fixed_dictionaries(OPERATOR),
    "member_unfrozen": st.fixed_dictionaries(OPERATOR),
    "points_adjusted": st.fixed_dictionaries({**OPERATOR, "points": st.integers(-(10**9), 10**9).filter(bool)}),
    "member_flagged": st.fixed_dictionaries({**OPERATOR, "rule": text(1, 128),
                                             "evidence": st.dictionaries(text(0, 5), JSONISH, max_size=3)}),
}
KIND = {"order_paid": "orders", "order_refunded": "orders", "review_posted": "reviews", "share": "shares",
        "login": "logins", "member_joined": "members", "member_updated": "members", "member_erased": "members",
        "redemption_requested": "redemptions", "member_frozen": "admin", "member_unfrozen": "admin",
        "points_adjusted": "admin", "member_flagged": "admin"}


@st.composite
def events(draw: Any, index: int) -> tuple[str, dict, int]:
    event_type = draw(st.sampled_from(sorted(FIELDS)))
    occurred_at, at_ms = draw(instants())
    envelope = {"event_id": draw(st.just(f"e{index}") | text(1, 128)), "member_id": MEMBER,
                "occurred_at": occurred_at, "type": event_type}
    return KIND[event_type], {**envelope, **draw(FIELDS[event_type])}, at_ms


@st.composite
def sequences(draw: Any) -> list[tuple[str, dict, int]]:
    return [draw(events(i)) for i in range(draw(st.integers(1, 8)))]


def check_result(result: Any) -> None:
    for reward in result.rewards:
        validate_output("rewards", orjson.loads(orjson.dumps(reward)))
    for notification in result.notifications:
        validate_output("notifications", orjson.loads(orjson.dumps(notification)))
    if result.state is not None:
        assert orjson.loads(orjson.dumps(result.state)) == result.state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sequences())
def test_every_event_the_validator_accepts_applies_without_an_exception(sequence: list[tuple[str, dict, int]]) -> None:
    """Events inside the contract are accepted unchanged; those dated outside are refused; none raises."""
    state = None
    for kind, event, at_ms in sequence:
        decoded = decode_event(kind, MEMBER.encode(), orjson.dumps(event), now_ms=NOW_MS)
        if not accepted(at_ms):
            assert isinstance(decoded, Rejection) and decoded.code == "occurred_at_out_of_range", event
            continue
        assert decoded == event
        result = apply_event(state, scrub(decoded, PII_KEY), PROGRAM)
        check_result(result)
        state = result.state
    if state is not None:
        check_result(advance(state, PROGRAM, NOW_MS + 2 * DAY_MS))


def test_year_9999_never_reaches_the_core() -> None:
    """The finding: a valid-looking event dated 9999 made the core raise OverflowError (year 10000)."""
    event = {"event_id": "e", "member_id": MEMBER, "occurred_at": "9999-12-31T23:59:59Z", "type": "order_paid",
             "order_id": "o", "amount_cents": 1000, "currency": "USD"}
    decoded = decode_event("orders", None, orjson.dumps(event), now_ms=NOW_MS)
    assert decoded == Rejection("occurred_at_out_of_range", "occurred_at is more than 24 h after the worker's clock")

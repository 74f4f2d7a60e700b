"""decode_event: raw Kafka bytes to a validated input event or a Rejection with a stable code."""
from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.validation import INPUT_KINDS, MAX_MESSAGE_BYTES, Rejection, decode_event, load_schema

MEMBER = "mem-SECRET-42"
NOW_MS = 1_795_399_200_000  # 2026-11-23T10:00:00+08:00: the validator's clock, the events' occurred_at
CODES = set(load_schema("dead-letters")["properties"]["error"]["enum"])
TYPES = {kind: load_schema(kind)["properties"]["type"]["enum"] for kind in INPUT_KINDS}


def event(type_: str, **fields: Any) -> dict[str, Any]:
    """A valid envelope of ``type_`` plus ``fields``; its string values contain SECRET to catch leaks."""
    return {"event_id": "evt-SECRET-1", "member_id": MEMBER, "occurred_at": "2026-11-23T10:00:00+08:00",
            "type": type_, **fields}


def item(**overrides: Any) -> dict[str, Any]:
    return {"sku": "sku-SECRET", "category": "shoes", "quantity": 2, "price_cents": 4999, **overrides}


ORDER_PAID = event("order_paid", order_id="ord-SECRET", amount_cents=9998, currency="CNY", items=[item(), item()])
REVIEW = event("review_posted", review_id="rev-SECRET", order_id="ord-SECRET", rating=5, has_media=True)
VALID = [
    ("orders", ORDER_PAID),
    ("orders", event("order_paid", order_id="o-1", amount_cents=0, currency="USD")),
    ("orders", event("order_refunded", order_id="o-1", refund_cents=1)),
    ("reviews", REVIEW),
    ("shares", event("share", share_id="sh-1", channel="wechat", target="https://example.com/p/1")),
    ("logins", event("login", device_id="dev-1", ip="203.0.113.7")),
    ("logins", event("login", device_id="dev-1")),
    ("members", event("member_joined", birthday="02-29", referrer_id="mem-7")),
    ("members", event("member_joined")),
    ("members", event("member_updated", birthday="12-31")),
    ("members", event("member_updated", birthday=None)),
    ("members", event("member_erased")),
    ("redemptions", event("redemption_requested", redemption_id="red-1", points=10**9, reward_code="COUPON-10")),
    ("redemptions", event("redemption_requested", redemption_id="red-2", reward_code="VOUCHER-5", quantity=2)),
    ("redemptions", event("redemption_cancelled", redemption_id="red-1")),
    ("admin", event("member_frozen", operator_id="op-1", reason="fraud review")),
    ("admin", event("member_unfrozen", operator_id="op-1", reason="cleared")),
    ("admin", event("points_adjusted", operator_id="op-1", reason="goodwill", points=-250)),
    ("admin", event("member_flagged", operator_id="abuse-monitor", reason="referral_shared_device",
                    rule="referral_shared_device", evidence={"referrer_id": "m2", "device": "ab12"})),
    ("admin", {**event("points_adjusted", operator_id="op-1", reason="goodwill", points=50),
               "occurred_at": "2026-02-28T23:59:59.123456Z", "platform_extra": {"any": ["thing", 1.5]}}),
]


def raw(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


def decode(kind: str, key: bytes | None, value: bytes | None, now_ms: int = NOW_MS) -> dict | Rejection:
    return decode_event(kind, key, value, now_ms=now_ms)


def test_every_input_type_has_a_valid_example() -> None:
    assert {(kind, e["type"]) for kind, e in VALID} == {(k, t) for k, types in TYPES.items() for t in types}


@pytest.mark.parametrize(("kind", "value"), VALID, ids=lambda v: v["type"] if isinstance(v, dict) else v)
@pytest.mark.parametrize("key", [None, b"", MEMBER.encode()])
def test_valid_event_is_returned_unchanged(kind: str, value: dict[str, Any], key: bytes | None) -> None:
    assert decode(kind, key, raw(value)) == value


MALFORMED = [
    # (case id, kind, key, value, code, fragment the detail must contain)
    ("invalid json", "orders", None, b'{"event_id": ', "invalid_json", ""),
    ("empty value", "orders", None, b"", "invalid_json", ""),
    ("non-utf8 bytes", "orders", None, b'{"event_id": "\xff\xfe"}', "invalid_json", "UTF-8"),
    ("json array", "orders", None, b"[]", "not_an_object", "object"),
    ("json scalar", "orders", None, b"42", "not_an_object", "object"),
    ("missing event_id", "orders", None, raw({k: v for k, v in ORDER_PAID.items() if k != "event_id"}),
     "schema_violation", "missing required event_id"),
    ("event_id too long", "orders", None, raw({**ORDER_PAID, "event_id": "SECRET" + "x" * 123}),
     "schema_violation", "event_id violates maxLength: 128"),
    ("empty member_id", "orders", None, raw({**ORDER_PAID, "member_id": ""}),
     "schema_violation", "member_id violates minLength: 1"),
    ("negative amount_cents", "orders", None, raw({**ORDER_PAID, "amount_cents": -1}),
     "schema_violation", "amount_cents violates minimum: 0"),
    ("amount_cents above cap", "orders", None, raw({**ORDER_PAID, "amount_cents": 10**12 + 1}),
     "schema_violation", "amount_cents violates maximum"),
    ("amount as string", "orders", None, raw({**ORDER_PAID, "amount_cents": "SECRET"}),
     "schema_violation", "amount_cents violates type: integer"),
    ("amount as float", "orders", None, raw({**ORDER_PAID, "amount_cents": 100.0}),
     "schema_violation", "amount_cents violates type: integer"),
    ("amount in exponent form", "orders", None, raw(ORDER_PAID).replace(b"9998", b"1e3"),
     "schema_violation", "amount_cents violates type: integer"),
    ("amount beyond 64 bits", "orders", None, raw(ORDER_PAID).replace(b"9998", b"9" * 25),
     "schema_violation", "amount_cents violates"),
    ("lowercase currency", "orders", None, raw({**ORDER_PAID, "currency": "cny"}),
     "schema_violation", "currency violates pattern"),
    ("item quantity 0", "orders", None, raw({**ORDER_PAID, "items": [item(), item(quantity=0)]}),
     "schema_violation", "items[1].quantity violates minimum: 1"),
    ("item quantity float", "orders", None, raw({**ORDER_PAID, "items": [item(), item(quantity=2.0)]}),
     "schema_violation", "items[1].quantity violates type: integer"),
    ("item without sku", "orders", None, raw({**ORDER_PAID, "items": [{"category": "x", "quantity": 1,
                                                                       "price_cents": 1}]}),
     "schema_violation", "items[0]: missing required sku"),
    ("too many items", "orders", None, raw({**ORDER_PAID, "items": [item()] * 501}),
     "schema_violation", "items violates maxItems: 500"),
    ("zero refund", "orders", None, raw(event("order_refunded", order_id="o-1", refund_cents=0)),
     "schema_violation", "refund_cents violates minimum: 1"),
    ("rating 6", "reviews", None, raw({**REVIEW, "rating": 6}), "schema_violation", "rating violates maximum: 5"),
    ("has_media as yes", "reviews", None, raw({**REVIEW, "has_media": "yes"}),
     "schema_violation", "has_media violates type: boolean"),
    ("rating as bool", "reviews", None, raw({**REVIEW, "rating": True}),
     "schema_violation", "rating violates type: integer"),
    ("type missing", "orders", None, raw({k: v for k, v in ORDER_PAID.items() if k != "type"}),
     "schema_violation", "type"),
    ("type not a string", "orders", None, raw({**ORDER_PAID, "type": ["order_paid"]}),
     "schema_violation", "type"),
    ("unknown type", "orders", None, raw(event("order_SECRET_shipped")), "unknown_type", "order_paid"),
    ("type of another topic", "orders", None, raw(REVIEW), "unknown_type", "orders"),
    ("key mismatch", "orders", b"mem-other", raw(ORDER_PAID), "key_mismatch", "member_id"),
    ("invalid key", "orders", b"\xff", raw(ORDER_PAID), "invalid_key", "UTF-8"),
    ("oversized", "orders", None, raw({**ORDER_PAID, "pad": "x" * MAX_MESSAGE_BYTES}), "oversized", "65536"),
    ("missing value", "orders", MEMBER.encode(), None, "missing_value", ""),
    ("occurred_at without offset", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-11-23T10:00:00"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at date only", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-11-23"}),
     "schema_violation", "occurred_at"),
    ("occurred_at leap second", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-12-31T23:59:60Z"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at non-ascii digits", "orders", None,
     raw({**ORDER_PAID, "occurred_at": "\u0662\u0660\u0662\u0666-11-23T10:00:00Z"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at not a date", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-02-30T10:00:00Z"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("bad birthday 13-01", "members", None, raw(event("member_joined", birthday="13-01")),
     "schema_violation", "birthday violates pattern"),
    ("birthday null on join", "members", None, raw(event("member_joined", birthday=None)),
     "schema_violation", "birthday"),
    ("birthday 02-30 on update", "members", None, raw(event("member_updated", birthday="02-30")),
     "schema_violation", "birthday violates anyOf"),
    ("referrer_id too long", "members", None, raw(event("member_joined", referrer_id="r" * 65)),
     "schema_violation", "referrer_id violates maxLength: 64"),
    ("zero redemption", "redemptions", None,
     raw(event("redemption_requested", redemption_id="r-1", points=0, reward_code="C")),
     "schema_violation", "points violates minimum: 1"),
    ("redemption above cap", "redemptions", None,
     raw(event("redemption_requested", redemption_id="r-1", points=10**9 + 1, reward_code="C")),
     "schema_violation", "points violates maximum"),
    ("zero adjustment", "admin", None, raw(event("points_adjusted", operator_id="op", reason="r", points=0)),
     "schema_violation", "points violates not"),
    ("adjustment without operator", "admin", None, raw(event("points_adjusted", reason="r", points=5)),
     "schema_violation", "missing required operator_id"),
]



def with_field(value: bytes) -> bytes:
    """ORDER_PAID with an unlisted field `extra` holding raw JSON `value`, written as given."""
    return raw(ORDER_PAID)[:-1] + b',"extra":' + value + b"}"


def nested(depth: int) -> bytes:
    """ORDER_PAID whose `extra` nests arrays so that the value is `depth` levels deep."""
    return with_field(b"[" * (depth - 1) + b"]" * (depth - 1))


GRAMMAR = [
    # duplicate member names, at any level, however they are written
    ("duplicate top-level name", "orders", None, raw(ORDER_PAID)[:-1] + b',"amount_cents":1}',
     "invalid_json", "duplicate member name"),
    ("duplicate name spaced", "orders", None,
     raw(ORDER_PAID).replace(b'"currency":', b'"currency" : "USD" , "currency" :'), "invalid_json", "duplicate"),
    ("duplicate name escaped", "orders", None, raw(ORDER_PAID)[:-1] + rb',"\u0061mount_cents":1}',
     "invalid_json", "duplicate member name"),
    ("duplicate name in an item", "orders", None,
     raw(ORDER_PAID).replace(b'"quantity":2,', b'"quantity":2,"quantity":3,', 1), "invalid_json", "duplicate"),
    ("duplicate name in an unlisted field", "orders", None, with_field(b'{"a":{"b":1,"b":2}}'),
     "invalid_json", "duplicate member name"),
    ("duplicate hidden by an escaped colon", "orders", None, with_field(rb'{"a":"x","a":"\u003a"}'),
     "invalid_json", "duplicate member name"),
    ("duplicate hidden by colons in strings", "orders", None, with_field(b'{"a":"x:y","a":"z"}'),
     "invalid_json", "duplicate member name"),
    ("duplicate member_flagged evidence", "admin", None,
     raw(event("member_flagged", operator_id="o", reason="r", rule="x", evidence={"d": "1"}))
     .replace(b'{"d":"1"}', b'{"d":"1","d":"2"}'), "invalid_json", "duplicate member name"),
    # literals JSON does not have
    ("NaN", "orders", None, with_field(b"NaN"), "invalid_json", ""),
    ("Infinity", "orders", None, with_field(b"-Infinity"), "invalid_json", ""),
    ("lone surrogate", "orders", None, with_field(b'"\ud800"'), "invalid_json", "surrogate"),
    ("lone surrogate beside a huge number", "orders", None, with_field(b'["\ud800", 1e400]'), "invalid_json",
     "surrogate"),
    ("nested 33 levels", "orders", None, nested(33), "invalid_json", "nested deeper than 32 levels"),
    ("nested 2000 levels", "orders", None, nested(2000), "invalid_json", ""),
    ("nested 900 levels beside a huge number", "orders", None,
     with_field(b"[1e400," + b"[" * 900 + b"]" * 900 + b"]"), "invalid_json", "nested"),
    # numbers: anywhere within ±(2^53 - 1); integers where the schema says integer
    ("amount 1e400", "orders", None, raw(ORDER_PAID).replace(b"9998", b"1e400"),
     "schema_violation", "amount_cents violates range"),
    ("unlisted 1e400", "orders", None, with_field(b"1e400"), "schema_violation", "extra violates range"),
    ("unlisted -1e400 in an array", "orders", None, with_field(b"[1, -1e400]"), "schema_violation",
     "extra[1] violates range"),
    ("unlisted 2^53", "orders", None, with_field(str(2**53).encode()), "schema_violation", "extra violates range"),
    ("unlisted -2^63", "orders", None, with_field(str(-(2**63)).encode()), "schema_violation", "extra violates range"),
    ("unlisted 2^64", "orders", None, with_field(str(2**64).encode()), "schema_violation", "extra violates range"),
    ("unlisted 1e20", "orders", None, with_field(b"1e20"), "schema_violation", "extra violates range"),
    ("amount 2^53 - 1", "orders", None, raw(ORDER_PAID).replace(b"9998", str(2**53 - 1).encode()),
     "schema_violation", "amount_cents violates maximum"),
    ("amount 1.0", "orders", None, raw(ORDER_PAID).replace(b"9998", b"1.0"),
     "schema_violation", "amount_cents violates type: integer"),
    ("amount 1E3", "orders", None, raw(ORDER_PAID).replace(b"9998", b"1E3"),
     "schema_violation", "amount_cents violates type: integer"),
    ("amount 1e-400", "orders", None, raw(ORDER_PAID).replace(b"9998", b"1e-400"),
     "schema_violation", "amount_cents violates type: integer"),
    # strings: no U+0000; every field the rules read has a length limit
    ("NUL in member_id", "orders", None, raw({**ORDER_PAID, "member_id": "m\x00"}), "schema_violation",
     "member_id violates format: no U+0000"),
    ("NUL in an unlisted name", "orders", None, with_field(rb'{"a\u0000b": 1}'), "schema_violation",
     "extra.? violates format: no U+0000"),
    ("category too long", "orders", None, raw({**ORDER_PAID, "items": [item(category="c" * 129)]}),
     "schema_violation", "items[0].category violates maxLength: 128"),
    ("channel too long", "shares", None, raw(event("share", share_id="s", channel="c" * 65, target="t")),
     "schema_violation", "channel violates maxLength: 64"),
    ("target too long", "shares", None, raw(event("share", share_id="s", channel="c", target="t" * 2049)),
     "schema_violation", "target violates maxLength: 2048"),
    ("ip too long", "logins", None, raw(event("login", device_id="d", ip="1" * 65)),
     "schema_violation", "ip violates maxLength: 64"),
    ("reason too long", "admin", None, raw(event("member_frozen", operator_id="o", reason="r" * 1025)),
     "schema_violation", "reason violates maxLength: 1024"),
    # date-times: RFC 3339 with an offset, T and Z upper case
    ("occurred_at with a space", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-11-23 10:00:00Z"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at basic format", "orders", None, raw({**ORDER_PAID, "occurred_at": "20261123T100000Z"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at without seconds", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-11-23T10:00+08:00"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at lower case", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-11-23t10:00:00z"}),
     "schema_violation", "occurred_at violates format: date-time"),
    ("occurred_at offset 24:00", "orders", None, raw({**ORDER_PAID, "occurred_at": "2026-11-23T10:00:00+24:00"}),
     "schema_violation", "occurred_at violates format: date-time"),
    # occurred_at: from 2000 to 24 h past the worker's clock
    ("occurred_at in year 9999", "orders", None, raw({**ORDER_PAID, "occurred_at": "9999-12-31T23:59:59Z"}),
     "occurred_at_out_of_range", "24 h after the worker's clock"),
    ("occurred_at 9999 west of UTC", "orders", None,
     raw({**ORDER_PAID, "occurred_at": "9999-12-31T23:59:59-23:59"}), "occurred_at_out_of_range", "24 h"),
    ("occurred_at 24 h + 1 ms ahead", "orders", None,
     raw({**ORDER_PAID, "occurred_at": "2026-11-24T10:00:00.001+08:00"}), "occurred_at_out_of_range", "24 h"),
    ("occurred_at in year 1", "orders", None, raw({**ORDER_PAID, "occurred_at": "0001-01-01T00:00:00+23:59"}),
     "occurred_at_out_of_range", "before 2000-01-01T00:00:00Z"),
    ("occurred_at 1 ms before 2000", "orders", None,
     raw({**ORDER_PAID, "occurred_at": "2000-01-01T07:59:59.999+08:00"}), "occurred_at_out_of_range", "before 2000"),
    ("occurred_at in 1970", "orders", None, raw({**ORDER_PAID, "occurred_at": "1970-01-01T00:00:00Z"}),
     "occurred_at_out_of_range", "before 2000"),
]


@pytest.mark.parametrize(("kind", "key", "value", "code", "fragment"), [c[1:] for c in MALFORMED + GRAMMAR],
                         ids=[c[0] for c in MALFORMED + GRAMMAR])
def test_malformed_message_is_rejected(kind: str, key: bytes | None, value: bytes | None, code: str,
                                       fragment: str) -> None:
    result = decode(kind, key, value)
    assert isinstance(result, Rejection) and result.code == code, result
    assert fragment in result.detail
    assert "SECRET" not in result.detail, "detail must not echo payload values"


def test_every_dead_letter_code_of_the_validator_has_a_case() -> None:
    agents_own = {"processing_error", "output_too_large", "stale", "unknown_reward"}
    assert {c[4] for c in MALFORMED + GRAMMAR} == CODES - agents_own


@pytest.mark.parametrize(("kind", "value"), [
    ("orders", with_field(str(2**53 - 1).encode())),
    ("orders", with_field(str(-(2**53 - 1)).encode())),
    ("orders", with_field(b"[1.5, -0.0, 1e-400, 9007199254740991.0, 1E15]")),
    ("orders", with_field(b'"1e400 and 99999999999999999999 inside a string"')),
    ("orders", with_field(rb'"\\u0000 is a backslash and text, not U+0000"')),
    ("orders", with_field(rb'{"a": "x:y", "b": "\u003a", "c": {"a": ":"}}')),
    ("orders", with_field(b"[" * 30 + b"]" * 30)),
    ("orders", raw({**ORDER_PAID, "items": [item(category="c" * 128)]})),
    ("orders", raw({**ORDER_PAID, "occurred_at": "2000-01-01T00:00:00Z"})),
    ("orders", raw({**ORDER_PAID, "occurred_at": "2026-11-24T10:00:00+08:00"})),
    ("orders", raw({**ORDER_PAID, "occurred_at": "2026-11-23T10:00:00.123456789-00:00"})),
    ("shares", raw(event("share", share_id="s", channel="c" * 64, target="t" * 2048))),
    ("admin", raw(event("member_frozen", operator_id="o", reason="r" * 1024))),
], ids=["2^53 - 1", "-(2^53 - 1)", "floats in range", "numbers in a string", "escaped backslash", "colons",
        "nested 31 levels", "category 128", "year 2000", "24 h ahead", "nanoseconds", "share limits", "reason 1024"])
def test_values_at_the_limits_are_accepted(kind: str, value: bytes) -> None:
    assert isinstance(decode(kind, None, value), dict)


def test_json_written_with_spaces_and_escapes_is_read_like_compact_json() -> None:
    spaced = json.dumps(ORDER_PAID | {"note": "caf\u00e9 \u00e0 10:00"}, indent=2).encode()
    assert b"\\u00e9" in spaced and b": " in spaced
    assert decode("orders", None, spaced) == ORDER_PAID | {"note": "caf\u00e9 \u00e0 10:00"}


def test_occurred_at_is_judged_by_the_clock_given() -> None:
    value = raw(ORDER_PAID)  # occurred_at 2026-11-23T10:00:00+08:00 = NOW_MS
    assert isinstance(decode("orders", None, value, now_ms=NOW_MS - 24 * 3600 * 1000), dict)
    late = decode("orders", None, value, now_ms=NOW_MS - 24 * 3600 * 1000 - 1)
    assert isinstance(late, Rejection) and late.code == "occurred_at_out_of_range"


@pytest.mark.parametrize(("kind", "key", "value", "code"), [
    ("orders", b"\xff", b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ("orders", None, b"", "invalid_json"),
    ("orders", b"\xff", b"not json", "invalid_key"),
    ("orders", b"mem-other", raw(event("order_shipped")), "unknown_type"),
    ("orders", b"mem-other", raw({**ORDER_PAID, "amount_cents": -1}), "schema_violation"),
    ("orders", b"mem-other", raw({**ORDER_PAID, "occurred_at": "1999-01-01T00:00:00Z"}), "occurred_at_out_of_range"),
    ("orders", None, with_field(b'{"x": 1e400, "x": 1}'), "invalid_json"),
    ("orders", None, raw(event("order_SECRET_shipped", extra=2**60)), "schema_violation"),
    ("orders", None, raw({**ORDER_PAID, "amount_cents": -1, "occurred_at": "1999-01-01T00:00:00Z"}),
     "schema_violation"),
], ids=["oversized before key", "value before key", "key before json", "type before key", "schema before key",
        "occurred_at before key", "duplicate before number", "number range before type", "schema before occurred_at"])
def test_checks_run_in_contract_order(kind: str, key: bytes | None, value: bytes, code: str) -> None:
    result = decode(kind, key, value)
    assert isinstance(result, Rejection) and result.code == code


def test_size_limit_is_inclusive() -> None:
    base = raw({**ORDER_PAID, "pad": ""})
    value = raw({**ORDER_PAID, "pad": "x" * (MAX_MESSAGE_BYTES - len(base))})
    assert len(value) == MAX_MESSAGE_BYTES
    assert isinstance(decode("orders", None, value), dict)
    assert decode("orders", None, value + b" ") == Rejection("oversized", "value is 65537 bytes, limit 65536")


def test_birthday_accepts_exactly_the_days_of_a_leap_year() -> None:
    leap_year = {(date(2024, 1, 1) + timedelta(days=n)).strftime("%m-%d") for n in range(366)}
    candidates = [f"{m:02d}-{d:02d}" for m in range(100) for d in range(100)] + ["1-01", "01-1", "01-011", "0101"]
    results = {b: decode("members", None, raw(event("member_joined", birthday=b))) for b in candidates}
    assert {b for b, result in results.items() if isinstance(result, dict)} == leap_year


@pytest.mark.parametrize("occurred_at", ["2026-11-23T10:00:00Z", "2026-11-23T10:00:00-05:30",
                                         "2026-11-23T10:00:00.5+08:00", "2024-02-29T00:00:00+00:00"])
def test_offset_date_times_are_accepted(occurred_at: str) -> None:
    assert isinstance(decode("logins", None, raw(event("login", device_id="d", occurred_at=occurred_at))),
                      dict)


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decode_event("rewards", None, raw(ORDER_PAID), now_ms=NOW_MS)


@settings(max_examples=500)
@given(kind=st.sampled_from(INPUT_KINDS), key=st.none() | st.binary(max_size=70),
       value=st.none() | st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(kind: str, key: bytes | None, value: bytes | None) -> None:
    result = decode(kind, key, value)
    assert isinstance(result, dict) or (isinstance(result, Rejection) and result.code in CODES)


EDGE_VALUES = [None, True, False, 0, 1, -1, 5, 6, 2.0, 1.5, 10**9 + 1, 10**12 + 1, 2**64 - 1, "", "x", "X" * 129,
               "USD", "02-29", "13-01", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00", [], [item()],
               [item(quantity=1.0)], {}]
JSON = st.sampled_from(EDGE_VALUES) | st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text("aZ0-:T+é", max_size=6),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["sku", "quantity", "x"]), inner,
                                                                max_size=2),
    max_leaves=4,
)
FIELDS = [
    "event_id", "member_id", "occurred_at", "order_id", "amount_cents", "currency", "items", "refund_cents",
    "review_id", "rating", "has_media", "share_id", "channel", "target", "device_id", "ip", "birthday",
    "referrer_id", "redemption_id", "points", "reward_code", "operator_id", "reason",
]
EXAMPLES = {e["type"]: (kind, e) for kind, e in reversed(VALID)}
FULL_SCHEMAS = {kind: fastjsonschema.compile(load_schema(kind)) for kind in INPUT_KINDS}


@settings(max_examples=500)
@given(type_=st.sampled_from(sorted(EXAMPLES)), changes=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=2),
       dropped=st.sets(st.sampled_from(FIELDS), max_size=1))
def test_decoded_events_conform_to_the_topic_schema(type_: str, changes: dict[str, Any], dropped: set[str]) -> None:
    """Mutated valid events: accepted ones are unchanged and pass the whole topic schema file."""
    kind, valid = EXAMPLES[type_]
    candidate = {k: v for k, v in {**valid, **changes}.items() if k not in dropped}
    result = decode(kind, None, raw(candidate))
    assert isinstance(result, dict | Rejection)
    if isinstance(result, dict):
        assert result == candidate
        FULL_SCHEMAS[kind](result)
    else:
        assert result.code == "schema_violation"
        assert "SECRET" not in result.detail


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(st.sampled_from(["a", ":", "\x00", "\u00e9", '"', "\\", "\ud800"]), max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["type", "x", ":", "\x00"]), inner,
                                                                max_size=3),
    max_leaves=8,
)


def assert_documented_outcome(kind: str, key: bytes | None, value: bytes, now_ms: int) -> None:
    """A documented code, or an event the standard library parser reads the same and the topic schema accepts."""
    result = decode(kind, key, value, now_ms)
    if isinstance(result, Rejection):
        assert result.code in CODES
        assert "SECRET" not in result.detail
    else:
        assert json.loads(value) == result
        FULL_SCHEMAS[kind](result)


@settings(max_examples=300)
@given(kind=st.sampled_from(INPUT_KINDS), value=ANY_JSON | st.dictionaries(st.sampled_from(FIELDS), ANY_JSON),
       indent=st.none() | st.just(1), ensure_ascii=st.booleans(), now_ms=st.integers(0, 2**62))
def test_arbitrary_json_never_raises(kind: str, value: Any, indent: int | None, ensure_ascii: bool,
                                     now_ms: int) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)  # NaN and Infinity included
    assert_documented_outcome(kind, None, text.encode("utf-8", "surrogatepass"), now_ms)


MUTATIONS = st.sampled_from(["insert", "delete", "repeat", "replace"])


@settings(max_examples=500)
@given(example=st.sampled_from(VALID), mutations=st.lists(
    st.tuples(MUTATIONS, st.integers(0, 10**6), st.integers(1, 40), st.binary(min_size=1, max_size=4)),
    min_size=1, max_size=3))
def test_mutated_valid_bytes_never_raise(example: tuple[str, dict], mutations: list) -> None:
    """Byte edits of valid events, e.g. a slice repeated: often a duplicate member name."""
    kind, valid = example
    value = bytearray(raw(valid))
    for mutation, position, length, data in mutations:
        at = position % (len(value) + 1)
        if mutation == "insert":
            value[at:at] = data
        elif mutation == "delete":
            del value[at:at + length]
        elif mutation == "repeat":
            value[at:at] = value[at:at + length]
        else:
            value[at:at + len(data)] = data
    assert_documented_outcome(kind, MEMBER.encode(), bytes(value), NOW_MS)

"""decode_event: raw Kafka bytes to a validated input event or a Rejection with a stable code."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.validation import INPUT_KINDS, MAX_MESSAGE_BYTES, Rejection, decode_event, load_schema

MEMBER = "mem-SECRET-42"
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


def test_every_input_type_has_a_valid_example() -> None:
    assert {(kind, e["type"]) for kind, e in VALID} == {(k, t) for k, types in TYPES.items() for t in types}


@pytest.mark.parametrize(("kind", "value"), VALID, ids=lambda v: v["type"] if isinstance(v, dict) else v)
@pytest.mark.parametrize("key", [None, b"", MEMBER.encode()])
def test_valid_event_is_returned_unchanged(kind: str, value: dict[str, Any], key: bytes | None) -> None:
    assert decode_event(kind, key, raw(value)) == value


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


@pytest.mark.parametrize(("kind", "key", "value", "code", "fragment"), [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])
def test_malformed_message_is_rejected(kind: str, key: bytes | None, value: bytes | None, code: str,
                                       fragment: str) -> None:
    result = decode_event(kind, key, value)
    assert isinstance(result, Rejection) and result.code == code, result
    assert fragment in result.detail
    assert "SECRET" not in result.detail, "detail must not echo payload values"


def test_rejection_codes_are_dead_letter_codes() -> None:
    assert {c[4] for c in MALFORMED} <= CODES


@pytest.mark.parametrize(("kind", "key", "value", "code"), [
    ("orders", b"\xff", b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ("orders", None, b"", "invalid_json"),
    ("orders", b"\xff", b"not json", "invalid_key"),
    ("orders", b"mem-other", raw(event("order_shipped")), "unknown_type"),
    ("orders", b"mem-other", raw({**ORDER_PAID, "amount_cents": -1}), "schema_violation"),
], ids=["oversized before key", "value before key", "key before json", "type before key", "schema before key"])
def test_checks_run_in_contract_order(kind: str, key: bytes | None, value: bytes, code: str) -> None:
    result = decode_event(kind, key, value)
    assert isinstance(result, Rejection) and result.code == code


def test_size_limit_is_inclusive() -> None:
    base = raw({**ORDER_PAID, "pad": ""})
    value = raw({**ORDER_PAID, "pad": "x" * (MAX_MESSAGE_BYTES - len(base))})
    assert len(value) == MAX_MESSAGE_BYTES
    assert isinstance(decode_event("orders", None, value), dict)
    assert decode_event("orders", None, value + b" ") == Rejection("oversized", "value is 65537 bytes, limit 65536")


def test_birthday_accepts_exactly_the_days_of_a_leap_year() -> None:
    leap_year = {(date(2024, 1, 1) + timedelta(days=n)).strftime("%m-%d") for n in range(366)}
    candidates = [f"{m:02d}-{d:02d}" for m in range(100) for d in range(100)] + ["1-01", "01-1", "01-011", "0101"]
    results = {b: decode_event("members", None, raw(event("member_joined", birthday=b))) for b in candidates}
    assert {b for b, result in results.items() if isinstance(result, dict)} == leap_year


@pytest.mark.parametrize("occurred_at", ["2026-11-23T10:00:00Z", "2026-11-23T10:00:00-05:30",
                                         "2026-11-23T10:00:00.5+08:00", "2024-02-29T00:00:00+00:00"])
def test_offset_date_times_are_accepted(occurred_at: str) -> None:
    assert isinstance(decode_event("logins", None, raw(event("login", device_id="d", occurred_at=occurred_at))),
                      dict)


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decode_event("rewards", None, raw(ORDER_PAID))


@settings(max_examples=500)
@given(kind=st.sampled_from(INPUT_KINDS), key=st.none() | st.binary(max_size=70),
       value=st.none() | st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(kind: str, key: bytes | None, value: bytes | None) -> None:
    result = decode_event(kind, key, value)
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
    result = decode_event(kind, None, raw(candidate))
    assert isinstance(result, dict | Rejection)
    if isinstance(result, dict):
        assert result == candidate
        FULL_SCHEMAS[kind](result)
    else:
        assert result.code == "schema_violation"
        assert "SECRET" not in result.detail

"""The operators' reward topics: loyalty.catalog and loyalty.coupon-codes messages, valid or refused with
a dead-letter code like any input (topics/validation.py `decode_catalog_message`)."""
from __future__ import annotations

import orjson
import pytest

from topics.validation import Rejection, decode_catalog_message

AT = "2026-12-01T10:00:00+08:00"


def stock(type_: str = "stock_set", **fields) -> dict:
    return {"update_id": "u1", "reward_code": "TOTE-BAG", "type": type_, "operator_id": "op", "occurred_at": AT,
            **fields}


def codes(**fields) -> dict:
    return {"import_id": "i1", "reward_code": "RACE", "codes": ["A", "B"], "occurred_at": AT, **fields}


@pytest.mark.parametrize(("kind", "key", "message"), [
    ("catalog", b"TOTE-BAG", stock(stock=0)),
    ("catalog", b"TOTE-BAG", stock("stock_added", stock=5)),
    ("catalog", b"TOTE-BAG", stock("paused")),
    ("catalog", b"TOTE-BAG", stock("resumed")),
    ("coupon-codes", b"RACE:i1", codes()),
])
def test_valid_messages_are_returned_unchanged(kind, key, message):
    assert decode_catalog_message(kind, key, orjson.dumps(message)) == message


@pytest.mark.parametrize(("kind", "key", "value", "code", "fragment"), [
    ("catalog", b"TOTE-BAG", None, "missing_value", "no value"),
    ("catalog", b"TOTE-BAG", b"{", "invalid_json", ""),
    ("catalog", b"TOTE-BAG", b"[]", "not_an_object", ""),
    ("catalog", b"TOTE-BAG", orjson.dumps(stock()), "schema_violation", "stock"),
    ("catalog", b"TOTE-BAG", orjson.dumps(stock("stock_added", stock=0)), "schema_violation", "minimum"),
    ("catalog", b"TOTE-BAG", orjson.dumps(stock("stock_set", stock=-1)), "schema_violation", "minimum"),
    ("catalog", b"TOTE-BAG", orjson.dumps(stock("paused", stock=3)), "schema_violation", ""),
    ("catalog", b"TOTE-BAG", orjson.dumps(stock("emptied")), "schema_violation", "type"),
    ("catalog", b"TOTE-BAG", orjson.dumps(stock(stock=1, extra=1)), "schema_violation", "unexpected extra"),
    ("catalog", b"MUG", orjson.dumps(stock(stock=1)), "key_mismatch", "reward_code"),
    ("catalog", None, orjson.dumps(stock(stock=1)), "key_mismatch", "reward_code"),
    ("catalog", b"\xff", orjson.dumps(stock(stock=1)), "invalid_key", "UTF-8"),
    ("catalog", b"TOTE-BAG", b'{"a": 1, "a": 2}', "invalid_json", "duplicate"),
    ("coupon-codes", b"RACE", orjson.dumps(codes()), "key_mismatch", "import_id"),
    ("coupon-codes", b"RACE:i1", orjson.dumps(codes(codes=[])), "schema_violation", "codes"),
    ("coupon-codes", b"RACE:i1", orjson.dumps(codes(codes=["x" * 65])), "schema_violation", "codes"),
    ("coupon-codes", b"RACE:i1", orjson.dumps(codes(codes=["c"] * 1001)), "schema_violation", "codes"),
    ("coupon-codes", b"RACE:i1", b"x" * 70_000, "oversized", "65536"),
])
def test_malformed_messages_are_refused_with_a_dead_letter_code(kind, key, value, code, fragment):
    result = decode_catalog_message(kind, key, value)
    assert isinstance(result, Rejection) and result.code == code, result
    assert fragment in result.detail

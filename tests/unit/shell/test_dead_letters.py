"""Dead letters are capped (topics/dead_letters.py): always deliverable, the original always findable."""
from __future__ import annotations

import base64
import hashlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.dead_letters import DETAIL_MAX_CHARS, KEY_MAX_BYTES, VALUE_MAX_BYTES, dead_letter, dead_letter_key
from topics.outgoing import MAX_RECORD_BYTES, record_size
from topics.validation import MAX_MESSAGE_BYTES, validate_output

AT = "2026-11-30T10:00:00.000+00:00"


def letter(value: bytes | None, key: bytes | None = b"bob", detail: str = "why") -> dict:
    record = dead_letter("loyalty.orders", 3, 1234, key, value, "oversized", detail, AT)
    validate_output("dead-letters", record)
    return record


def test_a_value_within_the_input_cap_is_kept_whole():
    value = b'{"a": "' + "é".encode() * 1000 + b'"}'
    record = letter(value)
    assert record["value"] == value.decode() and "encoding" not in record
    assert (record["value_truncated"], record["value_length"]) == (False, len(value))
    assert record["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert (record["topic"], record["partition"], record["offset"]) == ("loyalty.orders", 3, 1234)


def test_the_cap_is_the_input_cap():
    assert VALUE_MAX_BYTES == MAX_MESSAGE_BYTES
    assert letter(b"x" * MAX_MESSAGE_BYTES)["value_truncated"] is False
    assert letter(b"x" * (MAX_MESSAGE_BYTES + 1))["value_truncated"] is True


def test_a_huge_binary_value_is_cut_with_its_length_and_hash():
    value = bytes(range(256)) * 20_000  # 5,120,000 bytes, not UTF-8
    record = letter(value)
    assert record["encoding"] == "base64" and record["value_truncated"] is True
    assert base64.b64decode(record["value"]) == value[:VALUE_MAX_BYTES]
    assert record["value_length"] == len(value) and record["value_sha256"] == hashlib.sha256(value).hexdigest()


def test_a_huge_text_value_is_cut_at_a_character_boundary_and_stays_text():
    value = "€".encode() * 30_000  # three bytes each: the cap falls inside a character
    record = letter(value)
    assert "encoding" not in record and record["value_truncated"] is True
    assert record["value"] == "€" * (VALUE_MAX_BYTES // 3)
    assert record["value_length"] == 90_000


def test_no_value_has_no_length_nor_hash():
    record = letter(None)
    assert (record["value"], record["value_length"], record["value_sha256"], record["value_truncated"]) == (
        None, None, None, False)


def test_a_long_key_is_cut_and_so_is_the_dead_letters_own_key():
    key = b"k" * 5000
    record = letter(b"{}", key=key)
    assert record["key"] == "k" * KEY_MAX_BYTES and record["key_truncated"] is True
    assert dead_letter_key(key) == b"k" * KEY_MAX_BYTES and dead_letter_key(b"bob") == b"bob"
    assert dead_letter_key(None) is None
    assert letter(b"{}", key=b"\xff" * 5000)["key"] is None  # not UTF-8: null, as before


def test_a_long_detail_is_cut():
    assert letter(b"{}", detail="d" * 5000)["detail"] == "d" * DETAIL_MAX_CHARS


def test_the_worst_case_record_fits_the_producer_limit_with_room_to_spare():
    worst = b"\x01" * (10 * VALUE_MAX_BYTES)  # UTF-8, each byte escaped to six in JSON
    record = letter(worst, key=b"\x02" * (10 * KEY_MAX_BYTES), detail="\x03" * (10 * DETAIL_MAX_CHARS))
    size = record_size(dead_letter_key(b"\x02" * (10 * KEY_MAX_BYTES)), orjson.dumps(record))
    assert size < 400 * 1024 < MAX_RECORD_BYTES


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.none(), st.binary(max_size=3 * VALUE_MAX_BYTES),
                       st.text(max_size=VALUE_MAX_BYTES).map(str.encode)),
       key=st.one_of(st.none(), st.binary(max_size=3 * KEY_MAX_BYTES)))
def test_any_message_gives_a_valid_bounded_dead_letter_that_names_the_original(value, key):
    record = letter(value, key=key)
    assert orjson.loads(orjson.dumps(record)) == record
    assert record_size(dead_letter_key(key), orjson.dumps(record)) < 400 * 1024
    if value is not None:
        kept = base64.b64decode(record["value"]) if record.get("encoding") else record["value"].encode()
        assert value.startswith(kept) and record["value_length"] == len(value)
        assert record["value_truncated"] is (len(kept) < len(value))
        assert record["value_sha256"] == hashlib.sha256(value).hexdigest()

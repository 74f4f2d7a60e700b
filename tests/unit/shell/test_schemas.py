"""The JSON Schema files in topics/schemas/ and validate_output."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

import topics.validation
from topics.validation import CATALOG_KINDS, INPUT_KINDS, OUTPUT_KINDS, load_schema, validate_output

SCHEMA_DIR = Path(topics.validation.__file__).parent / "schemas"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
NOW = "2026-11-23T10:00:00+08:00"

OUTPUT_SAMPLES: dict[str, dict[str, Any]] = {
    "rewards": {"reward_id": "rw-1", "member_id": "mem-42", "type": "points_earned", "points": 99,
                "balance": {"available": 120, "pending": 0}, "tier": "silver", "source_event_id": "evt-1",
                "rule": "orders.base", "occurred_at": NOW, "details": {"campaign": "double-11"}},
    "notifications": {"notification_id": "nt-1", "member_id": "mem-42", "template": "points_earned",
                      "priority": "transactional", "params": {"points": 99}, "created_at": "2026-11-23T02:00:00Z"},
    "dead-letters": {"topic": "loyalty.orders", "partition": 3, "offset": 1207, "key": None, "value": "/w==",
                     "encoding": "base64", "error": "invalid_json", "detail": "unexpected character at position 0",
                     "failed_at": NOW},
}
REQUIRED_FIELD = {"rewards": "balance", "notifications": "priority", "dead-letters": "error"}


def test_schema_directory_holds_exactly_the_topic_schemas() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(INPUT_KINDS + OUTPUT_KINDS + CATALOG_KINDS)
    assert [p.name for p in SCHEMA_DIR.iterdir() if p.suffix != ".json"] == []


@pytest.mark.parametrize("name", INPUT_KINDS + OUTPUT_KINDS + CATALOG_KINDS)
def test_schema_is_a_compilable_draft_07_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema == orjson.loads((SCHEMA_DIR / f"{name}.json").read_bytes())
    assert schema["$schema"] == DRAFT_07
    assert schema["type"] == "object" and schema["title"]
    fastjsonschema.compile(schema)


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_input_schema_dispatches_every_type_to_its_definition(kind: str) -> None:
    schema = load_schema(kind)
    types = schema["properties"]["type"]["enum"]
    branches = [(b["if"]["properties"]["type"]["const"], b["then"]["$ref"]) for b in schema["allOf"]]
    assert branches == [(t, f"#/definitions/{t}") for t in types]
    for name in types:
        fastjsonschema.compile({"$schema": DRAFT_07, "definitions": schema["definitions"],
                                "$ref": f"#/definitions/{name}"})


def test_input_schemas_share_one_envelope() -> None:
    envelopes = [load_schema(kind)["definitions"]["envelope"] for kind in INPUT_KINDS]
    assert all(e == envelopes[0] for e in envelopes)
    assert envelopes[0]["required"] == ["event_id", "member_id", "occurred_at", "type"]
    assert envelopes[0]["additionalProperties"] is True


def test_dead_letter_codes() -> None:
    assert load_schema("dead-letters")["properties"]["error"]["enum"] == [
        "invalid_json", "not_an_object", "schema_violation", "key_mismatch", "unknown_type", "oversized",
        "missing_value", "invalid_key", "occurred_at_out_of_range", "processing_error", "output_too_large",
        "stale", "unknown_reward"]


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(ValueError):
        load_schema("../pyproject")
    with pytest.raises(ValueError):
        validate_output("orders", {})


@pytest.mark.parametrize("name", OUTPUT_KINDS)
def test_output_sample_is_accepted(name: str) -> None:
    validate_output(name, OUTPUT_SAMPLES[name])


@pytest.mark.parametrize("name", OUTPUT_KINDS)
def test_output_with_missing_field_is_rejected(name: str) -> None:
    field = REQUIRED_FIELD[name]
    event = {k: v for k, v in OUTPUT_SAMPLES[name].items() if k != field}
    with pytest.raises(ValueError, match=f"missing required {field}"):
        validate_output(name, event)


@pytest.mark.parametrize("name", OUTPUT_KINDS)
def test_output_with_extra_field_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="unexpected surprise"):
        validate_output(name, {**OUTPUT_SAMPLES[name], "surprise": 1})


@pytest.mark.parametrize(("name", "changes", "fragment"), [
    ("rewards", {"type": "points_gifted"}, "type violates enum"),
    ("rewards", {"points": 1.0}, "points violates type: integer"),
    ("rewards", {"balance": {"available": 1, "pending": 0, "frozen": 0}}, "balance: unexpected frozen"),
    ("rewards", {"balance": {"available": 1}}, "balance: missing required pending"),
    ("rewards", {"occurred_at": "2026-11-23 10:00:00"}, "occurred_at violates format: date-time"),
    ("notifications", {"priority": "urgent"}, "priority violates enum"),
    ("notifications", {"params": []}, "params violates type: object"),
    ("dead-letters", {"encoding": "hex"}, "encoding violates const: base64"),
    ("dead-letters", {"error": "boom"}, "error violates enum"),
    ("dead-letters", {"offset": "12"}, "offset violates type: integer"),
    ("dead-letters", {"value_sha256": "ABC"}, "value_sha256 violates pattern"),
    ("dead-letters", {"value_length": -1}, "value_length violates minimum"),
    ("dead-letters", {"detail": "x" * 1025}, "detail violates maxLength"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_output_constraint_violations_are_named(name: str, changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        validate_output(name, {**OUTPUT_SAMPLES[name], **changes})


@pytest.mark.parametrize(("name", "changes", "dropped"), [
    *(("rewards", {"type": t, "points": -5, "details": {}}, ()) for t in
      load_schema("rewards")["properties"]["type"]["enum"]),
    ("rewards", {}, ("details",)),
    ("notifications", {"priority": "marketing", "params": {}}, ()),
    ("dead-letters", {"key": "mem-42", "value": '{"a":1}', "error": "key_mismatch"}, ("encoding",)),
    ("dead-letters", {"key": None, "value": None, "error": "missing_value"}, ("encoding",)),
])
def test_output_variants_are_accepted(name: str, changes: dict[str, Any], dropped: tuple[str, ...]) -> None:
    validate_output(name, {k: v for k, v in {**OUTPUT_SAMPLES[name], **changes}.items() if k not in dropped})

"""Event contracts: raw Kafka bytes in, a validated event or a stable rejection code out.

The contracts are the draft-07 JSON Schemas in topics/schemas/, compiled once at import with
fastjsonschema, over the strict JSON grammar of topics/strict_json.py (no duplicate names,
numbers within ±(2^53 - 1), no U+0000, bounded nesting). Two refinements JSON Schema cannot
express are applied on top of every schema: "integer" means a JSON integer (5.0 and 1e3, which
orjson decodes as floats, are refused) and a "date-time" is RFC 3339 with an offset
(`2026-11-23T10:00:00.5+08:00`, `...Z`) naming a real instant. Last, an input event's
`occurred_at` must lie between OCCURRED_AT_MIN and the caller's clock plus
OCCURRED_AT_MAX_AHEAD: the core does calendar arithmetic up to years past an event (expiry,
windows), which fails near year 9999, and no real event comes from before 2000 or from tomorrow.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from topics import strict_json

MAX_MESSAGE_BYTES = 65536
OCCURRED_AT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
OCCURRED_AT_MAX_AHEAD = timedelta(hours=24)
INPUT_KINDS = ("orders", "reviews", "shares", "logins", "members", "redemptions", "admin")
OUTPUT_KINDS = ("rewards", "notifications", "dead-letters")
CATALOG_KINDS = ("catalog", "coupon-codes")

_SCHEMAS = Path(__file__).parent / "schemas"
_FieldPath = tuple[str | None, ...]  # property names; None steps into every element of an array
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
                      r"(?:Z|[+-][0-9]{2}:[0-9]{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MIN_MS = (OCCURRED_AT_MIN - _EPOCH) // _MS
_AHEAD_MS = OCCURRED_AT_MAX_AHEAD // _MS


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: a dead-letter ``code`` and a ``detail`` free of payload values."""

    code: str
    detail: str


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of an input kind or output topic, read from topics/schemas/{name}.json."""
    if name not in INPUT_KINDS + OUTPUT_KINDS + CATALOG_KINDS:
        raise ValueError(f"no schema named {name!r}")
    return orjson.loads((_SCHEMAS / f"{name}.json").read_bytes())


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with each ``#/definitions/`` $ref replaced by its target (compiles to faster code)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].removeprefix("#/definitions/")], defs)
        return {key: _inline(value, defs) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(value, defs) for value in schema]
    return schema


def _refinements(schema: dict[str, Any], path: _FieldPath = ()) -> list[tuple[_FieldPath, str]]:
    """(path, "integer" | "date-time") for each such location reachable via allOf, properties and items."""
    types = schema.get("type", ())
    found = [(path, "integer")] if "integer" in ([types] if isinstance(types, str) else types) else []
    if schema.get("format") == "date-time":
        found.append((path, "date-time"))
    for sub in schema.get("allOf", ()):
        found += _refinements(sub, path)
    for name, sub in schema.get("properties", {}).items():
        found += _refinements(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        found += _refinements(schema["items"], (*path, None))
    return found


def _breaks(value: object, refinement: str) -> bool:
    if refinement == "integer":
        return isinstance(value, float)
    return isinstance(value, str) and _instant_ms(value) is None


def _find(node: object, path: _FieldPath, refinement: str) -> tuple[str | int, ...] | None:
    """Steps (names, indices) to the first value at ``path`` below ``node`` that breaks ``refinement``."""
    if not path:
        return () if _breaks(node, refinement) else None
    step, rest = path[0], path[1:]
    if step is None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                if (hit := _find(item, rest, refinement)) is not None:
                    return (index, *hit)
        return None
    if isinstance(node, dict) and step in node:
        hit = _find(node[step], rest, refinement)
        return None if hit is None else (step, *hit)
    return None


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """Field path and broken constraint, e.g. ``items[2].quantity violates minimum: 1``."""
    where = exc.name.removeprefix("data").removeprefix(".") or "(root)"
    rule, expected = exc.rule, exc.rule_definition
    if rule == "required":
        return f"{where}: missing required {', '.join(k for k in expected if k not in exc.value)}"
    if rule == "additionalProperties":
        extra = sorted(set(exc.value) - set(exc.definition.get("properties", {})))
        return f"{where}: unexpected {', '.join(extra)}"
    if rule in ("anyOf", "oneOf"):
        return f"{where} violates {rule}: matches no alternative"
    return f"{where} violates {rule}: {expected}"


@dataclass(frozen=True, slots=True)
class _Contract:
    check: Callable[[Any], Any]
    refinements: tuple[tuple[_FieldPath, str], ...]

    @classmethod
    def compile(cls, schema: dict[str, Any], definition: str | None = None,
                checked_elsewhere: tuple[tuple[_FieldPath, str], ...] = ()) -> _Contract:
        """The whole schema, or only ``#/definitions/{definition}`` of it, without the refinements
        ``checked_elsewhere``."""
        root = schema if definition is None else {"$ref": f"#/definitions/{definition}"}
        inlined = {**_inline(root, schema.get("definitions", {})), "$schema": schema["$schema"]}
        inlined.pop("definitions", None)  # every reference is resolved
        check = fastjsonschema.compile(inlined, use_default=False)
        refinements = [r for r in dict.fromkeys(_refinements(inlined)) if r not in checked_elsewhere]
        return cls(check, tuple(refinements))

    def violation(self, event: Any) -> str | None:
        """Detail of the first contract violation, None if ``event`` conforms."""
        try:
            self.check(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _describe(exc)
        for path, refinement in self.refinements:
            if (steps := _find(event, path, refinement)) is not None:
                where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).removeprefix(".")
                return f"{where} violates {'type' if refinement == 'integer' else 'format'}: {refinement}"
        return None


def _input_contracts(kind: str) -> dict[str, _Contract]:
    """Per event type; `occurred_at` (required by every type) is parsed once, in decode_event, with its range."""
    schema = load_schema(kind)
    occurred_at = ((("occurred_at",), "date-time"),)
    return {name: _Contract.compile(schema, name, occurred_at) for name in schema["properties"]["type"]["enum"]}


_INPUTS = {kind: _input_contracts(kind) for kind in INPUT_KINDS}
_OUTPUTS = {name: _Contract.compile(load_schema(name)) for name in OUTPUT_KINDS}


def decode_event(kind: str, key: bytes | None, value: bytes | None, *, now_ms: int) -> dict | Rejection:
    """The validated event of an input-topic message (values unchanged), or why it is refused.

    `now_ms` is the caller's clock (epoch ms): an `occurred_at` more than OCCURRED_AT_MAX_AHEAD
    past it is refused, like one before OCCURRED_AT_MIN.
    """
    contracts = _INPUTS.get(kind)
    if contracts is None:
        raise ValueError(f"unknown input kind {kind!r}")
    if value is None:
        return Rejection("missing_value", "message has no value")
    if len(value) > MAX_MESSAGE_BYTES:
        return Rejection("oversized", f"value is {len(value)} bytes, limit {MAX_MESSAGE_BYTES}")
    key_text = None
    if key:
        try:
            key_text = key.decode()
        except UnicodeDecodeError:
            return Rejection("invalid_key", "key is not valid UTF-8")
    try:
        event, unsafe = strict_json.decode(value)
    except strict_json.InvalidJson as exc:
        return Rejection("invalid_json", str(exc))
    if not isinstance(event, dict):
        return Rejection("not_an_object", "value is not a JSON object")
    if unsafe is not None:
        return Rejection("schema_violation", unsafe)
    event_type = event.get("type")
    if not isinstance(event_type, str):
        return Rejection("schema_violation", "type: missing or not a string")
    contract = contracts.get(event_type)
    if contract is None:
        return Rejection("unknown_type", f"type is none of {kind}: {', '.join(contracts)}")
    if (detail := contract.violation(event)) is not None:
        return Rejection("schema_violation", detail)
    at_ms = _instant_ms(event["occurred_at"])
    if at_ms is None:
        return Rejection("schema_violation", "occurred_at violates format: date-time")
    if (detail := _out_of_range(at_ms, now_ms)) is not None:
        return Rejection("occurred_at_out_of_range", detail)
    if key_text is not None and key_text != event["member_id"]:
        return Rejection("key_mismatch", "key differs from member_id")
    return event


def _instant_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 date-time with an offset, None if `text` is not one."""
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return (datetime.fromisoformat(text) - _EPOCH) // _MS
    except ValueError:  # no such day or time, e.g. 02-30 or 23:59:60
        return None


def _out_of_range(at_ms: int, now_ms: int) -> str | None:
    """Why an `occurred_at` of `at_ms` is outside [OCCURRED_AT_MIN, now + OCCURRED_AT_MAX_AHEAD]."""
    if at_ms < _MIN_MS:
        return f"occurred_at is before {OCCURRED_AT_MIN.isoformat().replace('+00:00', 'Z')}"
    if at_ms > now_ms + _AHEAD_MS:
        return f"occurred_at is more than {OCCURRED_AT_MAX_AHEAD // timedelta(hours=1)} h after the worker's clock"
    return None


def validate_output(name: str, event: dict) -> None:
    """Raise ValueError naming the violated constraint unless ``event`` conforms to output ``name``."""
    contract = _OUTPUTS.get(name)
    if contract is None:
        raise ValueError(f"unknown output {name!r}")
    if (detail := contract.violation(event)) is not None:
        raise ValueError(f"{name}: {detail}")


_CATALOG = {kind: _Contract.compile(load_schema(kind)) for kind in CATALOG_KINDS}


def decode_catalog_message(kind: str, key: bytes | None, value: bytes | None) -> dict | Rejection:
    """The validated message of the `catalog` or `coupon-codes` topic, or why it is refused: the same
    grammar and codes as an input event; the key must be the reward code (`code:import_id` for codes)."""
    if value is None:
        return Rejection("missing_value", "message has no value")
    if len(value) > MAX_MESSAGE_BYTES:
        return Rejection("oversized", f"value is {len(value)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        message, unsafe = strict_json.decode(value)
    except strict_json.InvalidJson as exc:
        return Rejection("invalid_json", str(exc))
    if not isinstance(message, dict):
        return Rejection("not_an_object", "value is not a JSON object")
    if unsafe is not None:
        return Rejection("schema_violation", unsafe)
    if (detail := _CATALOG[kind].violation(message)) is not None:
        return Rejection("schema_violation", detail)
    expected = message["reward_code"] if kind == "catalog" else f"{message['reward_code']}:{message['import_id']}"
    try:
        if key is None or key.decode() != expected:
            return Rejection("key_mismatch", "key differs from reward_code" if kind == "catalog"
                             else "key differs from reward_code:import_id")
    except UnicodeDecodeError:
        return Rejection("invalid_key", "key is not valid UTF-8")
    return message

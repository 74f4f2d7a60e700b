"""Strict JSON: one reading of a message that every parser agrees on (RFC 8259 as I-JSON, RFC 7493).

orjson is fast but, like most parsers, takes the last of two equal member names, so another
consumer of the same bytes could read another value. `decode` refuses what parsers disagree on
(duplicate names at any level, nesting deeper than MAX_DEPTH) and finds the values no field may
hold (numbers beyond ±(2^53 - 1), which not every parser reads exactly, and U+0000, which C
strings truncate at). A typical event costs a few byte searches and one orjson.dumps on top of
orjson.loads; the exact checks (the standard library parser, walks of the value) run only when
the bytes say they might find something.
"""
from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 32  # nested objects and arrays; an event needs 3 (items, evidence a few more)
MAX_SAFE_INTEGER = 2**53 - 1  # the largest magnitude every JSON parser reads exactly (RFC 7493 2.2)

# The bytes of a nested value in classes (one translate): digits as 0, `E` as `e`, `[` as `{`.
# A number can exceed MAX_SAFE_INTEGER only with 16+ digits in a row or with an exponent (a digit
# then `e`), which byte searches find; strings may hold such runs too (hex ids): then the exact
# walk runs and finds nothing. Nesting deeper than MAX_DEPTH needs more `{` than that.
_CLASSES = bytes.maketrans(b"0123456789E[", b"0000000000e{")
_SIXTEEN_DIGITS = b"0" * 16
_DIGIT_E = re.compile(rb"0e")  # a literal pattern: re's search is faster than `in` for it
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")
_ORJSON_INFINITY = "number is infinity"  # orjson's message for a number beyond the double range
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # member names shown in a path; others show as `?`


class InvalidJson(ValueError):
    """The bytes are not strict JSON; the message says why, without payload values."""


def decode(raw: bytes) -> tuple[Any, str | None]:
    """The value of strict JSON `raw`, and where and why it holds a number or string no field may
    hold (None when it holds none). InvalidJson when `raw` is not strict JSON.

    Numbers beyond the double range read as ±inf (and are unsafe).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not exc.msg.startswith(_ORJSON_INFINITY):
            raise InvalidJson(f"{exc.msg} at position {exc.pos}") from None
        value = _pairs_checked_loads(raw)  # valid JSON orjson cannot hold: read it with ±inf
        _check_depth(value)
        _check_strings(value)
        return value, _unsafe(raw, value, False, raw.translate(_CLASSES))
    # Most events are one flat object: its members are looked at directly, with no byte search.
    unsafe_on_top = nested = False
    for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,):
        kind = type(child)
        if kind is dict or kind is list:
            nested = True
        elif (kind is int or kind is float) and not -MAX_SAFE_INTEGER <= child <= MAX_SAFE_INTEGER:
            unsafe_on_top = True
    classes = raw.translate(_CLASSES) if nested else None
    if classes is not None and classes.count(b"{") > MAX_DEPTH:
        _check_depth(value)
    if not _names_unique_by_count(raw, value):
        _pairs_checked_loads(raw)
    return value, _unsafe(raw, value, unsafe_on_top, classes)


def _unsafe(raw: bytes, value: Any, unsafe_on_top: bool, classes: bytes | None) -> str | None:
    """Where and why `value` holds an unsafe number or a U+0000, None if it does not.

    Below the top level (`classes` of a nested value), the value is walked only when its bytes
    hold what an unsafe number needs.
    """
    if not unsafe_on_top and classes is not None:
        unsafe_on_top = ((_SIXTEEN_DIGITS in classes or _DIGIT_E.search(classes) is not None)
                         and _has_unsafe_number([value]))
    if unsafe_on_top:
        return f"{_find(value, _unsafe_number)} violates range: a number within ±(2^53 - 1)"
    if b"\\" in raw and b"\\u0000" in raw:
        path = _find(value, lambda v: isinstance(v, str) and "\x00" in v, names=True)
        if path is not None:
            return f"{path} violates format: no U+0000 in strings"
    return None


def _unsafe_number(value: Any) -> bool:
    return type(value) in (int, float) and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def _has_unsafe_number(value: Any) -> bool:
    todo = [value]
    while todo:
        node = todo.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                todo.append(child)
            elif _unsafe_number(child):
                return True
    return False


def _names_unique_by_count(raw: bytes, value: Any) -> bool:
    """True only if `raw` repeats no member name (False means: check the slow way).

    `value` has unique names, so when orjson writes it back byte for byte as `raw`, so had `raw`.
    Else count colons: each member name is followed by one `:` outside strings, and each `:` in
    a string is written as is, both in `raw` (unless written `\\u003a`) and by orjson. The
    colons of `raw` are its names plus its strings' colons, those of orjson's copy the same
    minus what a dropped duplicate took away: equal counts mean nothing was dropped.
    """
    written = orjson.dumps(value)
    if written == raw:
        return True
    escaped_colon = b"\\" in raw and _ESCAPED_COLON.search(raw) is not None
    return not escaped_colon and raw.count(b":") == written.count(b":")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for position, (name, _) in enumerate(pairs):
            if name in seen:
                raise InvalidJson(f"duplicate member name (member {position + 1} of an object)")
            seen.add(name)
    return result


def _refuse_constant(name: str) -> None:
    raise InvalidJson(f"{name} is not JSON")


def _pairs_checked_loads(raw: bytes) -> Any:
    """The standard library parser, refusing duplicate names and NaN/Infinity (the slow path)."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidJson("not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"{exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None


def _check_depth(value: Any) -> None:
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node
        todo.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _check_strings(value: Any) -> None:
    """Lone surrogates (`\\ud800`): the standard library reads them, UTF-8 cannot hold them."""
    if _find(value, lambda v: isinstance(v, str) and not v.isascii() and not _encodable(v), names=True) is not None:
        raise InvalidJson("a string holds a lone surrogate")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _find(value: Any, hit: Any, names: bool = False, path: str = "") -> str | None:
    """Path (`items[2].sku`, `(root)`) of the first leaf, or member name when `names`, that `hit` holds for."""
    if isinstance(value, dict):
        for name, child in value.items():
            step = name if _PLAIN_NAME.fullmatch(name) else "?"
            where = f"{path}.{step}" if path else step
            if names and hit(name):
                return where
            if (found := _find(child, hit, names, where)) is not None:
                return found
        return None
    if isinstance(value, list):
        for index, child in enumerate(value):
            if (found := _find(child, hit, names, f"{path}[{index}]")) is not None:
                return found
        return None
    return (path or "(root)") if hit(value) else None

"""topics.strict_json: duplicate names, nesting and unsafe values found whatever way the JSON is written.

The property tests write random JSON trees (objects as lists of pairs, so that names can repeat)
with random whitespace and random \\uXXXX escapes, and compare with what the tree holds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.strict_json import MAX_DEPTH, MAX_SAFE_INTEGER, InvalidJson, decode


def loads(raw: bytes) -> Any:
    return decode(raw)[0]


def unsafe(raw: bytes) -> str | None:
    return decode(raw)[1]


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: its pairs in order, names possibly repeated."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Literal:
    """A number written as is (e.g. `1e400`, beyond what a Python float holds) and how unsafe it is."""

    text: str
    unsafe: bool


NAMES = st.sampled_from(["a", "b", ":", "a:b", "\u00e9", '"', "\\", "\x00", "k" * 3])
TEXT = st.text(st.sampled_from(["x", ":", '"', "\\", "\u00e9", "\n", "\x00", "1", "e"]), max_size=5)
NUMBERS = (st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([Literal("1e400", True), Literal("-1E+999", True), Literal("1e-400", False),
                              Literal("9007199254740991", False), Literal("9007199254740992", True),
                              Literal("1.0e15", False), Literal("-0", False)]))
LEAF = st.none() | st.booleans() | NUMBERS | TEXT
TREE = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(NAMES, inner), max_size=4).map(
        lambda pairs: Obj(tuple(pairs))),
    max_leaves=12,
)
ROOTS = (st.lists(st.tuples(NAMES, TREE), max_size=4)  # nested
         | st.lists(st.tuples(NAMES, LEAF), max_size=4)).map(lambda pairs: Obj(tuple(pairs)))  # flat, like events


@dataclass(frozen=True)
class Style:
    """How a document is written: whitespace around tokens, and which characters are \\u-escaped."""

    space: str
    escape: str  # "never", "odd" (every other character) or "always"


STYLES = st.builds(Style, st.sampled_from(["", " ", "\n  ", "\t "]), st.sampled_from(["never", "odd", "always"]))


def write(node: Any, style: Style) -> str:
    """`node` as JSON text in `style` (control characters, quotes and backslashes always escaped)."""
    pad = style.space
    if isinstance(node, Obj):
        members = [f"{pad}{write(name, style)}{pad}:{pad}{write(value, style)}" for name, value in node.pairs]
        return "{" + ",".join(members) + pad + "}"
    if isinstance(node, list):
        return "[" + ",".join(f"{pad}{write(value, style)}" for value in node) + pad + "]"
    if isinstance(node, Literal):
        return node.text
    if isinstance(node, str):
        return '"' + "".join(
            f"\\u{ord(char):04x}" if char in '"\\' or char < " " or style.escape == "always"
            or (style.escape == "odd" and i % 2) else char
            for i, char in enumerate(node)) + '"'
    return json.dumps(node)


@st.composite
def documents(draw: Any) -> tuple[Obj, bytes]:
    root = draw(ROOTS)
    return root, write(root, draw(STYLES)).encode()


def repeats_a_name(node: Any) -> bool:
    if isinstance(node, Obj):
        names = [name for name, _ in node.pairs]
        return len(set(names)) < len(names) or any(repeats_a_name(value) for _, value in node.pairs)
    return isinstance(node, list) and any(repeats_a_name(value) for value in node)


def holds_unsafe(node: Any) -> bool:
    if isinstance(node, Obj):
        return any("\x00" in name or holds_unsafe(value) for name, value in node.pairs)
    if isinstance(node, list):
        return any(holds_unsafe(value) for value in node)
    if isinstance(node, Literal):
        return node.unsafe
    if isinstance(node, str):
        return "\x00" in node
    return not isinstance(node, bool) and isinstance(node, int | float) and abs(node) > MAX_SAFE_INTEGER


def as_floats(value: Any) -> Any:
    """`value` with every number as a float: orjson reads integers beyond 64 bits as floats."""
    if isinstance(value, dict):
        return {name: as_floats(child) for name, child in value.items()}
    if isinstance(value, list):
        return [as_floats(child) for child in value]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


@settings(max_examples=400)
@given(documents())
def test_a_repeated_name_anywhere_is_refused_however_it_is_written(document: tuple[Obj, bytes]) -> None:
    root, raw = document
    if repeats_a_name(root):
        with pytest.raises(InvalidJson, match="duplicate member name"):
            loads(raw)
    else:
        assert as_floats(loads(raw)) == as_floats(json.loads(raw))


@settings(max_examples=300)
@given(documents())
def test_unsafe_values_are_found_wherever_they_are(document: tuple[Obj, bytes]) -> None:
    root, raw = document
    if repeats_a_name(root):
        return
    assert (unsafe(raw) is not None) == holds_unsafe(root)


def test_the_fast_paths_do_not_hide_a_repeated_name() -> None:
    """Each of these defeats one naive check: byte equality, colon counting, escaped colons."""
    for raw in [b'{"a":1,"a":1}', b'{"a":1 , "a" :2}', b'{"a":"x:y","a":"z"}', b'{"a":"x","a":"\\u003a"}',
                b'{"a":"x","a":"\\u003A"}', b'{"\\u0061":1,"a":2}', b'{"x":[{"a":{}},{"b":1,"b":2}]}']:
        with pytest.raises(InvalidJson, match="duplicate member name"):
            loads(raw)


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b"[-Infinity, 1e400]", b'{"a": NaN, "b": 1e400}'])
def test_non_json_constants_are_refused_on_both_paths(raw: bytes) -> None:
    with pytest.raises(InvalidJson):
        loads(raw)


def test_nesting_up_to_the_limit_is_read_and_beyond_it_refused() -> None:
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    for raw in (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), b'{"a":' * 40 + b"1" + b"}" * 40,
                b"[1e400," + b"[" * 5000 + b"]" * 5000 + b"]"):
        with pytest.raises(InvalidJson, match="nested"):
            loads(raw)


def test_numbers_beyond_the_double_range_read_as_infinity_and_are_unsafe() -> None:
    raw = b'{"a": [1, 1e400], "b": -1e400}'
    assert decode(raw) == ({"a": [1, float("inf")], "b": float("-inf")},
                           "a[1] violates range: a number within ±(2^53 - 1)")


@pytest.mark.parametrize(("raw", "path"), [
    (b'{"a": "x", "b": 9007199254740992}', "b"), (b'{"a": -9007199254740992}', "a"), (b'{"a": 1e16}', "a"),
    (b'{"a": 18446744073709551616}', "a"), (b"[1, 2, 1e300]", "[2]"), (b"1e20", "(root)"),
    (b'{"a": {"b": [0, 2e53]}}', "a.b[1]"), (b'{"a": 1e400}', "a"),
], ids=["flat object", "negative", "float", "beyond 64 bits", "flat array", "scalar", "nested", "infinity"])
def test_unsafe_numbers_are_found_flat_or_nested(raw: bytes, path: str) -> None:
    assert unsafe(raw) == f"{path} violates range: a number within ±(2^53 - 1)"


@pytest.mark.parametrize("raw", [b'{"a": 9007199254740991, "b": -9007199254740991, "c": 1.5e15}', b"[0.5, -0]",
                                 b'{"a": "12345678901234567890 1e400"}', b'{"a": {"b": 9007199254740991}}'])
def test_safe_numbers_pass_flat_or_nested(raw: bytes) -> None:
    assert unsafe(raw) is None


def test_paths_show_only_plain_names() -> None:
    raw = b'{"ok": {"secret name!": [0, "\\u0000"]}}'
    assert unsafe(raw) == "ok.?[1] violates format: no U+0000 in strings"


@pytest.mark.parametrize("raw", [b'{"a": "\\xff"}'.replace(b"\\xff", b"\xff"), b'"\\ud800"', b"\xef\xbb\xbf{}"])
def test_bytes_that_are_not_utf8_text_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidJson):
        loads(raw)

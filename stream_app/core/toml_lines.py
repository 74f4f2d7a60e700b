"""Where a key is written in TOML text: the line a program error points at.

tomllib gives values, not positions, so the lines come from a light scan of the text (table
headers and `key =` assignments). Best effort: multi-line strings and inline tables are not
looked into; a key found nowhere falls back to its table's line.
"""
from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_PART = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
_ASSIGNMENT = re.compile(rf"^\s*((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*=")
_LAST_STEP = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")


def _key_parts(text: str) -> list[str]:
    parts = re.findall(_KEY_PART, text)
    return [p[1:-1] if p[0] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[str, int]:
    """1-based line of each table, array-table element and key in TOML text, by dotted path.

    Array-table elements are indexed as the program's errors name them: `tiers.levels[2].threshold`.
    """
    found: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            parts, path = _key_parts(header.group(2)), ""
            for i, part in enumerate(parts):
                path = f"{path}.{part}" if path else part
                if i < len(parts) - 1 and path in counts:  # inside the latest element of an array table
                    path = f"{path}[{counts[path] - 1}]"
            if header.group(1) == "[[":
                counts[path] = counts.get(path, 0) + 1
                found.setdefault(path, number)
                path = f"{path}[{counts[path] - 1}]"
            table = path
            found.setdefault(table, number)
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            key = ".".join(_key_parts(assignment.group(1)))
            found.setdefault(f"{table}.{key}" if table else key, number)
    return found


def line_of(key: str, text: str) -> int | None:
    """The line where `key` is written, else where the nearest table around it is; None if neither is."""
    lines = key_lines(text)
    while key:
        if key in lines:
            return lines[key]
        key = _LAST_STEP.sub("", key) if _LAST_STEP.search(key) else ""
    return None

"""contracts.md's Personal data table and the code agree: what is dropped, hashed, kept, and that no year
of birth gets in."""
from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest

from stream_app.core.handlers import MAX_DEVICES
from stream_app.core.privacy import DROPPED, HASHED
from topics.validation import INPUT_KINDS, Rejection, decode_event, load_schema

CONTRACTS = (Path(__file__).resolve().parents[3] / "docs" / "contracts.md").read_text("utf-8")


def personal_rows() -> dict[str, tuple[set[str], str]]:
    """Field -> (event types, how it is kept), from the table of the Personal data section."""
    section = CONTRACTS.split("\n## Personal data\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].strip("`")] = (set(re.findall(r"`(\w+)`", cells[1])), cells[2])
    return rows


def schema_fields(event_type: str) -> set[str]:
    for kind in INPUT_KINDS:
        definitions = load_schema(kind)["definitions"]
        if event_type in definitions:
            return set(definitions[event_type].get("properties", {}))
    raise LookupError(event_type)


def test_the_table_lists_exactly_the_dropped_hashed_and_kept_fields() -> None:
    rows = personal_rows()
    assert set(rows) == {*DROPPED, *HASHED, "birthday"}
    assert {f for f, (_, kept) in rows.items() if kept.startswith("nothing")} == set(DROPPED)
    assert {f for f, (_, kept) in rows.items() if "keyed hash" in kept} == set(HASHED)
    assert f"newest {MAX_DEVICES} devices" in rows["device_id"][1]
    assert rows["birthday"][1].startswith("the `MM-DD` month-day")


@pytest.mark.parametrize("field", sorted(personal_rows()))
def test_each_personal_field_is_in_the_schema_of_the_events_named(field: str) -> None:
    types, _ = personal_rows()[field]
    assert types
    for event_type in types:
        assert field in schema_fields(event_type), (field, event_type)


@pytest.mark.parametrize("birthday", ["1990-05-17", "19900517", "1990-05", "05/17", "17-05-1990"])
@pytest.mark.parametrize("event_type", ["member_joined", "member_updated"])
def test_a_birthday_with_a_year_or_in_another_form_is_refused(event_type: str, birthday: str) -> None:
    event = {"event_id": "e1", "member_id": "m1", "occurred_at": "2024-03-05T10:00:00+08:00", "type": event_type,
             "birthday": birthday}
    rejected = decode_event("members", b"m1", orjson.dumps(event), now_ms=int(time.time() * 1000))
    assert isinstance(rejected, Rejection) and rejected.code == "schema_violation"
    assert birthday not in rejected.detail

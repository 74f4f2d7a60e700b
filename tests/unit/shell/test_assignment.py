"""A stale assignment (a static member handed back one computed before a changelog topic existed)."""
from __future__ import annotations

from faust.types import TP

from stream_app.assignment import uncovered

TABLES = {"members-changelog": ["orders", "shares"], "devices-changelog": ["devices"]}


def tps(topic: str, *partitions: int) -> set[TP]:
    return {TP(topic, p) for p in partitions}


def test_an_assignment_with_each_sources_changelog_partition_is_complete():
    assignment = (tps("orders", 0, 1) | tps("shares", 0, 1) | tps("members-changelog", 0, 1, 2)  # 2: a standby
                  | tps("devices", 1) | tps("devices-changelog", 1))
    assert uncovered(assignment, TABLES) == {}


def test_source_partitions_without_their_changelog_partition_are_gaps():
    assignment = tps("orders", 0, 1) | tps("shares", 3) | tps("members-changelog", 1) | tps("devices", 2)
    assert uncovered(assignment, TABLES) == {"members-changelog": [0, 3], "devices-changelog": [2]}


def test_no_partitions_no_gaps():
    assert uncovered(set(), TABLES) == {}

"""Whether this worker's partition assignment gives every table the changelog partitions it writes.

Faust assigns each source partition a table is written from together with that table's changelog
partition of the same number. A static member (LOYALTY_WORKER_NAME) that restarts while its group
is stable gets back the assignment stored at the last rebalance (KIP-345; the assignment its own
restarted leader computes is ignored). If that assignment dates from a moment a changelog topic did
not exist (the first seconds of a fresh deployment, a deleted changelog topic recreated at start, a
new table in a new release), the changelog's partitions are missing from it and stay missing, and
the worker is ready but processes nothing. `uncovered` finds such gaps; agents/guard.py then asks
the group for a real rebalance (stream_app/faust_compat.py `request_rejoin`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class TopicPartition(Protocol):
    topic: str
    partition: int


def uncovered(assignment: Iterable[TopicPartition],
              sources_by_changelog: Mapping[str, Iterable[str]]) -> dict[str, list[int]]:
    """Changelog topic -> the partitions of its source topics assigned here without it."""
    assigned: dict[str, set[int]] = {}
    for tp in assignment:
        assigned.setdefault(tp.topic, set()).add(tp.partition)
    gaps = {}
    for changelog, sources in sources_by_changelog.items():
        written = set().union(*(assigned.get(source, set()) for source in sources))
        if missing := sorted(written - assigned.get(changelog, set())):
            gaps[changelog] = missing
    return gaps

"""The long-history benchmark workload (bench/year.py): reproducible, valid, in event-time order, as planned."""
from __future__ import annotations

import time
from collections import Counter

import orjson

from bench.year import BUCKETS, HEAVY_DAY, YearPlan, probe_messages
from topics.validation import Rejection, decode_event

END_MS = 1_790_000_000_000  # a fixed instant: the workload does not depend on today's date
NOW_MS = END_MS + 60_000


def plan(seed: int = 3) -> YearPlan:
    return YearPlan.at_scale(0.001, seed, END_MS)  # 20 heavy members, 200 light


def test_the_same_seed_gives_the_same_bytes_and_another_seed_others() -> None:
    first, again, other = (list(plan(seed).messages()) for seed in (3, 3, 4))
    assert first == again and first != other


def test_every_event_is_valid_in_time_order_and_counted_as_planned() -> None:
    p = plan()
    events = [(kind, key, decode_event(kind, key, value, now_ms=NOW_MS)) for kind, key, value in p.messages()]
    assert not [e for _, _, e in events if isinstance(e, Rejection)]
    assert len(events) == p.events and (p.heavy, p.light) == (20, 200)
    stamps = [e["occurred_at"] for _, _, e in events]
    assert stamps == sorted(stamps) and stamps[-1] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(END_MS / 1000))
    per_member = Counter(key for _, key, _ in events)
    assert [per_member[p.member_id(k).encode()] for k in range(p.heavy)] == [p.heavy_events(k) for k in range(p.heavy)]
    assert p.heavy_events(p.heavy - 1) == 365 * len(HEAVY_DAY)
    assert {per_member[p.member_id(p.heavy + j).encode()] for j in range(p.light)} <= {1, 2, 3}


def test_a_review_names_an_order_its_member_paid_earlier() -> None:
    paid: dict[str, set[str]] = {}
    reviews = 0
    for _, _, value in plan().messages():
        event = orjson.loads(value)
        if event["type"] == "order_paid":
            paid.setdefault(event["member_id"], set()).add(event["order_id"])
        elif event["type"] == "review_posted":
            reviews += 1
            assert event["order_id"] in paid.get(event["member_id"], set())
    assert reviews > 0


def test_probes_go_to_members_of_their_history_bucket() -> None:
    p = plan()
    for low, high in BUCKETS[1:]:
        messages = probe_messages(p, (low, high), 50, NOW_MS - 30_000, "t")
        members = {key.decode() for _, key, _ in messages}
        in_bucket = {p.member_id(k) for k in p.heavy_in(low, high)}
        assert members <= in_bucket and (members or not in_bucket)
        assert not [m for m in messages if isinstance(decode_event(m[0], m[1], m[2], now_ms=NOW_MS), Rejection)]
    new = probe_messages(p, BUCKETS[0], 12, NOW_MS - 30_000, "t")
    assert len({key for _, key, _ in new}) == 2 and len(new) == 12  # new members, one heavy day each

"""The load generator: reproducible, valid, realistic events; the producer loop on a fake producer."""
from __future__ import annotations

import asyncio
import io
import time
import tracemalloc
from collections import Counter
from datetime import datetime
from types import SimpleNamespace

import orjson
import pytest

from stream_app.loadgen import DEFAULT_MIX, MissingTopics, Progress, generate, parse_mix, produce
from topics.catalog import INPUT_KINDS
from topics.validation import Rejection, decode_event

START = 1_760_000_000_000  # 2025-10-09T08:53:20Z
MIX_KIND_OF_TYPE = {"login": "logins", "order_paid": "orders", "order_refunded": "refunds", "share": "shares",
                    "review_posted": "reviews", "redemption_requested": "redemptions"}


class FakeProducer:
    """Stands in for AIOKafkaProducer: records what is sent; deliveries fail when `fail` is set."""

    def __init__(self, topics: set[str], fail: bool = False) -> None:
        self.topics, self.fail = topics, fail
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.events: list[str] = []
        self.client = SimpleNamespace(fetch_all_metadata=self._metadata)

    async def _metadata(self) -> SimpleNamespace:
        return SimpleNamespace(topics=lambda: set(self.topics))

    async def start(self) -> None:
        self.events.append("start")

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        self.sent.append((topic, key, value))
        future = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(RuntimeError("broker said no"))
        else:
            future.set_result(None)
        return future

    async def flush(self) -> None:
        self.events.append("flush")

    async def stop(self) -> None:
        self.events.append("stop")


def all_topics(prefix: str) -> set[str]:
    return {f"{prefix}{kind}" for kind in INPUT_KINDS}


def events(members: int = 50, count: int = 2000, seed: int = 7, mix: dict | None = None,
           step_ms: float = 10) -> list[tuple[str, bytes, dict]]:
    return [(kind, key, orjson.loads(value))
            for kind, key, value in generate(members, count, seed, mix or DEFAULT_MIX, START, step_ms)]


def test_same_seed_gives_the_same_bytes_and_ids_follow_seed_and_index():
    first = list(generate(50, 2000, 7, DEFAULT_MIX, START, 10))
    assert first == list(generate(50, 2000, 7, DEFAULT_MIX, START, 10))
    assert first != list(generate(50, 2000, 8, DEFAULT_MIX, START, 10))
    assert [orjson.loads(value)["event_id"] for _, _, value in first] == [f"lg-7-{i}" for i in range(2000)]


def test_mix_proportions_over_20k_events():
    counts = Counter(MIX_KIND_OF_TYPE[event["type"]] for _, _, event in events(1000, 20_000))
    total = sum(DEFAULT_MIX.values())
    for kind, weight in DEFAULT_MIX.items():
        assert counts[kind] / 20_000 == pytest.approx(weight / total, abs=0.01), kind


def test_only_the_kinds_in_the_mix_and_a_refund_before_any_order_becomes_an_order():
    generated = events(10, 500, mix=parse_mix("refunds=3,orders=1"))
    assert generated[0][2]["type"] == "order_paid"
    assert {event["type"] for _, _, event in generated} == {"order_paid", "order_refunded"}


def test_every_event_is_valid_keyed_by_member_and_timed_from_start():
    generated = list(generate(50, 5000, 3, DEFAULT_MIX, START, 2.5))
    for index, (kind, key, value) in enumerate(generated):
        event = decode_event(kind, key, value, now_ms=START + 5000 * 3)
        assert not isinstance(event, Rejection), (index, event)
        assert key == event["member_id"].encode()
        assert event["member_id"] in {f"m{i:02d}" for i in range(50)}
        assert datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000 == START + int(index * 2.5)


def test_refunds_and_reviews_refer_to_earlier_orders_of_the_same_member():
    paid: dict[str, tuple[str, int]] = {}  # order id -> (member, cents)
    refunded: Counter[str] = Counter()
    reviewed: set[str] = set()
    kinds = Counter()
    for kind, _, event in events(200, 20_000, seed=11):
        kinds[event["type"]] += 1
        if event["type"] == "order_paid":
            assert kind == "orders" and event["amount_cents"] == sum(
                item["price_cents"] * item["quantity"] for item in event["items"])
            paid[event["order_id"]] = (event["member_id"], event["amount_cents"])
        elif event["type"] == "order_refunded":
            member, cents = paid[event["order_id"]]
            assert kind == "orders" and member == event["member_id"]
            refunded[event["order_id"]] += event["refund_cents"]
            assert refunded[event["order_id"]] <= cents
        elif event["type"] == "review_posted":
            assert kind == "reviews" and paid[event["order_id"]][0] == event["member_id"]
            assert event["order_id"] not in reviewed
            reviewed.add(event["order_id"])
    assert kinds["order_refunded"] > 500 and kinds["review_posted"] > 500


@pytest.mark.parametrize(("text", "error"), [
    ("logins=1,dances=2", "dances=2"), ("orders", "orders"), ("orders=x", "not a number"),
    ("orders=-1", ">= 0"), ("orders=0", "positive"),
])
def test_parse_mix_rejects(text, error):
    with pytest.raises(ValueError, match=error):
        parse_mix(text)


def test_parse_mix_defaults_missing_kinds_to_zero():
    assert parse_mix(" orders=3, logins=1 ") == {**dict.fromkeys(DEFAULT_MIX, 0.0), "orders": 3.0, "logins": 1.0}
    assert parse_mix(",".join(f"{k}={w}" for k, w in DEFAULT_MIX.items())) == DEFAULT_MIX


async def test_produce_sends_to_prefixed_topics_and_reports_progress():
    fake = FakeProducer(all_topics("p."))
    seen: list[int] = []
    messages = list(generate(5, 2500, 1, DEFAULT_MIX, START, 0))
    result = await produce(messages, "unused:9092", "p.", progress=seen.append, producer=fake)
    assert (result.sent, result.failed, result.first_error) == (2500, 0, None)
    assert fake.sent == [(f"p.{kind}", key, value) for kind, key, value in messages]
    assert fake.events == ["start", "flush", "stop"]
    assert seen == [1000, 2000]


async def test_produce_paces_to_the_rate():
    fake = FakeProducer(all_topics("p."))
    started = time.monotonic()
    result = await produce(generate(5, 300, 1, DEFAULT_MIX, START, 0), "x", "p.", rate=1000, producer=fake)
    assert result.sent == 300 and time.monotonic() - started >= 0.29


async def test_produce_counts_failed_deliveries():
    fake = FakeProducer(all_topics("p."), fail=True)
    result = await produce(generate(5, 10, 1, DEFAULT_MIX, START, 0), "x", "p.", producer=fake)
    assert (result.sent, result.failed, result.first_error) == (10, 10, "RuntimeError: broker said no")


async def test_produce_refuses_missing_topics_before_sending():
    fake = FakeProducer(all_topics("p.") - {"p.admin"})
    with pytest.raises(MissingTopics, match="p.admin"):
        await produce(generate(5, 10, 1, DEFAULT_MIX, START, 0), "x", "p.", producer=fake)
    assert fake.sent == [] and fake.events == ["start", "stop"]


def test_progress_line_has_count_rate_and_eta_and_is_throttled():
    now = [100.0]
    out = io.StringIO()
    progress = Progress(1000, out, interval=0.5, clock=lambda: now[0])
    now[0] = 100.2
    progress(100)  # too soon: nothing drawn
    now[0] = 101.0
    progress(250)
    now[0] = 104.0
    progress.finish(1000)
    assert out.getvalue().splitlines() == [
        " 250/1000  25.0%  250 events/s  ETA 0:00:03   ",
        "1000/1000 100.0%  250 events/s  ETA done   ",
    ]


def test_generation_is_fast():
    started = time.perf_counter()
    count = sum(1 for _ in generate(100_000, 50_000, 1, DEFAULT_MIX, START, 0))
    rate = count / (time.perf_counter() - started)
    assert rate > 20_000  # ~250k/s on a quiet machine; a low bar so that a busy CI box passes


def test_memory_grows_with_members_not_with_events():
    tracemalloc.start()
    try:
        for _ in generate(100, 50_000, 1, DEFAULT_MIX, START, 0):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # the 50,000 values alone take ~8.5 MB

"""One history, one ledger: the same events, published live with producer jitter below the grace or
left as a backlog before a fresh worker starts, give the same member states and the same rewards.

The history is drawn from a seed: members whose events span every input topic, with the races the
merge must settle (a review published before its order, a redemption racing the adjustment or the
release that pays for it, a share racing a freeze, a refund of a released order). Each topic has its
own producer timeline (an event goes out up to JITTER after its occurred_at, a topic's events in
order), so topics overtake each other by up to JITTER. The program is the seconds-long one
(programs/fast.toml), so releases, expiry and tier grace fall due during the live run by the wall
clock (due ticks) and during the backlog run inside the events' own catch-up.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import BOOTSTRAP, Deployment, event_message, produce, wait_for
from topics.catalog import TopicNames

FAST = str(Path(__file__).parent / "programs" / "fast.toml")
GRACE_S, JITTER_S = 3.0, 1.0
MEMBERS, SEED = 20, 10
REWARD_FIELDS = ("type", "rule", "points", "source_event_id", "reward_id", "balance", "occurred_at")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def history(start_ms: int, seed: int = SEED) -> list[tuple[str, dict]]:
    """(topic kind, event) in occurred_at order: about 15 events per member over ~20 s."""
    rng = random.Random(seed)
    events: list[tuple[int, str, dict]] = []

    def add(kind: str, at: int, member: str, type_: str, **fields) -> str:
        event_id = f"{member}-{len(events)}"
        events.append((at, kind, {"event_id": event_id, "member_id": member, "occurred_at": iso(at),
                                  "type": type_, **fields}))
        return event_id

    for n in range(MEMBERS):
        m, t = f"ev{n:02d}", start_ms + rng.randrange(0, 6000)
        add("members", t, m, "member_joined", birthday=f"0{1 + n % 9}-1{n % 10}")
        add("logins", t + rng.randrange(20, 400), m, "login", device_id=f"dev-{m}")
        paid = t + rng.randrange(300, 1500)
        cents = rng.randrange(5_000, 60_000)
        add("orders", paid, m, "order_paid", order_id=f"{m}-A", amount_cents=cents, currency="CNY")
        add("reviews", paid + rng.randrange(30, 700), m, "review_posted", review_id=f"{m}-rA", order_id=f"{m}-A",
            rating=5, has_media=rng.random() < 0.5)
        add("orders", paid + rng.randrange(100, 900), m, "order_refunded", order_id=f"{m}-A",
            refund_cents=rng.randrange(1, cents // 2))
        adjusted = t + rng.randrange(500, 3000)
        add("admin", adjusted, m, "points_adjusted", operator_id="ops", reason="welcome", points=300)
        add("redemptions", adjusted + rng.randrange(30, 600), m, "redemption_requested",
            redemption_id=f"{m}-R1", points=rng.choice([100, 250, 400]), reward_code="TEA")
        # spends the order's points, released 2 s after payment (fast.toml's return window)
        add("redemptions", paid + 2000 + rng.randrange(10, 500), m, "redemption_requested",
            redemption_id=f"{m}-R2", points=rng.choice([20, 60, 200]), reward_code="MUG")
        if n % 3 == 0:
            frozen = t + rng.randrange(3000, 5000)
            add("admin", frozen, m, "member_frozen", operator_id="ops", reason="check")
            add("shares", frozen + rng.randrange(30, 500), m, "share", share_id=f"{m}-s1", channel="wechat",
                target="x")
            add("admin", frozen + rng.randrange(600, 1200), m, "member_unfrozen", operator_id="ops", reason="ok")
        add("shares", t + rng.randrange(5000, 7000), m, "share", share_id=f"{m}-s2", channel="link", target="y")
        second = paid + rng.randrange(4000, 9000)
        add("orders", second, m, "order_paid", order_id=f"{m}-B", amount_cents=rng.randrange(1_000, 90_000),
            currency="CNY")
        add("reviews", second + rng.randrange(30, 700), m, "review_posted", review_id=f"{m}-rB",
            order_id=f"{m}-B", rating=4, has_media=False)
        add("orders", second + rng.randrange(2100, 4000), m, "order_refunded", order_id=f"{m}-B",
            refund_cents=10**9)  # after its release: taken from available points, bonus reversal if first
        add("logins", second + rng.randrange(0, 3000), m, "login", device_id=f"dev-{m}")
    return [(kind, event) for _, kind, event in sorted(events, key=lambda e: e[0])]


def live_schedule(events: list[tuple[str, dict]], seed: int = SEED) -> list[tuple[float, str, dict]]:
    """(send at, epoch s; kind; event): each topic's producer sends its events in order, each up to
    JITTER_S after it occurred."""
    rng = random.Random(seed + 1)
    last: dict[str, float] = {}
    out = []
    for kind, event in events:
        occurred = datetime.fromisoformat(event["occurred_at"]).timestamp()
        last[kind] = max(last.get(kind, 0.0), occurred + rng.uniform(0, JITTER_S))
        out.append((last[kind], kind, event))
    return sorted(out, key=lambda x: x[0])


def publish_live(prefix: str, schedule: list[tuple[float, str, dict]]) -> float:
    """Send each event at its time; returns the largest delay behind schedule (the test's own jitter)."""

    async def run() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=0)
        await producer.start()
        worst = 0.0
        try:
            for at, kind, event in schedule:
                ahead = at - time.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                worst = max(worst, time.time() - at)
                topic, key, value = event_message(prefix, kind, event)
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        return worst

    return asyncio.run(run())


def create_topics(deployment: Deployment) -> None:
    """The deployment's topics, made before any worker runs (the broker does not create them on use)."""

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            partitions = int(deployment.env["LOYALTY_PARTITIONS"])
            await admin.create_topics([NewTopic(name, partitions, 1) for name in TopicNames(deployment.prefix).all()])
        finally:
            await admin.close()

    asyncio.run(run())


def read_all(topic: str, partitions: int) -> list[dict]:
    """Every record of `topic` up to its current end."""

    async def run() -> list[dict]:
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            records: list[dict] = []
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(orjson.loads(r.value) for r in batch)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(run())


def rewards(deployment: Deployment) -> Counter:
    """The reward multiset of a deployment, deduplicated by reward_id (one content per id is asserted)."""
    by_id: dict[str, dict] = {}
    for reward in read_all(deployment.topic("rewards"), int(deployment.env["LOYALTY_PARTITIONS"])):
        kept = {k: reward[k] for k in REWARD_FIELDS}
        assert by_id.setdefault(kept["reward_id"], kept) == kept, f"one reward id, two contents: {kept}"
    return Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in by_id.values())


def metric(worker, name: str) -> float:
    status, text = worker.get("/metrics")
    assert status == 200
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_live_and_backlog_give_the_same_members_and_rewards(deployment, tmp_path):
    env = {"LOYALTY_RULES": FAST, "LOYALTY_ORDER_GRACE": f"PT{GRACE_S:g}S"}
    live = deployment.worker("live", **env).start()
    backlog_deployment = Deployment(tmp_path / "backlog")
    (tmp_path / "backlog").mkdir()
    try:
        events = history(int((time.time() + 1.5) * 1000))
        members = sorted({e["member_id"] for _, e in events})
        kinds = {kind for kind, _ in events}
        assert kinds == {"orders", "reviews", "shares", "logins", "members", "redemptions", "admin"}
        worst = publish_live(deployment.prefix, live_schedule(events))
        assert worst < GRACE_S - JITTER_S - 0.5, f"the test's producer fell {worst:.2f} s behind its schedule"

        create_topics(backlog_deployment)
        produce(event_message(backlog_deployment.prefix, kind, e) for kind, e in events)  # a backlog...
        replay = backlog_deployment.worker("replay", **env).start()  # ...before a fresh worker starts

        last = max(datetime.fromisoformat(e["occurred_at"]).timestamp() for _, e in events)
        views: dict[str, tuple] = {}

        def settled() -> bool:
            if time.time() < last + 12:  # releases (2 s), expiry (8 s after) and tier grace all fell due
                return False
            views.clear()
            views.update({m: (live.member(m), replay.member(m)) for m in members})
            return all(a is not None and a == b for a, b in views.values())

        wait_for(settled, timeout=60, interval=1,
                 show=lambda: {m: v for m, v in views.items() if v[0] != v[1]})
        found: dict[str, Counter] = {}

        def same_rewards() -> bool:
            found.update(live=rewards(deployment), replay=rewards(backlog_deployment))
            return found["live"] == found["replay"]

        wait_for(same_rewards, timeout=15, interval=1,
                 show=lambda: (found["live"] - found["replay"], found["replay"] - found["live"]))
        live_rewards = found["live"]
        types = Counter(orjson.loads(r)["type"] for r in live_rewards.elements())
        # the history exercised what the order decides: reviews of orders, approved redemptions, clawbacks
        assert types["points_redeemed"] >= MEMBERS // 2 and types["points_clawed_back"] >= 2 * MEMBERS
        assert Counter(orjson.loads(r)["rule"] for r in live_rewards.elements())["reviews"] >= MEMBERS
        for worker in (live, replay):
            assert metric(worker, "loyalty_events_late_total") == 0  # the merge left nothing late
            assert metric(worker, "loyalty_order_forced_total") == 0
    finally:
        backlog_deployment.close()

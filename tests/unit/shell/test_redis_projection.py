"""The Redis projection against a fake Redis: coalescing, erasure, tier moves, outages, resync."""
from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY
from redis import exceptions as redis_errors

from tables.redis_projection import RedisProjection, key_prefix, redact, summarize

T0 = "2025-03-03T10:00:00+08:00"  # not the 18th: no member-day multiplier


class FakeRedis:
    """The few commands the projection uses, on dicts; `down` makes every call fail to connect."""

    def __init__(self, run_id: str = "run-1") -> None:
        self.run_id = run_id
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}
        self.zsets: dict[bytes, dict[bytes, float]] = {}
        self.down = False
        self.hang = False
        self.calls = 0
        self.wrong_type: set[bytes] = set()

    async def _enter(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    async def info(self, section: str) -> dict:
        await self._enter()
        return {"run_id": self.run_id, "redis_version": "6.2.5"}

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    async def aclose(self) -> None:
        pass

    def restart(self, run_id: str) -> None:
        """A restarted server without persistence: empty, with a new run id."""
        self.run_id, self.hashes, self.zsets = run_id, {}, {}

    # what tests look at
    def member(self, prefix: str, member_id: str) -> dict[str, str] | None:
        h = self.hashes.get(f"{prefix}member:{member_id}".encode())
        return {k.decode(): v.decode() for k, v in h.items()} if h else None

    def tier(self, prefix: str, tier: str) -> dict[str, float]:
        return {k.decode(): v for k, v in self.zsets.get(f"{prefix}tier:{tier}".encode(), {}).items()}


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.ops = redis, []

    def __getattr__(self, name):
        return lambda *args, **kw: self.ops.append((name, args, kw))

    async def execute(self, raise_on_error: bool = True) -> list:
        await self.redis._enter()
        return [self._apply(name, *args, **kw) for name, args, kw in self.ops]

    def _apply(self, name, key, *args, **kw):
        r = self.redis
        if key in r.wrong_type:
            return redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        if name == "hget":
            return r.hashes.get(key, {}).get(_b(args[0]))
        if name == "hset":
            r.hashes.setdefault(key, {}).update({_b(k): _b(v) for k, v in kw["mapping"].items()})
            return 1
        if name == "hdel":
            return int(r.hashes.get(key, {}).pop(_b(args[0]), None) is not None)
        if name == "delete":
            return int(r.hashes.pop(key, None) is not None)
        if name == "zadd":
            r.zsets.setdefault(key, {}).update({_b(k): float(v) for k, v in args[0].items()})
            return 1
        if name == "zrem":
            return int(r.zsets.get(key, {}).pop(_b(args[0]), None) is not None)
        raise AssertionError(f"unexpected command {name}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


P = "loyalty-test:"


@pytest.fixture
def fake():
    return FakeRedis()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def proj(fake, clock):
    return RedisProjection("redis://127.0.0.1:6390/0", P, client=fake, clock=clock, batch_size=3, timeout=0.2)


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def expected_hash(state: dict) -> dict[str, str]:
    s = summarize(state)
    return {"member_id": s.member_id, "tier": s.tier, "available": str(s.available), "pending": str(s.pending),
            "lifetime_earned": str(s.lifetime_earned), "frozen": "1" if s.frozen else "0",
            **({"segment": s.segment} if s.segment is not None else {})}


def projected(fake: FakeRedis, member_id: str) -> dict[str, str] | None:
    h = fake.member(P, member_id)
    if h is not None:
        assert int(h.pop("projected_at")) > 0
    return h


# -- the hot path -------------------------------------------------------------------------------

def test_disabled_without_url_records_nothing():
    off = RedisProjection("", P)
    off.member_changed(b"m1", {"anything": 1})
    assert not off.enabled and off.pending == 0


async def test_repeated_changes_coalesce_into_one_write_of_the_latest_state(proj, fake, run):
    r = run(member_id="m1")
    writes = metric("loyalty_redis_projection_writes_total")
    for i in range(5):
        r.login(f"2025-03-0{i + 1}T09:00:00+08:00")
        proj.member_changed(b"m1", r.state)
    assert proj.pending == 1 and fake.calls == 0  # recording touches no Redis
    await proj.step()
    assert projected(fake, "m1") == expected_hash(r.state)
    assert {k: v for k, v in projected(fake, "m1").items() if k != "segment"} == {
        "member_id": "m1", "tier": "bronze", "available": "10", "pending": "0", "lifetime_earned": "10",
        "frozen": "0"}
    assert fake.tier(P, "bronze") == {"m1": 10.0}
    assert metric("loyalty_redis_projection_writes_total") == writes + 1
    assert proj.pending == 0
    assert metric("loyalty_redis_projection_pending") == 0  # the module's own instance: disabled


async def test_many_members_go_out_in_batches(proj, fake, run):
    runs = [run(member_id=f"m{i}") for i in range(10)]
    for r in runs:
        r.order(T0, f"o-{r.member_id}", 12345)
        proj.member_changed(r.member_id.encode(), r.state)
    await proj.step()
    for r in runs:
        assert projected(fake, r.member_id) == expected_hash(r.state)
        assert projected(fake, r.member_id)["pending"] == str(123 + 100)
    assert set(fake.tier(P, "bronze")) == {r.member_id for r in runs}


async def test_erasure_deletes_the_hash_and_the_tier_entry(proj, fake, run):
    r = run(member_id="gone")
    r.login(T0)
    proj.member_changed(b"gone", r.state)
    await proj.step()
    assert projected(fake, "gone") is not None
    proj.member_changed(b"gone", None)
    await proj.step()
    assert projected(fake, "gone") is None
    assert fake.tier(P, "bronze") == {}


async def test_change_then_erase_before_a_flush_only_deletes(proj, fake, run):
    r = run(member_id="brief")
    r.login(T0)
    proj.member_changed(b"brief", r.state)
    proj.member_changed(b"brief", None)
    await proj.step()
    assert fake.hashes == {} and all(not z for z in fake.zsets.values())


async def test_tier_move_leaves_the_old_tier_set(proj, fake, run):
    r = run(member_id="m1")
    r.order(T0, "small", 10000)  # 100 points + 100 first-order bonus: bronze
    proj.member_changed(b"m1", r.state)
    await proj.step()
    assert fake.tier(P, "bronze") == {"m1": 0.0}
    r.order(T0, "big", 100000)  # 1,100 qualifying points: silver
    r.login(T0)
    assert r.member.tier == "silver"
    proj.member_changed(b"m1", r.state)
    await proj.step()
    assert fake.tier(P, "bronze") == {}
    assert fake.tier(P, "silver") == {"m1": 2.0}  # score: available points
    assert projected(fake, "m1")["tier"] == "silver"


async def test_frozen_and_segment_are_projected_when_present(proj, fake, run):
    r = run(member_id="m1")
    r.login(T0)
    state = {**r.state, "frozen": True, "segment": "loyal"}
    proj.member_changed(b"m1", state)
    await proj.step()
    h = projected(fake, "m1")
    assert (h["frozen"], h["segment"]) == ("1", "loyal")
    proj.member_changed(b"m1", r.state | {"segment": None})  # a state without a segment drops the field
    await proj.step()
    assert "segment" not in projected(fake, "m1") and projected(fake, "m1")["frozen"] == "0"


# -- Redis down ---------------------------------------------------------------------------------

async def test_outage_keeps_changes_logs_once_retries_with_backoff_then_catches_up(proj, fake, clock, run,
                                                                                   caplog):
    caplog.set_level(logging.INFO, logger="tables.redis_projection")
    r1, r2 = run(member_id="a"), run(member_id="b")
    r1.login(T0)
    proj.member_changed(b"a", r1.state)
    await proj.step()
    errors = metric("loyalty_redis_projection_errors_total", kind="redis")

    fake.down = True
    r1.share(T0)
    proj.member_changed(b"a", r1.state)
    r2.login(T0)
    proj.member_changed(b"b", r2.state)
    await proj.step()
    assert proj.pending == 2
    assert metric("loyalty_redis_projection_errors_total", kind="redis") == errors + 1
    calls = fake.calls
    for _ in range(5):  # within the backoff: no new attempt
        await proj.step()
    assert fake.calls == calls
    for delay in (0.5, 1.0, 2.0, 4.0, 5.0, 5.0):  # doubling up to the cap
        clock.now += delay - 0.01
        await proj.step()
        assert fake.calls == calls
        clock.now += 0.01
        await proj.step()
        assert fake.calls == calls + 1
        calls = fake.calls
    for _ in range(3):  # more changes during the outage: still one entry per member
        r2.share(T0)
        proj.member_changed(b"b", r2.state)
        await proj.step()
    assert proj.pending == 2
    assert projected(fake, "a")["available"] == "2"  # Redis still has the old value
    outage_logs = [m for m in caplog.messages if "cannot write" in m]
    assert len(outage_logs) == 1, caplog.messages

    fake.down = False
    clock.now += 5.0
    await proj.step()
    assert proj.pending == 0
    assert projected(fake, "a") == expected_hash(r1.state)
    assert projected(fake, "b") == expected_hash(r2.state)
    assert any("answers again" in m for m in caplog.messages)
    # the next outage is logged again, and the backoff starts over
    fake.down = True
    proj.member_changed(b"a", r1.state)
    await proj.step()
    clock.now += 0.5
    calls = fake.calls
    await proj.step()
    assert fake.calls == calls + 1
    assert len([m for m in caplog.messages if "cannot write" in m]) == 2


async def test_failure_mid_flush_keeps_the_unwritten_batches(proj, fake, clock, run):
    runs = [run(member_id=f"m{i}") for i in range(7)]  # 3 batches of 3, 3, 1
    for r in runs:
        r.login(T0)
        proj.member_changed(r.member_id.encode(), r.state)
    real = fake.pipeline
    executed = []

    def failing_after_two_batches(transaction=True):
        pipe = real(transaction)
        execute = pipe.execute

        async def run_it(raise_on_error=True):
            executed.append(1)
            if len(executed) > 4:  # two round trips per batch
                raise redis_errors.TimeoutError("Timeout reading from socket")
            return await execute(raise_on_error)

        pipe.execute = run_it
        return pipe

    fake.pipeline = failing_after_two_batches
    await proj.step()
    written = [r for r in runs if projected(fake, r.member_id)]
    assert len(written) == 6 and proj.pending == 1
    fake.pipeline = real
    clock.now += 1
    await proj.step()
    assert all(projected(fake, r.member_id) == expected_hash(r.state) for r in runs)


async def test_a_hanging_redis_costs_the_flush_its_timeout_not_the_changes(proj, fake, clock, run):
    r = run(member_id="m1")
    r.login(T0)
    proj.member_changed(b"m1", r.state)
    fake.hang = True
    await asyncio.wait_for(proj.step(), timeout=2)  # the projection's own timeout is 0.2 s
    assert proj.pending == 1
    fake.hang = False
    clock.now += 1
    await proj.step()
    assert projected(fake, "m1") == expected_hash(r.state)


async def test_member_refused_by_redis_is_dropped_not_retried_forever(proj, fake, run, caplog):
    a, b = run(member_id="a"), run(member_id="b")
    for r in (a, b):
        r.login(T0)
        proj.member_changed(r.member_id.encode(), r.state)
    fake.wrong_type.add(f"{P}member:a".encode())
    refused = metric("loyalty_redis_projection_errors_total", kind="command")
    await proj.step()
    assert proj.pending == 0
    assert projected(fake, "b") == expected_hash(b.state)
    assert metric("loyalty_redis_projection_errors_total", kind="command") == refused + 1
    assert any("refused 1 members" in m for m in caplog.messages)


async def test_unreadable_state_is_counted_and_skipped(proj, fake, run):
    good = run(member_id="good")
    good.login(T0)
    proj.member_changed(b"bad", {"member_id": "bad"})
    proj.member_changed(b"good", good.state)
    bad = metric("loyalty_redis_projection_errors_total", kind="state")
    await proj.step()
    assert metric("loyalty_redis_projection_errors_total", kind="state") == bad + 1
    assert projected(fake, "good") == expected_hash(good.state) and projected(fake, "bad") is None


# -- resync -------------------------------------------------------------------------------------

def attach_table(proj: RedisProjection, table: dict[bytes, dict], paused: list[bool] | None = None) -> None:
    proj.attach(keys=lambda: iter(list(table)), lookup=table.get,
                paused=lambda: bool(paused and paused[0]))


async def test_rebalance_resync_projects_every_owned_member_and_keeps_erasures(proj, fake, run):
    table = {}
    for i in range(5):
        r = run(member_id=f"m{i}")
        r.login(T0)
        table[f"m{i}".encode()] = r.state
    attach_table(proj, table)
    fake.hashes[f"{P}member:erased".encode()] = {b"tier": b"bronze"}
    fake.zsets[f"{P}tier:bronze".encode()] = {b"erased": 0.0}
    proj.member_changed(b"erased", None)
    proj.member_changed(b"moved-away", table[b"m0"] | {"member_id": "moved-away"})  # not owned any more
    proj.request_resync()
    await proj.step()
    assert {k.decode() for k in fake.hashes} == {f"{P}member:m{i}" for i in range(5)}
    assert all(projected(fake, f"m{i}") == expected_hash(table[f"m{i}".encode()]) for i in range(5))
    assert set(fake.tier(P, "bronze")) == {f"m{i}" for i in range(5)}


async def test_a_restarted_redis_gets_everything_again(proj, fake, clock, run):
    table = {}
    for i in range(4):
        r = run(member_id=f"m{i}")
        r.login(T0)
        table[f"m{i}".encode()] = r.state
        proj.member_changed(f"m{i}".encode(), r.state)
    attach_table(proj, table)
    await proj.step()
    assert len(fake.hashes) == 4
    fake.restart("run-2")  # data gone; nothing changes on the stream side
    clock.now += proj.heartbeat
    await proj.step()  # the heartbeat sees the new run id ...
    await proj.step()  # ... (and writes the resync at the latest on the next step)
    assert all(projected(fake, f"m{i}") == expected_hash(table[f"m{i}".encode()]) for i in range(4))


async def test_nothing_is_written_while_paused(proj, fake, run):
    paused = [True]
    attach_table(proj, {}, paused)
    r = run(member_id="m1")
    r.login(T0)
    proj.member_changed(b"m1", r.state)
    await proj.step()
    assert fake.calls == 0 and proj.pending == 1
    paused[0] = False
    await proj.step()
    assert projected(fake, "m1") == expected_hash(r.state)


async def test_close_writes_what_was_recorded(proj, fake, run):
    r = run(member_id="m1")
    r.login(T0)
    proj.member_changed(b"m1", r.state)
    proj.member_changed(b"x", None)
    await proj.close()
    assert projected(fake, "m1") == expected_hash(r.state)
    await proj.step()  # closed: does nothing
    assert proj.pending == 0


async def test_run_survives_unexpected_errors(fake, clock, run):
    proj = RedisProjection("redis://h:1/0", P, client=fake, clock=clock, interval=0.01)
    proj.attach(keys=lambda: 1 / 0, lookup=lambda key: None)  # a broken table
    proj.request_resync()
    task = asyncio.create_task(proj.run())
    r = run(member_id="m1")
    r.login(T0)
    proj.member_changed(b"m1", r.state)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if projected(fake, "m1"):
            break
    task.cancel()
    assert projected(fake, "m1") == expected_hash(r.state)


def test_key_prefix_and_redacted_url():
    assert key_prefix("loyalty") == "loyalty:"
    assert redact("redis://user:secret@cache.internal:6380/2") == "redis://cache.internal:6380/2"


async def test_close_gives_up_after_its_budget_when_redis_hangs(proj, fake, run, caplog):
    r = run(member_id="m1")
    r.login(T0)
    proj.member_changed(b"m1", r.state)
    fake.hang = True
    await asyncio.wait_for(proj.close(timeout=0.3), timeout=2)
    assert any("not written at shutdown" in m for m in caplog.messages)


async def test_a_refused_health_check_is_an_outage_too(proj, fake, clock, run, caplog):
    r = run(member_id="m1")
    r.login(T0)
    proj.member_changed(b"m1", r.state)
    real_info = fake.info

    async def no_permission(section):
        raise redis_errors.NoPermissionError("NOPERM this user has no permissions to run the 'info' command")

    fake.info = no_permission
    for _ in range(3):
        await proj.step()
        clock.now += 5
    assert proj.pending == 1 and projected(fake, "m1") is None
    assert len([m for m in caplog.messages if "cannot write" in m]) == 1
    fake.info = real_info
    await proj.step()
    assert projected(fake, "m1") == expected_hash(r.state)

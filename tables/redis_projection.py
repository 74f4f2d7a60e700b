"""Each member's current summary, projected to Redis for operators (docs/redis.md).

The processing agent calls `projection.member_changed(key, state)` right after each members-table
write (state None: erased). That call only records the state in a dict of dirty members, so
repeated changes of one member coalesce and nothing on the hot path waits for Redis. A
background task (agents/projection.py) runs `projection.run()`: it summarizes the dirty states
(tier and balances, computed here, not in the agent) and writes them to Redis in pipelined
batches. Redis being down or slow never reaches the stream: failed writes stay pending (one
entry per member, so the backlog is bounded by the member count), the outage is logged once,
retried with backoff, and caught up when Redis answers again.

Key layout under `{app_id}:` (see key_prefix):
  {prefix}member:{member_id}  hash: member_id, tier, available, pending, lifetime_earned,
                              frozen ("1"/"0"), segment (only when the state has one), projected_at
  {prefix}tier:{tier}         sorted set of member ids, score = available points

Convergence: after every rebalance (worker start included) and whenever the Redis server is a
different one (its run_id changed: restart, failover) every member of the partitions this worker
owns is projected again, read from the table at flush time.

This module imports neither Faust nor the app, so tests drive `RedisProjection` with a fake
client; the composition root builds one from LOYALTY_REDIS_URL, a no-op when that is empty.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
from prometheus_client import Counter, Gauge
from redis import exceptions as redis_errors

from stream_app.core.ledger import Ledger

log = logging.getLogger(__name__)

PENDING = Gauge("loyalty_redis_projection_pending",
                "Members changed (or erased) on this worker and not yet written to Redis.")
WRITES = Counter("loyalty_redis_projection_writes",
                 "Members written to (or deleted from) Redis by the projection.")
ERRORS = Counter("loyalty_redis_projection_errors",
                 "Projection failures: kind=redis (a failed attempt to reach or write Redis; the members "
                 "stay pending), command (a member Redis refused, e.g. WRONGTYPE; dropped), state (a member "
                 "state that could not be summarized; dropped).", ["kind"])
for _kind in ("redis", "command", "state"):
    ERRORS.labels(_kind)  # every series exists from the start, at 0

# Errors after which the whole batch is kept and retried later (Redis unreachable, slow, restarting,
# read-only after a failover, out of memory). Any other per-command error is specific to one member.
RETRYABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError,
             redis_errors.OutOfMemoryError, redis_errors.ClusterDownError, redis_errors.TryAgainError,
             TimeoutError, OSError)

# What a whole round trip may fail with (e.g. NOPERM on INFO under an ACL): retried with backoff.
FAILURES = (*RETRYABLE, redis_errors.RedisError)

LOOKUP = object()  # dirty entry without a state: read the member from the table at flush time


class Summary(NamedTuple):
    """What is projected of one member (computed at flush time, about 0.3 KB per pending member)."""

    member_id: str
    tier: str
    available: int
    pending: int
    lifetime_earned: int
    frozen: bool
    segment: str | None


def summarize(state: dict) -> Summary:
    """The projected fields of a stored member state (only the ledger's lots are decoded)."""
    ledger = Ledger.from_dict(state["ledger"])
    segment = state.get("segment")
    if segment is not None and not isinstance(segment, str):
        segment = orjson.dumps(segment).decode()
    return Summary(state["member_id"], state["tier"], ledger.available, ledger.pending, ledger.earned,
                   bool(state.get("frozen")), segment)


def key_prefix(app_id: str) -> str:
    """Every key of one deployment starts with its Faust app id (also its consumer group)."""
    return f"{app_id}:"


def redact(url: str) -> str:
    """host:port/db of a Redis URL, without credentials, for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class RedisProjection:
    def __init__(self, url: str, prefix: str, *, client: Any = None, batch_size: int = 500,
                 interval: float = 0.5, backoff: tuple[float, float] = (0.5, 5.0), heartbeat: float = 5.0,
                 timeout: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = bool(url)
        self.url, self.prefix = url, prefix.encode()
        self.batch_size, self.interval, self.heartbeat, self.timeout = batch_size, interval, heartbeat, timeout
        self._backoff_min, self._backoff_max = backoff
        self._clock = clock
        self._client = client
        self._raw: dict[bytes, Any] = {}  # key -> state dict (as written to the table), None or LOOKUP
        self._ready: dict[bytes, Summary | None] = {}  # key -> summary to write, None to delete
        self._inflight = 0
        self._keys: Callable[[], Iterable[bytes]] = lambda: ()
        self._lookup: Callable[[bytes], dict | None] = lambda key: None
        self._paused: Callable[[], bool] = lambda: False
        self._resync_requested = False
        self._resync_failing = False
        self._run_id: str | None = None
        self._next_check = 0.0
        self._retry_at = 0.0
        self._delay = self._backoff_min
        self._down_since: float | None = None
        self._closing = False
        self._lock = asyncio.Lock()

    # -- the hot path -----------------------------------------------------------------------
    def member_changed(self, member_key: bytes, state: dict | None) -> None:
        """Record a member's new state (None: erased). O(1), never touches Redis.

        `state` is kept by reference: the caller must not mutate it afterwards (the agent builds a
        new dict for every change)."""
        if self.enabled:
            self._raw[member_key] = state

    # -- wiring ------------------------------------------------------------------------------
    def attach(self, *, keys: Callable[[], Iterable[bytes]], lookup: Callable[[bytes], dict | None],
               paused: Callable[[], bool] = lambda: False) -> None:
        """keys(): the member keys this worker owns; lookup(key): a member's current state;
        paused(): true while the worker must not write (rebalancing, tables recovering)."""
        self._keys, self._lookup, self._paused = keys, lookup, paused

    def request_resync(self) -> None:
        """Project every owned member again at the next step (after a rebalance)."""
        self._resync_requested = True

    @property
    def pending(self) -> int:
        """Entries not yet in Redis (a member changed again since it was summarized counts twice)."""
        return len(self._raw) + len(self._ready) + self._inflight

    # -- the background task -----------------------------------------------------------------
    async def run(self) -> None:
        """Flush forever, every `interval` seconds; nothing that goes wrong here leaves this loop."""
        failing = False
        while not self._closing:
            try:
                await self.step()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:
                if not failing:  # once per streak, not every interval
                    log.exception("redis projection: unexpected error; retrying every %.1fs", self.interval)
                failing = True
                ERRORS.labels("redis").inc()
            await asyncio.sleep(self.interval)

    async def step(self) -> None:
        """One cycle: check the server when due, resync when asked, summarize, write."""
        async with self._lock:
            if self._closing or self._paused():
                return
            now = self._clock()
            if now >= self._retry_at and (self._down_since is not None or now >= self._next_check):
                try:
                    await self._check_server()
                except FAILURES as exc:
                    self._failed(exc)
            if self._resync_requested:
                await self._resync()
            await self._summarize(lookups=True)
            if self._ready and self._down_since is None and self._clock() >= self._retry_at:
                try:
                    await self._write_ready()
                except FAILURES as exc:
                    self._failed(exc)

    async def close(self, timeout: float = 3.0) -> None:
        """At shutdown (the consumer has stopped): write what the agent recorded, then disconnect.

        At most `timeout` seconds in all. Members only marked for resync are skipped (the table is
        closed; the next start resyncs them)."""
        if not self.enabled:
            return
        self._closing = True  # the run loop stops after its current step
        try:
            async with asyncio.timeout(timeout), self._lock:
                await self._summarize(lookups=False)
                if self._ready:
                    await self._write_ready()
        except FAILURES as exc:
            log.warning("redis projection: %d members not written at shutdown (%s: %s); they are projected "
                        "again after restart, erasures among them are not", self.pending, type(exc).__name__, exc)
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception:  # closing a dead connection may fail; nothing left to do
                pass

    # -- internals ----------------------------------------------------------------------------
    def _redis(self) -> Any:
        if self._client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # Short timeouts, no client-side retries: the backoff here is the only retry loop.
            self._client = Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                          retry=Retry(NoBackoff(), 0), health_check_interval=0)
        return self._client

    async def _check_server(self) -> None:
        """Ping via INFO server; a new run_id means a different (possibly empty) server: resync."""
        async with asyncio.timeout(self.timeout):
            info = await self._redis().info("server")
        run_id = info.get("run_id")
        if self._run_id is not None and run_id != self._run_id:
            log.warning("redis projection: %s is a different server now (run_id %s -> %s); "
                        "projecting all owned members again", redact(self.url), self._run_id, run_id)
            self._resync_requested = True
        self._run_id = run_id
        self._next_check = self._clock() + self.heartbeat
        self._recovered()

    def _failed(self, exc: BaseException) -> None:
        ERRORS.labels("redis").inc()
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            log.warning("redis projection: cannot write to %s (%s: %s); keeping %d pending members in "
                        "memory and retrying with backoff (up to %.0fs); logged once per outage",
                        redact(self.url), type(exc).__name__, exc, self.pending, self._backoff_max)
        self._retry_at = now + self._delay
        self._delay = min(self._delay * 2, self._backoff_max)

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning("redis projection: %s answers again after %.1fs; catching up %d pending members",
                        redact(self.url), self._clock() - self._down_since, self.pending)
        self._down_since = None
        self._delay = self._backoff_min
        self._retry_at = 0.0

    async def _resync(self) -> None:
        """Replace pending writes by a table read of every owned member, keeping erasures.

        Entries recorded before the resync may belong to partitions this worker no longer owns (the
        new owner projects those), so they are dropped, except erasures: the table no longer has
        those members, so a table read cannot redo them. Entries recorded while the keys are read
        come from partitions owned now and are newer than any table read: kept."""
        self._resync_requested = False
        before, self._raw = self._raw, {}
        marked: list[bytes] = []
        try:
            for key in self._keys():
                marked.append(key)
                if len(marked) % 1000 == 0:
                    await asyncio.sleep(0)  # let the agent run
                    if self._paused():
                        raise _Interrupted
        except Exception as exc:  # e.g. a partition store closed by a rebalance mid-iteration
            before.update(self._raw)
            self._raw = before
            self._resync_requested = True
            if not isinstance(exc, _Interrupted) and not self._resync_failing:
                log.exception("redis projection: cannot list the owned members; retrying every step")
                self._resync_failing = True
            return
        self._resync_failing = False
        since, self._raw = self._raw, {k: v for k, v in before.items() if v is None}
        self._ready = {k: v for k, v in self._ready.items() if v is None}
        for key in marked:
            self._raw[key] = LOOKUP
        self._raw.update(since)
        log.info("redis projection: %d owned members marked for projection", len(marked))

    async def _summarize(self, *, lookups: bool) -> None:
        """Turn recorded states into summaries, `batch_size` at a time, yielding in between."""
        raw, self._raw = self._raw, {}
        items = list(raw.items())
        bad: list[tuple[bytes, Exception]] = []
        for start in range(0, len(items), self.batch_size):
            if start and not self._closing:
                await asyncio.sleep(0)  # let the agent run
                if self._paused():
                    for key, value in items[start:]:  # put back; anything recorded meanwhile is newer
                        self._raw.setdefault(key, value)
                    break
            for key, value in items[start:start + self.batch_size]:
                if key in self._raw:  # recorded again meanwhile: that one is newer
                    continue
                try:
                    if value is LOOKUP:
                        if not lookups:
                            continue
                        value = self._lookup(key)
                        if value is None:  # gone since it was marked (its erasure is recorded)
                            continue
                    self._ready[key] = None if value is None else summarize(value)
                except Exception as exc:
                    bad.append((key, exc))
        if bad:
            ERRORS.labels("state").inc(len(bad))
            key, exc = bad[0]
            log.error("redis projection: %d member states could not be summarized and are not projected; "
                      "first: %r (%s: %s)", len(bad), key, type(exc).__name__, exc)

    async def _write_ready(self) -> None:
        """Write all summaries in pipelined batches; on a retryable error keep the unwritten ones."""
        ready, self._ready = self._ready, {}
        items = list(ready.items())
        try:
            for start in range(0, len(items), self.batch_size):
                self._inflight = len(items) - start
                if start and self._paused() and not self._closing:
                    self._requeue(items[start:])  # a rebalance started: its resync decides what is left
                    return
                try:
                    await self._write_batch(items[start:start + self.batch_size])
                except BaseException:
                    self._requeue(items[start:])
                    raise
        finally:
            self._inflight = 0

    def _requeue(self, items: list[tuple[bytes, Summary | None]]) -> None:
        unsent = dict(items)
        unsent.update(self._ready)  # summarized meanwhile: newer
        self._ready = unsent

    async def _write_batch(self, batch: list[tuple[bytes, Summary | None]]) -> None:
        """Two round trips: read each member's projected tier, then replace hash and tier-set entry."""
        client, p = self._redis(), self.prefix
        async with asyncio.timeout(self.timeout):
            pipe = client.pipeline(transaction=False)
            for key, _ in batch:
                pipe.hget(p + b"member:" + key, "tier")
            olds = await pipe.execute(raise_on_error=False)
        now_ms = str(int(time.time() * 1000))
        pipe = client.pipeline(transaction=False)
        spans: list[tuple[bytes, int, int]] = []  # member, its first command, end
        refused: list[tuple[bytes, Exception]] = []
        count = 0
        for (key, summary), old in zip(batch, olds, strict=True):
            if isinstance(old, Exception):
                if isinstance(old, RETRYABLE):
                    raise old
                refused.append((key, old))
                continue
            # Order matters for partial failures: the hash's tier always names the set to clean up.
            hkey, first = p + b"member:" + key, count
            new_tier = None if summary is None else summary.tier.encode()
            if old is not None and old != new_tier:
                pipe.zrem(p + b"tier:" + old, key)
                count += 1
            if summary is None:
                pipe.delete(hkey)
                count += 1
            else:
                fields = {"member_id": summary.member_id, "tier": summary.tier, "available": summary.available,
                          "pending": summary.pending, "lifetime_earned": summary.lifetime_earned,
                          "frozen": "1" if summary.frozen else "0", "projected_at": now_ms}
                if summary.segment is not None:
                    fields["segment"] = summary.segment
                pipe.hset(hkey, mapping=fields)
                count += 1
                if summary.segment is None:
                    pipe.hdel(hkey, "segment")
                    count += 1
                pipe.zadd(p + b"tier:" + new_tier, {key: summary.available})
                count += 1
            spans.append((key, first, count))
        results: list = []
        if count:
            async with asyncio.timeout(self.timeout):
                results = await pipe.execute(raise_on_error=False)
        written = 0
        for key, first, end in spans:
            errors = [r for r in results[first:end] if isinstance(r, Exception)]
            retryable = [e for e in errors if isinstance(e, RETRYABLE)]
            if retryable:
                raise retryable[0]
            if errors:
                refused.append((key, errors[0]))
            else:
                written += 1
        WRITES.inc(written)
        if refused:
            ERRORS.labels("command").inc(len(refused))
            key, exc = refused[0]
            log.error("redis projection: Redis refused %d members (dropped until they change again); "
                      "first: %r (%s: %s)", len(refused), key, type(exc).__name__, exc)


class _Interrupted(Exception):
    """A rebalance started while the owned keys were being read."""


"""Load generation: a reproducible stream of valid input events, and a batching, paced producer.

`generate` is pure: the same arguments give the same (topic kind, key, value) sequence, byte for
byte. It keeps only the few most recent orders of each member (refunds and reviews refer to them),
never the events it has yielded.
"""
from __future__ import annotations

import asyncio
import random
import sys
import time
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from topics.catalog import INPUT_KINDS, TopicNames

#: Mix kinds and the input topic kind each one is sent to.
TOPIC_OF_MIX = {"logins": "logins", "orders": "orders", "refunds": "orders", "shares": "shares",
                "reviews": "reviews", "redemptions": "redemptions"}
DEFAULT_MIX = {"logins": 60.0, "orders": 20.0, "refunds": 5.0, "shares": 8.0, "reviews": 5.0, "redemptions": 2.0}
CATEGORIES = ("apparel", "electronics", "books", "grocery", "beauty", "home", "toys", "sports")
CHANNELS = ("wechat", "weibo", "qq", "link", "email")
DEVICES = ("phone", "web", "tablet")
REWARDS = (("COUPON10", 100), ("COUPON50", 500), ("FREESHIP", 200), ("GIFTCARD100", 1000))
ORDERS_KEPT = 5  # most recent orders remembered per member
RECENT_BUYERS = 1024  # members who ordered lately: where a refund or review goes when its member has no order

Message = tuple[str, bytes, bytes]


def parse_mix(text: str) -> dict[str, float]:
    """`logins=60,orders=20,...` as weights by kind; kinds left out weigh 0."""
    mix = dict.fromkeys(TOPIC_OF_MIX, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in TOPIC_OF_MIX:
            raise ValueError(f"{part!r}: expected KIND=WEIGHT with KIND one of {', '.join(TOPIC_OF_MIX)}")
        try:
            mix[kind] = float(weight)
        except ValueError:
            raise ValueError(f"{part!r}: weight is not a number") from None
        if not mix[kind] >= 0:
            raise ValueError(f"{part!r}: weight must be >= 0")
    if not sum(mix.values()) > 0:
        raise ValueError("the mix needs at least one positive weight")
    return mix


#: An order remembered: (index of its order_paid event, which names it; refundable cents; reviewed).
_Order = tuple[int, int, bool]


class _Members:
    """The generator's memory: each member's recent orders and a ring of recent buyers.

    Orders are plain tuples of atoms, which the garbage collector stops tracking: a
    100,000-member run then adds no work to each full collection.
    """

    def __init__(self) -> None:
        self.orders: dict[int, tuple[_Order, ...]] = {}
        self.buyers: list[int] = []
        self.next_slot = 0

    def add(self, member: int, order: _Order) -> None:
        self.orders[member] = (*self.orders.get(member, ())[1 - ORDERS_KEPT:], order)
        if len(self.buyers) < RECENT_BUYERS:
            self.buyers.append(member)
        else:
            self.buyers[self.next_slot] = member
            self.next_slot = (self.next_slot + 1) % RECENT_BUYERS

    def order_for(self, kind: str, member: int, pick: float) -> _Order | None:
        """A refund's order (drawn by `pick` in [0, 1)) or a review's (the newest not reviewed)."""
        orders = self.orders.get(member)
        if not orders:
            return None
        if kind == "refunds":
            return orders[int(pick * len(orders))]
        return next((order for order in reversed(orders) if not order[2]), None)

    def replace(self, member: int, order: _Order, new: _Order | None) -> None:
        """Replace one of the member's orders, or forget it (`new` None)."""
        orders = self.orders[member]
        at = orders.index(order)
        self.orders[member] = orders[:at] + ((new,) if new else ()) + orders[at + 1:]


def generate(members: int, events: int, seed: int, mix: dict[str, float], start_ms: int,
             step_ms: float) -> Iterator[Message]:
    """`events` valid input events of `members` members: (topic kind, member id key, JSON value).

    Event `i` occurs at `start_ms + int(i * step_ms)` and its ids derive from `seed` and `i`.
    Refunds and reviews refer to an earlier order of their member (a recent buyer's when the
    drawn member has none; an order instead while nobody has ordered yet).
    """
    if members < 1 or events < 0:
        raise ValueError("members must be >= 1 and events >= 0")
    weighted = [(kind, float(w)) for kind, w in mix.items() if w > 0]
    if not weighted or set(mix) - set(TOPIC_OF_MIX):
        raise ValueError(f"mix needs positive weights of {', '.join(TOPIC_OF_MIX)}; got {mix}")
    kinds = [kind for kind, _ in weighted]
    bounds, total = [], 0.0
    for _, weight in weighted:
        total += weight
        bounds.append(total)
    rng = random.Random(seed)
    rand, lognormal = rng.random, rng.lognormvariate
    memory = _Members()
    width = len(str(members - 1))
    stamp_second, stamp_prefix = None, ""
    for index in range(events):
        kind = kinds[min(bisect(bounds, rand() * total), len(kinds) - 1)]
        member = int(rand() * members)
        order = None
        if kind in ("refunds", "reviews"):
            pick = rand()
            order = memory.order_for(kind, member, pick)
            if order is None and memory.buyers:
                member = memory.buyers[int(pick * len(memory.buyers))]
                order = memory.order_for(kind, member, pick)
            if order is None:
                kind = "orders"
        member_id = f"m{member:0{width}d}"
        at_ms = start_ms + int(index * step_ms)
        second, milli = divmod(at_ms, 1000)
        if second != stamp_second:
            stamp_second, stamp_prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event: dict[str, Any] = {"event_id": f"lg-{seed}-{index}", "member_id": member_id,
                                 "occurred_at": f"{stamp_prefix}.{milli:03d}Z"}
        if kind == "logins":
            event.update(type="login", device_id=f"{member_id}-{DEVICES[int(rand() * len(DEVICES))]}")
        elif kind == "orders":
            items = []
            for _ in range(1 + int(rand() ** 3 * 4)):
                price = min(500_000, max(100, int(lognormal(8.0, 1.0))))
                items.append({"sku": f"SKU-{int(rand() * 5000):04d}",
                              "category": CATEGORIES[int(rand() * len(CATEGORIES))],
                              "quantity": 1 if rand() < 0.8 else 2 + int(rand() * 3), "price_cents": price})
            amount = sum(item["price_cents"] * item["quantity"] for item in items)
            memory.add(member, (index, amount, False))
            event.update(type="order_paid", order_id=f"O-{seed}-{index}", amount_cents=amount, currency="CNY",
                         items=items)
        elif kind == "refunds":
            order_index, refundable, reviewed = order
            cents = refundable if rand() < 0.5 else 1 + int(rand() * refundable)
            memory.replace(member, order, (order_index, refundable - cents, reviewed) if refundable > cents else None)
            event.update(type="order_refunded", order_id=f"O-{seed}-{order_index}", refund_cents=cents)
        elif kind == "reviews":
            memory.replace(member, order, (order[0], order[1], True))
            event.update(type="review_posted", review_id=f"RV-{seed}-{index}", order_id=f"O-{seed}-{order[0]}",
                         rating=5 - int(rand() ** 2 * 5), has_media=rand() < 0.3)
        elif kind == "shares":
            event.update(type="share", share_id=f"S-{seed}-{index}", channel=CHANNELS[int(rand() * len(CHANNELS))],
                         target=f"SKU-{int(rand() * 5000):04d}")
        else:
            code, points = REWARDS[int(rand() * len(REWARDS))]
            event.update(type="redemption_requested", redemption_id=f"RD-{seed}-{index}", points=points,
                         reward_code=code)
        yield TOPIC_OF_MIX[kind], member_id.encode(), orjson.dumps(event)


class Progress:
    """A one-line progress report (count/total, rate, ETA) redrawn at most every `interval` seconds."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.stream, self.interval, self.clock = total, stream or sys.stderr, interval, clock
        self.started = self.last = clock()
        self.end = "\r" if self.stream.isatty() else "\n"

    def __call__(self, done: int) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._draw(done, now)

    def finish(self, done: int) -> None:
        self._draw(done, self.clock())
        if self.end == "\r":
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, done: int, now: float) -> None:
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        if done >= self.total:
            eta = "done"
        elif rate:
            seconds = int((self.total - done) / rate)
            eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        else:
            eta = "?"
        percent = 100 * done / self.total if self.total else 100.0
        self.stream.write(f"{done:>{len(str(self.total))}}/{self.total} {percent:5.1f}%  "
                          f"{rate:,.0f} events/s  ETA {eta}   {self.end}")
        self.stream.flush()


class MissingTopics(RuntimeError):
    """Input topics that do not exist (the worker declares them when it starts)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a produce run did: messages handed over, deliveries that failed, wall-clock seconds."""

    sent: int
    failed: int
    seconds: float
    first_error: str | None = None


class _Deliveries:
    """Futures of sent messages, checked in bulk (cheaper than a callback on each)."""

    def __init__(self) -> None:
        self.unsettled: list[asyncio.Future] = []
        self.failed = 0
        self.first_error: str | None = None

    def settle(self) -> None:
        """Count the failures among the futures that are done; keep the others."""
        waiting = []
        for future in self.unsettled:
            if not future.done():
                waiting.append(future)
                continue
            error = asyncio.CancelledError() if future.cancelled() else future.exception()
            if error is not None:
                self.failed += 1
                self.first_error = self.first_error or f"{type(error).__name__}: {error}"
        self.unsettled = waiting


async def produce(messages: Iterable[Message], bootstrap: str, prefix: str, rate: float | None = None,
                  progress: Callable[[int], None] | None = None, producer: Any = None,
                  client_options: Mapping[str, Any] | None = None, kinds: tuple[str, ...] = INPUT_KINDS) -> Delivery:
    """Send (topic kind, key, value) messages to `prefix`+kind topics, at `rate` per second if given.

    Messages are batched (linger 10 ms) and not awaited one by one; every delivery is checked
    before returning. Raises LoginFailed (stream_app.kafka_security) unless the broker accepts
    `client_options` (security), and MissingTopics before sending anything unless every topic of
    `kinds` (the input topics) exists. `producer` replaces the AIOKafkaProducer built from `bootstrap` (tests).
    """
    if producer is None:
        from aiokafka import AIOKafkaProducer

        from stream_app.kafka_security import check_login

        await check_login(bootstrap, client_options or {})
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="loyalty-loadgen", acks=1,
                                    linger_ms=10, max_batch_size=256 * 1024, **(client_options or {}))
    names = TopicNames(prefix)
    topics = {kind: names.name(kind) for kind in kinds}
    deliveries = _Deliveries()
    every = max(1, min(1000, int(rate / 100))) if rate else 1000
    sent, started = 0, time.monotonic()
    await producer.start()
    try:
        missing = sorted(set(topics.values()) - (await producer.client.fetch_all_metadata()).topics())
        if missing:
            raise MissingTopics(f"no topic {', '.join(missing)}: is the prefix right, has a worker started?")
        for kind, key, value in messages:
            deliveries.unsettled.append(await producer.send(topics[kind], value, key=key))
            sent += 1
            if sent % every == 0:
                ahead = sent / rate - (time.monotonic() - started) if rate else 0.0
                await asyncio.sleep(max(0.0, ahead))  # also lets the sender and progress run
                deliveries.settle()
                if progress:
                    progress(sent)
        await producer.flush()
        deliveries.settle()
    finally:
        await producer.stop()
    return Delivery(sent, deliveries.failed, time.monotonic() - started, deliveries.first_error)

"""The long-history workload: a year of a platform, reproducible by seed (`bench.run --workload year`).

At `--scale 1`: 20,000 heavy members and 200,000 light members over the 365 days ending a minute
before the run. A heavy member's day is the issue's heavy use: a login, two orders, two shares and a
review of one of that day's orders (6 events). Heavy member k (0-based) is active on the last
`days(k) = round(365 ** ((k + 1) / heavy))` days: log-uniform from 1 day to the whole year, so every
history length from a few events to about 2,200 is represented (about 6.1 % of heavy members have a
year's worth of more than 2,000 events, 13 % more than 1,000, half fewer than 110). A light member
has 1-3 events (login 60 %, order 30 %, share 10 %) on random days. At scale 1 that is about
7.8 million events; `--scale` multiplies both member counts (0.05: about 390,000 events).

Member ids are those of `stream_app.loadgen.generate` over `heavy + light` members (`m` and a
zero-padded index, heavy members first), so the latency runs, which draw from that generator, hit
the same warm members. Events are yielded in event-time order (each day sorted by time).
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.loadgen import CATEGORIES, CHANNELS, DEVICES, Message

DAYS = 365
DAY_MS = 86_400_000
HEAVY, LIGHT = 20_000, 200_000
HEAVY_DAY = ("logins", "orders", "shares", "orders", "shares", "reviews")  # in this order within the day
LIGHT_KINDS = (("logins", 0.6), ("orders", 0.9), ("shares", 1.0))  # cumulative weights
#: History-length buckets (events of the member before the measured ones) for the CPU-per-event probes.
BUCKETS = ((0, 9), (10, 99), (100, 299), (300, 999), (1000, 10_000))


@dataclass(frozen=True, slots=True)
class YearPlan:
    heavy: int
    light: int
    seed: int
    end_ms: int  # the instant the year ends (epoch ms)

    @classmethod
    def at_scale(cls, scale: float, seed: int, end_ms: int) -> YearPlan:
        if not scale > 0:
            raise ValueError("--scale must be positive")
        return cls(max(1, round(HEAVY * scale)), max(1, round(LIGHT * scale)), seed, end_ms)

    @property
    def members(self) -> int:
        return self.heavy + self.light

    def member_id(self, index: int) -> str:
        return f"m{index:0{len(str(self.members - 1))}d}"

    def heavy_days(self, k: int) -> int:
        return max(1, round(DAYS ** ((k + 1) / self.heavy)))

    def heavy_events(self, k: int) -> int:
        """Events heavy member k has when the year is over."""
        return len(HEAVY_DAY) * self.heavy_days(k)

    def light_events(self, j: int) -> int:
        return 1 + (j * 2_654_435_761 >> 11) % 3

    @property
    def events(self) -> int:
        return sum(self.heavy_events(k) for k in range(self.heavy)) + sum(self.light_events(j)
                                                                          for j in range(self.light))

    def heavy_in(self, low: int, high: int) -> list[int]:
        """Heavy members whose history (events at the end of the year) is within [low, high]."""
        return [k for k in range(self.heavy) if low <= self.heavy_events(k) <= high]

    def messages(self) -> Iterator[Message]:
        """Every event of the year, in event-time order: (topic kind, key, JSON value)."""
        rng = random.Random(self.seed)
        light_days: list[list[tuple[int, str]]] = [[] for _ in range(DAYS)]
        for j in range(self.light):
            for _ in range(self.light_events(j)):
                draw = rng.random()
                kind = next(k for k, bound in LIGHT_KINDS if draw < bound)
                light_days[int(rng.random() * DAYS)].append((self.heavy + j, kind))
        days = [self.heavy_days(k) for k in range(self.heavy)]  # non-decreasing in k
        first_active = self.heavy
        start_ms = self.end_ms - DAYS * DAY_MS
        counter = 0
        for day in range(DAYS):
            while first_active > 0 and days[first_active - 1] >= DAYS - day:
                first_active -= 1
            day_ms = start_ms + day * DAY_MS
            planned: list[tuple[int, int, str, int]] = []  # (at ms, member, kind, order of the day's first order)
            for k in range(first_active, self.heavy):
                times = sorted(day_ms + int(rng.random() * DAY_MS) for _ in HEAVY_DAY)
                for at, kind in zip(times, HEAVY_DAY, strict=True):
                    planned.append((at, k, kind, day))
            for member, kind in light_days[day]:
                planned.append((day_ms + int(rng.random() * DAY_MS), member, kind, day))
            planned.sort()
            first_order: dict[int, str] = {}
            for at, member, kind, _ in planned:
                member_id = self.member_id(member)
                event = _event(rng, kind, member_id, f"yr-{self.seed}-{counter}", at, first_order.get(member))
                if kind == "orders" and member not in first_order:
                    first_order[member] = event["order_id"]
                counter += 1
                yield kind, member_id.encode(), orjson.dumps(event)


def _stamp(at_ms: int) -> str:
    import time

    second, milli = divmod(at_ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))}.{milli:03d}Z"


def _event(rng: random.Random, kind: str, member_id: str, event_id: str, at_ms: int,
           order_of_day: str | None) -> dict[str, Any]:
    """One input event of `kind` (a review refers to the member's first order of the day)."""
    rand = rng.random
    event: dict[str, Any] = {"event_id": event_id, "member_id": member_id, "occurred_at": _stamp(at_ms)}
    if kind == "reviews" and order_of_day is None:
        kind = "shares"  # no order today to review (cannot happen for a heavy day: orders come first)
    if kind == "logins":
        event.update(type="login", device_id=f"{member_id}-{DEVICES[int(rand() * len(DEVICES))]}")
    elif kind == "orders":
        items = []
        for _ in range(1 + int(rand() ** 3 * 4)):
            items.append({"sku": f"SKU-{int(rand() * 5000):04d}", "category": CATEGORIES[int(rand() * len(CATEGORIES))],
                          "quantity": 1 if rand() < 0.8 else 2 + int(rand() * 3),
                          "price_cents": min(500_000, max(100, int(rng.lognormvariate(8.0, 1.0))))})
        event.update(type="order_paid", order_id=f"O-{event_id}", currency="CNY", items=items,
                     amount_cents=sum(i["price_cents"] * i["quantity"] for i in items))
    elif kind == "shares":
        event.update(type="share", share_id=f"S-{event_id}", channel=CHANNELS[int(rand() * len(CHANNELS))],
                     target=f"SKU-{int(rand() * 5000):04d}")
    else:
        event.update(type="review_posted", review_id=f"RV-{event_id}", order_id=order_of_day,
                     rating=5 - int(rand() ** 2 * 5), has_media=rand() < 0.3)
    return event


def probe_messages(plan: YearPlan, bucket: tuple[int, int], count: int, start_ms: int, tag: str) -> list[Message]:
    """`count` events of the heavy day's mix for members whose history is within `bucket`, 1 ms apart from
    `start_ms`, cycling over those members (so each grows by a few events only). The first bucket
    (fewer than 10 events) uses new members, each given one heavy day (6 events)."""
    low, high = bucket
    if low == 0:
        members = [f"probe-{tag}-{i}" for i in range(-(-count // len(HEAVY_DAY)))]
    else:
        members = [plan.member_id(k) for k in plan.heavy_in(low, high)]
    if not members:
        return []
    rng = random.Random(f"{plan.seed}-{tag}-{low}")
    out: list[Message] = []
    first_order: dict[str, str] = {}
    for i in range(count):
        if low == 0:
            member_id, kind = members[i // len(HEAVY_DAY)], HEAVY_DAY[i % len(HEAVY_DAY)]
        else:
            member_id, kind = members[i % len(members)], HEAVY_DAY[(i // len(members)) % len(HEAVY_DAY)]
        event = _event(rng, kind, member_id, f"probe-{tag}-{low}-{i}", start_ms + i, first_order.get(member_id))
        if event["type"] == "order_paid":
            first_order.setdefault(member_id, event["order_id"])
        out.append((kind, member_id.encode(), orjson.dumps(event)))
    return out

"""What one member's history costs the pure core: stored state size and CPU per event, by history length.

A heavy member (a year of ordinary heavy use: a daily login, two orders, two shares and a review a day,
some refunds) is built event by event; at each checkpoint the state's encoded size is read, and the
CPU per event of the next events of that member is measured interleaved with events of new members,
so the two figures come from the same run. Deterministic by seed; no broker.

    python -m bench.member_cost [--days 375] [--program FILE] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from stream_app.core.engine import apply_event
from stream_app.core.program import Program, load_program

DAY_MS = 86_400_000
START_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def heavy_day(member_id: str, day: int, rng: random.Random) -> Iterator[dict]:
    """One day of heavy use: three logins, two orders (one refunded in part now and then), two shares and a
    review: eight events a day, 3,000 in 375 days."""
    base = START_MS + day * DAY_MS
    seq = f"{member_id}-{day}"

    def event(kind: str, n: int, at: int, **fields) -> dict:
        return {"event_id": f"{seq}-{kind}-{n}", "type": kind, "member_id": member_id,
                "occurred_at": _iso(at), **fields}

    for n, hour in enumerate((8, 13, 19)):
        yield event("login", n, base + hour * 3_600_000 + rng.randrange(3_600_000), device_id=f"dev-{rng.randrange(3)}")
    for n in range(2):
        at = base + (10 + 4 * n) * 3_600_000 + rng.randrange(3_600_000)
        yield event("order_paid", n, at, order_id=f"{seq}-o{n}", amount_cents=rng.randrange(1_000, 30_000),
                    currency="CNY", items=[])
    for n in range(2):
        yield event("share", n, base + (12 + 2 * n) * 3_600_000, share_id=f"{seq}-s{n}", channel="wechat",
                    target="https://shop.example/p/1")
    yield event("review_posted", 0, base + 20 * 3_600_000, review_id=f"{seq}-r", order_id=f"{seq}-o0", rating=5,
                    has_media=day % 2 == 1)
    if day % 10 == 3:  # a partial refund of yesterday's second order
        yield event("order_refunded", 0, base + 21 * 3_600_000, order_id=f"{member_id}-{day - 1}-o1",
                    refund_cents=500)


def cpu_per_event(state: dict, events: list[dict], program: Program, rounds: int) -> tuple[float, float, dict]:
    """(µs per heavy event, µs per new-member event, heavy state after), measured interleaved: each of the
    day's events goes to the heavy member and, the same event, to a member that has no history before
    this day (a new member with the same day). Each state goes through orjson as it would through the
    table; `rounds` repeats the day under fresh event ids to smooth the figure."""
    heavy = new = 0.0
    after = state
    for n in range(rounds):
        current, fresh = state, None
        for event in events:
            event = {**event, "event_id": f"{event['event_id']}-r{n}"}
            t0 = time.process_time_ns()
            result = apply_event(orjson.loads(orjson.dumps(current)), event, program)
            orjson.dumps(result.state)
            t1 = time.process_time_ns()
            result_new = apply_event(orjson.loads(orjson.dumps(fresh)) if fresh else None,
                                     {**event, "member_id": "new"}, program)
            orjson.dumps(result_new.state)
            t2 = time.process_time_ns()
            heavy, new = heavy + (t1 - t0), new + (t2 - t1)
            current, fresh = result.state, result_new.state
        after = current
    count = len(events) * rounds
    return heavy / count / 1000, new / count / 1000, after


def run(days: int, program: Program, seed: int, checkpoints: tuple[int, ...], rounds: int = 20) -> list[dict]:
    rng = random.Random(seed)
    state: dict | None = None
    rows, applied = [], 0
    for day in range(days):
        events = list(heavy_day("heavy", day, rng))
        if day + 1 in checkpoints and state is not None:
            heavy_us, new_us, state = cpu_per_event(state, events, program, rounds)
            applied += len(events)
            size = len(orjson.dumps(state))
            rows.append({"day": day + 1, "events": applied, "state_bytes": size,
                         "heavy_us_per_event": round(heavy_us, 1), "new_member_us_per_event": round(new_us, 1),
                         "ratio": round(heavy_us / new_us, 2)})
            print(f"day {day + 1:4d}  events {applied:6d}  state {size:8d} B  heavy {heavy_us:8.1f} µs/event"
                  f"  new member {new_us:6.1f} µs/event  ratio {heavy_us / new_us:6.2f}", flush=True)
            continue
        for event in events:
            state = apply_event(state, event, program).state
            applied += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=375)
    parser.add_argument("--program", default="", help="program file (default: the packaged program)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    checkpoints = tuple(d for d in (1, 30, 90, 180, 270, args.days) if d <= args.days)
    rows = run(args.days, load_program(args.program), args.seed, checkpoints)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

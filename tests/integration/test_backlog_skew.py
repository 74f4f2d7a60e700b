"""A skewed backlog on the real broker: the event-time merge paces the fetcher (agents/intake.py `_pace`).

Sixty days of history, published as a backlog before the worker starts: a dense topic (logins, four a
day per member) and sparse ones (orders, refunds and reviews every few days, a share a day) over the
same days. The fetcher reads every topic partition at about the same rate in records, so the sparse
topics run weeks ahead of the logins in event time. Unpaced, what they read ahead filled the merge's
cap (20,000 held events then), which forced events out of order, some behind their member's clock by more
than the 30-day dedupe window: refused as stale. The drain takes over 30 s here, so the due messages
the schedule sends meanwhile (dated now) must wait for the topics still delivering older events: with a
stall counted from their arrival they went after 30 s and moved their members' clocks past the unread
events (3,718 stalled, 282 stale, 72 of 300 members wrong); and one due message per member covers what
the backlog leaves due, not one per member per tick. Paced, the worker must apply the backlog in event-time
order: nothing forced by the cap, nothing dead-lettered, and every member's points, tier and segment
equal to the pure core's on the same history in event-time order.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

from stream_app.core.engine import advance_member, apply_to_member, event_time_ms
from stream_app.core.program import default_program_text, parse_program
from stream_app.core.read_model import member_view
from tests.integration.harness import event_message, produce, wait_for
from tests.integration.test_event_order import create_topics, iso, metric, read_all

MEMBERS, DAYS, SEED = 300, 60, 21
DAY_MS = 86_400_000
COMPARED = ("points", "tier", "segment", "frozen")


def history(start_ms: int) -> list[tuple[str, dict]]:
    """(topic kind, event) in occurred_at order, as a platform publishes them live (the merge takes a
    topic partition to be in time order)."""
    rng = random.Random(SEED)
    events = [item for n in range(MEMBERS) for item in _member_history(rng, f"sk{n:03d}", start_ms)]
    return sorted(events, key=lambda kind_event: event_time_ms(kind_event[1]))


def _member_history(rng: random.Random, member: str, start_ms: int) -> list[tuple[str, dict]]:
    """One member's DAYS: four logins and a share a day, an order (a review, maybe a refund) every fourth;
    each event at an instant of its own (no ties across topics)."""
    events: list[tuple[str, dict]] = []
    used: set[int] = set()

    def add(kind: str, at: int, type_: str, **fields) -> None:
        while at in used:
            at += 1
        used.add(at)
        events.append((kind, {"event_id": f"{member}-{len(used)}", "member_id": member, "occurred_at": iso(at),
                              "type": type_, **fields}))

    add("members", start_ms + rng.randrange(0, 3_600_000), "member_joined")
    for day in range(DAYS):
        midnight = start_ms + day * DAY_MS + 4 * 3_600_000
        for _ in range(4):
            add("logins", midnight + rng.randrange(0, 20 * 3_600_000), "login", device_id=f"dev-{member}")
        add("shares", midnight + rng.randrange(0, 20 * 3_600_000), "share", share_id=f"{member}-s{day}",
            channel="wechat", target="x")
        if day % 4 == 1:
            paid, order = midnight + rng.randrange(0, 8 * 3_600_000), f"{member}-o{day}"
            cents = rng.randrange(5_000, 80_000)
            add("orders", paid, "order_paid", order_id=order, amount_cents=cents, currency="CNY")
            add("reviews", paid + DAY_MS, "review_posted", review_id=f"{order}-r", order_id=order, rating=5,
                has_media=rng.random() < 0.3)
            if rng.random() < 0.2:
                add("orders", paid + 2 * DAY_MS, "order_refunded", order_id=order, refund_cents=rng.randrange(1, cents))
    return events


def expected(events: list[tuple[str, dict]], now: int) -> dict[str, dict]:
    """Each member's view from the pure core: its events (`history` gives them in event-time order), then
    its due work to `now`."""
    program = parse_program(default_program_text())
    by_member: dict[str, list[dict]] = {}
    for _, event in events:
        by_member.setdefault(event["member_id"], []).append(event)
    views = {}
    for member_id, own in by_member.items():
        member = None
        for event in own:
            member, _ = apply_to_member(member, event, program)
        advance_member(member, program, now)
        view = member_view(member.to_dict(), program, now)
        views[member_id] = {key: view[key] for key in COMPARED}
    return views


def test_a_skewed_backlog_is_applied_in_event_time_order(deployment):
    start = int(time.time() * 1000) - 100 * DAY_MS  # ends 40 days ago: no due work falls near the test's now
    events = history(start)
    dense = sum(kind == "logins" for kind, _ in events)
    assert dense > 2 * (len(events) - dense) > 40_000  # sparse topics alone would fill the merge's cap
    create_topics(deployment)
    produce(event_message(deployment.prefix, kind, event) for kind, event in events)
    worker = deployment.worker().start()

    paused, done = [], threading.Event()

    def watch() -> None:  # the gauge, sampled while the backlog drains
        while not done.is_set():
            try:
                paused.append(metric(worker, "loyalty_order_paused_partitions"))
            except Exception:  # the worker's web server is not up yet
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        want = expected(events, int(time.time() * 1000))
        seen: dict[str, dict | None] = {}

        def compared(member_id: str) -> dict | None:
            view = worker.member(member_id)
            return view and {key: view[key] for key in COMPARED}

        def settled() -> bool:
            seen.update({m: compared(m) for m in want if seen.get(m) != want[m]})
            return all(seen.get(m) == view for m, view in want.items())

        wait_for(settled, timeout=150, interval=2,
                 show=lambda: (sum(seen.get(m) != want[m] for m in want), forced(worker), dead_letters(deployment),
                               {m: (seen.get(m), want[m]) for m in list(want)[:3] if seen.get(m) != want[m]}))
    finally:
        done.set()
        watcher.join()
    assert forced(worker) == {}
    assert max(paused) > 0, "the merge never paused a topic partition: the backlog was not skewed"
    assert dead_letters(deployment) == Counter()
    # The backlog leaves every member due in the wall clock's past after each of its events; the due
    # message sent first covers all of it while it waits in the merge (before the schedule held members
    # with a message in flight, each tick sent every member again: 9,752 messages for 300 members).
    assert metric(worker, "loyalty_due_sent_total") <= 2 * MEMBERS


def forced(worker) -> dict[str, float]:
    """loyalty_order_forced_total by reason, the reasons with a count only."""
    status, text = worker.get("/metrics")
    assert status == 200
    counts = {line.split('reason="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("loyalty_order_forced_total{")}
    return {reason: count for reason, count in counts.items() if count}


def dead_letters(deployment) -> Counter:
    """The dead-letter topic's records by reason."""
    letters = read_all(deployment.topic("dead-letters"), int(deployment.env["LOYALTY_PARTITIONS"]))
    return Counter(letter.get("error") for letter in letters)

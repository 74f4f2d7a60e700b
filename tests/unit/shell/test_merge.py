"""The event-time merge (agents/merge.py) on its own: a fake clock, a fake lag, plain items."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.merge import EventTimeMerge

TOPICS = ("orders", "reviews", "due")
BASE = 1_700_000_000_000  # event times (epoch ms) far after the fake clock's start
GRACE, STALL = 2_000, 30_000


class Clock:
    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def merge(lags: dict | None = None, clock: Clock | None = None, cap: int = 10_000, forced: list | None = None,
          grace: int = GRACE):
    lags = {} if lags is None else lags
    return EventTimeMerge(TOPICS, grace_ms=grace, stall_ms=STALL, cap=cap, lag=lambda t, p: lags.get((t, p), 0),
                          clock=clock or Clock(), on_forced=(forced.append if forced is not None else lambda r: None))


# -- rules, one at a time ----------------------------------------------------------------------------

def test_an_item_waits_for_a_caught_up_topic_for_the_grace_then_goes():
    clock = Clock(BASE)
    m = merge(clock=clock)
    m.add("orders", 0, BASE, "o")
    assert m.release() == [] and m.wake_in_ms() == GRACE
    clock.now += GRACE - 1
    assert m.release() == []
    clock.now += 1
    assert m.release() == ["o"] and len(m) == 0 and m.wake_in_ms() is None


def test_the_grace_counts_from_the_event_time_so_a_backlog_is_not_held():
    clock = Clock(BASE + 60_000)
    m = merge(clock=clock)
    m.add("orders", 0, BASE, "old")
    assert m.release() == ["old"]


def test_the_grace_counts_from_arrival_for_an_event_dated_in_the_future():
    clock = Clock(BASE)
    m = merge(clock=clock)
    m.add("orders", 0, BASE + 3_600_000, "future")
    clock.now += GRACE
    assert m.release() == ["future"]


def test_an_older_item_from_another_topic_within_the_grace_goes_first():
    clock = Clock(BASE)
    m = merge(clock=clock)
    m.add("reviews", 0, BASE + 10, "review")
    assert m.release() == []
    clock.now += 500
    m.add("orders", 0, BASE + 5, "order")
    m.add("due", 0, BASE + 20, "tick")  # both other topics have now delivered something newer than the order
    assert m.release() == ["order"]  # orders may still deliver something between BASE + 5 and the review
    clock.now = BASE + GRACE  # the review's grace, from its arrival (earlier than its time)
    assert m.release() == ["review"]
    clock.now = BASE + 20 + GRACE  # the tick's, from its time (earlier than its arrival)
    assert m.release() == ["tick"]


def test_a_topic_that_delivered_a_newer_or_equal_time_cannot_deliver_an_older_one():
    m = merge()
    m.add("orders", 0, BASE + 5, "o")
    m.add("reviews", 0, BASE + 5, "r")
    m.add("due", 0, BASE + 5, "d")
    assert m.release() == ["o", "r", "d"]  # equal times: arrival order


def test_a_lagging_topic_is_waited_for_until_it_delivers():
    lags = {("reviews", 0): 3}
    clock = Clock(BASE + 60_000)  # a backlog: the grace alone would not hold anything
    m = merge(lags, clock)
    m.add("orders", 0, BASE + 10, "o")
    m.add("due", 0, BASE + 99, "d")
    assert m.release() == []
    m.add("reviews", 0, BASE + 1, "r1")
    assert m.release() == ["r1"]
    m.add("reviews", 0, BASE + 11, "r2")
    lags[("reviews", 0)] = 0
    # d too: orders and reviews are caught up and d is older than the grace (a backlog)
    assert m.release() == ["o", "r2", "d"]


def test_a_lag_not_known_yet_counts_as_lagging_and_stalls_at_most_stall_ms():
    forced = []
    clock = Clock(BASE)
    m = EventTimeMerge(TOPICS, grace_ms=GRACE, stall_ms=STALL, cap=100, lag=lambda t, p: None, clock=clock,
                       on_forced=forced.append)
    m.add("orders", 0, BASE - 600_000, "o")
    assert m.release() == [] and m.wake_in_ms() == STALL
    clock.now += STALL
    assert m.release() == ["o"] and forced == ["stalled"]


def test_a_lagging_topic_that_keeps_delivering_is_waited_for_past_the_stall():
    forced = []
    clock = Clock(BASE + 600_000)  # a backlog
    m = merge({("reviews", 0): 1_000}, clock, forced=forced)
    m.add("due", 0, BASE + 500_000, "tick")  # a due message dated by the wall clock
    for n in range(5):  # the reviews come in every 20 s, all older than the tick
        clock.now += STALL * 2 // 3
        m.add("reviews", 0, BASE + n, f"r{n}")
        assert m.release() == [f"r{n}"] and m.wake_in_ms() == STALL
    clock.now += STALL - 1
    assert m.release() == []
    clock.now += 1  # 30 s without a review: stalled
    assert m.release() == ["tick"] and forced == ["stalled"]


def test_partitions_do_not_wait_for_each_other():
    lags = {("reviews", 1): 5}
    m = merge(lags, Clock(BASE + 60_000))
    m.add("orders", 1, BASE, "p1")
    m.add("orders", 0, BASE, "p0")
    assert m.release() == ["p0"]


def test_an_item_without_a_time_goes_at_once_unless_its_own_topic_partition_holds_older_ones():
    m = merge({("reviews", 0): 5})
    m.add("orders", 0, BASE, "held")
    m.add("reviews", 0, None, "undecodable")
    m.add("orders", 0, None, "behind held")
    assert m.release() == ["undecodable"] and len(m) == 2


def test_a_topic_partition_is_never_reordered():
    """Its offsets are acked in the order read: an older record after a newer one waits behind it."""
    clock = Clock(BASE + 60_000)
    m = merge(clock=clock)
    m.add("orders", 0, BASE + 10, "newer")
    m.add("orders", 0, BASE + 5, "older, late")
    m.add("reviews", 0, BASE + 7, "review")
    assert m.release() == ["review", "newer", "older, late"]


def test_beyond_the_cap_the_oldest_goes_and_is_counted():
    forced = []
    m = merge({("reviews", 0): 9, ("reviews", 1): 9}, cap=2, forced=forced)
    m.add("orders", 0, BASE + 3, "a")
    m.add("orders", 1, BASE + 1, "b")
    m.add("orders", 0, BASE + 2, "c")
    assert m.release() == ["b"] and forced == ["cap"] and len(m) == 2


def test_clear_returns_everything_and_forgets_what_topics_delivered():
    lags = {("reviews", 0): 1}
    m = merge(lags, Clock(BASE + 60_000))
    m.add("reviews", 0, BASE + 50, "r")
    m.add("orders", 0, BASE + 10, "o")
    m.add("orders", 0, None, "x")
    assert sorted(m.clear()) == ["o", "r", "x"] and len(m) == 0
    m.add("due", 0, BASE + 20, "d")  # reviews delivered BASE + 50 before the clear: not remembered
    assert m.release() == []


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        EventTimeMerge(TOPICS, grace_ms=5, stall_ms=1, cap=1, lag=lambda t, p: 0, clock=Clock())


# -- properties ----------------------------------------------------------------------------------------

SOURCES = [(t, p) for t in TOPICS for p in (0, 1)]
SORTED_TIMES = st.lists(st.integers(0, 50), max_size=12).map(lambda xs: [BASE + x for x in sorted(xs)])
PER_SOURCE = st.fixed_dictionaries({s: SORTED_TIMES for s in SOURCES})


@st.composite
def backlogs(draw):
    """Per (topic, partition) records in time order, and the order a consumer fetches them in: any
    interleaving that keeps each source's own order, fetched in runs of any length."""
    records = draw(PER_SOURCE)
    queues = {s: [(t, f"{s[0]}{s[1]}-{i}") for i, t in enumerate(times)] for s, times in records.items()}
    picks = draw(st.lists(st.tuples(st.sampled_from(SOURCES), st.integers(1, 6)), max_size=60))
    order, cursor = [], dict.fromkeys(SOURCES, 0)
    for source, run in picks:
        take = queues[source][cursor[source]:cursor[source] + run]
        order += [(source, record) for record in take]
        cursor[source] += len(take)
    for source in SOURCES:  # whatever the picks left
        order += [(source, record) for record in queues[source][cursor[source]:]]
    return queues, order


def _check_in_time_order(out: list[tuple[int, str]], queues) -> None:
    by_partition: dict[int, list[int]] = {}
    for time, name in out:
        by_partition.setdefault(int(name.split("-")[0][-1]), []).append(time)
    for times in by_partition.values():
        assert times == sorted(times)
    assert Counter(out) == Counter(r for records in queues.values() for r in records)  # nothing lost or twice
    for source, records in queues.items():  # a topic partition in the order read (its offsets acked in order)
        prefix = f"{source[0]}{source[1]}-"
        assert [r for r in out if r[1].startswith(prefix)] == records


@settings(max_examples=300, deadline=None)
@given(backlogs())
def test_a_backlog_comes_out_in_event_time_order_whatever_the_fetch_order(case):
    queues, order = case
    unread = {s: len(q) for s, q in queues.items()}
    clock = Clock(0)  # before every event time: the grace never ends while records are being read
    m = EventTimeMerge(TOPICS, grace_ms=GRACE, stall_ms=STALL, cap=10_000, lag=lambda t, p: unread[(t, p)],
                       clock=clock)
    out = []
    for source, record in order:
        unread[source] -= 1
        m.add(*source, record[0], record)
        out += m.release()
    clock.now = GRACE  # everything read: what waits for a caught-up topic goes when the grace ends
    out += m.release()
    assert len(m) == 0
    _check_in_time_order(out, queues)


@st.composite
def live_streams(draw):
    """Per source records in time order, each published (and read) within `jitter` < grace of its time,
    a source's records in publishing order."""
    records = draw(PER_SOURCE)
    jitter = draw(st.integers(0, GRACE - 1))
    arrivals = []
    for source, times in records.items():
        published = 0
        for i, t in enumerate(times):
            published = max(published, t + draw(st.integers(0, jitter)))
            arrivals.append((published, source, (t, f"{source[0]}{source[1]}-{i}")))
    queues = {s: [(t, f"{s[0]}{s[1]}-{i}") for i, t in enumerate(times)] for s, times in records.items()}
    return queues, sorted(arrivals, key=lambda a: a[0])


@settings(max_examples=300, deadline=None)
@given(live_streams())
def test_a_live_stream_within_the_grace_comes_out_in_event_time_order(case):
    """Caught-up topics throughout (every record is read the moment it is published): only the grace
    holds items, and the worker wakes when `wake_in_ms` says."""
    queues, arrivals = case
    clock = Clock(BASE)
    m = EventTimeMerge(TOPICS, grace_ms=GRACE, stall_ms=STALL, cap=10_000, lag=lambda t, p: 0, clock=clock)
    out = []

    def wake_until(instant: int) -> None:
        while (wait := m.wake_in_ms()) is not None and clock.now + wait <= instant:
            clock.now += wait
            out.extend(m.release())

    for published, source, record in arrivals:
        wake_until(published)
        clock.now = max(clock.now, published)
        m.add(*source, record[0], record)
        out.extend(m.release())
    wake_until(BASE + 10**9)
    assert len(m) == 0
    _check_in_time_order(out, queues)


OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(SOURCES), st.one_of(st.none(), st.integers(0, 100))),
    st.tuples(st.just("tick"), st.integers(0, 40_000), st.none()),
    st.tuples(st.just("lag"), st.sampled_from(SOURCES), st.one_of(st.none(), st.integers(0, 3))),
    st.tuples(st.just("clear"), st.none(), st.none()),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 6))
def test_nothing_is_lost_or_released_twice_and_the_cap_holds(ops, cap):
    lags: dict = {}
    clock = Clock(BASE)
    forced = []
    m = merge(lags, clock, cap=cap, forced=forced)
    added, out, n = [], [], 0
    for op, a, b in ops:
        if op == "add":
            n += 1
            item = (n, a)
            added.append(item)
            m.add(*a, None if b is None else BASE + b, item)
        elif op == "tick":
            clock.now += a
        elif op == "lag":
            lags[a] = b
        else:
            out += m.clear()
            continue
        out += m.release()
        assert len(m) <= cap
    out += m.clear()
    assert sorted(out) == sorted(added)
    for source in SOURCES:  # whatever happened, a topic partition's items keep the order they were added in
        assert [i for i in out if i[1] == source] == [i for i in added if i[1] == source]
    assert set(forced) <= {"cap", "stalled"}


@settings(max_examples=200, deadline=None)
@given(backlogs())
def test_flush_gives_everything_held_in_time_order_per_partition(case):
    queues, order = case
    m = EventTimeMerge(TOPICS, grace_ms=GRACE, stall_ms=STALL, cap=10_000, lag=lambda t, p: 1, clock=Clock(0))
    for source, record in order:
        m.add(*source, record[0], record)
    out = m.flush()
    assert len(m) == 0 and m.release() == []
    _check_in_time_order(out, queues)  # fetched in runs, yet in time order: each source is in order

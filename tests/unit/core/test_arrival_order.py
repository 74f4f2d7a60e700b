"""Ids that mean one thing, whatever order the events arrive in.

A member's events are drawn as a history in event-time order; the core is then fed any permutation of
it with duplicates and due ticks (at any instant) mixed in, as a worker sees them when inputs race each
other, a producer is late or a batch is replayed. Whatever the arrival order, every `reward_id` and
every `notification_id` must carry one content (the whole event: a resend is byte-for-byte the same),
and the member's clock (`evaluated_at`) never runs backwards. `member_erased` is left out on purpose:
erasure forgets the member's event ids (docs/contracts.md), so a replayed older event starts a new
member and may repeat an id with another balance.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core import engine
from stream_app.core.program import default_program_text, parse_program
from tests.unit.conftest import DAY, HOUR, MINUTE, iso, ms, toml_with, utc
from tests.unit.core.test_properties import PROGRAMS

START = ms("2024-03-01T09:00:00+08:00")
PACKAGED = parse_program(default_program_text())
CASES = {"packaged": PACKAGED, "fast": PROGRAMS["unlimited+features"],
         "fast-only-pending": PROGRAMS["only_pending"]}
ORDER_IDS = ("o1", "o2", "o3")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = {
    "order_paid": st.fixed_dictionaries({"order_id": st.sampled_from(ORDER_IDS),
                                         "amount_cents": st.integers(0, 300000), "currency": st.just("CNY")}),
    "order_refunded": st.fixed_dictionaries({"order_id": st.sampled_from(ORDER_IDS),
                                             "refund_cents": st.integers(1, 300000)}),
    "review_posted": st.fixed_dictionaries({"review_id": st.just("rv"), "order_id": st.sampled_from(ORDER_IDS),
                                            "rating": st.just(5), "has_media": st.booleans()}),
    "share": st.just({"share_id": "s", "channel": "wechat", "target": "friend"}),
    "login": st.fixed_dictionaries({"device_id": st.sampled_from(["phone", "web"])}),
    "member_joined": st.fixed_dictionaries({}, optional={"birthday": st.sampled_from(["03-01", "03-02", "03-04"])}),
    "member_updated": st.fixed_dictionaries({}, optional={"birthday": st.sampled_from(["03-02", "03-03", None])}),
    "redemption_requested": st.fixed_dictionaries({"redemption_id": st.sampled_from(["r1", "r2"]),
                                                   "reward_code": st.just("TEA"),
                                                   "points": st.sampled_from([10, 100, 400, 3000])}),
    "points_adjusted": st.fixed_dictionaries({"operator_id": st.just("op"), "reason": st.just("goodwill"),
                                              "points": st.sampled_from([500, 2000, -300])}),
    "member_frozen": st.just({"operator_id": "op", "reason": "check"}),
    "member_unfrozen": st.just({"operator_id": "op", "reason": "ok"}),
}
WEIGHTS = {"order_paid": 5, "order_refunded": 3, "review_posted": 3, "share": 2, "login": 3, "member_joined": 1,
           "member_updated": 1, "redemption_requested": 3, "points_adjusted": 2, "member_frozen": 1,
           "member_unfrozen": 1}
KIND = st.sampled_from([kind for kind, weight in WEIGHTS.items() for _ in range(weight)])
# gaps between events: same instant, a millisecond, minutes, hours, days (packaged windows are days)
GAP = st.sampled_from([0, 1, MINUTE, 30 * MINUTE, 2 * HOUR, 9 * HOUR, DAY, 8 * DAY, 40 * DAY])
HISTORY = st.lists(st.tuples(GAP, KIND.flatmap(lambda k: st.tuples(st.just(k), FIELDS[k]))), min_size=3,
                   max_size=25)


def build_history(draws: list) -> list[dict]:
    events, now = [], START
    for i, (gap, (kind, fields)) in enumerate(draws):
        now += gap
        events.append({"event_id": f"e{i}", "member_id": "m", "occurred_at": iso(now), "type": kind, **fields})
    return events


@st.composite
def arrivals(draw) -> tuple[str, list[tuple[str, object]]]:
    """(program case, arrival sequence of ("event", event) and ("tick", epoch ms) steps)."""
    case = draw(st.sampled_from(sorted(CASES)))
    history = build_history(draw(HISTORY))
    order = draw(st.permutations(history))
    # duplicates of any event, inserted anywhere after the first copy or before it
    for _ in range(draw(st.integers(0, 6))):
        event = draw(st.sampled_from(history))
        order.insert(draw(st.integers(0, len(order))), event)
    steps: list[tuple[str, object]] = [("event", e) for e in order]
    span = ms(history[-1]["occurred_at"]) - START + 60 * DAY
    for _ in range(draw(st.integers(0, 6))):
        steps.insert(draw(st.integers(0, len(steps))), ("tick", START + draw(st.integers(0, span))))
    steps.append(("tick", START + span + 400 * DAY))  # everything due by then, late or not
    return case, steps


def play(program, steps) -> tuple[list[dict], list[dict], list[int]]:
    state, rewards, notes, clock = None, [], [], []
    for action, arg in steps:
        if action == "event":
            result = engine.apply_event(state, arg, program)
        elif state is None:
            continue
        else:
            result = engine.advance(state, program, arg)
        state = result.state
        rewards += result.rewards
        notes += result.notifications
        if state is not None:
            clock.append(state["evaluated_at"])
    return rewards, notes, clock


def one_content_per_id(outputs: list[dict], id_key: str) -> dict[str, list[dict]]:
    """Ids emitted with more than one content: {id: [contents...]}."""
    seen: dict[str, list[dict]] = {}
    for output in outputs:
        contents = seen.setdefault(output[id_key], [])
        if output not in contents:
            contents.append(output)
    return {k: v for k, v in seen.items() if len(v) > 1}


@SETTINGS
@given(arrivals())
def test_every_id_carries_one_content_whatever_the_arrival_order(scenario):
    case, steps = scenario
    rewards, notes, clock = play(CASES[case], steps)
    assert one_content_per_id(rewards, "reward_id") == {}
    assert one_content_per_id(notes, "notification_id") == {}
    assert clock == sorted(clock), "the member's clock never runs backwards"


@SETTINGS
@given(arrivals())
def test_a_due_instant_is_stepped_once(scenario):
    """Time-driven causes (`due:<ms>`) name an instant the member's clock passed once."""
    case, steps = scenario
    rewards, _, _ = play(CASES[case], steps)
    due = [r for r in rewards if r["source_event_id"].startswith("due:")]
    keys = [(r["source_event_id"], r["rule"], r["type"]) for r in due]
    assert len(keys) == len(set(keys))


def test_an_older_event_after_a_newer_one_does_not_move_the_clock_back():
    """The flapping of the issue: a newer order makes the member `new`; an older login after it must not
    evaluate the segment at its own (older) instant, and the due step at the clock is not redone."""
    program = PROGRAMS["unlimited+features"]
    order = {"event_id": "o", "member_id": "m", "occurred_at": iso(START + 10 * HOUR), "type": "order_paid",
             "order_id": "o1", "amount_cents": 10000, "currency": "CNY"}
    login = {"event_id": "l", "member_id": "m", "occurred_at": iso(START), "type": "login", "device_id": "d"}
    joined = {"event_id": "j", "member_id": "m", "occurred_at": iso(START - 2 * DAY), "type": "member_joined"}
    first = engine.apply_event(None, joined, program)
    second = engine.apply_event(first.state, order, program)
    late = engine.apply_event(second.state, login, program)
    assert late.outcome == "applied" and late.late
    assert late.state["evaluated_at"] == second.state["evaluated_at"] == START + 10 * HOUR
    assert late.state["segment"] == second.state["segment"]
    assert [r for r in late.rewards if r["type"] == "segment_changed"] == []
    assert [r["rule"] for r in late.rewards] == ["logins"]


@st.composite
def ticked_histories(draw) -> tuple[str, list[dict], list[tuple[str, object]]]:
    """(program case, a history in event-time order, the same history with due ticks in between).

    What a worker that merges its inputs by event time sees live: a tick at T (the wall clock when it
    was sent) is applied after every event older than T, before every newer one."""
    case = draw(st.sampled_from(sorted(CASES)))
    history = build_history(draw(HISTORY))
    times = [ms(e["occurred_at"]) for e in history]
    steps: list[tuple[str, object]] = []
    for i, event in enumerate(history):
        steps.append(("event", event))
        upto = times[i + 1] if i + 1 < len(times) else times[i] + 60 * DAY
        for _ in range(draw(st.integers(0, 2))):
            steps.append(("tick", draw(st.integers(times[i], upto))))
    return case, history, steps


def _without_clock(state: dict | None) -> dict | None:
    return None if state is None else {k: v for k, v in state.items() if k != "evaluated_at"}


def _final(program, steps) -> tuple[dict | None, list[dict], list[dict]]:
    state, rewards, notes = None, [], []
    for action, arg in steps:
        if action == "event":
            result = engine.apply_event(state, arg, program)
        elif state is None:
            continue
        else:
            result = engine.advance(state, program, max(arg, state["evaluated_at"]))
        state, rewards, notes = result.state, rewards + result.rewards, notes + result.notifications
    return state, rewards, notes


def _multiset(outputs: list[dict]) -> list[str]:
    import orjson
    return sorted(orjson.dumps(o, option=orjson.OPT_SORT_KEYS).decode() for o in outputs)


@SETTINGS
@given(ticked_histories())
def test_ticks_between_events_in_order_change_nothing(scenario):
    """Live (ticks at wall-clock instants) and a replayed backlog (no tick until the end) agree: the
    same state, the same rewards and notifications, as long as the events come in event-time order."""
    case, history, ticked = scenario
    program = CASES[case]
    end = ms(history[-1]["occurred_at"]) + 500 * DAY
    backlog = _final(program, [("event", e) for e in history] + [("tick", end)])
    live = _final(program, [*ticked, ("tick", end)])
    assert _without_clock(live[0]) == _without_clock(backlog[0])
    assert _multiset(live[1]) == _multiset(backlog[1])
    assert _multiset(live[2]) == _multiset(backlog[2])


def test_work_a_late_event_leaves_due_before_the_clock_is_done_by_the_next_step():
    """A late order older than the clock by more than its return window: released at the next step
    (under a program that remembers event ids that long: the packaged one refuses it as stale)."""
    program = parse_program(toml_with({"dedupe.window": None}))
    joined = {"event_id": "j", "member_id": "m", "occurred_at": iso(START + 40 * DAY), "type": "member_joined"}
    order = {"event_id": "o", "member_id": "m", "occurred_at": iso(START), "type": "order_paid",
             "order_id": "o1", "amount_cents": 10000, "currency": "CNY"}
    first = engine.apply_event(None, joined, program)
    packaged = engine.apply_event(None, joined, PACKAGED)
    assert engine.apply_event(packaged.state, order, PACKAGED).outcome == "stale"  # 40 days > dedupe.window
    late = engine.apply_event(first.state, order, program)
    clock = START + 40 * DAY
    assert late.late and late.state["evaluated_at"] == clock
    assert [r["type"] for r in late.rewards if r["type"] != "segment_changed"] == ["points_pending", "points_pending"]
    assert late.next_due == clock + 1  # due already: the next instant after the clock
    step = engine.advance(late.state, program, clock + 1)
    released = [r for r in step.rewards if r["type"] == "points_earned"]
    assert [(r["points"], r["occurred_at"]) for r in released] == [
        (100, utc(START + 7 * DAY)), (100, utc(START + 7 * DAY))]  # at the end of its return window
    assert step.state["evaluated_at"] == clock + 1 and step.next_due > clock + 1

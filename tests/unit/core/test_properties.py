"""Property tests of the core over random event sequences for a few members, interleaved with advance()
at increasing times, on a program whose durations are hours instead of days so that release, expiry,
warnings, tier windows, grace periods and birthdays all happen within a sequence.

What the reward stream means (checked in `check_reward_sums`): a lot's points are announced once, by
`points_pending` (order lots) or by `points_earned` without `released_from_pending` (immediate lots);
the `points_earned` with `released_from_pending` that follows a pending lot is a move from pending to
available, not new points, so it is left out of the earned total and checked on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core import engine
from stream_app.core.earning import expiry_of
from stream_app.core.member import Member
from stream_app.core.program import parse_program
from tests.unit.conftest import DAY, EXACT_HISTORY, FEATURES_OFF, HOUR, MINUTE, iso, ms, toml_with

START = ms("2024-03-01T00:00:00+08:00")
EDITS = {
    "orders.return_window": '"PT1H"',
    "orders.category_multipliers.electronics": "0.5",
    "reviews.order_window": '"PT24H"',
    "reviews.daily_cap": "2",
    "birthday.min_age_of_birthday": '"PT6H"',
    "expiry.after": '"PT12H"',
    "expiry.warn_before": '"PT3H"',
    "expiry.warn_min_points": "50",
    "tiers.window": '"PT30H"',
    "tiers.grace": '"PT3H"',
}
# The same with lifecycle segments, the marketing-notification policy (packaged quiet hours and cap)
# and abuse limits on, on the same compressed scale.
FEATURES = {
    "segments.new_for": '"PT6H"', "segments.loyal_orders": "3", "segments.loyal_window": '"PT12H"',
    "segments.at_risk_after": '"PT12H"', "segments.churned_after": '"P1D"',
    "abuse.reviews_per_window": "3", "abuse.shares_per_window": "4", "abuse.window": '"PT1H"',
}


# Bounded state (issue 11) on the same scale: expiry and order windows rounded to local days, orders
# refundable for 6 hours, event ids remembered for 12 hours of event time.
BOUNDED = {"expiry.granularity": '"day"', "orders.window_granularity": '"day"', "orders.refund_horizon": '"PT6H"',
           "dedupe.window": '"PT12H"'}


def _program(policy: str, features: bool, bounded: bool = False):
    edits = {**EDITS, "orders.refund_policy": f'"{policy}"', **(FEATURES if features else FEATURES_OFF),
             **(BOUNDED if bounded else EXACT_HISTORY)}
    # lower gold and platinum thresholds, so that a sequence can climb (and fall) through every tier
    text = toml_with(edits).replace("threshold = 5000", "threshold = 2500").replace("threshold = 20000",
                                                                                    "threshold = 5000")
    return parse_program(text)


PROGRAMS = {**{policy: _program(policy, False) for policy in ("unlimited", "within_balance", "only_pending")},
            "unlimited+features": _program("unlimited", True),
            "within_balance+bounded": _program("within_balance", True, bounded=True)}
MEMBERS = ("alice", "bob")
ORDER_IDS = ("o1", "o2", "o3")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ------------------------------------------------------------------------------------

ITEM = st.fixed_dictionaries({"sku": st.just("sku"), "category": st.sampled_from(["electronics", "books"]),
                              "quantity": st.integers(1, 3), "price_cents": st.integers(0, 50000)})
EVENT_OF = {
    "order_paid": st.fixed_dictionaries(
        {"order_id": st.sampled_from(ORDER_IDS), "amount_cents": st.integers(0, 250000), "currency": st.just("CNY")},
        optional={"items": st.lists(ITEM, max_size=3)}),
    "order_refunded": st.fixed_dictionaries(
        {"order_id": st.sampled_from(ORDER_IDS + ("ghost",)),
         "refund_cents": st.one_of(st.integers(1, 300), st.integers(1, 250000))}),
    "review_posted": st.fixed_dictionaries(
        {"review_id": st.just("rv"), "order_id": st.sampled_from(ORDER_IDS), "rating": st.integers(1, 5),
         "has_media": st.booleans()}),
    "share": st.just({"share_id": "s", "channel": "wechat", "target": "friend"}),
    "login": st.just({"device_id": "phone"}),
    "member_joined": st.fixed_dictionaries(
        {}, optional={"birthday": st.sampled_from(["03-01", "03-02", "03-03", "03-04"]),
                      "referrer_id": st.just("friend")}),
    "member_updated": st.fixed_dictionaries(
        {}, optional={"birthday": st.sampled_from(["03-02", "03-03", "03-05", None])}),
    "redemption_requested": st.fixed_dictionaries(
        {"redemption_id": st.sampled_from(["r1", "r2", "r3"]), "reward_code": st.just("TEA"),
         "points": st.one_of(st.integers(1, 150), st.integers(1, 2500))}),
}
WEIGHTS = {"order_paid": 4, "order_refunded": 3, "review_posted": 2, "share": 2, "login": 2,
           "redemption_requested": 3, "member_joined": 1, "member_updated": 1}
EVENT = st.sampled_from([kind for kind, weight in WEIGHTS.items() for _ in range(weight)]).flatmap(
    lambda kind: st.tuples(st.just(kind), EVENT_OF[kind]))
# time steps: often none or one millisecond (same-instant edges), otherwise minutes to hours
DT = st.tuples(st.sampled_from([0, 0, 1, MINUTE, 20 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR]),
               st.integers(0, 30 * MINUTE)).map(lambda t: t[0] + t[1] if t[0] > 1 else t[0])
STEP_OF = {
    "event": lambda: st.tuples(st.just("event"), st.sampled_from(MEMBERS), DT, EVENT),
    "advance": lambda: st.tuples(st.just("advance"), st.sampled_from(MEMBERS), DT, st.none()),
    "duplicate": lambda: st.tuples(st.just("duplicate"), st.sampled_from(MEMBERS), st.just(0),
                                   st.integers(0, 10**6)),
    "freeze": lambda: st.tuples(st.just("freeze"), st.sampled_from(MEMBERS), st.just(0),
                                st.sampled_from([True, False, False, False])),
    # advance to exactly the member's next due instant, as the scheduler does
    "due": lambda: st.tuples(st.just("due"), st.sampled_from(MEMBERS), st.just(0), st.none()),
}
STEP = st.sampled_from(["event"] * 6 + ["advance"] * 2 + ["due"] * 2 + ["duplicate", "freeze"]).flatmap(
    lambda a: STEP_OF[a]())
JOINED = st.tuples(st.just("event"), st.sampled_from(MEMBERS), st.just(0), st.tuples(
    st.just("member_joined"), st.fixed_dictionaries({"birthday": st.sampled_from(["03-01", "03-02", "03-03"])})))
SCENARIO = st.tuples(st.sampled_from(sorted(PROGRAMS)),
                     st.tuples(JOINED, JOINED, st.lists(STEP, min_size=20, max_size=70)).map(
                         lambda parts: [parts[0], parts[1], *parts[2]]))


def make_event(event_id: str, member_id: str, now: int, kind: str, fields: dict, state: dict | None) -> dict:
    """The input event of a step; refunds and reviews name one of the member's current orders when it
    has any (else the drawn id), so that they mostly hit."""
    fields = dict(fields)
    orders = sorted(Member.from_dict(state).orders) if state else []
    if kind in ("order_refunded", "review_posted") and orders and fields["order_id"] in ORDER_IDS:
        fields["order_id"] = orders[ORDER_IDS.index(fields["order_id"]) % len(orders)]
    return {"event_id": event_id, "member_id": member_id, "occurred_at": iso(now), "type": kind, **fields}


# -- the model that follows one member -------------------------------------------------------------

@dataclass
class Track:
    state: dict | None = None
    due: int | None = None
    applied: list[dict] = field(default_factory=list)
    pending_announced: int = 0     # sum of points_pending
    immediate_earned: int = 0      # sum of points_earned that were not releases
    released: int = 0              # sum of points_earned released from pending
    clawed: int = 0
    redeemed: int = 0
    expired: int = 0
    order_limit: dict[str, int] = field(default_factory=dict)    # order_id -> points + bonus
    order_clawed: dict[str, int] = field(default_factory=dict)


def take(track: Track, result: engine.Result, now: int, program) -> None:
    """Record a result, then check every invariant on the new state."""
    before = ({lot.lot_id: lot for lot in Member.from_dict(track.state).ledger.pending_lots}
              if track.state else {})
    for reward in result.rewards:
        kind, points = reward["type"], reward["points"]
        if kind == "points_pending":
            track.pending_announced += points
        elif kind == "points_earned" and reward.get("details", {}).get("released_from_pending"):
            track.released += points
            # a release moves what is left of a pending lot (after clawbacks) to available
            lot = before[f"{reward['source_event_id']}:{reward['rule']}"]
            assert points == lot.remaining > 0
        elif kind == "points_earned":
            track.immediate_earned += points
        elif kind == "points_clawed_back":
            track.clawed -= points
            order_id = reward["details"]["order_id"]
            track.order_clawed[order_id] = track.order_clawed.get(order_id, 0) - points
            # (4) an order never loses more than it earned
            assert track.order_clawed[order_id] <= track.order_limit[order_id]
        elif kind == "points_redeemed":
            track.redeemed -= points
        elif kind == "points_expired":
            track.expired -= points
    for reward in result.rewards:
        kind, points = reward["type"], reward["points"]
        if kind in ("points_pending", "points_earned", "points_redeemed", "points_expired"):
            assert points != 0 and (points > 0) == (kind in ("points_pending", "points_earned")), reward
        elif kind == "points_clawed_back":
            assert points <= 0  # 0 when the refund policy left nothing to take
        else:
            assert points == 0, reward
    track.state, track.due = result.state, result.next_due
    check_state(track, result, now, program)


def check_state(track: Track, result: engine.Result, now: int, program) -> None:
    state = track.state
    raw = state["ledger"]
    member = Member.from_dict(state)
    ledger = member.ledger
    # (1) balances are the pending lots' and the buckets' remaining points, less debt
    released = sum(points for _, points, _ in raw["buckets"])
    pending = sum(lot.remaining for lot in ledger.pending_lots)
    assert ledger.available == released - raw["debt"]
    assert ledger.pending == pending
    assert raw["debt"] >= 0
    assert raw["debt"] == 0 or released == 0, "debt is repaid before points become spendable"
    for lot in ledger.pending_lots:
        assert 0 <= lot.remaining <= lot.points and not lot.released
        assert lot.expires_at == expiry_of(program, lot.available_at)
        assert lot.available_at > now  # the due work up to `now` is done
    instants = [(expires_at, warned) for expires_at, _, warned in raw["buckets"]]
    assert instants == sorted(set(instants)), "buckets are sorted, one per instant (and warned twin)"
    for expires_at, points, _ in raw["buckets"]:
        assert points > 0, "used-up buckets are dropped"
        assert expires_at > now  # expired buckets are gone
    # (3) the balance identity
    assert (ledger.earned - ledger.clawed_back - ledger.redeemed - ledger.expired + ledger.adjusted
            == ledger.available + ledger.pending)
    # (5) the reward stream adds up to the ledger totals
    assert track.pending_announced + track.immediate_earned == ledger.earned
    assert (track.clawed, track.redeemed, track.expired) == (ledger.clawed_back, ledger.redeemed, ledger.expired)
    clawed_from_pending = track.pending_announced - track.released - ledger.pending
    assert 0 <= clawed_from_pending <= ledger.clawed_back
    if program.refund_policy == "only_pending":
        assert clawed_from_pending == ledger.clawed_back
    # (4) from the state side too
    for order in map(member.order, member.orders):
        assert 0 <= order.clawed_back <= order.points
        assert order.refunded_cents <= order.paid_cents
    # the last reward carries the balance after the call
    if result.rewards:
        assert result.rewards[-1]["balance"] == {"available": ledger.available, "pending": ledger.pending}
    # nothing happens by time alone before next_due
    assert result.next_due == engine.next_due(member, program, now)
    if result.next_due is not None:
        assert result.next_due > now
        if result.next_due - 1 > now:
            early = engine.advance(state, program, result.next_due - 1)
            assert (early.rewards, early.notifications) == ([], [])
            assert (early.state["ledger"], early.state["tier"]) == (state["ledger"], state["tier"])


def check_duplicate(track: Track, event: dict, program) -> None:
    """(2) re-applying an applied event changes nothing and emits nothing: it is a known duplicate, or,
    older than the dedupe window behind the member's clock, refused as stale."""
    state = track.state
    result = engine.apply_event(state, event, program)
    window = program.dedupe_window_ms
    old = window is not None and engine.event_time_ms(event) < state["evaluated_at"] - window
    assert result.outcome in (("duplicate", "stale") if old else ("duplicate",))
    assert (result.rewards, result.notifications) == ([], [])
    assert result.state is state


@SETTINGS
@given(SCENARIO)
def test_invariants_over_random_sequences(scenario):
    policy, steps = scenario
    program = PROGRAMS[policy]
    tracks = {m: Track() for m in MEMBERS}
    now, count = START, 0
    for action, member_id, dt, arg in steps:
        now += dt
        track = tracks[member_id]
        if action == "event":
            kind, fields = arg
            count += 1
            event = make_event(f"{member_id}-{count}", member_id, now, kind, fields, track.state)
            result = engine.apply_event(track.state, event, program)
            assert result.outcome in ("applied", "ignored", "frozen")
            if kind == "order_paid" and result.state["orders"]:
                order = Member.from_dict(result.state).order(event["order_id"])
                if order is not None and order.event_id == event["event_id"]:
                    track.order_limit[order.order_id] = order.points + order.bonus
                    track.order_clawed[order.order_id] = 0
            track.applied.append(event)
            take(track, result, now, program)
            check_duplicate(track, event, program)
        elif track.state is None:
            continue
        elif action == "advance":
            take(track, engine.advance(track.state, program, now), now, program)
        elif action == "due" and track.due is not None and track.due - now <= DAY:
            now = max(now, track.due)
            take(track, engine.advance(track.state, program, now), now, program)
        elif action == "duplicate" and track.applied:
            check_duplicate(track, track.applied[arg % len(track.applied)], program)
        elif action == "freeze":
            track.state = {**track.state, "frozen": arg}
    for track in tracks.values():
        for event in track.applied:
            check_duplicate(track, event, program)


@SETTINGS
@given(SCENARIO)
def test_replaying_the_same_inputs_gives_the_same_outputs(scenario):
    """Deterministic ids: the same inputs give the same reward and notification ids (and everything else)."""
    policy, steps = scenario
    program = PROGRAMS[policy]

    def play() -> tuple[list, list, dict]:
        states: dict[str, dict | None] = dict.fromkeys(MEMBERS)
        dues: dict[str, int | None] = dict.fromkeys(MEMBERS)
        rewards, notes, now = [], [], START
        for i, (action, member_id, dt, arg) in enumerate(steps):
            now += dt
            if action == "due" and dues[member_id] is not None and dues[member_id] - now <= DAY:
                now = max(now, dues[member_id])
            if action == "event":
                event = make_event(f"ev{i}", member_id, now, arg[0], arg[1], states[member_id])
                result = engine.apply_event(states[member_id], event, program)
            elif action in ("advance", "due") and states[member_id] is not None:
                result = engine.advance(states[member_id], program, now)
            else:
                continue
            states[member_id], dues[member_id] = result.state, result.next_due
            rewards += result.rewards
            notes += result.notifications
        return rewards, notes, states

    first, second = play(), play()
    assert first == second
    ids = [r["reward_id"] for r in first[0]]
    assert len(ids) == len(set(ids)), "one reward id per reward"

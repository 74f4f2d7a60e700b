"""The pure simulation: histories whose difference between two programs is known in advance.

Histories come from the load generator (stream_app.loadgen), decoded and scrubbed as the shell does.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core import simulation
from stream_app.core.calendar import local_date
from stream_app.core.device_index import apply_link
from stream_app.core.device_index import flag_event as device_flag
from stream_app.core.engine import event_time_ms
from stream_app.core.ledger import Ledger
from stream_app.core.outcomes import ERASED
from stream_app.core.privacy import scrub
from stream_app.core.program import parse_program
from stream_app.core.program_versions import ProgramVersions, parse_versions
from stream_app.core.simulation import Tally, Totals, connected, daily, in_event_time_order, referral_links, simulate
from stream_app.core.versioned import advance_at, apply_event_at, apply_message_at
from stream_app.loadgen import DEFAULT_MIX, generate
from tests.unit.conftest import DAY, HOUR, MINUTE, EventFactory, iso, toml_with

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
KEY = b"simulation-test-key"
CURRENT = parse_program(toml_with())
DOUBLE_SHARES = parse_program(toml_with({"shares.points": "10"}))  # the packaged default gives 5


def history(members: int, events: int, seed: int, mix: dict[str, float], days: float) -> list[tuple[str, list]]:
    """(member id, events in input order) of a generated history spread over `days`."""
    by_member: dict[str, list[dict]] = defaultdict(list)
    for _, _, value in generate(members, events, seed, mix, START, days * DAY / events):
        event = scrub(orjson.loads(value), KEY)
        by_member[event["member_id"]].append(event)
    return list(by_member.items())


def last_ms(members: list[tuple[str, list]]) -> int:
    return max(event_time_ms(e) for _, events in members for e in events)


def run(members, current=CURRENT, candidate=DOUBLE_SHARES, top: int = 10) -> Tally:
    return simulate(members, current, candidate, last_ms(members), top)


def flows_balance(totals: Totals) -> int:
    """What the flows say is owed: it must be the liability summed from the members' final states."""
    return (sum(totals.issued.values()) - totals.clawed_back - totals.redeemed - totals.expired + totals.adjusted
            - totals.erased)


# Everything of Totals but the points, which a change of points may move.
NOT_POINTS = ("tiers", "segments", "notifications", "notifications_dropped", "notifications_held", "rewards",
              "events", "dead_letters")


def test_doubling_share_points_doubles_share_points_exactly_and_nothing_else_on_shares_under_the_cap():
    members = history(100, 400, seed=3, mix={"shares": 1}, days=60)
    per_day = Counter((e["member_id"], local_date(event_time_ms(e), CURRENT.timezone)) for _, es in members for e in es)
    assert max(per_day.values()) <= CURRENT.share_daily_cap  # the premise: no share is capped

    tally = run(members)
    cur, cand = tally.current, tally.candidate
    assert set(cur.issued) == set(cand.issued) == {"shares"}
    assert cur.issued["shares"] == 5 * 400 and cand.issued["shares"] == 2 * cur.issued["shares"]
    assert (cand.liability, cand.available, cand.pending) == (2 * cur.liability, 2 * cur.available, 0)
    for name in NOT_POINTS + ("clawed_back", "redeemed", "expired", "adjusted", "erased"):
        assert getattr(cand, name) == getattr(cur, name), name
    assert cand.daily_issued == Counter({day: 2 * points for day, points in cur.daily_issued.items()})
    assert tally.members == len(members) and tally.events == 400
    assert len(tally.differing) == 10
    assert all(d.candidate == 2 * d.current for d in tally.differing)


def test_doubling_share_points_on_the_default_mix_adds_exactly_the_current_share_points():
    members = history(300, 3000, seed=11, mix=DEFAULT_MIX, days=90)
    tally = run(members, top=1000)
    cur, cand = tally.current, tally.candidate
    assert cur.issued["shares"] > 0 and cur.issued["order"] > 0
    assert cand.issued["shares"] - cur.issued["shares"] == cur.issued["shares"]
    assert {rule: n for rule, n in cand.issued.items() if rule != "shares"} == \
        {rule: n for rule, n in cur.issued.items() if rule != "shares"}  # order points and the rest untouched
    assert cand.clawed_back == cur.clawed_back and cand.tiers == cur.tiers
    # more points mean fewer rejected redemptions: the difference flows through redemptions only
    assert cand.liability - cur.liability == cur.issued["shares"] - (cand.redeemed - cur.redeemed)
    assert cand.rewards["redemption_rejected"] <= cur.rewards["redemption_rejected"]
    assert sum(d.difference for d in tally.differing) == cand.liability - cur.liability


def test_identical_programs_give_identical_columns_and_no_differing_member():
    members = history(200, 2000, seed=5, mix=DEFAULT_MIX, days=120)
    tally = run(members, CURRENT, parse_program(toml_with()))
    assert tally.current == tally.candidate
    assert tally.differing == []
    assert sum(tally.current.issued.values()) > 0


def test_the_flows_add_up_to_the_liability_and_the_daily_series_ends_there():
    members = history(150, 1500, seed=9, mix=DEFAULT_MIX, days=500)  # long enough for lots to expire
    tally = run(members)
    for totals in (tally.current, tally.candidate):
        assert totals.expired > 0
        assert flows_balance(totals) == totals.liability
    days = daily(tally.current, tally.candidate)
    assert days[-1].liability_current == tally.current.liability
    assert days[-1].liability_candidate == tally.candidate.liability
    assert sum(d.issued_current for d in days) == sum(tally.current.issued.values())
    assert [d.date for d in days] == sorted({d.date for d in days})  # one row per day, in order
    assert len(days) == (local_date(last_ms(members), CURRENT.timezone)
                         - local_date(START, CURRENT.timezone)).days + 1


def test_events_are_applied_in_event_time_order_stable_for_equal_instants():
    first = {"event_id": "a", "occurred_at": "2026-01-01T08:00:00+08:00"}  # 00:00 UTC
    second = {"event_id": "b", "occurred_at": "2026-01-01T00:00:00Z"}  # the same instant
    earlier = {"event_id": "c", "occurred_at": "2025-12-31T23:59:59.999Z"}
    assert [e["event_id"] for e in in_event_time_order([first, second, earlier])] == ["c", "a", "b"]


def _member_events(member_id: str) -> list[dict]:
    def event(n: int, type_: str, at: int, **fields) -> dict:
        return {"event_id": f"{member_id}-{n}", "member_id": member_id, "occurred_at": iso(at), "type": type_,
                **fields}

    return [event(1, "login", START, device_id="d1"),
            event(2, "share", START + 1000, share_id="s1", channel="wechat", target="t"),
            event(3, "points_adjusted", START + 2000, points=40, operator_id="op", reason="goodwill")]


def test_an_erased_member_forfeits_its_balance_and_leaves_the_tiers():
    events = _member_events("gone") + [{"event_id": "gone-4", "member_id": "gone", "occurred_at": iso(START + DAY),
                                        "type": "member_erased"}]
    tally = simulate([("gone", events), ("kept", _member_events("kept"))], CURRENT, CURRENT, START + 2 * DAY)
    balance = 2 + 5 + 40  # login, share, adjustment
    assert tally.current.erased == balance and tally.current.adjusted == 2 * 40
    assert tally.current.liability == balance  # only "kept" is left
    assert sum(tally.current.tiers.values()) == 1
    assert flows_balance(tally.current) == tally.current.liability
    assert [d.liability_current for d in daily(tally.current, tally.candidate)] == [2 * balance, balance]


def test_an_event_the_core_raises_on_is_dead_lettered_and_the_member_goes_on(monkeypatch):
    real = simulation.apply_to_member_at

    def failing(member, event, versions):
        if event["event_id"] == "m-2":
            real(member, event, versions)  # the share is half applied to the object, then the core raises
            raise ValueError("boom")
        return real(member, event, versions)

    monkeypatch.setattr(simulation, "apply_to_member_at", failing)
    tally = simulate([("m", _member_events("m"))], CURRENT, CURRENT, START + DAY)
    assert tally.current.dead_letters == Counter({"processing_error": 1})
    assert tally.current.events == Counter({"applied": 2, "dead_lettered": 1})
    assert tally.current.issued == Counter({"logins": 2}) and tally.current.liability == 42


# -- properties -------------------------------------------------------------------------------------

MIXES = st.dictionaries(st.sampled_from(sorted(DEFAULT_MIX)), st.floats(0.5, 10), min_size=1)
EXTRA = st.lists(st.tuples(st.integers(0, 19), st.sampled_from(["erase", "adjust", "join"]), st.floats(0, 1),
                           st.integers(-300, 300)), max_size=8)


def with_extras(members: list[tuple[str, list]], extras, days: float) -> list[tuple[str, list]]:
    """Erasures, adjustments (either sign) and birthdays for a few members, at drawn instants."""
    by_member = dict(members)
    ids = sorted(by_member)
    for n, (index, kind, when, points) in enumerate(extras):
        member_id = ids[index % len(ids)]
        at = iso(START + int(when * days * DAY))
        event = {"event_id": f"x{n}", "member_id": member_id, "occurred_at": at}
        if kind == "erase":
            event["type"] = "member_erased"
        elif kind == "adjust":
            event.update(type="points_adjusted", points=points or 1, operator_id="op", reason="test")
        else:
            event.update(type="member_joined", birthday="03-15")
        by_member[member_id] = [*by_member[member_id], event]
    return list(by_member.items())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), members=st.integers(1, 20), events=st.integers(1, 250), mix=MIXES,
       days=st.floats(0.01, 800), extras=EXTRA, cut=st.integers(0, 20))
def test_a_program_against_itself_differs_in_nothing_and_splitting_members_changes_nothing(
        seed, members, events, mix, days, extras, cut):
    generated = with_extras(history(members, events, seed, mix, days), extras, days)
    end = last_ms(generated)
    whole = simulate(generated, CURRENT, parse_program(toml_with()), end)
    assert whole.current == whole.candidate
    assert whole.differing == []
    assert flows_balance(whole.current) == whole.current.liability
    rows = daily(whole.current, whole.candidate)
    assert not rows or rows[-1].liability_current == whole.current.liability

    split = simulate(generated[cut:], CURRENT, DOUBLE_SHARES, end)  # one process's members ...
    split.merge(simulate(generated[:cut], CURRENT, DOUBLE_SHARES, end))  # ... merged with another's
    assert split == simulate(generated, CURRENT, DOUBLE_SHARES, end)


def _run_member_by_states(events, versions, end_ms, totals, day_of) -> int:
    """`simulation.run_group` of one member as the worker runs it: stored state in and out of each call."""
    state = None
    for event in events:
        result = apply_event_at(state, event, versions)
        totals.events[result.outcome] += 1
        if result.outcome == ERASED and state is not None:
            ledger = Ledger.from_dict(state["ledger"])
            at = event_time_ms(event)
            totals.erased += ledger.available + ledger.pending
            totals.daily_change[local_date(at, versions.at(at).timezone).isoformat()] -= \
                ledger.available + ledger.pending
        simulation._count(result, totals, day_of)
        state = result.state
    if state is None:
        return 0
    result = advance_at(state, versions, end_ms)
    simulation._count(result, totals, day_of)
    ledger = Ledger.from_dict(result.state["ledger"])
    totals.available += ledger.available
    totals.pending += ledger.pending
    totals.tiers[result.state["tier"]] += 1
    totals.segments[result.state.get("segment") or "none"] += 1
    totals.notifications_held += len(result.state.get("held", ()))
    return ledger.available + ledger.pending


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), members=st.integers(1, 10), events=st.integers(1, 200), mix=MIXES,
       days=st.floats(0.01, 800), extras=EXTRA)
def test_keeping_the_member_object_gives_what_the_stored_state_between_events_gives(
        seed, members, events, mix, days, extras):
    generated = with_extras(history(members, events, seed, mix, days), extras, days)
    end = last_ms(generated)
    middle = iso(START + int(days * DAY / 2))
    versions = parse_versions(toml_with() + f'[[versions]]\nname = "v2"\neffective_from = "{middle}"'
                              "\n[versions.orders]\nreturn_window = \"P3D\"\n[versions.shares]\npoints = 10\n")
    for program in (ProgramVersions.single(CURRENT), versions):
        day_of = simulation._day_of(program.at(end))
        for member_id, member_events in generated:
            kept, by_states = Totals(), Totals()
            assert simulation.run_group({member_id: member_events}, program, end, kept, day_of) == \
                {member_id: _run_member_by_states(in_event_time_order(member_events), program, end, by_states, day_of)}
            assert kept == by_states


def test_the_merge_keeps_the_largest_differences_by_member_id_on_ties():
    a, b = Tally(2), Tally(2)
    a.differing = [simulation.MemberDiff("m3", 0, 5), simulation.MemberDiff("m1", 0, -5)]
    b.differing = [simulation.MemberDiff("m2", 10, 15), simulation.MemberDiff("m0", 0, 1)]
    a.merge(b)
    assert [d.member_id for d in a.differing] == ["m1", "m2"]


@pytest.mark.parametrize("field_name", ["issued", "tiers", "daily_change"])
def test_totals_merge_adds_every_counter(field_name):
    left, right = Totals(), Totals()
    getattr(left, field_name)["x"] = 2
    getattr(right, field_name)["x"] = 3
    left.redeemed, right.redeemed = 1, 4
    left.merge(right)
    assert getattr(left, field_name)["x"] == 5 and left.redeemed == 5


def test_a_candidate_with_a_version_from_mid_history_doubles_only_the_shares_after_it():
    members = history(100, 400, seed=3, mix={"shares": 1}, days=60)
    boundary = START + 30 * DAY
    versioned = parse_versions(toml_with() + f'[[versions]]\nname = "double"\neffective_from = "{iso(boundary)}"\n'
                               "[versions.shares]\npoints = 10\n")
    tally = run(members, CURRENT, versioned)
    after = sum(1 for _, es in members for e in es if event_time_ms(e) >= boundary)
    assert 0 < after < 400
    assert tally.candidate.issued["shares"] - tally.current.issued["shares"] == 5 * after
    assert tally.candidate.rewards == tally.current.rewards


# -- referrals: members connected by a referral are run together ------------------------------------

REFERRALS = {"referrals.referrer_points": "300", "referrals.friend_points": "200", "referrals.min_order_cents": "5000"}
REFERRING = parse_program(toml_with(REFERRALS))
DOUBLE_REFERRALS = parse_program(toml_with({**REFERRALS, "referrals.referrer_points": "600",
                                            "referrals.friend_points": "400"}))
WINDOW = 7 * DAY  # orders.return_window of the packaged program: when a referral is decided


def referral_history(pairs: int, seed: int) -> tuple[list[tuple[str, list]], int, int]:
    """A generated history (default mix) and `pairs` referrals among other members: each friend joins
    naming a referrer (one referrer has one to three friends) and pays a qualifying order; a drawn
    third of them get a partial refund inside the order's return window. (members, referrals paid,
    refunded); every window ends before the last event."""
    rng = random.Random(seed)
    members = dict(history(40, 400, seed, DEFAULT_MIX, days=90))
    paid = refunded = 0
    referrer = None
    for n in range(pairs):
        if referrer is None or rng.random() < 0.5:
            referrer = f"r{n}"
            members[referrer] = [{"event_id": f"{referrer}-j", "member_id": referrer, "type": "member_joined",
                                  "occurred_at": iso(START + rng.randrange(DAY))}]
        friend, at = f"f{n}", START + DAY + rng.randrange(60 * DAY)
        events = EventFactory(friend, f"{friend}-")
        members[friend] = [events.joined(at - 1000, referrer_id=referrer),
                           events.order(at, f"{friend}-o1", 5000 + rng.randrange(10_000))]
        if rng.random() < 1 / 3:
            members[friend].append(events.refund(at + rng.randrange(1, WINDOW), f"{friend}-o1", 100))
            refunded += 1
        else:
            paid += 1
    return list(members.items()), paid, refunded


def test_a_friend_whose_first_order_passes_its_window_pays_both_sides_exactly_and_a_refund_pays_nobody():
    members, paid, refunded = referral_history(30, seed=7)
    assert paid > 5 and refunded > 5
    tally = simulate(members, REFERRING, DOUBLE_REFERRALS, last_ms(members) + WINDOW)
    cur, cand = tally.current, tally.candidate
    assert (cur.issued["referral_referrer"], cur.issued["referral_friend"]) == (300 * paid, 200 * paid)
    assert (cand.issued["referral_referrer"], cand.issued["referral_friend"]) == (600 * paid, 400 * paid)
    assert cur.rewards["referral_pending"] == paid + refunded
    assert cur.rewards["referral_rejected"] == refunded == cand.rewards["referral_rejected"]
    assert cur.notifications["referral_referrer_rewarded"] == paid == cur.notifications["referral_friend_rewarded"]
    # nothing else moves: the candidate owes exactly the referral points more
    assert {rule: n for rule, n in cand.issued.items() if not rule.startswith("referral")} == \
        {rule: n for rule, n in cur.issued.items() if not rule.startswith("referral")}
    assert cand.liability - cur.liability == 500 * paid
    for totals in (cur, cand):
        assert flows_balance(totals) == totals.liability


def test_a_program_without_referral_points_pays_none_and_keeps_no_referral():
    members, paid, _ = referral_history(10, seed=2)
    tally = simulate(members, CURRENT, REFERRING, last_ms(members) + WINDOW)
    assert not any(rule.startswith("referral") for rule in tally.current.issued)
    assert tally.current.rewards["referral_pending"] == 0
    assert tally.candidate.issued["referral_referrer"] == 300 * paid


class ByHand:
    """The worker's partitions played by hand: stored states, every call through the core's versioned entry
    points, each message delivered when the test says so; outputs counted as the simulation counts them."""

    def __init__(self, versions: ProgramVersions, end: int) -> None:
        self.versions, self.totals, self.states = versions, Totals(), {}
        self.day_of, self.inbox, self.links = simulation._day_of(versions.at(end)), [], []

    def event(self, event: dict) -> None:
        result = apply_event_at(self.states.get(event["member_id"]), event, self.versions)
        self.totals.events[result.outcome] += 1
        self._keep(event["member_id"], result)

    def advance(self, member_id: str, at: int) -> None:
        self._keep(member_id, advance_at(self.states[member_id], self.versions, at))

    def deliver(self) -> None:
        message = self.inbox.pop(0)
        self._keep(message["member_id"], apply_message_at(self.states.get(message["member_id"]), message,
                                                          self.versions))

    def _keep(self, member_id: str, result) -> None:
        if result.state is not None or member_id in self.states:
            self.states[member_id] = result.state
        simulation._count(result, self.totals, self.day_of)
        self.inbox += result.messages
        self.links += result.device_links

    def close(self) -> Totals:
        for state in self.states.values():
            ledger = Ledger.from_dict(state["ledger"])
            self.totals.available += ledger.available
            self.totals.pending += ledger.pending
            self.totals.tiers[state["tier"]] += 1
            self.totals.segments[state.get("segment") or "none"] += 1
            self.totals.notifications_held += len(state.get("held", ()))
        return self.totals


def run_group(events: list[dict], end: int, program=REFERRING) -> Totals:
    members: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        members[event["member_id"]].append(event)
    totals = Totals()
    versions = ProgramVersions.single(program)
    simulation.run_group(members, versions, end, totals, simulation._day_of(program))
    return totals


T = START + 10 * DAY


def test_a_claim_reaches_the_referrer_at_the_window_end_before_its_later_events_as_by_hand():
    """The referrer is frozen an hour after the friend's window ends; the friend's next event is weeks later.
    Delivered at its instant, the claim is judged before the freeze: both sides are paid."""
    r, f = EventFactory("r", "r-"), EventFactory("f", "f-")
    joined_r, joined_f, order = r.joined(T - DAY), f.joined(T - 1000, referrer_id="r"), f.order(T, "f-o1", 6000)
    frozen = r.make("member_frozen", T + WINDOW + HOUR, operator_id="op", reason="audit")
    share = f.share(T + 20 * DAY)
    end = T + 30 * DAY
    simulated = run_group([share, frozen, order, joined_f, joined_r], end)  # any input order

    hand = ByHand(ProgramVersions.single(REFERRING), end)
    for event in (joined_r, joined_f, order):
        hand.event(event)
    hand.advance("f", T + WINDOW)  # the due schedule at the window's end: the claim
    assert [m["type"] for m in hand.inbox] == ["referral_claimed"]
    hand.deliver()  # to the referrer, which answers
    hand.deliver()  # the answer, to the friend
    for event in (frozen, share):
        hand.event(event)
    hand.advance("r", end)
    hand.advance("f", end)
    assert simulated == hand.close()
    assert (simulated.issued["referral_referrer"], simulated.issued["referral_friend"]) == (300, 200)
    assert simulated.rewards["member_frozen"] == 1


def test_a_claim_to_a_referrer_without_state_is_answered_referrer_unknown():
    f = EventFactory("f", "f-")
    end = T + 2 * WINDOW
    r = EventFactory("r", "r-")
    simulated = run_group([f.joined(T - 1000, referrer_id="r"), f.order(T, "f-o1", 6000),
                           r.joined(T + WINDOW + 1)], end)  # the referrer joins after the claim
    assert simulated.issued == Counter({"order": 60, "first_order_bonus": 100})
    assert simulated.rewards["referral_rejected"] == 1
    assert sum(simulated.tiers.values()) == 2


def shared_device_history() -> tuple[list[dict], dict]:
    """A friend logs in on a device and pays a qualifying order; then its referrer logs in on that device
    and the friend shares. And the flag the worker's device index sent for the friend, read back from the
    admin topic half an hour after the referrer's login."""
    r, f = EventFactory("r", "r-"), EventFactory("f", "f-")
    events = [r.joined(T - DAY), f.joined(T - 2000, referrer_id="r"), f.make("login", T - 1000, device_id="dev"),
              f.order(T, "f-o1", 6000), r.make("login", T + HOUR, device_id="dev"), f.share(T + 2 * HOUR)]
    return events, device_flag("f", {"referrer_id": "r", "device": "dev"}, iso(T + HOUR + 30 * MINUTE))


def test_a_friend_on_its_referrers_device_is_flagged_and_frozen_as_the_device_index_does_by_hand():
    events, _ = shared_device_history()
    end = T + 2 * WINDOW
    simulated = run_group(events, end)

    hand = ByHand(ProgramVersions.single(REFERRING), end)
    for event in events[:5]:
        hand.event(event)
    entry, flags = {}, []
    for link in hand.links:  # what the device agent does with the links
        entry, new = apply_link(entry, link)
        flags += new
    assert flags == [("f", {"referrer_id": "r", "device": "dev"})]
    hand.event(device_flag("f", flags[0][1], iso(T + HOUR)))  # at once, at the referrer's login
    hand.event(events[5])
    hand.advance("f", T + WINDOW)  # the friend's own rules reject: no claim
    assert hand.inbox == []
    hand.advance("r", end)
    hand.advance("f", end)
    assert simulated == hand.close()
    assert simulated.rewards["member_flagged"] == 1 and simulated.rewards["referral_rejected"] == 1
    assert simulated.events["frozen"] == 1  # the share
    assert not any(rule.startswith("referral") for rule in simulated.issued)


@pytest.mark.parametrize("copy_after", [True, False])
def test_the_worker_flag_in_the_history_and_the_simulated_one_count_once(copy_after):
    events, copy = shared_device_history()
    if not copy_after:  # stamped before the login (another clock): that copy is applied, the simulated one not
        copy = {**copy, "occurred_at": iso(T + HOUR - 1)}
    simulated = run_group([*events, copy], T + 2 * WINDOW)
    assert simulated.rewards["member_flagged"] == 1
    assert sum(simulated.events.values()) == len(events) + 1  # the flag counted once, as the worker's admin event
    if copy_after:
        assert simulated == run_group(events, T + 2 * WINDOW)  # the same as the simulated flag alone


def test_members_connected_by_referrals_form_groups_in_first_seen_order():
    links = [("b", "a"), ("c", "b"), ("e", "ghost"), ("f", "f")]
    assert connected(["a", "d", "b", "e", "f", "c"], links) == [["a", "b", "c"], ["d"], ["e"], ["f"]]
    assert list(referral_links([EventFactory("x").joined(T, referrer_id="y"), EventFactory("z").joined(T)])) == \
        [("x", "y")]


# A drawn history of a few members who join naming each other as referrers (chains, loops, themselves,
# unknown ones, none), then order, refund, log in on a few shared devices, get frozen and erased.
REFERRERS = st.lists(st.integers(-2, 7), min_size=8, max_size=8)  # -1: no referrer, -2: one without events
STEPS = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["order", "order", "refund", "login", "login",
                                                               "share", "freeze", "erase"]),
                           st.floats(0, 1), st.integers(0, 8)), max_size=40)


def drawn_referrals(referrers: list[int], steps) -> list[tuple[str, list]]:
    members: dict[str, list[dict]] = defaultdict(list)
    for index, referrer in enumerate(referrers):
        member_id = f"m{index}"
        named = {-1: {}, -2: {"referrer_id": "ghost"}}.get(referrer, {"referrer_id": f"m{referrer}"})
        members[member_id].append(EventFactory(member_id, f"{member_id}-j").joined(START + index * HOUR, **named))
    for n, (index, kind, when, param) in enumerate(steps):
        member_id, at = f"m{index}", START + int(when * 60 * DAY)
        factory = EventFactory(member_id, f"{member_id}-{n}-")
        if kind == "order":
            event = factory.order(at, f"{member_id}-o{param % 3}", 4000 + 1000 * param)
        elif kind == "refund":
            event = factory.refund(at, f"{member_id}-o{param % 3}", 100)
        elif kind == "login":
            event = factory.make("login", at, device_id=f"dev{param % 2}")
        elif kind == "share":
            event = factory.share(at)
        elif kind == "freeze":
            event = factory.make("member_frozen", at, operator_id="op", reason="test")
        else:
            event = factory.erased(at)
        members[member_id].append(event)
    return list(members.items())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(referrers=REFERRERS, steps=STEPS, side=st.lists(st.booleans(), min_size=8, max_size=8),
       order=st.randoms(use_true_random=False))
def test_the_tally_depends_neither_on_how_groups_are_split_nor_on_the_order_of_members(referrers, steps, side, order):
    members = drawn_referrals(referrers, steps)
    end = START + 70 * DAY
    whole = simulate(members, REFERRING, DOUBLE_REFERRALS, end)
    assert flows_balance(whole.current) == whole.current.liability
    assert flows_balance(whole.candidate) == whole.candidate.liability

    shuffled = list(members)
    order.shuffle(shuffled)
    assert simulate(shuffled, REFERRING, DOUBLE_REFERRALS, end) == whole

    by_id = dict(members)
    groups = connected(by_id, (link for _, events in members for link in referral_links(events)))
    parts = [[(m, by_id[m]) for n, group in enumerate(groups) if side[n % 8] == part for m in group]
             for part in (True, False)]
    split = simulate(parts[0], REFERRING, DOUBLE_REFERRALS, end)
    split.merge(simulate(parts[1], REFERRING, DOUBLE_REFERRALS, end))
    assert split == whole


def test_a_message_the_core_raises_on_is_dead_lettered_and_the_members_go_on(monkeypatch):
    def failing(state, message, versions):
        raise ValueError("boom")

    monkeypatch.setattr(simulation, "apply_message_at", failing)
    f, r = EventFactory("f", "f-"), EventFactory("r", "r-")
    totals = run_group([r.joined(T - DAY), f.joined(T - 1000, referrer_id="r"), f.order(T, "f-o1", 6000),
                        r.share(T + WINDOW + HOUR)], T + 2 * WINDOW)
    assert totals.dead_letters == Counter({"processing_error": 1})  # the claim: no answer, nobody paid
    assert totals.events == Counter({"applied": 4})
    assert not any(rule.startswith("referral") for rule in totals.issued) and totals.issued["shares"] == 5

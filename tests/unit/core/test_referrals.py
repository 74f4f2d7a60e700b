"""Two-sided referrals in the pure core: the friend's pending referral, its judgement when the return window
ends, the referrer's verdict, the payouts, and that every message applied again changes nothing.

`World` plays the partitions: each member's state apart, and the messages between them delivered only
when a test says so (in any order, any number of times), as the internal referrals topic would."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.member import Member
from stream_app.core.program_versions import ProgramVersions
from stream_app.core.referral_book import MAX_DECIDED, ReferralBook
from stream_app.core.referrals import REASONS, judge_claim, milestone_points, successes_in_month
from stream_app.core.versioned import advance_at, apply_event_at, apply_message_at
from tests.unit.conftest import DAY, EventFactory, build_program, ms

T0 = ms("2024-03-05T10:00:00+08:00")
WINDOW_ENDS = T0 + 7 * DAY
REFERRALS = {"referrals.referrer_points": "300", "referrals.friend_points": "200",
             "referrals.min_order_cents": "5000", "referrals.max_per_month": "2"}


class World:
    def __init__(self, program=None) -> None:
        self.versions = ProgramVersions.single(program or build_program(REFERRALS, campaigns=False))
        self.states: dict[str, dict | None] = {}
        self.factories: dict[str, EventFactory] = {}
        self.inbox: list[dict] = []  # messages sent, not yet delivered
        self.rewards: list[dict] = []
        self.notifications: list[dict] = []

    def event(self, member_id: str, kind: str, *args, **kw) -> None:
        factory = self.factories.setdefault(member_id, EventFactory(member_id, f"{member_id}-e"))
        event = getattr(factory, kind)(*args, **kw)
        self._keep(member_id, apply_event_at(self.states.get(member_id), event, self.versions))

    def advance(self, member_id: str, at: int) -> None:
        self._keep(member_id, advance_at(self.states[member_id], self.versions, at))

    def deliver(self, *, keep: bool = False) -> int:
        """Deliver every message sent so far (again, when `keep`: a redelivery after a crash)."""
        sent, count = list(self.inbox), 0
        if not keep:
            self.inbox.clear()
        for message in sent:
            member_id = message["member_id"]
            self._keep(member_id, apply_message_at(self.states.get(member_id), message, self.versions))
            count += 1
        return count

    def settle(self) -> None:
        while self.deliver():
            pass

    def _keep(self, member_id: str, result) -> None:
        if result.state is not None or member_id in self.states:
            self.states[member_id] = result.state
        self.rewards += result.rewards
        self.notifications += result.notifications
        self.inbox += result.messages

    def member(self, member_id: str) -> Member:
        return Member.from_dict(self.states[member_id])

    def earned(self, member_id: str) -> list[tuple[str, int]]:
        return [(r["rule"], r["points"]) for r in self.rewards
                if r["member_id"] == member_id and r["type"] == "points_earned" and r["rule"].startswith("referral")]

    def rejections(self) -> list[str]:
        return [r["details"]["reason"] for r in self.rewards if r["type"] == "referral_rejected"]


def referred(world: World, friend: str = "f", referrer: str = "r", amount: int = 6000, at: int = T0) -> None:
    """`referrer` exists, `friend` joins referred by it and pays its first order."""
    if referrer not in world.states and referrer != friend:
        world.event(referrer, "joined", at - DAY)
    world.event(friend, "joined", at - 1000, referrer_id=referrer)
    world.event(friend, "order", at, f"{friend}-o1", amount)


def test_both_sides_are_paid_once_the_window_ends_and_not_before():
    world = World()
    referred(world)
    [pending] = [r for r in world.rewards if r["type"] == "referral_pending"]
    assert pending["member_id"] == "f" and pending["details"]["referrer_id"] == "r"
    world.advance("f", WINDOW_ENDS - 1)
    assert world.inbox == []
    world.advance("f", WINDOW_ENDS)
    [claim] = world.inbox
    assert (claim["type"], claim["member_id"], claim["friend_id"]) == ("referral_claimed", "r", "f")
    world.settle()
    assert world.earned("r") == [("referral_referrer", 300)]
    assert world.earned("f") == [("referral_friend", 200)]
    assert world.member("r").ledger.available == 300
    templates = {(n["member_id"], n["template"]) for n in world.notifications}
    assert {("r", "referral_referrer_rewarded"), ("f", "referral_friend_rewarded")} <= templates
    assert world.member("f").referrals.friend.status == "paid"


def test_the_friends_next_event_after_the_window_also_claims():
    """Due work runs when the next event comes, if no tick came: the claim is sent then, once."""
    world = World()
    referred(world)
    world.event("f", "share", WINDOW_ENDS + DAY)
    assert [m["type"] for m in world.inbox] == ["referral_claimed"]
    world.event("f", "share", WINDOW_ENDS + 2 * DAY)
    assert len(world.inbox) == 1


def test_every_message_delivered_again_pays_nobody_twice():
    world = World()
    referred(world)
    world.advance("f", WINDOW_ENDS)
    [claim] = world.inbox
    world.deliver()
    [first] = world.inbox
    world.inbox = [claim]  # the claim again: the same answer, with the same id, and nothing paid
    world.deliver()
    assert world.inbox == [first] and first["type"] == "referral_decided"
    world.inbox = [first, first, first]  # the answer three times
    world.deliver()
    world.inbox = [claim]  # and the claim again, after all that
    world.settle()
    assert world.earned("r") == [("referral_referrer", 300)]
    assert world.earned("f") == [("referral_friend", 200)]


def test_a_refund_inside_the_window_cancels_the_referral():
    world = World()
    referred(world)
    world.event("f", "refund", WINDOW_ENDS - DAY, "f-o1", 1000)
    world.advance("f", WINDOW_ENDS + DAY)
    world.settle()
    assert world.rejections() == ["order_refunded"] and world.earned("r") == [] == world.earned("f")


def test_a_refund_after_the_window_does_not_cancel():
    world = World()
    referred(world)
    world.advance("f", WINDOW_ENDS)
    world.event("f", "refund", WINDOW_ENDS + DAY, "f-o1", 6000)
    world.settle()
    assert world.earned("f") == [("referral_friend", 200)] and world.rejections() == []


def test_only_the_first_qualifying_order_counts():
    world = World()
    referred(world, amount=4999)  # below min_order_cents: not qualifying
    assert world.member("f").referrals.friend is None
    world.event("f", "order", T0 + DAY, "f-o2", 5000)
    world.event("f", "order", T0 + 2 * DAY, "f-o3", 9000)
    assert world.member("f").referrals.friend.order_id == "f-o2"


@pytest.mark.parametrize("case, reason", [
    ("self", "self_referral"), ("unknown", "referrer_unknown"), ("frozen", "referrer_frozen"),
    ("loop", "referral_loop"), ("device", "shared_device"), ("flagged", "shared_device"),
])
def test_each_fraud_rule_rejects_with_its_reason_and_pays_nobody(case, reason):
    world = World()
    if case == "self":
        referred(world, friend="f", referrer="f")
    elif case == "unknown":
        world.event("f", "joined", T0 - 1000, referrer_id="ghost")
        world.event("f", "order", T0, "f-o1", 6000)
    elif case == "frozen":
        world.event("r", "joined", T0 - DAY)
        world.event("r", "make", "member_frozen", T0 - DAY + 1, operator_id="op", reason="audit")
        referred(world)
    elif case == "loop":
        world.event("r", "joined", T0 - DAY, referrer_id="f")
        referred(world)
    elif case == "device":
        world.event("r", "joined", T0 - DAY)
        world.event("r", "make", "login", T0 - DAY + 1, device_id="dev-1")
        world.event("f", "make", "login", T0 - 2000, device_id="dev-1")
        referred(world)
    else:  # the device index flagged the friend for this referrer (and so froze it)
        world.event("r", "joined", T0 - DAY)
        referred(world)
        world.event("f", "make", "member_flagged", T0 + DAY, operator_id="abuse-monitor", reason="x",
                    rule="referral_shared_device", evidence={"referrer_id": "r", "device": "d"})
    world.advance("f", WINDOW_ENDS)
    world.settle()
    assert world.rejections() == [reason]
    assert world.earned("r") == [] == world.earned("f")
    assert world.member("f").referrals.friend.status == "rejected"


def test_more_than_max_per_month_is_rejected_and_the_next_month_pays_again():
    world = World()
    world.event("r", "joined", T0 - DAY)
    for i, at in enumerate([T0, T0 + 1000, T0 + 2000, T0 + 40 * DAY]):
        referred(world, friend=f"f{i}", at=at)
        world.advance(f"f{i}", at + 7 * DAY)
        world.settle()
    assert world.rejections() == ["max_per_month"]
    assert world.earned("r") == [("referral_referrer", 300)] * 3
    assert [f for f in ("f0", "f1", "f2", "f3") if world.earned(f)] == ["f0", "f1", "f3"]


def test_a_milestone_pays_the_referrer_at_its_nth_success():
    program = build_program({**REFERRALS, "referrals.max_per_month": "100"}, campaigns=False,
                            extra="[[referrals.milestones]]\ncount = 2\npoints = 1000\n")
    world = World(program)
    world.event("r", "joined", T0 - DAY)
    for i in range(3):
        referred(world, friend=f"f{i}", at=T0 + i)
        world.advance(f"f{i}", T0 + i + 7 * DAY)
        world.settle()
    assert world.earned("r") == [("referral_referrer", 300), ("referral_referrer", 300),
                                 ("referral_milestone", 1000), ("referral_referrer", 300)]


def test_a_program_without_referral_points_keeps_no_referral_state():
    world = World(build_program(campaigns=False))
    referred(world)
    world.advance("f", WINDOW_ENDS)
    assert world.inbox == [] and "referrals" not in world.states["f"]


def test_a_referral_book_round_trips_and_a_state_without_one_loads_empty():
    book = ReferralBook.from_dict(None)
    assert not book and book.to_dict() == {"friend": None, "decided": [], "successes": 0}
    world = World()
    referred(world)
    state = world.states["f"]
    assert Member.from_dict(state).to_dict() == state


def test_the_referrer_remembers_a_bounded_number_of_decisions():
    book = ReferralBook()
    for i in range(MAX_DECIDED + 5):
        book.decide(f"f{i}", i, None)
    assert len(book.decided) == MAX_DECIDED and book.decided[0][0] == "f5" and book.successes == MAX_DECIDED + 5


# -- properties of the pure rules ------------------------------------------------------------------------

PROGRAM = build_program(REFERRALS, campaigns=False)
ids = st.sampled_from(["a", "b", "c", "d"])
devices = st.lists(st.sampled_from(["d1", "d2", "d3"]), max_size=3)


@st.composite
def referrers(draw):
    member = Member(member_id=draw(ids), created_at=0, tier="bronze", frozen=draw(st.booleans()),
                    referrer_id=draw(st.none() | ids), devices=draw(devices))
    for friend, when, ok in draw(st.lists(st.tuples(ids, st.integers(0, 90 * DAY), st.booleans()), max_size=6)):
        member.referrals.decide(friend, T0 + when, None if ok else "referrer_frozen")
    return member


@settings(max_examples=300, deadline=None)
@given(referrer=st.none() | referrers(), friend=ids, friend_devices=devices, at=st.integers(0, 90 * DAY))
def test_judge_claim_gives_a_known_reason_or_pays_and_pays_only_when_every_rule_passes(
        referrer, friend, friend_devices, at):
    reason = judge_claim(referrer, friend, friend_devices, T0 + at, PROGRAM)
    assert reason is None or reason in REASONS
    if reason is None:
        assert referrer is not None and not referrer.frozen and referrer.referrer_id != friend
        assert not set(friend_devices) & set(referrer.devices)
        assert successes_in_month(referrer, T0 + at, PROGRAM) < PROGRAM.referrals.max_per_month
    if referrer is None:
        assert reason == "referrer_unknown"


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.sampled_from(["tick", "deliver", "redeliver", "refund"]), max_size=12))
def test_whatever_the_order_of_ticks_and_deliveries_each_side_is_paid_at_most_once(events):
    world = World()
    referred(world)
    at = T0
    for step in events:
        if step == "tick":
            at += 3 * DAY
            world.advance("f", at)
        elif step == "refund":
            world.event("f", "refund", max(at, world.member("f").evaluated_at or at), "f-o1", 100)
        else:
            world.deliver(keep=step == "redeliver")
    world.advance("f", at + 30 * DAY)
    world.settle()
    paid_r, paid_f = world.earned("r"), world.earned("f")
    assert paid_r in ([], [("referral_referrer", 300)]) and paid_f == [("referral_friend", 200)] * len(paid_r)
    assert bool(world.rejections()) != bool(paid_r)  # each referral ends either paid or rejected, once
    assert len(world.rejections()) <= 1


def test_milestone_points_are_those_of_the_matching_count():
    program = build_program(REFERRALS, campaigns=False,
                            extra="[[referrals.milestones]]\ncount = 1\npoints = 5\n"
                                  "[[referrals.milestones]]\ncount = 3\npoints = 7\n")
    assert [milestone_points(program.referrals, n) for n in range(1, 5)] == [5, 0, 7, 0]

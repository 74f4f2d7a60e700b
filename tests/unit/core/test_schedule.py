"""DueSchedule: one entry per member, replaced lazily, popped earliest first."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.due_schedule import DueSchedule


def test_pop_due_returns_members_due_at_or_before_now_earliest_first():
    s = DueSchedule()
    s.set(b"c", 30)
    s.set(b"a", 10)
    s.set(b"b", 20)
    assert len(s) == 3
    assert s.pop_due(9) == []
    assert s.pop_due(20) == [(b"a", 10), (b"b", 20)]
    assert len(s) == 1
    assert s.pop_due(20) == []
    assert s.pop_due(100) == [(b"c", 30)]
    assert len(s) == 0


def test_ties_are_ordered_by_member():
    s = DueSchedule()
    for member in (b"z", b"m", b"a"):
        s.set(member, 5)
    assert s.pop_due(5) == [(b"a", 5), (b"m", 5), (b"z", 5)]


def test_set_replaces_an_earlier_entry():
    s = DueSchedule()
    s.set(b"a", 10)
    s.set(b"a", 50)
    assert len(s) == 1
    assert s.pop_due(49) == []          # the stale entry at 10 is skipped
    assert s.pop_due(50) == [(b"a", 50)]


def test_set_can_move_an_entry_earlier():
    s = DueSchedule()
    s.set(b"a", 50)
    s.set(b"a", 10)
    assert s.pop_due(10) == [(b"a", 10)]
    assert s.pop_due(100) == []         # the stale entry at 50 is not returned


def test_set_none_unschedules():
    s = DueSchedule()
    s.set(b"a", 10)
    s.set(b"a", None)
    s.set(b"b", None)
    assert len(s) == 0
    assert s.pop_due(100) == []


def test_rescheduling_back_to_a_stale_time_returns_the_member_once():
    s = DueSchedule()
    s.set(b"a", 10)
    s.set(b"a", 20)
    s.set(b"a", 10)
    assert s.pop_due(15) == [(b"a", 10)]
    s.set(b"a", 20)
    assert s.pop_due(30) == [(b"a", 20)]
    assert s.pop_due(30) == []


def test_setting_the_same_time_again_adds_no_entry():
    s = DueSchedule()
    for _ in range(5):
        s.set(b"a", 10)
    assert len(s._heap) == 1
    assert s.pop_due(10) == [(b"a", 10)]


def test_clear():
    s = DueSchedule()
    s.set(b"a", 1)
    s.clear()
    assert (len(s), s.pop_due(10)) == (0, [])


OPS = st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c", b"d"]),
                         st.one_of(st.none(), st.integers(0, 50)), st.integers(0, 10)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_behaves_like_a_dict_of_due_times_when_each_due_message_arrives_at_once(ops):
    s, model, now = DueSchedule(), {}, 0
    for member, due_at, step in ops:
        s.set(member, due_at)
        if due_at is None:
            model.pop(member, None)
        else:
            model[member] = due_at
        now += step
        expected = sorted((at, m) for m, at in model.items() if at <= now)
        assert s.pop_due(now) == [(m, at) for at, m in expected]
        for _, m in expected:
            del model[m]
            s.arrived(m)
        assert len(s) == len(model)


IN_FLIGHT_OPS = st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.one_of(st.none(), st.integers(0, 50)),
                                   st.integers(0, 10), st.booleans()), max_size=80)


@settings(max_examples=300, deadline=None)
@given(IN_FLIGHT_OPS)
def test_due_work_is_never_lost_nor_sent_twice_while_a_message_is_in_flight(ops):
    """Whatever the order of sets, ticks and arrivals: a member's latest due instant is either scheduled
    or covered by its message in flight (sent at or after it), and no member is sent a second message for
    an instant its first one covers."""
    s, latest, sent, now = DueSchedule(), {}, {}, 0
    for member, due_at, step, arrives in ops:
        s.set(member, due_at)
        latest[member] = due_at
        now += step
        for m, at in s.pop_due(now):
            assert at > sent.get(m, -1), "a second message for work the one in flight covers"
            assert at == latest[m] and at <= now
            sent[m] = now
        if arrives and member in sent:
            covered = sent.pop(member)
            s.arrived(member)
            # the message advanced the member to when it was sent: what it covered is done
            if latest[member] is not None and latest[member] <= covered:
                latest[member] = None
        for m, at in latest.items():
            if at is not None:
                assert at in (due for due, who in s._heap if who == m and s._shard(m).get(m) == due) or (
                    m in sent and at <= sent[m]), f"{m!r}'s due work at {at} is neither scheduled nor in flight"


def test_a_member_sent_a_due_message_is_not_sent_another_for_work_it_covers():
    s = DueSchedule()
    s.set(b"a", 10)
    assert s.pop_due(100) == [(b"a", 10)]  # its message is dated 100
    s.set(b"a", 20)  # an older event of a backlog, applied before the message: covered by it
    s.set(b"a", 100)
    assert (s.pop_due(1000), len(s), s.in_flight) == ([], 0, 1)
    s.set(b"a", 150)  # past the message's instant: scheduled as usual
    assert s.pop_due(1000) == [(b"a", 150)]


def test_a_member_whose_due_message_arrived_is_scheduled_again():
    s = DueSchedule()
    s.set(b"a", 10)
    s.pop_due(100)
    s.arrived(b"a")
    s.set(b"a", 50)  # e.g. a late event's return window, before the message's instant
    assert (s.pop_due(100), s.in_flight) == ([(b"a", 50)], 1)


def test_a_rebuild_forgets_the_messages_in_flight():
    s = DueSchedule()
    s.set(b"a", 10)
    s.pop_due(100)
    s.begin_rebuild()  # the partition may have moved: its message may never arrive here
    s.set(b"a", 20)
    s.end_rebuild()
    assert s.pop_due(100) == [(b"a", 20)]


def test_a_rebuild_loads_stored_instants_but_keeps_what_was_set_since_it_began():
    s = DueSchedule()
    s.set(b"gone", 1)  # a member of a partition given away: dropped when the rebuild begins
    s.begin_rebuild()
    s.set(b"a", 50)  # the agent, after an event, while the rebuild runs
    s.set(b"b", None)  # the agent: nothing due any more
    s.load(b"a", 10)  # the index, read before the agent's write reached it
    s.load(b"b", 20)
    s.load(b"c", 30)
    assert s.rebuilding
    s.end_rebuild()
    s.load(b"a", 40)  # after the rebuild, a load replaces like a set
    assert not s.rebuilding
    assert s.pop_due(100) == [(b"c", 30), (b"a", 40)]

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
def test_behaves_like_a_dict_of_due_times(ops):
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
        assert len(s) == len(model)


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

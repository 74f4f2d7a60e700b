"""The intake's pacing of the fetcher (agents/intake.py `_pace`): a fake app and consumer, the real merge."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client import REGISTRY

import agents.intake as intake_module
from agents.intake import OrderedIntake

BASE = 1_700_000_000_000


class FakeApp:
    """What the intake reads of the app: the consumer's highwaters and committed offsets, the generation,
    the flow, whether a rebalance is under way; fetching paused and resumed through `pause_fetching`."""

    def __init__(self, highwaters: dict[TP, int]) -> None:
        self.highwaters, self.calls = highwaters, []
        self.assigned = {TP("orders", 0), TP("reviews", 0), TP("rewards", 0)}  # rewards: not merged
        self.consumer = SimpleNamespace(highwater=lambda tp: self.highwaters.get(tp, 0), _committed_offset={},
                                        assignment=lambda: set(self.assigned))
        self.consumer_generation_id, self.rebalancing = 1, False
        self.flow_control = SimpleNamespace(is_active=lambda: True)


@pytest.fixture
def app(monkeypatch) -> FakeApp:
    fake = FakeApp({TP("orders", 0): 1_000})  # orders has 1,000 records not read yet: it lags

    async def pause_fetching(app, tps, pause):
        fake.calls.append(("pause" if pause else "resume", sorted(tps)))

    monkeypatch.setattr(intake_module, "pause_fetching", pause_fetching)
    monkeypatch.setattr(intake_module, "PACED", 200)  # two merged topic partitions: each paused at 100 held
    return fake


def add(intake: OrderedIntake, topic: str, times: range) -> None:
    for offset, minute in enumerate(times):
        event = SimpleNamespace(name=f"{topic}-{offset}", message=SimpleNamespace(acked=False))
        intake._merge.add(topic, 0, BASE + minute * 60_000, event)


def paused_gauge() -> float:
    return REGISTRY.get_sample_value("loyalty_order_paused_partitions")


async def test_a_topic_partition_ahead_of_a_lagging_one_is_paused_and_resumed_once_it_drained(app):
    intake = OrderedIntake(app, ["orders", "reviews"], 2.0, lambda event: None)
    add(intake, "orders", range(1))
    add(intake, "reviews", range(100, 250))  # far ahead of orders, which still has records to read
    assert [event.name for event in intake._merge.release()] == ["orders-0"]  # the reviews wait for orders
    await intake._pace()
    assert app.calls == [("pause", [TP("reviews", 0)])] and paused_gauge() == 1

    await intake._pace()  # still long: not paused again
    assert len(app.calls) == 1

    add(intake, "orders", range(300, 301))  # orders caught up past every review
    assert len(intake._merge.release()) == 151
    await intake._pace()
    assert app.calls[1:] == [("resume", [TP("reviews", 0)])] and paused_gauge() == 0


async def test_the_lagging_topic_itself_is_never_paused(app):
    """What a queue head waits for has nothing queued: pausing it could wedge the merge."""
    intake = OrderedIntake(app, ["orders", "reviews"], 2.0, lambda event: None)
    add(intake, "reviews", range(100, 400))
    intake._merge.release()
    await intake._pace()
    assert app.calls == [("pause", [TP("reviews", 0)])]


async def test_no_pacing_during_a_rebalance_and_a_new_generation_forgets_what_was_paused(app):
    intake = OrderedIntake(app, ["orders", "reviews"], 2.0, lambda event: None)
    add(intake, "reviews", range(100, 400))
    app.rebalancing = True
    await intake._pace()
    assert app.calls == []
    app.rebalancing = False
    await intake._pace()
    assert intake._paused == {TP("reviews", 0)}
    app.consumer_generation_id = 2  # the group rebalanced: every partition fetches again
    assert intake._admit([])
    assert intake._paused == set() and paused_gauge() == 0
    assert len(intake._merge) == 0  # what was held is dropped unacked, read again by the partition's owner


async def test_the_bound_is_shared_by_every_assigned_topic_partition_not_only_those_that_delivered(app):
    """From a backlog the first fetches bring a few topic partitions: bounded as if they were the only ones,
    their queues would fill the cap before the others deliver."""
    app.assigned |= {TP("orders", 1), TP("reviews", 1)}  # four merged topic partitions: each paused at 50
    intake = OrderedIntake(app, ["orders", "reviews"], 2.0, lambda event: None)
    add(intake, "reviews", range(100, 160))  # the only one that delivered yet: 60 held
    intake._merge.release()
    await intake._pace()
    assert app.calls == [("pause", [TP("reviews", 0)])]


async def test_the_assignment_is_counted_again_after_a_rebalance(app):
    intake = OrderedIntake(app, ["orders", "reviews"], 2.0, lambda event: None)
    add(intake, "reviews", range(100, 160))  # 60 held: under the 100 of two topic partitions
    await intake._pace()
    assert app.calls == []
    app.assigned |= {TP("orders", 1), TP("reviews", 1)}
    app.consumer_generation_id = 2
    assert intake._admit([])
    add(intake, "reviews", range(100, 160))
    await intake._pace()
    assert app.calls == [("pause", [TP("reviews", 0)])]

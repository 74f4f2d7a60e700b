"""Properties of the redemption protocol whatever the delivery order, repeats and reward-agent crashes:
no oversell, every code issued once, and points conserved (reserved = redeemed + released)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core.member import Member
from stream_app.core.reward_stock import RewardStock
from tests.unit.conftest import build_program, ms
from tests.unit.core.rewards_world import World

T0 = ms("2026-03-02T10:00:00+08:00")
PRICE = 100
PROGRAM = build_program({"rewards.allow_free_form": "false"}, extra=f"""
[[rewards.catalog]]
code = "LAST"
name = "The last few"
kind = "coupon"
points = {PRICE}
codes = "pool"
""")

steps = st.lists(st.tuples(st.sampled_from(["request", "reply", "again", "crash", "save", "stock"]),
                           st.integers(0, 10**6)), max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(funds=st.lists(st.integers(0, 3 * PRICE), min_size=1, max_size=25), pool=st.integers(0, 12),
       added=st.integers(0, 5), choices=steps)
def test_no_oversell_no_double_code_and_points_conserved(funds, pool, added, choices):
    world = World(PROGRAM)
    codes = [f"C-{i}" for i in range(pool + added)]
    world.operator("LAST", "codes_imported", "imp-1", codes=codes[:pool])
    world.save("LAST")
    for i, points in enumerate(funds):
        if points:
            world.fund(f"m{i}", points, T0)
        world.request(f"m{i}", f"r{i}", "LAST", T0 + 1 + i)
    stocked = False
    for action, pick in choices:
        if action == "request" and world.to_rewards:
            world.deliver_request(pick % len(world.to_rewards))
        elif action == "reply" and world.to_members:
            world.deliver_reply(pick % len(world.to_members))
        elif action == "again" and world.to_rewards:
            world.deliver_request(pick % len(world.to_rewards), again=True)
        elif action == "again" and world.to_members:
            world.deliver_reply(pick % len(world.to_members), again=True)
        elif action == "crash":
            world.crash("LAST")
        elif action == "save":
            world.save("LAST")
        elif action == "stock" and not stocked and added:
            world.operator("LAST", "codes_imported", "imp-2", codes=codes[pool:])
            stocked = True
        assert_invariants(world, len(codes))
    world.settle()
    assert_invariants(world, len(codes))

    issued = world.of("reward_issued")
    granted = [c for n in world.notes("coupon_issued") for c in n["params"]["codes"]]
    assert len(issued) == len(granted) <= len(codes)
    assert len(set(granted)) == len(granted) and set(granted) <= set(codes)
    stock = RewardStock.from_dict(world.stocks["LAST"])
    assert not any(a["status"] == "allocated" for a in stock.allocations.values())  # nothing left open
    assert sorted(stock.pool + granted) == sorted(codes[:pool] + (codes[pool:] if stocked else []))
    able = sum(1 for points in funds if points >= PRICE)
    if stocked:  # codes that came after some requests were judged: those stay rejected
        assert min(able, pool) <= len(issued) <= min(able, pool + added)
    else:
        assert len(issued) == min(able, pool)
    for i, points in enumerate(funds):
        member = world.members.get(f"m{i}")
        mine = [r for r in issued if r["member_id"] == f"m{i}"]
        if member is not None:
            assert Member.from_dict(member).ledger.available == points - PRICE * len(mine)
            assert Member.from_dict(member).rewards.points_reserved == 0
    reserved = -sum(r["points"] for r in world.of("points_reserved"))
    redeemed = sum(r["details"]["points"] for r in world.of("points_redeemed"))
    released = sum(r["points"] for r in world.of("reservation_released"))
    assert reserved == redeemed + released == PRICE * sum(1 for p in funds if p >= PRICE)


def assert_invariants(world: World, codes: int) -> None:
    stock = world.stocks.get("LAST")
    if stock is not None:
        stock = RewardStock.from_dict(stock)
        assert len(stock.pool) + len(stock.used) <= codes
        assert not set(stock.pool) & set(stock.used)

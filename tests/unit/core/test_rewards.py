"""The redemption protocol between member partitions and reward agents (docs/rewards.md), in the pure core."""
from __future__ import annotations

import pytest

from stream_app.core.member import Member
from stream_app.core.program import ProgramError, parse_program
from stream_app.core.reward_stock import RewardStock, generated_code
from tests.unit.conftest import DAY, build_program, ms, toml_with
from tests.unit.core.rewards_world import World

T0 = ms("2026-03-02T10:00:00+08:00")
CATALOGUE = """
[[rewards.catalog]]
code = "FLASH"
name = "Flash-sale coupon"
kind = "coupon"
points = 100
stock = 3
codes = "pool"
coupon_valid_for = "P7D"

[[rewards.catalog]]
code = "MUG"
name = "Mug"
kind = "gift"
points = 50
limit_per_member = 2
limit_period = "month"
available_from = "2026-03-01T00:00:00+08:00"
available_until = "2026-04-01T00:00:00+08:00"

[[rewards.catalog]]
code = "LOUNGE"
name = "Lounge access"
kind = "privilege"
points = 10
tier = "gold"

[[rewards.catalog]]
code = "GOLD-MONTHLY"
name = "Monthly coupon for gold"
kind = "coupon"
points = 0

[[rewards.grants]]
reward = "GOLD-MONTHLY"
min_tier = "gold"
period = "month"
"""


@pytest.fixture(scope="module")
def program():
    return build_program({"rewards.allow_free_form": "false"}, extra=CATALOGUE)


def funded(program, members: int = 1, points: int = 1000) -> World:
    world = World(program)
    for i in range(members):
        world.fund(f"m{i}", points, T0)
    return world


def codes_in(world: World, code: str, codes: list[str], import_id: str = "imp-1") -> None:
    world.operator(code, "codes_imported", import_id, codes=codes)


def balance(world: World, member_id: str) -> int:
    return Member.from_dict(world.members[member_id]).ledger.available


def test_a_catalogue_redemption_reserves_then_confirms_and_the_code_goes_only_to_the_notification(program):
    world = funded(program)
    codes_in(world, "FLASH", ["C-1", "C-2", "C-3"])
    world.request("m0", "r1", "FLASH", T0 + 1)
    assert [r["type"] for r in world.rewards[-1:]] == ["points_reserved"]
    assert world.rewards[-1]["points"] == -100 and balance(world, "m0") == 900
    assert [m["op"] for m in world.to_rewards] == ["allocate"]
    world.settle()
    assert [r["type"] for r in world.rewards[-2:]] == ["points_redeemed", "reward_issued"]
    assert "C-1" not in str(world.rewards)
    (coupon,) = world.notes("coupon_issued")
    assert coupon["params"]["codes"] == ["C-1"] and coupon["priority"] == "transactional"
    assert coupon["params"]["valid_until"] is not None
    assert balance(world, "m0") == 900
    stock = RewardStock.from_dict(world.stocks["FLASH"])
    assert stock.stock_left == 2 and stock.pool == ["C-2", "C-3"] and stock.allocations["r1"]["status"] == "confirmed"


def test_out_of_stock_gives_the_points_back_with_the_expiry_they_had(program):
    world = funded(program)
    before = Member.from_dict(world.members["m0"]).ledger.buckets[0][0]  # its points' expiry
    world.request("m0", "r1", "FLASH", T0 + 1)  # no codes in the pool: out of stock
    world.settle()
    assert [r["type"] for r in world.rewards[-2:]] == ["reservation_released", "redemption_rejected"]
    assert world.rewards[-1]["details"]["reason"] == "out_of_stock"
    ledger = Member.from_dict(world.members["m0"]).ledger
    assert ledger.available == 1000 and {expires_at for expires_at, _, _ in ledger.buckets} == {before}
    assert ledger.redeemed == 0


@pytest.mark.parametrize(("code", "fields", "points", "tier_member", "reason"), [
    ("NOPE", {}, 1000, False, "unknown_reward"),
    ("MUG", {"points": 49}, 1000, False, "price_mismatch"),
    ("MUG", {"points": 100, "quantity": 1}, 1000, False, "price_mismatch"),
    ("LOUNGE", {}, 1000, False, "tier_required"),
    ("MUG", {}, 10, False, "insufficient_points"),
])
def test_the_member_side_rejects_what_it_can_judge(program, code, fields, points, tier_member, reason):
    world = funded(program, points=points)
    world.request("m0", "r1", code, T0 + 1, **fields)
    (rejected,) = world.of("redemption_rejected")
    assert rejected["details"]["reason"] == reason
    assert world.to_rewards == [] and balance(world, "m0") == points


def test_a_frozen_member_and_a_reward_out_of_its_window(program):
    world = funded(program)
    world.event("m0", "member_frozen", T0 + 1, operator_id="op", reason="x")
    world.request("m0", "r1", "MUG", T0 + 2)
    world.event("m0", "member_unfrozen", T0 + 3, operator_id="op", reason="x")
    world.request("m0", "r2", "MUG", ms("2026-04-01T00:00:00+08:00"))
    assert [r["details"]["reason"] for r in world.of("redemption_rejected")] == ["member_frozen", "not_available"]


def test_the_limit_per_member_counts_per_calendar_period_and_a_release_does_not_count(program):
    world = funded(program)
    world.operator("MUG", "paused", "u1")
    world.request("m0", "r0", "MUG", T0 + 1)
    world.settle()  # rejected as paused: the unit is not counted
    world.operator("MUG", "resumed", "u2")
    for i in (1, 2, 3):
        world.request("m0", f"r{i}", "MUG", T0 + 1 + i)
        world.settle()
    reasons = [r["details"]["reason"] for r in world.of("redemption_rejected")]
    assert reasons == ["paused", "limit_reached"]
    world.request("m0", "r4", "MUG", ms("2026-03-31T23:59:00+08:00") + DAY)  # April: not available any more
    assert world.of("redemption_rejected")[-1]["details"]["reason"] == "not_available"
    assert len(world.of("reward_issued")) == 2


def test_a_repeated_request_reply_or_allocation_changes_nothing(program):
    world = funded(program)
    codes_in(world, "FLASH", ["C-1", "C-2"])
    world.request("m0", "r1", "FLASH", T0 + 1)
    world.deliver_request(again=True)
    world.deliver_request()  # the allocate read twice: one allocation, the same reply twice
    assert len(world.to_members) == 2 and world.to_members[0] == world.to_members[1]
    world.deliver_reply()
    world.deliver_reply()
    world.settle()
    assert len(world.of("reward_issued")) == 1 and balance(world, "m0") == 900
    stock = RewardStock.from_dict(world.stocks["FLASH"])
    assert stock.stock_left == 2 and stock.pool == ["C-2"]
    world.request("m0", "r1", "FLASH", T0 + 5)
    assert world.of("redemption_rejected")[-1]["details"]["reason"] == "duplicate"


def test_an_allocation_the_member_holds_nothing_for_is_released(program):
    """A replay on the member's side can decide otherwise than the first run (its inputs merge by time):
    an allocation nobody pays for goes back."""
    world = funded(program)
    codes_in(world, "FLASH", ["C-1", "C-2"])
    world.request("m0", "r1", "FLASH", T0 + 1)
    world.to_rewards.append(dict(world.to_rewards[0], redemption_id="ghost"))
    world.deliver_request()
    world.deliver_request()
    assert RewardStock.from_dict(world.stocks["FLASH"]).allocations["ghost"]["codes"] == ["C-2"]
    world.settle()
    stock = RewardStock.from_dict(world.stocks["FLASH"])
    assert "ghost" not in stock.allocations and stock.stock_left == 2 and stock.pool == ["C-2"]
    assert len(world.of("reward_issued")) == 1 and balance(world, "m0") == 900


def test_a_cancellation_returns_points_stock_and_voids_the_code_once(program):
    world = funded(program)
    codes_in(world, "FLASH", ["C-1", "C-2"])
    world.request("m0", "r1", "FLASH", T0 + 1)
    world.settle()
    world.event("m0", "redemption_cancelled", T0 + DAY, redemption_id="r1")
    world.event("m0", "redemption_cancelled", T0 + DAY + 1, redemption_id="r1")
    world.settle()
    assert len(world.of("redemption_cancelled")) == 1 and world.of("redemption_cancelled")[0]["points"] == 100
    assert balance(world, "m0") == 1000
    stock = RewardStock.from_dict(world.stocks["FLASH"])
    assert stock.stock_left == 3 and stock.pool == ["C-2"] and "C-1" in stock.used  # voided: never again
    codes_in(world, "FLASH", ["C-1"], "imp-1")  # the same import again: applied once
    assert RewardStock.from_dict(world.stocks["FLASH"]).duplicate_codes == 0
    codes_in(world, "FLASH", ["C-1"], "imp-2")  # a new import naming a voided code: counted, not added
    assert RewardStock.from_dict(world.stocks["FLASH"]).pool == ["C-2"]
    assert RewardStock.from_dict(world.stocks["FLASH"]).duplicate_codes == 1


def test_stock_updates_are_applied_once_and_stock_never_goes_negative(program):
    world = funded(program, members=5)
    codes_in(world, "FLASH", [f"C-{i}" for i in range(10)])
    world.operator("FLASH", "stock_set", "u1", stock=1)
    world.operator("FLASH", "stock_added", "u2", stock=1)
    world.operator("FLASH", "stock_added", "u2", stock=1)  # the same update again
    for i in range(5):
        world.request(f"m{i}", f"r{i}", "FLASH", T0 + 1)
    world.settle()
    assert len(world.of("reward_issued")) == 2
    assert [r["details"]["reason"] for r in world.of("redemption_rejected")] == ["out_of_stock"] * 3
    assert RewardStock.from_dict(world.stocks["FLASH"]).stock_left == 0


def test_a_crash_of_the_reward_agent_replays_to_the_same_decisions(program):
    world = funded(program, members=4)
    codes_in(world, "FLASH", ["C-1", "C-2", "C-3"])
    world.save("FLASH")
    for i in range(4):
        world.request(f"m{i}", f"r{i}", "FLASH", T0 + 1)
    for _ in range(4):
        world.deliver_request()
    sent = list(world.to_members)
    world.crash("FLASH")  # the same four allocates again from the saved state
    assert world.to_members[4:] == sent
    world.settle()
    assert len(world.of("reward_issued")) == 3 and len(world.of("redemption_rejected")) == 1
    issued = [c for n in world.notes("coupon_issued") for c in n["params"]["codes"]]
    assert sorted(issued) == ["C-1", "C-2", "C-3"]


def test_a_periodic_tier_grant_is_given_once_per_period_while_the_member_holds_the_tier(program):
    world = World(program)
    world.fund("m0", 10, T0)
    world.event("m0", "order_paid", T0 + 1, order_id="o1", amount_cents=600_000, currency="CNY")
    world.event("m0", "login", T0 + 8 * DAY, device_id="d")  # order points released: gold
    world.event("m0", "login", T0 + 9 * DAY, device_id="d")
    world.settle()
    member = Member.from_dict(world.members["m0"])
    assert member.tier == "gold"
    assert [r["details"]["reward_code"] for r in world.of("reward_issued")] == ["GOLD-MONTHLY"]
    assert world.of("reward_issued")[0]["details"]["grant"] is True
    world.event("m0", "login", ms("2026-04-02T10:00:00+08:00"), device_id="d")
    world.settle()
    assert len(world.of("reward_issued")) == 2
    assert generated_code(world.of("reward_issued")[0]["details"]["redemption_id"], 0) in str(world.notifications)


def test_free_form_requests_only_under_allow_free_form():
    free = build_program({"rewards.allow_free_form": "true"}, extra=CATALOGUE)
    world = funded(free)
    world.request("m0", "r1", "ANYTHING", T0 + 1, points=30)
    assert world.of("points_redeemed")[0]["points"] == -30 and world.to_rewards == []
    world.request("m0", "r2", "MUG", T0 + 2, points=10)  # a catalogue code keeps the catalogue's price
    assert world.of("redemption_rejected")[0]["details"]["reason"] == "price_mismatch"


def test_an_old_state_without_rewards_loads_and_an_unused_book_is_not_written(program):
    world = funded(program)
    state = world.members["m0"]
    assert "rewards" not in state and Member.from_dict(state).to_dict() == state


@pytest.mark.parametrize(("extra", "message"), [
    ('[[rewards.catalog]]\ncode = "A"\nname = "a"\nkind = "voucher"\npoints = 1\n', r"rewards\.catalog\[3\]\.kind"),
    ('[[rewards.catalog]]\ncode = "VOUCHER-5"\nname = "a"\npoints = 1\n', "codes must be unique"),
    ('[[rewards.catalog]]\ncode = "A"\nname = "a"\npoints = 1\ntier = "diamond"\n', r"rewards\.catalog\[3\]\.tier"),
    ('[[rewards.catalog]]\ncode = "A"\nname = "a"\nkind = "gift"\npoints = 1\ncodes = "pool"\n',
     "only for kind"),
    ('[[rewards.catalog]]\ncode = "A"\nname = "a"\npoints = 1\nlimit_per_member = 0\n', "must be >= 1"),
    ('[[rewards.grants]]\nreward = "NONE"\nmin_tier = "gold"\n', "is not a \\[\\[rewards"),
])
def test_the_catalogue_is_checked_with_line_numbers(extra, message):
    text = toml_with({}, extra=extra)
    with pytest.raises(ProgramError, match=message) as caught:
        parse_program(text)
    assert caught.value.line is not None and caught.value.line > text.count("\n") - extra.count("\n")


def test_an_allocation_for_a_member_erased_meanwhile_goes_back(program):
    world = funded(program)
    codes_in(world, "FLASH", ["C-1"])
    world.request("m0", "r1", "FLASH", T0 + 1)
    world.deliver_request()
    world.event("m0", "member_erased", T0 + 2)
    world.settle()
    stock = RewardStock.from_dict(world.stocks["FLASH"])
    assert stock.allocations == {} and stock.stock_left == 3 and stock.pool == ["C-1"]
    assert world.members["m0"] is None and world.notes("coupon_issued") == []

"""An in-memory world of member partitions and reward agents for the redemption protocol's tests.

Messages between the two sides sit in queues; a test (or hypothesis) chooses which is delivered next,
delivers one twice (at-least-once), or rolls a reward agent back to its last saved state and replays
what it read since (a crash before its state was written): the protocol must stay exact whatever it chooses.
"""
from __future__ import annotations

import copy

from stream_app.core import engine
from stream_app.core.program import Program
from stream_app.core.reward_replies import apply_reply
from stream_app.core.reward_stock import RewardStock
from tests.unit.conftest import iso


class World:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.members: dict[str, dict | None] = {}
        self.stocks: dict[str, dict] = {}
        self.saved: dict[str, dict | None] = {}  # per reward code: the state as last "written"
        self.unsaved: dict[str, list[dict]] = {}  # per reward code: messages applied since
        self.to_rewards: list[dict] = []
        self.to_members: list[dict] = []
        self.rewards: list[dict] = []
        self.notifications: list[dict] = []
        self.count = 0

    # -- member side ----------------------------------------------------------------------------
    def event(self, member_id: str, type_: str, at: int, **fields) -> engine.Result:
        self.count += 1
        event = {"event_id": f"ev{self.count}", "member_id": member_id, "occurred_at": iso(at), "type": type_,
                 **fields}
        return self._member_result(member_id, engine.apply_event(self.members.get(member_id), event, self.program))

    def fund(self, member_id: str, points: int, at: int) -> None:
        self.event(member_id, "points_adjusted", at, operator_id="op", reason="test", points=points)

    def request(self, member_id: str, redemption_id: str, reward_code: str, at: int, **fields) -> engine.Result:
        return self.event(member_id, "redemption_requested", at, redemption_id=redemption_id,
                          reward_code=reward_code, **fields)

    def deliver_reply(self, index: int = 0, again: bool = False) -> engine.Result:
        reply = self.to_members[index] if again else self.to_members.pop(index)
        member_id = reply["member_id"]
        return self._member_result(member_id, apply_reply(self.members.get(member_id), reply, self.program))

    def _member_result(self, member_id: str, result: engine.Result) -> engine.Result:
        self.members[member_id] = result.state
        self.rewards += result.rewards
        self.notifications += result.notifications
        self.to_rewards += copy.deepcopy(result.reward_requests)
        return result

    # -- reward side ----------------------------------------------------------------------------
    def deliver_request(self, index: int = 0, again: bool = False) -> None:
        message = self.to_rewards[index] if again else self.to_rewards.pop(index)
        self._apply(message)
        self.unsaved.setdefault(message["reward_code"], []).append(message)

    def operator(self, code: str, op: str, update_id: str, **fields) -> None:
        """A forwarded catalogue message (agents/rewards.py puts them on the same log)."""
        message = {"op": op, "update_id": update_id, "reward_code": code, **fields}
        self._apply(message)
        self.unsaved.setdefault(code, []).append(message)

    def _apply(self, message: dict) -> None:
        code = message["reward_code"]
        reward = self.program.rewards.get(code)
        stored = self.stocks.get(code)
        stock = RewardStock.from_dict(stored) if stored else RewardStock.new(code, reward)
        decision = stock.apply(message, reward)
        assert stock.stock_left is None or stock.stock_left >= 0
        self.stocks[code] = copy.deepcopy(stock.to_dict())
        self.to_members += copy.deepcopy(decision.replies)

    def save(self, code: str) -> None:
        """The reward agent's batch is written: a crash from now on replays only later messages."""
        self.saved[code] = copy.deepcopy(self.stocks.get(code))
        self.unsaved[code] = []

    def crash(self, code: str) -> None:
        """The worker dies before writing its state: back to the saved state, the unsaved messages read
        again in the same order (one log per reward code); the replies it sent stay sent."""
        replay = self.unsaved.get(code, [])
        if self.saved.get(code) is None:
            self.stocks.pop(code, None)
        else:
            self.stocks[code] = copy.deepcopy(self.saved[code])
        for message in replay:
            self._apply(message)

    def settle(self) -> None:
        """Deliver everything in flight, oldest first, until both sides are quiet."""
        while self.to_rewards or self.to_members:
            if self.to_rewards:
                self.deliver_request()
            if self.to_members:
                self.deliver_reply()

    # -- what came out --------------------------------------------------------------------------
    def of(self, kind: str) -> list[dict]:
        return list({r["reward_id"]: r for r in self.rewards if r["type"] == kind}.values())

    def notes(self, template: str) -> list[dict]:
        return list({n["notification_id"]: n for n in self.notifications if n["template"] == template}.values())

"""The reward agent's state for one reward code: stock left, pause, coupon-code pool, open allocations.

Pure and deterministic: the agent applies the messages of its one input log (the internal
`reward-requests` topic, keyed by reward code) in partition order, so a replay after a crash decides
exactly as the first run did. Every operation keeps `stock_left >= 0` and hands out a code at most
once, whatever order stock updates, imports and requests come in (docs/rewards.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from stream_app.core.catalogue import Reward
from stream_app.core.emitted import stable_id

ALLOCATED, CONFIRMED, CANCELLED = "allocated", "confirmed", "cancelled"
UPDATES_KEPT = 1000  # catalogue update ids remembered (an update applied twice changes nothing)
FINISHED_KEPT = 20_000  # confirmed/cancelled allocations remembered (a cancel or a repeat needs them)


@dataclass(slots=True)
class Decision:
    """What one message did: replies to members (keyed by member id), and how it counted."""

    replies: list[dict] = field(default_factory=list)
    outcome: str = "applied"  # applied | duplicate | ignored (for loyalty_events_total)
    duplicate_codes: int = 0


@dataclass(slots=True)
class RewardStock:
    code: str
    stock_left: int | None  # None: unlimited
    paused: bool = False
    pool: list[str] = field(default_factory=list)  # coupon codes not handed out yet, oldest first
    used: list[str] = field(default_factory=list)  # codes ever handed out (issued or voided): never again
    allocations: dict[str, dict] = field(default_factory=dict)  # redemption id -> allocation
    updates: list[str] = field(default_factory=list)
    duplicate_codes: int = 0

    @classmethod
    def new(cls, code: str, reward: Reward | None) -> RewardStock:
        return cls(code, None if reward is None else reward.stock)

    def to_dict(self) -> dict:
        return {"code": self.code, "stock_left": self.stock_left, "paused": self.paused, "pool": self.pool,
                "used": self.used, "allocations": self.allocations, "updates": self.updates,
                "duplicate_codes": self.duplicate_codes}

    @classmethod
    def from_dict(cls, d: dict) -> RewardStock:
        return cls(d["code"], d["stock_left"], d["paused"], list(d["pool"]), list(d["used"]),
                   {rid: dict(a) for rid, a in d["allocations"].items()}, list(d["updates"]), d["duplicate_codes"])

    @property
    def outstanding(self) -> int:
        """Units allocated but not yet confirmed by the member's side."""
        return sum(a["quantity"] for a in self.allocations.values() if a["status"] == ALLOCATED)

    def apply(self, message: dict, reward: Reward | None) -> Decision:
        """Apply one message of the reward-requests log (see docs/rewards.md for each `op`)."""
        op = message["op"]
        if op == "allocate":
            return self._allocate(message, reward)
        if op in ("confirm", "release", "cancel"):
            return self._settle(op, message)
        if message["update_id"] in self.updates:
            return Decision(outcome="duplicate")
        self.updates = [*self.updates, message["update_id"]][-UPDATES_KEPT:]
        if op == "stock_set":
            self.stock_left = message["stock"]
        elif op == "stock_added":
            if self.stock_left is not None:
                self.stock_left += message["stock"]
        elif op in ("paused", "resumed"):
            self.paused = op == "paused"
        elif op == "codes_imported":
            return Decision(duplicate_codes=self._import(message["codes"]))
        else:
            raise ValueError(f"unknown op {op!r}")
        return Decision()

    def _import(self, codes: list[str]) -> int:
        known = set(self.pool) | set(self.used)
        duplicates = 0
        for code in codes:
            if code in known:
                duplicates += 1
            else:
                known.add(code)
                self.pool.append(code)
        self.duplicate_codes += duplicates
        return duplicates

    def _allocate(self, message: dict, reward: Reward | None) -> Decision:
        rid, quantity = message["redemption_id"], message["quantity"]
        known = self.allocations.get(rid)
        if known is not None:  # a repeat (a replayed request): the same answer, nothing taken again
            if known["status"] == CANCELLED:
                return Decision(outcome="duplicate")
            return Decision([_reply(message, "allocated", codes=known["codes"])], outcome="duplicate")
        reason = None
        pooled = reward is not None and reward.kind == "coupon" and reward.codes == "pool"
        if reward is None:
            reason = "unknown_reward"
        elif self.paused:
            reason = "paused"
        elif self.stock_left is not None and self.stock_left < quantity:
            reason = "out_of_stock"
        elif pooled and len(self.pool) < quantity:
            reason = "out_of_stock"
        if reason is not None:  # not remembered: a repeat is judged again (docs/rewards.md, failure cases)
            return Decision([_reply(message, "rejected", reason=reason)])
        if self.stock_left is not None:
            self.stock_left -= quantity
        codes: list[str] = []
        if reward.kind == "coupon":
            if pooled:
                codes, self.pool = self.pool[:quantity], self.pool[quantity:]
            else:
                codes = [generated_code(rid, i) for i in range(quantity)]
            self.used.extend(codes)
        # No member id: the answers name the member of the message they answer, and the table keeps no
        # personal data that an erasure would have to reach.
        self.allocations[rid] = {"quantity": quantity, "codes": codes, "pooled": pooled, "status": ALLOCATED}
        return Decision([_reply(message, "allocated", codes=codes)])

    def _settle(self, op: str, message: dict) -> Decision:
        """confirm: the member was charged; release: it was not (stock and codes go back); cancel: the
        redemption was undone after issue (stock back, its codes void)."""
        rid = message["redemption_id"]
        allocation = self.allocations.get(rid)
        if allocation is None or allocation["status"] == CANCELLED:
            return Decision(outcome="ignored")
        status = allocation["status"]
        if op == "confirm":
            if status != ALLOCATED:
                return Decision(outcome="duplicate")
            allocation["status"] = CONFIRMED
        elif op == "release":
            if status != ALLOCATED:
                return Decision(outcome="ignored")  # confirmed: only a cancel undoes it
            del self.allocations[rid]
            used = set(allocation["codes"])
            self.used = [c for c in self.used if c not in used]
            if allocation["pooled"]:  # never seen by a member: back to the pool (generated ones are not kept)
                self.pool = allocation["codes"] + self.pool
        else:
            allocation["status"] = CANCELLED  # its codes stay in `used`: a voided code is never issued again
        if op != "confirm" and self.stock_left is not None:
            self.stock_left += allocation["quantity"]
        self._prune()
        return Decision()

    def _prune(self) -> None:
        finished = [rid for rid, a in self.allocations.items() if a["status"] != ALLOCATED]
        for rid in finished[:-FINISHED_KEPT]:
            del self.allocations[rid]


def generated_code(redemption_id: str, index: int) -> str:
    """A coupon code made from the redemption id: the same redemption always gets the same code."""
    return stable_id("cp", redemption_id, str(index)).removeprefix("cp-")[:16].upper()


def _reply(message: dict, outcome: str, *, reason: str | None = None, codes: list[str] | None = None) -> dict:
    """The answer to an allocate, for the member's partition (internal `reward-replies`, keyed by member)."""
    reply = {"event_id": stable_id("rr", message["redemption_id"], outcome), "op": outcome,
             "redemption_id": message["redemption_id"], "member_id": message["member_id"],
             "reward_code": message["reward_code"], "quantity": message["quantity"], "at": message["at"]}
    if reason is not None:
        reply["reason"] = reason
    if codes:
        reply["codes"] = codes
    return reply

"""The reward agents: the operators' catalogue topics forwarded into one log per reward, and the agent
that owns each reward code's stock and coupon codes (docs/rewards.md).

- The catalogue forwarder validates `loyalty.catalog` and `loyalty.coupon-codes` (a malformed message
  is dead-lettered like any input, a code not in the program's catalogue as `unknown_reward`) and
  sends each one, as an op, to the internal `reward-requests` topic keyed by reward code.
- The reward agent (concurrency 1) consumes only `reward-requests`: the member agents' allocate,
  confirm, release and cancel messages and the forwarded operator ops, in one order per partition.
  It applies them to the `rewards` table through the batch pipeline (outputs delivered before the
  state that claims them), so a replay after a crash or a rebalance decides exactly as the first run,
  and sends each answer to the member's partition on the internal `reward-replies` topic.
"""
from __future__ import annotations

import faust
import orjson

from agents.batch import BatchPipeline, BatchStates
from stream_app import metrics
from stream_app.core.reward_stock import RewardStock
from stream_app.parts import Parts
from topics.validation import Rejection, decode_catalog_message

#: The agents' names: fixed, as their consumer offsets are stored under them.
FORWARDER_NAME = "agents.rewards.forward_catalog"
AGENT_NAME = "agents.rewards.allocate"
CATALOG_OPS = {"stock_set": "stock_set", "stock_added": "stock_added", "paused": "paused", "resumed": "resumed"}


class CatalogForwarder:
    """Operators' messages, validated, onto the reward-requests log of their reward code."""

    def __init__(self, parts: Parts) -> None:
        self.program, self.outgoing, self.emit = parts.program, parts.outgoing, parts.emitter
        self.requests = parts.names.name("reward-requests")
        self.kind_of = parts.names.kind_of

    def forward(self, states: BatchStates, event) -> None:
        message = event.message
        kind = self.kind_of(message.topic)
        decoded = decode_catalog_message(kind, message.key, message.value)
        if isinstance(decoded, Rejection):
            metrics.count_event(kind, "dead_lettered")
            self.emit.dead_letter(message, decoded.code, decoded.detail)
            return
        code = decoded["reward_code"]
        if self.program.rewards.get(code) is None:
            metrics.count_event(kind, "dead_lettered")
            self.emit.dead_letter(message, "unknown_reward", "reward_code is not in the program's catalogue")
            return
        if kind == "catalog":
            op = {"op": CATALOG_OPS[decoded["type"]], "update_id": f"catalog:{decoded['update_id']}",
                  "reward_code": code}
            if "stock" in decoded:
                op["stock"] = decoded["stock"]
        else:
            op = {"op": "codes_imported", "update_id": f"codes:{decoded['import_id']}", "reward_code": code,
                  "codes": decoded["codes"]}
        self.outgoing.add(self.requests, code.encode(), orjson.dumps(op))
        metrics.count_event(kind, "forwarded")

    def failed(self, event, exc: Exception) -> None:
        metrics.count_event(self.kind_of(event.message.topic), "dead_lettered")
        self.emit.dead_letter(event.message, "processing_error", type(exc).__name__)


class RewardAgent:
    """Applies one reward-requests message to its reward's state; answers go to the member's partition.

    A reward's state is decoded once per batch, not per message (a flash sale sends a batch of up to
    1,000 messages for one key): the decoded `RewardStock` is kept with the batch it belongs to and
    written back with each change; the next batch starts from a copy, as the previous one may still be
    waiting to be written (agents/batch.py).
    """

    def __init__(self, parts: Parts) -> None:
        self.program, self.outgoing, self.emit = parts.program, parts.outgoing, parts.emitter
        self.replies = parts.names.name("reward-replies")
        self._open: dict[bytes, tuple[BatchStates, RewardStock]] = {}

    def apply(self, states: BatchStates, event) -> bytes:
        key = event.message.key
        message = orjson.loads(event.message.value)
        code = message["reward_code"]
        reward = self.program.rewards.get(code)
        stock = self._stock(states, key, code, reward)
        try:
            decision = stock.apply(message, reward)
        except Exception:
            self._open.pop(key, None)  # possibly half applied: the next message decodes the state again
            raise
        for reply in decision.replies:
            self.outgoing.add(self.replies, reply["member_id"].encode(), orjson.dumps(reply))
            metrics.count_redemption(code, reply["op"], reply.get("reason", ""))
        if decision.outcome == "applied":
            states.put(key, stock.to_dict(), event)
        else:
            states.keep(key, event)  # a repeat: the changelog may lack this state (agents/batch.py)
        if decision.duplicate_codes:
            metrics.labelled(metrics.CODES_DUPLICATE, code).inc(decision.duplicate_codes)
        metrics.count_event("reward-requests", decision.outcome)
        return key

    def _stock(self, states: BatchStates, key: bytes, code: str, reward) -> RewardStock:
        held = self._open.get(key)
        if held is not None and held[0] is states:
            return held[1]
        stored = states.get(key)
        stock = RewardStock.from_dict(stored) if stored else RewardStock.new(code, reward)
        self._open[key] = (states, stock)
        return stock

    def observe(self, keys: list[bytes]) -> None:
        """After a batch: the stock, pool and open-allocation gauges of each reward it changed."""
        for key in set(keys):
            held = self._open.get(key)
            if held is not None:
                metrics.observe_stock(held[1].code, held[1])

    def failed(self, event, exc: Exception) -> None:
        metrics.count_event("reward-requests", "dead_lettered")
        self.emit.dead_letter(event.message, "processing_error", type(exc).__name__)


def register(app: faust.App, parts: Parts) -> RewardAgent:
    forwarder, agent = CatalogForwarder(parts), RewardAgent(parts)
    forwarding = BatchPipeline(parts.rewards, parts.outgoing, parts.changelogs, parts.failstop)
    allocating = BatchPipeline(parts.rewards, parts.outgoing, parts.changelogs, parts.failstop)

    async def forward_catalog(stream) -> None:
        await forwarding.consume(stream, forwarder.forward, forwarder.failed)

    async def allocate(stream) -> None:
        await allocating.consume(stream, agent.apply, agent.failed, agent.observe)

    app.agent(parts.topics.compacted("catalog", "coupon-codes"), name=FORWARDER_NAME, concurrency=1)(forward_catalog)
    app.agent(parts.topics.raw("reward-requests"), name=AGENT_NAME, concurrency=1)(allocate)
    return agent

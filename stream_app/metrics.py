"""Business metrics in Prometheus form (the list is the contract in docs/metrics.md)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

EVENTS = Counter("loyalty_events", "Input events processed, by topic kind and outcome.",
                 ["topic", "outcome"])
DEAD_LETTERS = Counter("loyalty_dead_letters", "Events sent to the dead-letter topic, by error code.",
                       ["code"])
POINTS = Counter("loyalty_points", "Points moved, by flow (pending, earned, released, clawed_back, "
                 "redeemed, expired, adjusted, reserved, reservation_released, cancelled).", ["flow"])
REDEMPTIONS = Counter("loyalty_redemptions", "Redemption requests by result and reason.",
                      ["result", "reason"])
REFERRALS = Counter("loyalty_referrals", "Referrals by outcome (pending, referrer_paid, milestone_paid, "
                    "friend_paid, rejected) and rejection reason.", ["outcome", "reason"])
TIER_CHANGES = Counter("loyalty_tier_changes", "Tier changes by from and to tier.", ["from_tier", "to_tier"])
SEGMENT_CHANGES = Counter("loyalty_segment_changes", "Lifecycle segment changes by from and to segment.",
                          ["from_segment", "to_segment"])
LATENCY = Histogram("loyalty_processing_latency_seconds",
                    "From an event's occurred_at to its outputs being handed to the producer.",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
DUE_SENT = Counter("loyalty_due_sent", "Due-work messages sent to the internal due topic.")
DUE_LAG = Gauge("loyalty_due_lag_seconds", "How late the oldest member sent on the last due tick was.")
DUE_ERRORS = Counter("loyalty_due_errors", "Members whose due work could not be scheduled or applied.")
SEND_RETRIES = Counter("loyalty_producer_send_retries",
                       "Batches of outgoing messages sent again after a failed delivery, by topic kind.", ["topic"])
DUE_SCHEDULED = Gauge("loyalty_due_scheduled", "Members with due work scheduled on this worker.")
WORKER_FAILED = Gauge("loyalty_worker_failed", "1 once this worker failed (it stopped consuming and committing, "
                      "and exits soon), by reason (stream_app/failstop.py).", ["reason"])
BROKER_CONNECTED = Gauge("loyalty_broker_connected",
                         "1 while a metadata request to the Kafka brokers succeeded within the last 15 s.")
EVENTS_LATE = Counter("loyalty_events_late", "Input events applied although older than their member's clock "
                      "(the newest instant already applied to it), by topic kind.", ["topic"])
ORDER_HELD = Gauge("loyalty_order_held", "Events read but held by the event-time merge, not yet applied.")
ORDER_PAUSED = Gauge("loyalty_order_paused_partitions", "Topic partitions whose fetching the event-time merge "
                     "paused: they are ahead of another topic of their partition.")
ORDER_FORCED = Counter("loyalty_order_forced", "Events the event-time merge let go before the other topics of "
                       "their partition were known to be past them, by reason (cap, stalled, rebalance).", ["reason"])
ORDER_DROPPED = Counter("loyalty_order_dropped", "Held events dropped unapplied (an older consumer generation, or "
                        "shutdown); read again from the committed offset by the partition's owner.")
LOOP_LAG = Histogram("loyalty_event_loop_lag_seconds", "How much later than asked the event loop woke a task that "
                     "sleeps 0.1 s: how long something held the loop (stream_app/runtime.py).",
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
_GC_PAUSE = Histogram("loyalty_gc_pause_seconds", "Garbage collections and how long each held the process, by "
                      "generation (gc.callbacks).", ["generation"],
                      buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
GC_PAUSE = tuple(_GC_PAUSE.labels(str(generation)) for generation in range(3))

# -- Rewards (agents/rewards.py; docs/rewards.md) --------------------------------------------------------------
REWARD_REDEMPTIONS = Counter("loyalty_reward_redemptions", "Answers of the reward agent by reward code, outcome "
                             "(allocated, rejected) and reason (out_of_stock, paused, unknown_reward; empty when "
                             "allocated); repeats of a request answered again are counted again.",
                             ["reward", "outcome", "reason"])
REWARD_STOCK_LEFT = Gauge("loyalty_reward_stock_left", "Stock left per limited reward code owned by this worker "
                          "(after the last message the reward agent applied).", ["reward"])
REWARD_CODES_LEFT = Gauge("loyalty_reward_codes_left", "Coupon codes left in the pool per reward code owned by "
                          "this worker.", ["reward"])
REWARD_ALLOCATED_OPEN = Gauge("loyalty_reward_allocations_open", "Units allocated by the reward agent and not yet "
                              "confirmed or released by the member's side, per reward code.", ["reward"])
CODES_DUPLICATE = Counter("loyalty_reward_codes_duplicate", "Imported coupon codes already known to the pool "
                          "(not added again), per reward code.", ["reward"])
POINTS_RESERVED = Gauge("loyalty_points_reserved", "Points held by open reservations of the members this worker "
                        "owns (recounted with loyalty_members_by_tier).")
POINTS_LIABILITY = Gauge("loyalty_points_liability", "Outstanding points (available + pending) of the members "
                         "this worker owns (recounted with loyalty_members_by_tier).")

_children: dict[tuple, object] = {}


def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once: labels() costs a lock and a validation per call."""
    child = _children.get((metric, values))
    if child is None:
        child = _children[(metric, values)] = metric.labels(*values)
    return child


def count_event(kind: str, outcome: str) -> None:
    labelled(EVENTS, kind, outcome).inc()


_FLOW_OF_REWARD = {"points_pending": "pending", "points_clawed_back": "clawed_back",
                   "points_redeemed": "redeemed", "points_expired": "expired", "points_adjusted": "adjusted",
                   "points_reserved": "reserved", "reservation_released": "reservation_released",
                   "redemption_cancelled": "cancelled"}


def count_reward(reward: dict) -> None:
    """Update the points, redemption, tier and segment counters for one emitted reward event."""
    kind, points = reward["type"], abs(reward["points"])
    if kind == "points_redeemed" and not points:  # a catalogue redemption: the points moved when reserved
        points = reward["details"]["points"]
    if kind == "points_earned":
        flow = "released" if reward.get("details", {}).get("released_from_pending") else "earned"
        labelled(POINTS, flow).inc(points)
    elif kind in _FLOW_OF_REWARD:
        labelled(POINTS, _FLOW_OF_REWARD[kind]).inc(points)
    if kind == "points_redeemed":
        REDEMPTIONS.labels("approved", "").inc()
    elif kind == "redemption_rejected":
        REDEMPTIONS.labels("rejected", reward["details"]["reason"]).inc()
    elif kind == "tier_changed":
        TIER_CHANGES.labels(reward["details"]["from"], reward["details"]["to"]).inc()
    elif kind == "segment_changed":
        SEGMENT_CHANGES.labels(reward["details"]["from"], reward["details"]["to"]).inc()
    elif kind == "referral_pending":
        REFERRALS.labels("pending", "").inc()
    elif kind == "referral_rejected":
        REFERRALS.labels("rejected", reward["details"]["reason"]).inc()
    if kind == "points_earned" and reward["rule"] in _REFERRAL_PAYOUTS:
        REFERRALS.labels(_REFERRAL_PAYOUTS[reward["rule"]], "").inc()


#: points_earned rules of a referral payout -> the loyalty_referrals_total outcome they count as
_REFERRAL_PAYOUTS = {"referral_referrer": "referrer_paid", "referral_milestone": "milestone_paid",
                     "referral_friend": "friend_paid"}


def count_redemption(reward_code: str, outcome: str, reason: str) -> None:
    labelled(REWARD_REDEMPTIONS, reward_code, outcome, reason).inc()


def observe_stock(reward_code: str, stock) -> None:
    """The gauges of one reward after the reward agent applied a message (`stock`: a RewardStock)."""
    if stock.stock_left is not None:
        labelled(REWARD_STOCK_LEFT, reward_code).set(stock.stock_left)
    labelled(REWARD_CODES_LEFT, reward_code).set(len(stock.pool))
    labelled(REWARD_ALLOCATED_OPEN, reward_code).set(stock.outstanding)

# -- Faust / Kafka consumer figures, fed by agents/observe.py (a sensor and a timer) ----------------
# `topic` is the topic kind (the configured LOYALTY_TOPIC_PREFIX stripped), `partition` its number.
MESSAGES_RECEIVED = Counter("loyalty_consumer_messages_received",
                            "Kafka messages delivered to this worker's agents, by topic kind.", ["topic"])
COMMITS = Counter("loyalty_consumer_commits",
                  "Offset commits by this worker that advanced at least one partition.")
COMMIT_LATENCY = Histogram("loyalty_consumer_commit_latency_seconds",
                           "Time to commit consumer offsets (flushing the producer first), per commit.",
                           buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
REBALANCES = Counter("loyalty_consumer_rebalances", "Consumer-group rebalances this worker took part in.")
REBALANCE_DURATION = Histogram("loyalty_consumer_rebalance_duration_seconds",
                               "From a rebalance's start to its end on this worker, table recovery included.",
                               buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
CONSUMER_LAG = Gauge("loyalty_consumer_lag_messages",
                     "Messages not yet committed: partition highwater minus committed offset, for each "
                     "input partition this worker owns.", ["topic", "partition"])
COMMITTED_OFFSET = Gauge("loyalty_consumer_committed_offset",
                         "Last committed offset (next offset to read) of each input partition this worker "
                         "owns.", ["topic", "partition"])
ASSIGNED_PARTITIONS = Gauge("loyalty_consumer_assigned_partitions",
                            "Input partitions (all topic kinds) assigned to this worker.")

# -- Member state, kept by agents/observe.py (incremental, recounted from the table) ---------------------------
MEMBERS_BY_TIER = Gauge("loyalty_members_by_tier", "Members by tier in the partitions this worker owns "
                        "(moved by every change, recounted after rebalances and every "
                        "LOYALTY_TIER_SCAN_INTERVAL).", ["tier"])
MEMBERS_BY_SEGMENT = Gauge("loyalty_members_by_segment", "Members by lifecycle segment in the partitions this "
                           "worker owns (same recount as loyalty_members_by_tier).", ["segment"])
MEMBERS_SCAN_DURATION = Gauge("loyalty_members_scan_duration_seconds",
                              "How long the last members recount (by tier and segment) took.")
MEMBERS_SCAN_TIMESTAMP = Gauge("loyalty_members_scan_timestamp_seconds",
                               "Unix time when the last members recount finished.")

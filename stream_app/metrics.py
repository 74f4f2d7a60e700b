"""Business metrics in Prometheus form (the list is the contract in docs/metrics.md)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

EVENTS = Counter("loyalty_events", "Input events processed, by topic kind and outcome.",
                 ["topic", "outcome"])
DEAD_LETTERS = Counter("loyalty_dead_letters", "Events sent to the dead-letter topic, by error code.",
                       ["code"])
POINTS = Counter("loyalty_points", "Points moved, by flow (pending, earned, released, clawed_back, "
                 "redeemed, expired, adjusted).", ["flow"])
REDEMPTIONS = Counter("loyalty_redemptions", "Redemption requests by result and reason.",
                      ["result", "reason"])
TIER_CHANGES = Counter("loyalty_tier_changes", "Tier changes by from and to tier.", ["from_tier", "to_tier"])
LATENCY = Histogram("loyalty_processing_latency_seconds",
                    "From an event's occurred_at to its outputs being handed to the producer.",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
DUE_SENT = Counter("loyalty_due_sent", "Due-work messages sent to the internal due topic.")
DUE_LAG = Gauge("loyalty_due_lag_seconds", "How late the oldest member sent on the last due tick was.")
DUE_ERRORS = Counter("loyalty_due_errors", "Members whose due work could not be scheduled or applied.")
DUE_SCHEDULED = Gauge("loyalty_due_scheduled", "Members with due work scheduled on this worker.")

_FLOW_OF_REWARD = {"points_pending": "pending", "points_clawed_back": "clawed_back",
                   "points_redeemed": "redeemed", "points_expired": "expired", "points_adjusted": "adjusted"}


def count_reward(reward: dict) -> None:
    """Update the points, redemption and tier counters for one emitted reward event."""
    kind, points = reward["type"], abs(reward["points"])
    if kind == "points_earned":
        flow = "released" if reward.get("details", {}).get("released_from_pending") else "earned"
        POINTS.labels(flow).inc(points)
    elif kind in _FLOW_OF_REWARD:
        POINTS.labels(_FLOW_OF_REWARD[kind]).inc(points)
    if kind == "points_redeemed":
        REDEMPTIONS.labels("approved", "").inc()
    elif kind == "redemption_rejected":
        REDEMPTIONS.labels("rejected", reward["details"]["reason"]).inc()
    elif kind == "tier_changed":
        TIER_CHANGES.labels(reward["details"]["from"], reward["details"]["to"]).inc()

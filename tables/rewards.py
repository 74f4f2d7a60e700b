"""The rewards table: each reward code's live stock, pause, coupon-code pool and open allocations.

Keyed by reward code (UTF-8), JSON values (stream_app/core/reward_stock.py `RewardStock.to_dict`), in
RocksDB (default) or memory per LOYALTY_STORE, with a compacted changelog written with the reward
agent's batch, like the members table.
"""
from __future__ import annotations

import faust

from tables.changelog import BatchedChangelogTable, json_table
from topics.outgoing import OutgoingBatches

NAME = "rewards"  # changelog topic `{app id}-rewards-changelog`: keep it, or the live stock is lost


def rewards_table(app: faust.App, *, changelogs: OutgoingBatches, partitions: int) -> BatchedChangelogTable:
    return json_table(app, NAME, "Live stock, pause, coupon-code pool and open allocations per reward code.",
                      changelogs=changelogs, partitions=partitions)

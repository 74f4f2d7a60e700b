"""The devices table: for each device (keyed hash), the members who used it and their referrers."""
from __future__ import annotations

import faust

from tables.changelog import BatchedChangelogTable, json_table
from topics.outgoing import OutgoingBatches

NAME = "devices"  # changelog topic `{app id}-devices-changelog`


def devices_table(app: faust.App, *, changelogs: OutgoingBatches, partitions: int) -> BatchedChangelogTable:
    return json_table(app, NAME, "Device hash -> {member id: referrer id}, for the shared-device referral check.",
                      changelogs=changelogs, partitions=partitions)

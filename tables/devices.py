"""The devices table: for each device (keyed hash), the members who used it and their referrers."""
from __future__ import annotations

from stream_app.app import app, settings
from tables.changelog import BatchedChangelogTable
from topics.channels import changelogs

devices = app.tables.add(BatchedChangelogTable(
    app,
    name="devices",
    outgoing=changelogs,
    partitions=settings.partitions,
    help="Device hash -> {member id: referrer id}, for the shared-device referral check.",
))

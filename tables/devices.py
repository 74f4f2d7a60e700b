"""The devices table: for each device (keyed hash), the members who used it and their referrers."""
from __future__ import annotations

from tables.changelog import json_table

devices = json_table("devices", "Device hash -> {member id: referrer id}, for the shared-device referral check.")

"""How the core counted an event: the `outcome` of a Result, and the label of loyalty_events_total."""
from __future__ import annotations

APPLIED, DUPLICATE, IGNORED, FROZEN, ERASED = "applied", "duplicate", "ignored", "frozen", "erased"
#: Older than the member's duplicate-detection horizon (dedupe.window): refused, since its id may be forgotten.
STALE = "stale"

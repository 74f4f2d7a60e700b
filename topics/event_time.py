"""The event time of a raw input or due message, for the event-time merge (agents/merge.py).

Read before validation, cheaply (one JSON parse, no schema): an input event's `occurred_at`, a due
message's `at`. A message whose time cannot be read gets None and goes through the merge at once;
validation then dead-letters it (or, for a value that is valid after all, applies it on arrival).
"""
from __future__ import annotations

from datetime import datetime

import orjson

from topics.validation import MAX_MESSAGE_BYTES


def event_time_ms(kind: str, value: bytes | None) -> int | None:
    """Epoch milliseconds of the message's event time, or None when it has none that parses."""
    if not value or len(value) > MAX_MESSAGE_BYTES:
        return None
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    if kind in ("due", "reward-replies"):  # internal: the instant the work (or the reservation) is for
        at = body.get("at")
        return at if type(at) is int else None
    occurred = body.get("occurred_at")
    if not isinstance(occurred, str):
        return None
    try:
        moment = datetime.fromisoformat(occurred)
        return int(moment.timestamp() * 1000) if moment.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):
        return None

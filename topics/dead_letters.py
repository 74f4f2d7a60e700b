"""Dead-letter records: the failed message as it arrived (capped in size), with a stable error code.

A dead letter must always be deliverable, whatever arrived: an input message may be as large as
its topic allows (1 MiB by default, more where a topic is configured so), and an undeliverable
dead letter would stop its batch. So the value is kept whole up to `VALUE_MAX_BYTES` (the input
cap: every message the worker could have processed) and cut there beyond, with its original length
and SHA-256; the key is cut at `KEY_MAX_BYTES`, the detail at `DETAIL_MAX_CHARS`. The source topic,
partition and offset are always there, so the original can be fetched from the input topic.
Worst case (a value of control characters, each escaped to six bytes in JSON) a record stays
under 400 KiB, well inside the producer's limit (topics/outgoing.py MAX_RECORD_BYTES).
"""
from __future__ import annotations

import base64
import hashlib

from topics.validation import MAX_MESSAGE_BYTES

VALUE_MAX_BYTES = MAX_MESSAGE_BYTES  # 64 KiB
KEY_MAX_BYTES = 1024
DETAIL_MAX_CHARS = 1024


def _as_text(raw: bytes | None, limit: int) -> tuple[str | None, bool, bool]:
    """(text, is_base64, truncated) of the first `limit` bytes: UTF-8 text as is, anything else base64.

    Text is cut at a character boundary, so a cut UTF-8 value stays text."""
    if raw is None:
        return None, False, False
    truncated = len(raw) > limit
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw[:limit]).decode("ascii"), True, truncated
    return raw[:limit].decode("utf-8", errors="ignore"), False, truncated  # drops only a cut last character


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The dead-letter message's Kafka key: the original key, its first KEY_MAX_BYTES when longer."""
    return None if key is None else key[:KEY_MAX_BYTES]


def dead_letter(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                code: str, detail: str, failed_at: str) -> dict:
    """The dead-letter event for one message (schema: topics/schemas/dead-letters.json)."""
    key_text, key_b64, key_cut = _as_text(key, KEY_MAX_BYTES)
    value_text, value_b64, value_cut = _as_text(value, VALUE_MAX_BYTES)
    record = {"topic": topic, "partition": partition, "offset": offset,
              "key": key_text if not key_b64 else None, "key_truncated": key_cut and not key_b64,
              "value": value_text, "value_truncated": value_cut,
              "value_length": None if value is None else len(value),
              "value_sha256": None if value is None else hashlib.sha256(value).hexdigest(),
              "error": code, "detail": detail[:DETAIL_MAX_CHARS], "failed_at": failed_at}
    if value_b64:
        record["encoding"] = "base64"
    return record

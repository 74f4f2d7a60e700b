"""Dead-letter records: the failed message as it arrived, with a stable error code."""
from __future__ import annotations

import base64


def _as_text(raw: bytes | None) -> tuple[str | None, bool]:
    """(text, is_base64): UTF-8 text as is, anything else base64."""
    if raw is None:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def dead_letter(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                code: str, detail: str, failed_at: str) -> dict:
    """The dead-letter event for one message (schema: topics/schemas/dead-letters.json)."""
    key_text, key_b64 = _as_text(key)
    value_text, value_b64 = _as_text(value)
    record = {"topic": topic, "partition": partition, "offset": offset,
              "key": key_text if not key_b64 else None, "value": value_text,
              "error": code, "detail": detail, "failed_at": failed_at}
    if value_b64:
        record["encoding"] = "base64"
    return record

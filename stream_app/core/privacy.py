"""Personal data never enters member state or logs in clear: keyed hashes at most."""
from __future__ import annotations

import hashlib

#: Fields dropped from input events before the core sees them.
DROPPED = ("ip",)
#: Fields replaced by a keyed hash (still comparable for equality, not reversible).
HASHED = ("device_id",)


def keyed_hash(value: str, key: bytes) -> str:
    """A keyed BLAKE2b of `value`; every byte of `key` counts (long keys are hashed down to 64)."""
    if len(key) > 64:
        key = hashlib.blake2b(key, digest_size=64).digest()
    return hashlib.blake2b(value.encode(), key=key, digest_size=16).hexdigest()


def scrub(event: dict, key: bytes) -> dict:
    """A copy of `event` without personal data the program does not need."""
    clean = {k: v for k, v in event.items() if k not in DROPPED}
    for name in HASHED:
        if name in clean:
            clean[name] = keyed_hash(clean[name], key)
    return clean

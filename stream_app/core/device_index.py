"""The device index core: which members use a device, and the shared-device referral check.

An entry maps member id -> that member's referrer id (or None) for one device (a keyed hash).
"""
from __future__ import annotations

RULE = "referral_shared_device"


def apply_link(entry: dict[str, str | None], link: dict) -> tuple[dict[str, str | None], list[tuple[str, dict]]]:
    """The device's new entry after `link`, and the (member id, evidence) pairs to flag.

    A member whose referrer has used the same device is flagged, whichever of the two came first.
    """
    member, referrer, device = link["member_id"], link["referrer_id"], link["device"]
    entry = dict(entry)
    if link["op"] == "forget":
        entry.pop(member, None)
        return entry, []
    entry[member] = referrer
    flags = []
    if referrer and referrer in entry:
        flags.append((member, {"referrer_id": referrer, "device": device}))
    flags.extend((other, {"referrer_id": member, "device": device})
                 for other, their_referrer in entry.items() if their_referrer == member and other != member)
    return entry, flags

"""The device index core: which members use a device, and the shared-device referral check.

An entry maps member id -> that member's referrer id (or None) for one device (a keyed hash). A flag
becomes a `member_flagged` admin event for the flagged member (`flag_event`): the device agent
(agents/devices.py) sends it to that member's partition, and `loyalty simulate` applies the same
event, so both freeze the same members with the same event ids.
"""
from __future__ import annotations

from stream_app.core.emitted import stable_id

RULE = "referral_shared_device"
OPERATOR = "abuse-monitor"  # the operator id a flag of the device index carries


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


def flag_event(member_id: str, evidence: dict, occurred_at: str) -> dict:
    """The `member_flagged` admin event of a flag; its id names the member, device and referrer, so a
    flag sent again (a link replayed after a crash) is recognised by the member as a duplicate."""
    return {"event_id": stable_id("flag", member_id, RULE, evidence["device"], evidence["referrer_id"]),
            "member_id": member_id, "occurred_at": occurred_at, "type": "member_flagged",
            "operator_id": OPERATOR, "reason": RULE, "rule": RULE, "evidence": evidence}

"""Personal data: `ip` is dropped and `device_id` replaced by a keyed hash before the core sees an event."""
from __future__ import annotations

import copy
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.privacy import keyed_hash, scrub

KEY = b"k" * 32
OTHER_KEY = b"j" * 32
LOGIN = {"event_id": "e1", "member_id": "m1", "occurred_at": "2024-03-05T10:00:00+08:00", "type": "login",
         "device_id": "iphone-15-ABC123", "ip": "203.0.113.7", "user_agent": "app/1.0"}


def test_scrub_drops_ip_and_hashes_the_device():
    clean = scrub(LOGIN, KEY)
    assert "ip" not in clean
    assert clean["device_id"] == keyed_hash("iphone-15-ABC123", KEY)
    assert re.fullmatch(r"[0-9a-f]{32}", clean["device_id"])
    assert {k: v for k, v in clean.items() if k != "device_id"} == {
        k: v for k, v in LOGIN.items() if k not in ("ip", "device_id")}
    assert "iphone-15-ABC123" not in repr(clean)
    assert "203.0.113.7" not in repr(clean)


def test_the_hash_is_blake2b_keyed():
    import hashlib
    expected = hashlib.blake2b(b"iphone-15-ABC123", key=KEY, digest_size=16).hexdigest()
    assert keyed_hash("iphone-15-ABC123", KEY) == expected


def test_same_input_and_key_same_hash_other_key_other_hash():
    assert scrub(LOGIN, KEY)["device_id"] == scrub(dict(LOGIN), KEY)["device_id"]
    assert scrub(LOGIN, KEY)["device_id"] != scrub(LOGIN, OTHER_KEY)["device_id"]
    assert keyed_hash("a", KEY) != keyed_hash("b", KEY)
    assert keyed_hash("iphone-15-ABC123", KEY) != keyed_hash("iphone-15-ABC123", b"")


def test_scrub_does_not_mutate_its_input():
    event = copy.deepcopy(LOGIN)
    scrub(event, KEY)
    assert event == LOGIN
    assert scrub(event, KEY) is not event


def test_events_without_personal_fields_pass_unchanged():
    share = {"event_id": "e2", "member_id": "m1", "occurred_at": "2024-03-05T10:00:00+08:00", "type": "share",
             "share_id": "s1", "channel": "wechat", "target": "friend"}
    assert scrub(share, KEY) == share


def test_ip_alone_is_dropped():
    assert scrub({"type": "share", "ip": "::1"}, KEY) == {"type": "share"}


TEXT = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(device=TEXT, ip=TEXT, rest=st.dictionaries(st.sampled_from(["a", "b", "type", "member_id"]), TEXT),
       key=st.binary(min_size=1, max_size=64), other=st.binary(min_size=1, max_size=64))
def test_scrub_properties(device, ip, rest, key, other):
    event = {**rest, "device_id": device, "ip": ip}
    before = copy.deepcopy(event)
    clean = scrub(event, key)
    assert event == before
    assert set(clean) == set(event) - {"ip"}
    assert all(clean[k] == v for k, v in rest.items())
    assert clean["device_id"] == keyed_hash(device, key) == scrub(before, key)["device_id"]
    assert len(clean["device_id"]) == 32
    assert clean["device_id"] != device  # the raw id never shows
    if key != other:
        assert keyed_hash(device, key) != keyed_hash(device, other)

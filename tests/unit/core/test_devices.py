"""Devices: the device index core (stream_app.core.device_index.apply_link) flags a referee who shares a device
with its referrer, whichever logs in first; the engine announces a member's devices as links, and an
operator's (or the device agent's) member_flagged freezes the member."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.device_index import RULE, apply_link
from stream_app.core.device_index import flag_event as device_flag
from stream_app.core.handlers import MAX_DEVICES
from tests.unit.conftest import DAY, MINUTE, MemberRun, ms, rewards_of, summary
from topics.validation import Rejection, decode_event

T0 = "2024-03-05T10:00:00+08:00"
DEVICE = "d3f1"


def seen(member: str, referrer: str | None = None, device: str = DEVICE) -> dict:
    return {"op": "seen", "device": device, "member_id": member, "referrer_id": referrer}


def forget(member: str, referrer: str | None = None, device: str = DEVICE) -> dict:
    return {"op": "forget", "device": device, "member_id": member, "referrer_id": referrer}


def replay(*links: dict, entry: dict | None = None) -> tuple[dict, list[list[tuple[str, dict]]]]:
    entry, all_flags = dict(entry or {}), []
    for link in links:
        entry, flags = apply_link(entry, link)
        all_flags.append(flags)
    return entry, all_flags


# -- apply_link -----------------------------------------------------------------------------------

def test_rule_name():
    assert RULE == "referral_shared_device"


def test_referrer_then_referee_flags_the_referee():
    entry, flags = replay(seen("alice"), seen("bob", "alice"))
    assert entry == {"alice": None, "bob": "alice"}
    assert flags == [[], [("bob", {"referrer_id": "alice", "device": DEVICE})]]


def test_referee_then_referrer_flags_the_referee():
    entry, flags = replay(seen("bob", "alice"), seen("alice"))
    assert entry == {"bob": "alice", "alice": None}
    assert flags == [[], [("bob", {"referrer_id": "alice", "device": DEVICE})]]


def test_unrelated_members_sharing_a_device_flag_nobody():
    entry, flags = replay(seen("alice"), seen("bob", "carol"), seen("dave", "erin"), seen("frank"))
    assert entry == {"alice": None, "bob": "carol", "dave": "erin", "frank": None}
    assert flags == [[], [], [], []]


def test_referrer_on_another_device_flags_nobody():
    # the index keeps one entry per device: alice's phone is not bob's
    phone, _ = replay(seen("alice", device="phone"))
    tablet, flags = replay(seen("bob", "alice", device="tablet"))
    assert (phone, tablet, flags) == ({"alice": None}, {"bob": "alice"}, [[]])


def test_referrer_with_several_referees_on_the_device_flags_each():
    _, flags = replay(seen("bob", "alice"), seen("carol", "alice"), seen("dave", "zed"), seen("alice"))
    assert sorted(flags[-1]) == [("bob", {"referrer_id": "alice", "device": DEVICE}),
                                 ("carol", {"referrer_id": "alice", "device": DEVICE})]


def test_forget_removes_the_member():
    entry, flags = replay(seen("alice"), seen("bob", "alice"), forget("alice"))
    assert entry == {"bob": "alice"}
    assert flags[-1] == []
    entry, _ = replay(forget("bob", "alice"), entry=entry)
    assert entry == {}
    assert replay(forget("ghost"))[0] == {}


def test_a_forgotten_referrer_flags_nobody_later():
    _, flags = replay(seen("alice"), forget("alice"), seen("bob", "alice"))
    assert flags == [[], [], []]


def test_apply_link_does_not_mutate_the_entry():
    entry = {"alice": None}
    apply_link(entry, seen("bob", "alice"))
    apply_link(entry, forget("alice"))
    assert entry == {"alice": None}


LINK = st.builds(lambda op, member, referrer: {"op": op, "device": DEVICE, "member_id": member,
                                               "referrer_id": referrer if referrer != member else None},
                 st.sampled_from(["seen", "seen", "seen", "forget"]), st.sampled_from("abcd"),
                 st.sampled_from([None, "a", "b", "c", "d"]))


@settings(max_examples=300, deadline=None)
@given(links=st.lists(LINK, max_size=15))
def test_apply_link_matches_a_model(links):
    """The entry is every member's last link unless forgotten; a link flags exactly the pairs
    (referee, referrer) it completes on the device."""
    entry = {}
    for link in links:
        before = dict(entry)
        given_entry = entry
        entry, flags = apply_link(given_entry, link)
        assert given_entry == before  # not mutated
        expected = dict(before)
        member = link["member_id"]
        if link["op"] == "forget":
            expected.pop(member, None)
            assert flags == []
        else:
            expected[member] = link["referrer_id"]
            want = set()
            if link["referrer_id"] and link["referrer_id"] in expected:
                want.add((member, link["referrer_id"]))
            want |= {(other, member) for other, ref in expected.items() if ref == member and other != member}
            assert {(m, ev["referrer_id"]) for m, ev in flags} == want
            assert len(flags) == len(want)
            assert all(ev["device"] == DEVICE for _, ev in flags)
        assert entry == expected


# -- the engine's device links --------------------------------------------------------------------

def login(r: MemberRun, at, device: str):
    return r.apply(r.events.make("login", at, device_id=device))


def test_a_new_device_emits_one_seen_link(run):
    r = run()
    result = login(r, T0, "h-phone")
    assert result.device_links == [{"op": "seen", "device": "h-phone", "member_id": "m1", "referrer_id": None}]
    assert r.member.devices == ["h-phone"]
    assert login(r, ms(T0) + MINUTE, "h-phone").device_links == []
    assert login(r, ms(T0) + DAY, "h-phone").device_links == []
    result = login(r, ms(T0) + DAY + 1, "h-tablet")
    assert result.device_links == [{"op": "seen", "device": "h-tablet", "member_id": "m1", "referrer_id": None}]
    assert r.member.devices == ["h-phone", "h-tablet"]


def test_other_events_emit_no_links(run):
    r = run()
    for result in (r.order(T0, "o1", 10000), r.share(T0), r.joined(T0), r.redeem(T0, 1)):
        assert result.device_links == []


def test_a_frozen_member_still_links_its_devices(run):
    r = run()
    r.joined(T0)
    r.state["frozen"] = True
    result = login(r, T0, "h-phone")
    assert result.outcome == "frozen"
    assert [x["op"] for x in result.device_links] == ["seen"]


def test_a_duplicate_login_emits_no_link(run):
    r = run()
    event = r.events.make("login", T0, device_id="h-phone")
    assert len(r.apply(event).device_links) == 1
    assert r.apply(event).device_links == []


def test_devices_remembered_are_bounded(run):
    r = run()
    for i in range(MAX_DEVICES):
        assert [x["op"] for x in login(r, ms(T0) + i, f"h{i}").device_links] == ["seen"]
    result = login(r, ms(T0) + MAX_DEVICES, f"h{MAX_DEVICES}")
    assert r.member.devices == [f"h{i}" for i in range(1, MAX_DEVICES + 1)]
    # The device no longer remembered leaves the index too (an erasure forgets only remembered ones).
    assert [(x["op"], x["device"]) for x in result.device_links] == [("seen", f"h{MAX_DEVICES}"), ("forget", "h0")]
    assert [(x["op"], x["device"]) for x in login(r, ms(T0) + DAY, "h0").device_links] == [("seen", "h0"),
                                                                                          ("forget", "h1")]


def test_every_device_ever_indexed_is_forgotten_by_an_erasure(run):
    """Fed to the index, a member's links leave nothing behind once the member is erased."""
    r, index = run(), {}
    r.joined(T0, referrer_id="alice")
    links = [link for i in range(2 * MAX_DEVICES + 5) for link in login(r, ms(T0) + i, f"h{i % 30}").device_links]
    links += r.erased(ms(T0) + DAY).device_links
    for link in links:
        index[link["device"]], _ = apply_link(index.get(link["device"], {}), link)
    assert len(index) == 30 and not any(index.values())


def test_joined_with_a_referrer_reannounces_known_devices(run):
    r = run()
    login(r, T0, "h-phone")
    login(r, ms(T0) + 1, "h-tablet")
    result = r.joined(ms(T0) + 2, referrer_id="alice")
    assert result.device_links == [
        {"op": "seen", "device": "h-phone", "member_id": "m1", "referrer_id": "alice"},
        {"op": "seen", "device": "h-tablet", "member_id": "m1", "referrer_id": "alice"},
    ]
    assert r.member.referrer_id == "alice"
    assert r.joined(ms(T0) + 3, referrer_id="alice").device_links == []  # nothing new
    assert r.joined(ms(T0) + 4).device_links == []
    # later logins carry the referrer
    assert login(r, ms(T0) + 5, "h-laptop").device_links == [
        {"op": "seen", "device": "h-laptop", "member_id": "m1", "referrer_id": "alice"}]


def test_joined_with_a_referrer_and_no_devices_emits_nothing(run):
    r = run()
    result = r.joined(T0, referrer_id="alice")
    assert result.device_links == []
    assert r.member.referrer_id == "alice"


def test_erasure_forgets_every_device(run):
    r = run()
    r.joined(T0, referrer_id="alice")
    login(r, T0, "h-phone")
    login(r, ms(T0) + 1, "h-tablet")
    result = r.erased(ms(T0) + 2)
    assert (result.outcome, result.state) == ("erased", None)
    assert result.device_links == [
        {"op": "forget", "device": "h-phone", "member_id": "m1", "referrer_id": "alice"},
        {"op": "forget", "device": "h-tablet", "member_id": "m1", "referrer_id": "alice"},
    ]
    assert summary(result.rewards) == [("member_erased", 0, "erasure")]


def test_erasure_of_a_member_without_devices(run):
    r = run()
    r.joined(T0)
    result = r.erased(ms(T0) + 1)
    assert (result.outcome, result.device_links) == ("erased", [])


def test_engine_links_fed_to_the_index_flag_the_referee(run):
    alice, bob = run(member_id="alice", prefix="a"), run(member_id="bob", prefix="b")
    entry, flags = {}, []
    bob_login = login(bob, T0, "h-shared")  # before bob's referral is known
    for link in [*login(alice, T0, "h-shared").device_links, *bob_login.device_links,
                 *bob.joined(ms(T0) + 1, referrer_id="alice").device_links]:
        entry, new = apply_link(entry, link)
        flags += new
    assert flags == [("bob", {"referrer_id": "alice", "device": "h-shared"})]
    assert entry == {"alice": None, "bob": "alice"}


# -- member_flagged (admin) -----------------------------------------------------------------------

def flag_event(r: MemberRun, at, event_id: str | None = None) -> dict:
    return r.events.make("member_flagged", at, event_id=event_id, operator_id="abuse-monitor", reason=RULE,
                         rule=RULE, evidence={"referrer_id": "alice", "device": "h-shared"})


def test_member_flagged_freezes_and_records_the_flag(run):
    r = run()
    r.share(T0)
    at = ms(T0) + MINUTE
    result = r.apply(flag_event(r, at))
    evidence = {"referrer_id": "alice", "device": "h-shared", "operator_id": "abuse-monitor"}
    assert (result.outcome, summary(result.rewards)) == ("applied", [("member_flagged", 0, RULE)])
    assert result.rewards[0]["details"] == evidence
    assert result.rewards[0]["source_event_id"] == r.applied[-1]["event_id"]
    [note] = result.notifications
    assert (note["template"], note["priority"], note["params"]) == (
        "member_flagged", "transactional", {"rule": RULE, **evidence})
    member = r.member
    assert member.frozen is True
    assert member.flags == [{"rule": RULE, "at": at, "evidence": evidence}]
    assert member.last_activity_at == ms(T0)  # an admin event is not activity
    assert r.share(at + 1).outcome == "frozen"


def test_member_flagged_twice_is_ignored(run):
    r = run()
    r.joined(T0)
    r.apply(flag_event(r, T0))
    result = r.apply(flag_event(r, ms(T0) + 1))
    assert (result.outcome, result.rewards, result.notifications) == ("ignored", [], [])
    assert len(r.member.flags) == 1
    assert len(rewards_of(r.rewards, "member_flagged")) == 1


def test_member_flagged_resent_is_a_duplicate(run):
    r = run()
    event = flag_event(r, T0, event_id="flag-1")
    assert r.apply(event).outcome == "applied"
    assert r.apply(event).outcome == "duplicate"


def test_the_device_index_flag_is_an_admin_event_with_an_id_of_its_member_device_and_referrer(run):
    """What the device agent sends and `loyalty simulate` applies: valid on the admin topic, freezing."""
    evidence = {"referrer_id": "alice", "device": "h-shared"}
    event = device_flag("m1", evidence, "2024-03-05T02:00:00.000Z")
    assert not isinstance(decode_event("admin", b"m1", orjson.dumps(event), now_ms=ms(T0)), Rejection)
    assert event["event_id"] == device_flag("m1", evidence, "2024-03-06T00:00:00.000Z")["event_id"]
    assert event["event_id"] != device_flag("m1", {**evidence, "device": "other"}, T0)["event_id"]
    r = run()
    r.joined(T0, referrer_id="alice")
    assert r.apply(event).outcome == "applied" and r.member.frozen

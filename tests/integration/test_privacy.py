"""Privacy of the state, on a real worker with the RocksDB store (docs/contracts.md, "Personal data").

1. Every personal value sent (device ids, ips, a full date of birth) is searched for, as bytes, in the
   worker's data dir (every RocksDB file, WAL included), in its tables read back through RocksDB, in
   the members and devices changelogs, the internal and output topics and the worker's debug log:
   none is there in clear. Birthdays are kept as the month-day the rule needs, only in the member's
   `birthday` field and never in a log. The search must see what it looks for: member ids and
   device hashes are found in the same places.
2. Erasure removes the member from the members table (HTTP 404, a changelog tombstone), from the
   device index (devices beyond the newest remembered ones included), from the Redis projection and
   from the due schedule, while another member who shares a device stays.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
import redis
from rocksdict import AccessType, Options, Rdict

from stream_app.core.handlers import MAX_DEVICES
from stream_app.core.privacy import keyed_hash
from tests.integration.harness import consume, event_message, produce, records, topic_config, wait_for

SHANGHAI = timezone(timedelta(hours=8))
FAST = (Path(__file__).parent / "programs" / "fast.toml").read_text()
PII_KEY = "privacy-test-key-3c91"
REDIS_URL = "redis://127.0.0.1:6379/0"
FAUST_OFFSET_KEY = b"__faust\0offset__"  # each partition database also holds its changelog offset


def now() -> str:
    return datetime.now(SHANGHAI).isoformat(timespec="milliseconds")


def month_days(count: int) -> list[str]:
    """`count` distinct MM-DD at least two months from today (UTC and local), so that no log timestamp,
    local day or date in a state can contain one by chance; which days they are does not matter."""
    today = datetime.now(SHANGHAI).date()
    return [(today + timedelta(days=60 + 40 * i)).strftime("%m-%d") for i in range(count)]


# -- where to look ----------------------------------------------------------------------------------

def data_files(root: Path) -> dict[str, bytes]:
    """Every file under the worker's data dir (SST, WAL .log, MANIFEST, OPTIONS, offsets), as bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def table_items(root: Path, table: str) -> dict[bytes, bytes]:
    """The live key/values of a table, read back through RocksDB from every partition's database
    (what compression could hide from a byte search of the files, decoded)."""
    found: dict[bytes, bytes] = {}
    dbs = sorted(p for p in root.rglob(f"{table}-*.db") if p.is_dir())
    assert dbs, f"no RocksDB database of table {table} under {root}"
    for path in dbs:
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            found.update((k, v) for k, v in db.items() if k != FAUST_OFFSET_KEY)
        finally:
            db.close()
    return found


def changelog(deployment, table: str) -> list[tuple[bytes | None, bytes | None]]:
    return records(f"{deployment.env['LOYALTY_APP_ID']}-{table}-changelog")


def latest(log: list[tuple[bytes | None, bytes | None]]) -> dict[bytes, bytes | None]:
    """A compacted topic's view: the last value of each key (None: a tombstone)."""
    return {key: value for key, value in log}


def blob(pairs) -> bytes:
    return b"\n".join(part or b"" for pair in pairs for part in pair)


def places(needle: str, haystacks: dict[str, bytes]) -> list[str]:
    """Where `needle` occurs; a short one (a month-day) only as a word of its own, not inside a hex id."""
    if len(needle) > 8:
        return [name for name, data in haystacks.items() if needle.encode() in data]
    word = re.compile(rb"(?<![0-9A-Za-z])" + re.escape(needle.encode()) + rb"(?![0-9A-Za-z])")
    return [name for name, data in haystacks.items() if word.search(data)]


# -- 1. nothing personal in clear ---------------------------------------------------------------------

def test_no_personal_value_sent_is_stored_or_logged_in_clear(deployment):
    worker = deployment.worker(log_level="debug", LOYALTY_PII_KEY=PII_KEY).start()
    p = deployment.prefix
    b_ann, b_bob, b_bob_before, refused_md = month_days(4)
    refused = f"1987-{refused_md}"  # a full date of birth, as a platform may hold it: refused at the edge
    people = {
        "priv-ann": {"birthday": b_ann, "devices": ["android-7f3c9e01-ann", "ipad-ann-55e2a1"],
                     "ips": ["198.51.100.77", "2001:db8::beef:42"]},
        "priv-bob": {"birthday": b_bob, "devices": ["iphone-bob-0c4d2b9a"], "ips": ["203.0.113.201"]},
    }
    messages = [
        event_message(p, "members", {"event_id": "j-ann", "member_id": "priv-ann", "occurred_at": now(),
                                     "type": "member_joined", "birthday": b_ann}),
        event_message(p, "members", {"event_id": "j-bob", "member_id": "priv-bob", "occurred_at": now(),
                                     "type": "member_joined", "birthday": b_bob_before}),
        event_message(p, "members", {"event_id": "u-bob", "member_id": "priv-bob", "occurred_at": now(),
                                     "type": "member_updated", "birthday": b_bob}),
        event_message(p, "members", {"event_id": "u-ann", "member_id": "priv-ann", "occurred_at": now(),
                                     "type": "member_updated", "birthday": refused}),
    ]
    for member, data in people.items():
        for i, (device, ip) in enumerate(zip(data["devices"], data["ips"], strict=True)):
            messages.append(event_message(p, "logins", {"event_id": f"l-{member}-{i}", "member_id": member,
                                                        "occurred_at": now(), "type": "login",
                                                        "device_id": device, "ip": ip}))
    produce(messages)
    hashes = {d: keyed_hash(d, PII_KEY.encode()) for data in people.values() for d in data["devices"]}
    wait_for(lambda: all(worker.member(m) for m in people), timeout=60)
    dead = consume(deployment.topic("dead-letters"), lambda rs: any(refused in r["value"] for r in rs))
    assert [r["error"] for r in dead] == ["schema_violation"]  # the full date was sent, and refused
    wait_for(lambda: {h.encode() for h in hashes.values()} <= {k for k, _ in changelog(deployment, "devices")},
             timeout=30)
    wait_for(lambda: all(orjson.loads(v).get("birthday") == people[k.decode()]["birthday"]
                         for k, v in latest(changelog(deployment, "members")).items()), timeout=30)
    worker.stop()  # a clean shutdown: whatever it flushes is on disk now

    files = data_files(worker.data_dir)
    members, devices = table_items(worker.data_dir, "members"), table_items(worker.data_dir, "devices")
    tables = {"members table": blob(members.items()), "devices table": blob(devices.items())}
    logs = {"worker log": worker.log_path.read_bytes()}
    topics = {f"{name} changelog": blob(changelog(deployment, name)) for name in ("members", "devices")}
    topics |= {f"{kind} topic": blob(records(deployment.topic(kind)))
               for kind in ("devices", "due", "rewards", "notifications")}
    everywhere = {**files, **tables, **logs, **topics}
    assert b"DEBUG" in logs["worker log"] and any(name.endswith(".sst") or name.endswith(".log") for name in files)

    # The search sees the state: member ids and device hashes are where the state is.
    for member in people:
        assert places(member, files) and places(member, tables) and places(member, topics), member
    for device_hash in hashes.values():
        assert places(device_hash, files) and places(device_hash, tables) == ["members table", "devices table"]
        assert {"members changelog", "devices changelog", "devices topic"} <= set(places(device_hash, topics))

    raw_devices = list(hashes)
    ips = [ip for data in people.values() for ip in data["ips"]]
    personal = [*raw_devices, *ips, refused, refused.replace("-", ""), refused_md]
    leaks = {value: places(value, everywhere) for value in personal}
    assert leaks == {value: [] for value in personal}

    # Birthdays: the month-day the rule needs, in the member's own `birthday` field and nowhere else
    # (never with a year, never in a log, an output or the device index).
    month_days_sent = (b_ann, b_bob, b_bob_before)
    for member, data in people.items():
        assert orjson.loads(members[member.encode()])["birthday"] == data["birthday"]
    states = [orjson.loads(v) for v in members.values()] + [orjson.loads(v) for _, v in changelog(deployment,
                                                                                                  "members")]
    for state in states:
        assert state["birthday"] in month_days_sent
        rest = orjson.dumps({k: v for k, v in state.items() if k != "birthday"}).decode()
        assert not [d for d in month_days_sent if d in rest], state["member_id"]
    elsewhere = {k: v for k, v in everywhere.items()
                 if k not in files and k not in ("members table", "members changelog")}
    assert {d: places(d, elsewhere) for d in month_days_sent} == {d: [] for d in month_days_sent}
    anything = b"\n".join(everywhere.values())
    assert [d for d in month_days_sent if re.search(rb"\d{4}-" + d.encode(), anything)] == []


# -- 2. erasure -----------------------------------------------------------------------------------------

def redis_view(client: redis.Redis, app_id: str, member: str) -> dict:
    """What the projection holds of `member`: its hash and its score in every tier set of the deployment."""
    tiers = {key.decode().rsplit(":", 1)[1]: client.zscore(key, member)
             for key in client.scan_iter(match=f"{app_id}:tier:*")}
    return {"hash": client.hgetall(f"{app_id}:member:{member}"),
            "tiers": {t: s for t, s in tiers.items() if s is not None}}


def metric(worker, name: str) -> float | None:
    text = worker.get("/metrics")[1] or ""
    found = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return sum(float(v) for v in found) if found else None


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {REDIS_URL}: run `make up`")
    yield client
    client.close()


def test_erasure_reaches_every_table_the_projection_and_the_schedule(deployment, tmp_path, shared_redis):
    app_id = deployment.env["LOYALTY_APP_ID"]
    rules = tmp_path / "program.toml"
    assert 'return_window = "PT2S"' in FAST
    # The release falls due after the erasure; many devices without a velocity freeze.
    # The released points expire long after the test: their expiry stays the one scheduled item through the
    # restart below (with fast.toml's 8 s it could fall due while the worker restarts, leaving none).
    assert 'after = "PT8S"' in FAST
    rules.write_text(FAST.replace('return_window = "PT2S"', 'return_window = "PT25S"')
                     .replace('after = "PT8S"', 'after = "PT1H"')
                     + "\n[abuse]\ndevices_per_window = 1000\n")
    # A short order grace: the timeline below (release 25 s after the orders) leaves no room for 2 s hops.
    worker = deployment.worker(LOYALTY_RULES=str(rules), LOYALTY_REDIS_URL=REDIS_URL, LOYALTY_PII_KEY=PII_KEY,
                               LOYALTY_ORDER_GRACE="PT0.2S").start()
    try:
        _erasure(deployment, worker, shared_redis, app_id)
    finally:
        doomed = list(shared_redis.scan_iter(match=f"{app_id}:*"))
        if doomed:
            shared_redis.delete(*doomed)


def _erasure(deployment, worker, client: redis.Redis, app_id: str) -> None:
    p, gone, stays = deployment.prefix, "erase-me", "keep-me"
    own = [f"erase-me-phone-{i:02d}" for i in range(MAX_DEVICES + 3)]
    shared = "family-tablet"
    used = [*own, shared]  # in this order: the oldest four are no longer remembered by the member
    forgotten, remembered = used[:-MAX_DEVICES], used[-MAX_DEVICES:]
    hashes = {d: keyed_hash(d, PII_KEY.encode()).encode() for d in used}
    logins = [event_message(p, "logins", {"event_id": f"l-{gone}-{i}", "member_id": gone, "occurred_at": now(),
                                          "type": "login", "device_id": d}) for i, d in enumerate(used)]
    logins.append(event_message(p, "logins", {"event_id": f"l-{stays}", "member_id": stays, "occurred_at": now(),
                                              "type": "login", "device_id": shared}))
    orders = [event_message(p, "orders", {"event_id": f"o-{m}", "member_id": m, "occurred_at": now(),
                                          "type": "order_paid", "order_id": f"O-{m}", "amount_cents": 5000,
                                          "currency": "CNY"}) for m in (gone, stays)]
    sent_at = time.monotonic()
    produce(logins + orders)

    # Before: both members in every place, their order points pending (release due in 25 s).
    wait_for(lambda: all((worker.member(m) or {}).get("points", {}).get("pending") == 150 for m in (gone, stays)),
             timeout=30, show=lambda: (worker.member(gone), worker.member(stays)))
    wait_for(lambda: all(redis_view(client, app_id, m)["hash"] for m in (gone, stays)), timeout=20)
    wait_for(lambda: metric(worker, "loyalty_due_scheduled") == 2, timeout=10,
             show=lambda: metric(worker, "loyalty_due_scheduled"))
    device_log = lambda: latest(changelog(deployment, "devices"))  # noqa: E731
    wait_for(lambda: all(gone.encode() in (device_log().get(hashes[d]) or b"") for d in remembered), timeout=30,
             show=device_log)
    # The index holds only the devices the member still remembers: the others have a tombstone, or no
    # record at all when seen and forgotten in one batch.
    wait_for(lambda: all(device_log().get(hashes[d]) is None for d in forgotten), timeout=30, show=device_log)
    assert orjson.loads(device_log()[hashes[shared]]) == {gone: None, stays: None}
    assert redis_view(client, app_id, gone)["tiers"] == {"bronze": 2.0}  # the day's first login

    produce([event_message(p, "members", {"event_id": "x1", "member_id": gone, "occurred_at": now(),
                                          "type": "member_erased"})])
    wait_for(lambda: worker.get(f"/members/{gone}")[0] == 404, timeout=30)
    assert time.monotonic() - sent_at < 20, "the erasure must be applied before the release falls due"
    # Due messages sent before the erasure was applied are legitimate (e.g. due work a late login left);
    # from here on none may name the erased member.
    due_before = set(records(deployment.topic("due")))

    # Members table: gone, its changelog ends with a tombstone (and its earlier states are compacted away
    # within a day); the other member is untouched.
    wait_for(lambda: latest(changelog(deployment, "members")).get(gone.encode(), b"") is None, timeout=20)
    for table in ("members", "devices"):
        config = topic_config(f"{app_id}-{table}-changelog")
        assert (config["cleanup.policy"], config["max.compaction.lag.ms"]) == ("compact", str(86_400_000))
    assert worker.member(stays)["points"]["pending"] == 150
    # Device index: no entry names the erased member any more (forgotten devices included); the shared
    # device still lists the other member.
    wait_for(lambda: not any(gone.encode() in (v or b"") for v in device_log().values()), timeout=30,
             show=lambda: {k: v for k, v in device_log().items() if gone.encode() in (v or b"")})
    after = device_log()
    assert all(after.get(hashes[d]) is None for d in own)
    assert orjson.loads(after[hashes[shared]]) == {stays: None}
    # Redis: hash and tier-set entries deleted; the other member still projected.
    wait_for(lambda: redis_view(client, app_id, gone) == {"hash": {}, "tiers": {}}, timeout=20,
             show=lambda: redis_view(client, app_id, gone))
    assert redis_view(client, app_id, stays)["tiers"] == {"bronze": 2.0}
    # Due schedule: only the other member is left, and only its release falls due.
    wait_for(lambda: metric(worker, "loyalty_due_scheduled") == 1, timeout=10,
             show=lambda: metric(worker, "loyalty_due_scheduled"))
    wait_for(lambda: (worker.member(stays) or {}).get("points", {}).get("pending") == 0, timeout=40,
             show=lambda: worker.member(stays))  # released; its expiry is scheduled
    due_keys = {key for key, value in records(deployment.topic("due")) if (key, value) not in due_before}
    assert stays.encode() in due_keys and gone.encode() not in due_keys
    assert worker.get(f"/members/{gone}")[0] == 404  # nothing fell due that could bring it back

    # After a restart (tables recovered, schedule rebuilt, Redis resynced) the member is still gone.
    worker.stop()
    members, devices = table_items(worker.data_dir, "members"), table_items(worker.data_dir, "devices")
    assert gone.encode() not in members and stays.encode() in members
    assert not any(gone.encode() in v for v in devices.values())
    worker.start()
    wait_for(lambda: worker.member(stays) is not None, timeout=30)
    assert worker.get(f"/members/{gone}")[0] == 404
    # The schedule is rebuilt by a task after the restart (agents/schedule.py): wait for it, as above.
    wait_for(lambda: metric(worker, "loyalty_due_scheduled") == 1, timeout=30,  # the other member only
             show=lambda: metric(worker, "loyalty_due_scheduled"))
    time.sleep(3)  # a resync and a few due ticks
    assert redis_view(client, app_id, gone) == {"hash": {}, "tiers": {}}
    assert metric(worker, "loyalty_due_scheduled") == 1  # the other member only

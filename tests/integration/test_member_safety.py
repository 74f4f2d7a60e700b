"""Abuse freezing with operator unfreeze over HTTP, lifecycle drift, quiet hours, erasure."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.integration.harness import consume, event_message, produce, wait_for

SHANGHAI = timezone(timedelta(hours=8))
FAST = (Path(__file__).parent / "programs" / "fast.toml").read_text()


def now() -> str:
    return datetime.now(SHANGHAI).isoformat(timespec="milliseconds")


POLICY_OFF = '[notification_policy]               # off here: tests that need it replace this block\n' \
    'marketing_daily_cap = 100\nquiet_start = "00:00"\nquiet_end = "00:00"\n'


def program(tmp: Path, extra: str = "", policy: str | None = None) -> str:
    """fast.toml plus `extra` tables, with its notification policy replaced by `policy`."""
    assert POLICY_OFF in FAST
    path = tmp / "program.toml"
    path.write_text(FAST.replace(POLICY_OFF, policy or POLICY_OFF) + extra)
    return str(path)


def post(port: int, path: str, body: dict, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_farming_burst_freezes_and_operator_unfreezes_with_token(deployment, tmp_path):
    rules = program(tmp_path, '\n[abuse]\nreviews_per_window = 10\nwindow = "PT1H"\n')
    # fast.toml's points expire 8 s after they are earned: the four hops below (orders, reviews, unfreeze,
    # adjust) each waiting the default 2 s of the event-time merge would leave the last check no window.
    worker = deployment.worker(LOYALTY_RULES=rules, LOYALTY_ADMIN_TOKEN="s3cret", LOYALTY_ORDER_GRACE="PT0.2S").start()
    p, m = deployment.prefix, "farmer"
    at = now()  # one instant: the reviews' daily cap must not be split by a local midnight
    orders = [{"event_id": f"o{i}", "member_id": m, "occurred_at": at, "type": "order_paid",
               "order_id": f"O{i}", "amount_cents": 100, "currency": "CNY"} for i in range(12)]
    produce([event_message(p, "orders", o) for o in orders])
    wait_for(lambda: (worker.member(m) or {}).get("points", {}).get("lifetime_earned") == 12 * 1 + 100)
    reviews = [{"event_id": f"r{i}", "member_id": m, "occurred_at": at, "type": "review_posted",
                "review_id": f"R{i}", "order_id": f"O{i}", "rating": 5, "has_media": False} for i in range(12)]
    produce([event_message(p, "reviews", r) for r in reviews])
    wait_for(lambda: (worker.member(m) or {}).get("frozen") is True, show=lambda: worker.member(m))
    # Five rewarded per day (cap), then the 11th review in the hour flags; nothing earned once frozen.
    assert worker.member(m)["points"]["lifetime_earned"] == 112 + 5 * 10
    flagged = consume(deployment.topic("rewards"), lambda rs: any(r["type"] == "member_flagged" for r in rs))
    flag = next(r for r in flagged if r["type"] == "member_flagged")
    assert flag["rule"] == "velocity:reviews" and flag["details"] == {"count": 11, "limit": 10,
                                                                      "window_ms": 3_600_000}
    notes = consume(deployment.topic("notifications"), lambda ns: any(n["template"] == "member_flagged"
                                                                      for n in ns))
    assert next(n for n in notes if n["template"] == "member_flagged")["priority"] == "transactional"

    body = {"operator_id": "ops-1", "reason": "false positive"}
    assert post(worker.port, f"/admin/members/{m}/unfreeze", body, None)[0] == 401
    assert post(worker.port, f"/admin/members/{m}/unfreeze", body, "wrong")[0] == 401
    status, reply = post(worker.port, f"/admin/members/{m}/unfreeze", body, "s3cret")
    assert status == 202 and reply["event_id"].startswith("admin-")
    wait_for(lambda: (worker.member(m) or {}).get("frozen") is False)
    status, _ = post(worker.port, f"/admin/members/{m}/adjust", {**body, "points": 25}, "s3cret")
    assert status == 202
    wait_for(lambda: (worker.member(m) or {}).get("points", {}).get("available") == 50 + 25,
             show=lambda: worker.member(m))
    audit = consume(deployment.topic("rewards"),
                    lambda rs: {"member_unfrozen", "points_adjusted"} <= {r["type"] for r in rs})
    assert {r["details"]["operator_id"] for r in audit if r["type"] in ("member_unfrozen", "points_adjusted")} \
        == {"ops-1"}


def test_admin_endpoints_are_off_without_a_token(deployment):
    worker = deployment.worker().start()
    assert post(worker.port, "/admin/members/x/freeze", {"operator_id": "o", "reason": "r"}, "any")[0] == 404


def test_member_drifts_from_new_to_at_risk_and_gets_a_win_back(deployment, tmp_path):
    rules = program(tmp_path, '\n[segments]\nnew_for = "PT2S"\nat_risk_after = "PT5S"\nchurned_after = "PT1H"\n')
    worker = deployment.worker(LOYALTY_RULES=rules).start()
    p, m = deployment.prefix, "drifter"
    produce([event_message(p, "orders", {"event_id": "o1", "member_id": m, "occurred_at": now(),
                                         "type": "order_paid", "order_id": "A", "amount_cents": 500,
                                         "currency": "CNY"})])
    wait_for(lambda: (worker.member(m) or {}).get("segment") == "new", show=lambda: worker.member(m))
    wait_for(lambda: (worker.member(m) or {}).get("segment") == "at_risk", timeout=30)
    changes = consume(deployment.topic("rewards"),
                      lambda rs: sum(r["type"] == "segment_changed" for r in rs) >= 2)
    assert [(r["details"]["from"], r["details"]["to"]) for r in changes if r["type"] == "segment_changed"] \
        == [("new", "active"), ("active", "at_risk")]
    notes = consume(deployment.topic("notifications"), lambda ns: any(n["template"] == "win_back" for n in ns))
    assert next(n for n in notes if n["template"] == "win_back")["priority"] == "marketing"


def test_marketing_notification_is_held_through_quiet_hours(deployment, tmp_path):
    start = datetime.now(SHANGHAI)
    end = start + timedelta(seconds=10)
    rules = program(tmp_path, policy=f'[notification_policy]\nquiet_start = "{start:%H:%M:%S}"\n'
                                     f'quiet_end = "{end:%H:%M:%S}"\nquiet_hours = "hold"\n')
    worker = deployment.worker(LOYALTY_RULES=rules).start()
    p, m = deployment.prefix, "sleeper"
    produce([event_message(p, "orders", {"event_id": "o1", "member_id": m, "occurred_at": now(),
                                         "type": "order_paid", "order_id": "A", "amount_cents": 500,
                                         "currency": "CNY"})])
    # Released after the 2 s return window, inside quiet hours: the marketing notice waits for their end.
    notes = consume(deployment.topic("notifications"),
                    lambda ns: sum(n["template"] == "points_earned" for n in ns) >= 2, timeout=40)
    released = [n for n in notes if n["template"] == "points_earned"]
    sent_at = max(datetime.fromisoformat(n["created_at"]) for n in released)
    assert datetime.now(SHANGHAI) >= end - timedelta(seconds=1), "held notices must not leave before quiet hours end"
    assert sent_at < end  # created when released; emitted only after quiet hours
    assert worker.member(m)["points"]["available"] == 105


def test_erased_member_starts_fresh(deployment):
    worker = deployment.worker().start()
    p, m = deployment.prefix, "leaver"
    login = {"event_id": "l1", "member_id": m, "occurred_at": now(), "type": "login", "device_id": "d",
             "ip": "203.0.113.9"}
    produce([event_message(p, "logins", login)])
    wait_for(lambda: worker.member(m) is not None)
    produce([event_message(p, "members", {"event_id": "x1", "member_id": m, "occurred_at": now(),
                                          "type": "member_erased"})])
    wait_for(lambda: worker.get(f"/members/{m}")[0] == 404)
    erased = consume(deployment.topic("rewards"), lambda rs: any(r["type"] == "member_erased" for r in rs))
    assert next(r for r in erased if r["type"] == "member_erased")["member_id"] == m
    produce([event_message(p, "shares", {"event_id": "s1", "member_id": m, "occurred_at": now(), "type": "share",
                                         "share_id": "S", "channel": "c", "target": "t"})])
    wait_for(lambda: (worker.member(m) or {}).get("points", {}).get("lifetime_earned") == 5)


def test_referral_sharing_a_device_with_its_referrer_is_flagged(deployment):
    worker = deployment.worker().start()
    p = deployment.prefix
    produce([event_message(p, "logins", {"event_id": "l1", "member_id": "referrer", "occurred_at": now(),
                                         "type": "login", "device_id": "shared-phone"}),
             event_message(p, "members", {"event_id": "j1", "member_id": "newbie", "occurred_at": now(),
                                          "type": "member_joined", "referrer_id": "referrer"}),
             event_message(p, "logins", {"event_id": "l2", "member_id": "honest", "occurred_at": now(),
                                         "type": "login", "device_id": "own-phone"})])
    wait_for(lambda: worker.member("newbie") is not None and worker.member("honest") is not None)
    produce([event_message(p, "logins", {"event_id": "l3", "member_id": "newbie", "occurred_at": now(),
                                         "type": "login", "device_id": "shared-phone"})])
    wait_for(lambda: (worker.member("newbie") or {}).get("frozen") is True, timeout=30)
    flags = worker.member("newbie")["flags"]
    assert [f["rule"] for f in flags] == ["referral_shared_device"]
    assert flags[0]["evidence"]["referrer_id"] == "referrer"
    assert "shared-phone" not in str(flags)  # the device is only ever a keyed hash
    assert worker.member("referrer")["frozen"] is False and worker.member("honest")["frozen"] is False


def test_admin_retry_with_the_same_request_id_applies_once(deployment):
    worker = deployment.worker(LOYALTY_ADMIN_TOKEN="t0ken").start()
    body = {"operator_id": "ops-2", "reason": "goodwill", "points": 30, "request_id": "ticket-42"}
    for _ in range(3):
        assert post(worker.port, "/admin/members/grace/adjust", body, "t0ken")[0] == 202
    assert post(worker.port, "/admin/members/grace/adjust", {**body, "request_id": 7}, "t0ken")[0] == 400
    # A later command on the same partition: once it is applied, the retries before it were too.
    end = {"operator_id": "ops-2", "reason": "end"}
    assert post(worker.port, "/admin/members/grace/freeze", end, "t0ken")[0] == 202
    wait_for(lambda: (worker.member("grace") or {}).get("frozen") is True)
    assert worker.member("grace")["points"]["available"] == 30
    adjusted = consume(deployment.topic("rewards"), lambda rs: any(r["type"] == "points_adjusted" for r in rs))
    assert [r["points"] for r in adjusted if r["type"] == "points_adjusted"] == [30]

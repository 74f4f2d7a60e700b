"""Malformed input goes to the dead-letter topic with its code; the valid events around it count."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import orjson

from tests.integration.harness import consume, event_message, produce, wait_for

# An hour ago: far from every window of the packaged program (the shares' points expire in 365 days),
# so nothing time-driven can change the balance while the test looks at it.
WHEN = (datetime.now(timezone(timedelta(hours=8))) - timedelta(hours=1)).isoformat(timespec="milliseconds")


def share(i: int, member: str = "bob") -> dict:
    return {"event_id": f"ok-{i}", "member_id": member, "occurred_at": WHEN, "type": "share",
            "share_id": f"s{i}", "channel": "weibo", "target": "x"}


def test_bad_input_is_dead_lettered_and_the_stream_goes_on(deployment):
    worker = deployment.worker().start()
    p = deployment.prefix
    order = {"event_id": "bad", "member_id": "bob", "occurred_at": WHEN, "type": "order_paid",
             "order_id": "o", "amount_cents": 100, "currency": "CNY"}
    bad = {
        "invalid_json": (f"{p}orders", b"bob", b'{"event_id": '),
        "not_an_object": (f"{p}orders", b"bob", b"[1, 2, 3]"),
        "missing_value": (f"{p}orders", b"bob", None),
        "oversized": (f"{p}orders", b"bob", orjson.dumps({**order, "pad": "x" * 70_000})),
        "unknown_type": (f"{p}orders", b"bob", orjson.dumps({**order, "type": "order_teleported"})),
        "key_mismatch": (f"{p}orders", b"mallory", orjson.dumps(order)),
        "schema_violation": (f"{p}orders", b"bob", orjson.dumps({**order, "amount_cents": -5})),
        "schema_violation:type": (f"{p}orders", b"bob", orjson.dumps({**order, "amount_cents": "100"})),
        "schema_violation:missing": (f"{p}orders", b"bob", orjson.dumps({k: v for k, v in order.items()
                                                                          if k != "event_id"})),
        "schema_violation:time": (f"{p}orders", b"bob", orjson.dumps({**order, "occurred_at": "yesterday"})),
        "unknown_type:wrong_topic": (f"{p}reviews", b"bob", orjson.dumps(order)),
        "invalid_json:binary": (f"{p}logins", b"bob", b"\xff\xfe\x00garbage"),
        "invalid_json:duplicate": (f"{p}orders", b"bob", orjson.dumps(order)[:-1] + b',"amount_cents":1}'),
        "schema_violation:range": (f"{p}orders", b"bob", orjson.dumps(order)[:-1] + b',"extra":1e400}'),
        "occurred_at_out_of_range": (f"{p}orders", b"bob",
                                     orjson.dumps({**order, "occurred_at": "9999-12-31T23:59:59Z"})),
    }
    valid = [event_message(p, "shares", share(i)) for i in range(3)]
    messages = [valid[0], *bad.values(), valid[1], valid[2]]
    produce(messages)

    letters = consume(deployment.topic("dead-letters"), lambda rs: len(rs) >= len(bad))
    assert len(letters) == len(bad)
    assert sorted(r["error"] for r in letters) == sorted(code.split(":")[0] for code in bad)
    binary = next(r for r in letters if r["topic"] == f"{p}logins")
    assert binary["encoding"] == "base64" and base64.b64decode(binary["value"]) == b"\xff\xfe\x00garbage"
    oversized = next(r for r in letters if r["error"] == "oversized")
    assert oversized["partition"] >= 0 and oversized["offset"] >= 0 and oversized["key"] == "bob"

    wait_for(lambda: (worker.member("bob") or {}).get("points", {}).get("available") == 15,
             show=lambda: (worker.member("bob"), worker.log_tail(80)))
    assert worker.alive()
    assert worker.get("/health")[0] == 200

"""Send a handful of events for member "alice" to the local broker (the README's quick start)."""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaProducer


async def main() -> None:
    prefix = os.environ.get("LOYALTY_TOPIC_PREFIX", "loyalty.")
    now = datetime.now(timezone(timedelta(hours=8))).isoformat(timespec="seconds")
    stamp = int(datetime.now().timestamp())
    base = {"member_id": "alice", "occurred_at": now}
    events = [
        ("members", {"type": "member_joined", "birthday": "03-14"}),
        ("orders", {"type": "order_paid", "order_id": f"A{stamp}", "amount_cents": 25999, "currency": "CNY"}),
        ("logins", {"type": "login", "device_id": "phone"}),
        ("shares", {"type": "share", "share_id": f"S{stamp}", "channel": "wechat", "target": "A1"}),
    ]
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9092")
    await producer.start()
    try:
        for i, (kind, fields) in enumerate(events):
            event = {"event_id": f"demo-{stamp}-{i}", **base, **fields}
            await producer.send_and_wait(f"{prefix}{kind}", orjson.dumps(event), key=b"alice")
            print(f"sent {kind}: {event['type']}")
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())

"""Micro-benchmark of topics.validation.decode_event: microseconds per message, no Kafka.

    .venv/bin/python -m bench.validation [--events 20000] [--repeat 7]

Three inputs of the same `loyalty produce` workload (members 2,000, seed 1): the values as the
generator writes them (orjson, compact), the same events written by Python's `json.dumps`
(spaces after separators: orjson's copy differs, so the duplicate-name check counts colons), and
orders with ten items each. Prints the median CPU time per message of `--repeat` passes over each
input (CPU time, not wall time: the machine is shared). Runs unchanged on commits before
decode_event took the clock (597f40b), for before/after figures.
"""
from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time

import orjson

from stream_app.loadgen import DEFAULT_MIX, generate
from topics.validation import decode_event

START_MS = 1_790_000_000_000  # 2026-09-21: the events' occurred_at, and the validator's clock
CLOCK = {"now_ms": START_MS} if "now_ms" in inspect.signature(decode_event).parameters else {}
Message = tuple[str, bytes, bytes]


def workloads(events: int) -> dict[str, list[Message]]:
    compact = list(generate(2000, events, 1, DEFAULT_MIX, START_MS, 1.0))
    spaced = [(kind, key, json.dumps(orjson.loads(value)).encode()) for kind, key, value in compact]
    items = [{"sku": f"sku-{i}", "category": "apparel", "quantity": 1, "price_cents": 1999} for i in range(10)]
    orders = [(kind, key, orjson.dumps({**orjson.loads(value), "items": items}))
              for kind, key, value in compact if b'"order_paid"' in value]
    return {"compact (orjson)": compact, "spaced (json.dumps)": spaced, "orders with 10 items": orders}


def per_message_us(messages: list[Message], repeat: int) -> float:
    passes = []
    for _ in range(repeat):
        began = time.process_time()
        for kind, key, value in messages:
            decode_event(kind, key, value, **CLOCK)
        passes.append((time.process_time() - began) / len(messages) * 1e6)
    return statistics.median(passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for name, messages in workloads(args.events).items():
        rejected = sum(not isinstance(decode_event(k, key, v, **CLOCK), dict) for k, key, v in messages)
        print(f"{name:<22} {len(messages):>6} messages  {per_message_us(messages, args.repeat):6.2f} us/message"
              f"  ({rejected} rejected)")


if __name__ == "__main__":
    main()

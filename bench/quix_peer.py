"""Contender 3: the same earning (bench.rules) as a Quix Streams application.

One StreamingDataFrame per input topic, concatenated (`sdf.concat`), then one stateful
`apply` per event: the member's state lives in Quix's RocksDB store under the message key, with
its changelog topic; rewards go to the output topic, keyed by member.

    python -m bench.quix_peer CONFIG.json

CONFIG: bootstrap, topics, output, group, reset, stop_after (0 = until SIGTERM), state_dir,
commit_interval (seconds), result.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import orjson
from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig

from bench.rules import earn
from stream_app.settings import KafkaSecurity, load_kafka_security


def connection(bootstrap: str, security: KafkaSecurity) -> ConnectionConfig:
    """The LOYALTY_KAFKA_* security (inherited from bench.run) as librdkafka settings: Quix has no aiokafka."""
    fields = {"bootstrap_servers": bootstrap, "security_protocol": security.protocol}
    if security.uses_sasl:
        fields.update(sasl_mechanism=security.mechanism, sasl_username=security.username,
                      sasl_password=security.password)
    for name, path in (("ssl_ca_location", security.ca_file), ("ssl_certificate_location", security.cert_file),
                       ("ssl_key_location", security.key_file)):
        if security.uses_tls and path:
            fields[name] = path
    return ConnectionConfig(**fields)


def main() -> int:
    cfg = orjson.loads(Path(sys.argv[1]).read_bytes())
    app = Application(broker_address=connection(cfg["bootstrap"], load_kafka_security()), consumer_group=cfg["group"],
                      auto_offset_reset=cfg["reset"], state_dir=cfg["state_dir"],
                      commit_interval=float(cfg.get("commit_interval", 1.0)),
                      loglevel=cfg.get("loglevel") or logging.WARNING,
                      auto_create_topics=True, processing_guarantee="at-least-once")
    stop_after = int(cfg.get("stop_after") or 0)
    progress = {"count": 0, "rewards": 0, "first_at": None, "last_at": None}
    started = time.time()

    def process(value: dict, state) -> list[dict]:
        member, rewards = earn(state.get("m"), value)
        state.set("m", member)
        progress["count"] += 1
        progress["rewards"] += len(rewards)
        count = progress["count"]
        if count == 1:
            progress["first_at"] = time.time()
        if count == stop_after:
            progress["last_at"] = time.time()
            app.stop()
        return rewards

    frames = [app.dataframe(app.topic(name, value_deserializer="json", key_deserializer="bytes"))
              for name in cfg["topics"]]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(process, stateful=True, expand=True)
    sdf.to_topic(app.topic(cfg["output"], value_serializer="json", key_serializer="bytes"))
    app.run()
    result = {"contender": "quix", "started": started, **progress}
    Path(cfg["result"]).write_bytes(orjson.dumps(result))
    print(f"quix: {progress['count']} events, {progress['rewards']} rewards", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

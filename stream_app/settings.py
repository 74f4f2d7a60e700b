"""Configuration, read only from environment variables (documented in docs/configuration.md)."""
from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from stream_app.core.program import ProgramError, parse_duration_ms

DEFAULTS = {
    "LOYALTY_BROKER": "kafka://localhost:9092",
    "LOYALTY_APP_ID": "loyalty",
    "LOYALTY_STORE": "rocksdb://",
    "LOYALTY_DATA_DIR": "./.local/data",
    "LOYALTY_WEB_HOST": "127.0.0.1",
    "LOYALTY_WEB_PORT": "6066",
    "LOYALTY_TOPIC_PREFIX": "loyalty.",
    "LOYALTY_PARTITIONS": "8",
    "LOYALTY_REPLICATION": "1",
    "LOYALTY_RULES": "",
    "LOYALTY_REDIS_URL": "",
    "LOYALTY_DUE_TICK": "PT1S",
    "LOYALTY_SESSION_TIMEOUT": "PT60S",
    "LOYALTY_TIER_SCAN_INTERVAL": "PT1H",
    "LOYALTY_LOG_LEVEL": "info",
    "LOYALTY_ADMIN_TOKEN": "",
    "LOYALTY_PII_KEY": "",
    "LOYALTY_WORKER_NAME": "",
}

#: LOYALTY_WORKER_NAME that turns static group membership off.
DYNAMIC_MEMBERSHIP = "-"
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")  # what Kafka accepts as a group.instance.id


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str
    app_id: str
    store: str
    data_dir: Path
    web_host: str
    web_port: int
    topic_prefix: str
    partitions: int
    replication: int
    rules_path: str
    redis_url: str
    due_tick_seconds: float
    session_timeout_seconds: float
    tier_scan_seconds: float
    log_level: str
    admin_token: str
    pii_key: bytes
    #: The consumer's group.instance.id (Kafka static membership); None: dynamic membership.
    worker_name: str | None


def _positive_int(env: dict, name: str) -> int:
    value = env[name]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_duration_s(env: dict, name: str) -> float:
    try:
        ms = parse_duration_ms(env[name])
    except ProgramError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if ms <= 0:
        raise ValueError(f"{name} must be a positive duration, got {env[name]!r}")
    return ms / 1000


def _worker_name(value: str, data_dir: Path) -> str | None:
    """The stable name a restarted worker rejoins its group with (docs/configuration.md).

    Default: this host's name and a hash of the data dir, so two workers on one host differ and a
    worker restarted on the same host and data dir gets its partitions back without a rebalance.
    """
    if value == DYNAMIC_MEMBERSHIP:
        return None
    if not value:
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:200] or "worker"
        return f"{host}-{hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]}"
    if not _INSTANCE_ID.fullmatch(value):
        raise ValueError(f"LOYALTY_WORKER_NAME must be 1-249 of A-Z a-z 0-9 . _ - (or {DYNAMIC_MEMBERSHIP!r}), "
                         f"got {value!r}")
    return value


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from `environ` (default: the process environment) over the documented defaults."""
    env = {**DEFAULTS, **{k: v for k, v in (os.environ if environ is None else environ).items()
                          if k in DEFAULTS}}
    return Settings(
        broker=env["LOYALTY_BROKER"], app_id=env["LOYALTY_APP_ID"], store=env["LOYALTY_STORE"],
        data_dir=Path(env["LOYALTY_DATA_DIR"]), web_host=env["LOYALTY_WEB_HOST"],
        web_port=_positive_int(env, "LOYALTY_WEB_PORT"), topic_prefix=env["LOYALTY_TOPIC_PREFIX"],
        partitions=_positive_int(env, "LOYALTY_PARTITIONS"),
        replication=_positive_int(env, "LOYALTY_REPLICATION"), rules_path=env["LOYALTY_RULES"],
        redis_url=env["LOYALTY_REDIS_URL"],
        due_tick_seconds=_positive_duration_s(env, "LOYALTY_DUE_TICK"),
        session_timeout_seconds=_positive_duration_s(env, "LOYALTY_SESSION_TIMEOUT"),
        tier_scan_seconds=_positive_duration_s(env, "LOYALTY_TIER_SCAN_INTERVAL"),
        log_level=env["LOYALTY_LOG_LEVEL"],
        admin_token=env["LOYALTY_ADMIN_TOKEN"],
        # Without a configured key, device ids are still hashed, keyed by the app id (set one in production).
        pii_key=(env["LOYALTY_PII_KEY"] or f"loyalty-pii:{env['LOYALTY_APP_ID']}").encode(),
        worker_name=_worker_name(env["LOYALTY_WORKER_NAME"], Path(env["LOYALTY_DATA_DIR"])),
    )

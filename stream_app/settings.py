"""Configuration, read only from environment variables (documented in docs/configuration.md)."""
from __future__ import annotations

import os
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
    "LOYALTY_ORDER_GRACE": "PT2S",
}


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
    order_grace_seconds: float


def _positive_int(env: dict, name: str) -> int:
    value = env[name]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_duration_s(env: dict, name: str, allow_zero: bool = False) -> float:
    try:
        ms = parse_duration_ms(env[name])
    except ProgramError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if ms < 0 or (ms == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} duration, got {env[name]!r}")
    return ms / 1000


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
        order_grace_seconds=_positive_duration_s(env, "LOYALTY_ORDER_GRACE", allow_zero=True),
    )

"""Configuration, read only from environment variables (documented in docs/configuration.md).

`load_settings` is the one reader of the environment: everything else receives a `Settings`.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.core.program import ProgramError, parse_duration_ms

DEFAULTS = {
    "LOYALTY_BROKER": "kafka://localhost:9092",
    "LOYALTY_APP_ID": "loyalty",
    "LOYALTY_STORE": "rocksdb://",
    "LOYALTY_DATA_DIR": "./.local/data",
    "LOYALTY_WEB_HOST": "127.0.0.1",
    "LOYALTY_WEB_PORT": "6066",
    "LOYALTY_WEB_BIND": "127.0.0.1",
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
    "LOYALTY_READ_TOKEN": "",
    "LOYALTY_PII_KEY": "",
    "LOYALTY_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "LOYALTY_KAFKA_SASL_MECHANISM": "PLAIN",
    "LOYALTY_KAFKA_SASL_USERNAME": "",
    "LOYALTY_KAFKA_SASL_PASSWORD": "",
    "LOYALTY_KAFKA_SASL_PASSWORD_FILE": "",
    "LOYALTY_KAFKA_SSL_CA_FILE": "",
    "LOYALTY_KAFKA_SSL_CERT_FILE": "",
    "LOYALTY_KAFKA_SSL_KEY_FILE": "",
    "LOYALTY_WORKER_NAME": "",
    "LOYALTY_ORDER_GRACE": "PT2S",
}
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL_VARIABLES = ("LOYALTY_KAFKA_SASL_USERNAME", "LOYALTY_KAFKA_SASL_PASSWORD", "LOYALTY_KAFKA_SASL_PASSWORD_FILE")
_TLS_VARIABLES = ("LOYALTY_KAFKA_SSL_CA_FILE", "LOYALTY_KAFKA_SSL_CERT_FILE", "LOYALTY_KAFKA_SSL_KEY_FILE")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How every Kafka client of the project connects: protocol, SASL login, TLS files (paths, empty if unset).

    The password is left out of repr(), so it cannot reach a log line or a traceback through Settings.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str = "PLAIN"
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")

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
    web_bind: str
    topic_prefix: str
    partitions: int
    replication: int
    rules_path: str
    redis_url: str
    due_tick_seconds: float
    session_timeout_seconds: float
    tier_scan_seconds: float
    log_level: str
    admin_token: str = field(repr=False)
    read_token: str = field(repr=False)
    pii_key: bytes = field(repr=False)
    kafka_security: KafkaSecurity
    #: The consumer's group.instance.id (Kafka static membership); None: dynamic membership.
    worker_name: str | None
    order_grace_seconds: float

    @property
    def bootstrap_servers(self) -> str:
        """LOYALTY_BROKER as plain Kafka clients want it: `kafka://a:9092;kafka://b:9092` -> `a:9092,b:9092`."""
        urls = re.split(r"[;,]", self.broker)
        return ",".join(url.strip().removeprefix("kafka://") for url in urls if url.strip())


def _positive_int(env: dict, name: str) -> int:
    value = env[name]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(env: dict) -> str:
    level = env["LOYALTY_LOG_LEVEL"].lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise ValueError(f"LOYALTY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {env['LOYALTY_LOG_LEVEL']!r}")
    return level


def _positive_duration_s(env: dict, name: str, allow_zero: bool = False) -> float:
    try:
        ms = parse_duration_ms(env[name])
    except ProgramError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if ms < 0 or (ms == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} duration, got {env[name]!r}")
    return ms / 1000


def _read_secret(name: str, path: str) -> str:
    """A secret file's text without its trailing newline (what `echo secret > file` leaves)."""
    try:
        secret = Path(path).read_text("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not secret:
        raise ValueError(f"{name}: {path} is empty")
    return secret


def _kafka_security(env: dict[str, str]) -> KafkaSecurity:
    protocol = env["LOYALTY_KAFKA_SECURITY_PROTOCOL"].strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"LOYALTY_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                         f"got {env['LOYALTY_KAFKA_SECURITY_PROTOCOL']!r}")
    mechanism = env["LOYALTY_KAFKA_SASL_MECHANISM"].strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise ValueError(f"LOYALTY_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                         f"got {env['LOYALTY_KAFKA_SASL_MECHANISM']!r}")
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    # A SASL or TLS setting the protocol would ignore is a mistake (often a forgotten protocol): say so.
    for kind, names, used in (("SASL", _SASL_VARIABLES, sasl), ("TLS", _TLS_VARIABLES, tls)):
        ignored = [name for name in names if env[name] and not used]
        if ignored:
            raise ValueError(f"{', '.join(ignored)} set, but LOYALTY_KAFKA_SECURITY_PROTOCOL={protocol} "
                             f"does not use {kind}")
    password, password_file = env["LOYALTY_KAFKA_SASL_PASSWORD"], env["LOYALTY_KAFKA_SASL_PASSWORD_FILE"]
    if password and password_file:
        raise ValueError("set LOYALTY_KAFKA_SASL_PASSWORD or LOYALTY_KAFKA_SASL_PASSWORD_FILE, not both")
    if password_file:
        password = _read_secret("LOYALTY_KAFKA_SASL_PASSWORD_FILE", password_file)
    if sasl and not env["LOYALTY_KAFKA_SASL_USERNAME"]:
        raise ValueError(f"LOYALTY_KAFKA_SECURITY_PROTOCOL={protocol} needs LOYALTY_KAFKA_SASL_USERNAME")
    if sasl and not password:
        raise ValueError(f"LOYALTY_KAFKA_SECURITY_PROTOCOL={protocol} needs LOYALTY_KAFKA_SASL_PASSWORD "
                         "or LOYALTY_KAFKA_SASL_PASSWORD_FILE")
    if env["LOYALTY_KAFKA_SSL_KEY_FILE"] and not env["LOYALTY_KAFKA_SSL_CERT_FILE"]:
        raise ValueError("LOYALTY_KAFKA_SSL_KEY_FILE needs LOYALTY_KAFKA_SSL_CERT_FILE (the client certificate)")
    return KafkaSecurity(protocol=protocol, mechanism=mechanism, username=env["LOYALTY_KAFKA_SASL_USERNAME"],
                         password=password, ca_file=env["LOYALTY_KAFKA_SSL_CA_FILE"],
                         cert_file=env["LOYALTY_KAFKA_SSL_CERT_FILE"], key_file=env["LOYALTY_KAFKA_SSL_KEY_FILE"])


def _environment(environ: dict[str, str] | None) -> dict[str, str]:
    return {**DEFAULTS, **{k: v for k, v in (os.environ if environ is None else environ).items() if k in DEFAULTS}}


def load_kafka_security(environ: dict[str, str] | None = None) -> KafkaSecurity:
    """Only the Kafka security settings (for the CLI, the bench and the tests, which need no other setting)."""
    return _kafka_security(_environment(environ))


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
    env = _environment(environ)
    return Settings(
        broker=env["LOYALTY_BROKER"], app_id=env["LOYALTY_APP_ID"], store=env["LOYALTY_STORE"],
        data_dir=Path(env["LOYALTY_DATA_DIR"]), web_host=env["LOYALTY_WEB_HOST"],
        web_port=_positive_int(env, "LOYALTY_WEB_PORT"), web_bind=env["LOYALTY_WEB_BIND"],
        topic_prefix=env["LOYALTY_TOPIC_PREFIX"],
        partitions=_positive_int(env, "LOYALTY_PARTITIONS"),
        replication=_positive_int(env, "LOYALTY_REPLICATION"), rules_path=env["LOYALTY_RULES"],
        redis_url=env["LOYALTY_REDIS_URL"],
        due_tick_seconds=_positive_duration_s(env, "LOYALTY_DUE_TICK"),
        session_timeout_seconds=_positive_duration_s(env, "LOYALTY_SESSION_TIMEOUT"),
        tier_scan_seconds=_positive_duration_s(env, "LOYALTY_TIER_SCAN_INTERVAL"),
        log_level=_log_level(env),
        admin_token=env["LOYALTY_ADMIN_TOKEN"], read_token=env["LOYALTY_READ_TOKEN"],
        # Without a configured key, device ids are still hashed, keyed by the app id (set one in production).
        pii_key=(env["LOYALTY_PII_KEY"] or f"loyalty-pii:{env['LOYALTY_APP_ID']}").encode(),
        kafka_security=_kafka_security(env),
        worker_name=_worker_name(env["LOYALTY_WORKER_NAME"], Path(env["LOYALTY_DATA_DIR"])),
        order_grace_seconds=_positive_duration_s(env, "LOYALTY_ORDER_GRACE", allow_zero=True),
    )

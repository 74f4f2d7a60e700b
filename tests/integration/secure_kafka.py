"""A second, throw-away Kafka broker with TLS and SCRAM-SHA-512 logins, for the security tests.

    .venv/bin/python -m tests.integration.secure_kafka   # start one, print its settings, Ctrl-C stops it

It runs the project's own broker jars (fetched by `ops/kafka.sh`), on free ports, in a temporary
directory: openssl writes a CA, a broker and a client certificate (tests/certificates.py), Kafka's
StorageTool formats a KRaft storage with the SCRAM users (`--add-scram`, Kafka 3.5+), and the single
broker+controller listens with SASL_SSL (SCRAM-SHA-512) and SSL (client certificate required). The
shared broker on 9092 is not touched; `stop()` kills the process and deletes the directory.
"""
from __future__ import annotations

import asyncio
import base64
import ctypes
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from stream_app.kafka_security import client_options
from stream_app.settings import load_kafka_security
from stream_app.worker_process import free_port
from tests.certificates import write_certificates
from tests.integration.harness import ROOT, Broker

USER = "loyalty"
ADMIN = "broker-admin"  # the broker's own login on its SASL_SSL listener (inter-broker)
MECHANISM = "SCRAM-SHA-512"


def kafka_libs() -> Path:
    """The broker jars: this checkout's `.cache/`, else the main worktree's (git worktrees share one clone),
    else fetched now by `ops/kafka.sh fetch`."""
    candidates = [ROOT / ".cache" / "kafka-libs"]
    common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                            capture_output=True, text=True)
    if common.returncode == 0:
        candidates.append(Path(common.stdout.strip()).parent / ".cache" / "kafka-libs")
    for libs in candidates:
        if (libs / ".complete").exists():
            return libs
    subprocess.run([str(ROOT / "ops" / "kafka.sh"), "fetch"], check=True)
    return candidates[0]


def _die_with_parent() -> None:
    """In the broker's child process: get SIGTERM when the test process dies, so no broker outlives it."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SecureKafka:
    """One secured single-node broker; use as a context manager, or start() and stop()."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="secure-kafka-", dir=folder))
        self.password = secrets.token_hex(16)
        self.sasl_port, self.tls_port, self.controller_port = free_port(), free_port(), free_port()
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.tls_bootstrap = f"127.0.0.1:{self.tls_port}"
        self.proc: subprocess.Popen | None = None
        self.last_error: Exception | None = None

    # -- what clients use ---------------------------------------------------------------------------------

    def sasl_env(self, password: str | None = None, password_file: Path | None = None) -> dict[str, str]:
        """LOYALTY_KAFKA_* for the SASL_SSL listener as USER: the password, or its file (the other one empty, so
        this also overrides an environment that set it)."""
        return {"LOYALTY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LOYALTY_KAFKA_SASL_MECHANISM": MECHANISM,
                "LOYALTY_KAFKA_SASL_USERNAME": USER, "LOYALTY_KAFKA_SSL_CA_FILE": str(self.folder / "ca.pem"),
                "LOYALTY_KAFKA_SASL_PASSWORD": "" if password_file else password or self.password,
                "LOYALTY_KAFKA_SASL_PASSWORD_FILE": str(password_file or "")}

    def tls_env(self) -> dict[str, str]:
        """LOYALTY_KAFKA_* for the SSL listener with the client certificate (mutual TLS)."""
        return {"LOYALTY_KAFKA_SECURITY_PROTOCOL": "SSL", "LOYALTY_KAFKA_SSL_CA_FILE": str(self.folder / "ca.pem"),
                "LOYALTY_KAFKA_SSL_CERT_FILE": str(self.folder / "client.crt"),
                "LOYALTY_KAFKA_SSL_KEY_FILE": str(self.folder / "client.key")}

    def sasl_broker(self) -> Broker:
        """The SASL_SSL listener as a harness Broker (test clients and deployments)."""
        env = self.sasl_env()
        return Broker(self.sasl_bootstrap, client_options(load_kafka_security(env)), env)

    # -- life cycle -------------------------------------------------------------------------------------------

    def _properties(self) -> str:
        folder, jaas = self.folder, "org.apache.kafka.common.security.scram.ScramLoginModule"
        return "\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.tls_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.tls_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL", f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f'listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas} required '
            f'username="{ADMIN}" password="{self.password}-admin";',
            "listener.name.ssl.ssl.client.auth=required",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={folder / 'broker.pem'}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={folder / 'ca.pem'}",
            f"log.dirs={folder / 'data'}", "num.partitions=1", "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false", ""])

    def _java(self, libs: Path, heap: str) -> list[str]:
        return ["java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",  # quick start, little JIT
                f"-Dlog4j.configuration=file:{self.folder / 'log4j.properties'}",
                f"-Dkafka.logs.dir={self.folder / 'logs'}", "-cp", f"{libs}/*"]

    def start(self, timeout: float = 90) -> SecureKafka:
        libs = kafka_libs()
        write_certificates(self.folder)
        (self.folder / "server.properties").write_text(self._properties())
        (self.folder / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, file\nlog4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={self.folder / 'broker.log'}\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        formatted = subprocess.run(
            [*self._java(libs, "256m"), "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(self.folder / "server.properties"),
             "--add-scram", f"{MECHANISM}=[name={USER},password={self.password}]",
             "--add-scram", f"{MECHANISM}=[name={ADMIN},password={self.password}-admin]"],
            capture_output=True, text=True, timeout=120)
        if formatted.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed: {formatted.stdout}{formatted.stderr}")
        with open(self.folder / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([*self._java(libs, "512m"), "kafka.Kafka",
                                          str(self.folder / "server.properties")],
                                         stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"secured broker exited with {self.proc.returncode}:\n{tail}")
            if self._listens() and asyncio.run(self._logs_in()):
                return self
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise TimeoutError(f"secured broker did not accept a SCRAM login in {timeout} s "
                           f"(last: {self.last_error!r}):\n{tail}")

    def _listens(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.sasl_port), timeout=1):
                return True
        except OSError:
            return False

    async def _logs_in(self) -> bool:
        """The readiness check, configured here rather than through stream_app (the code under test)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.sasl_bootstrap, security_protocol="SASL_SSL",
                                    sasl_mechanism=MECHANISM, sasl_plain_username=USER,
                                    sasl_plain_password=self.password, request_timeout_ms=5000,
                                    ssl_context=create_ssl_context(cafile=str(self.folder / "ca.pem")))
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception as exc:  # not up yet (refused, closed, no metadata): start() retries until its deadline
            self.last_error = exc
            return False
        finally:
            await admin.close()

    def log_tail(self, lines: int = 40) -> str:
        text = "".join((self.folder / name).read_text(errors="replace")
                       for name in ("stdout.log", "broker.log") if (self.folder / name).exists())
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SecureKafka:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


if __name__ == "__main__":
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # either one stops and cleans up, even in the background
        signal.signal(stop_signal, signal.default_int_handler)
    with SecureKafka() as kafka:
        print(f"# SASL_SSL ({MECHANISM}) on {kafka.sasl_bootstrap}:")
        print(" ".join(f"{k}={v}" for k, v in kafka.sasl_env().items()), f"LOYALTY_BROKER=kafka://{kafka.sasl_bootstrap}")
        print(f"# SSL with a client certificate on {kafka.tls_bootstrap}:")
        print(" ".join(f"{k}={v}" for k, v in kafka.tls_env().items()), f"LOYALTY_BROKER=kafka://{kafka.tls_bootstrap}")
        print("# Ctrl-C stops the broker and deletes", kafka.folder, flush=True)
        try:
            kafka.proc.wait()
        except KeyboardInterrupt:
            pass

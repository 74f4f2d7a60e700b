"""The composition root: what it builds, what it keeps stable, and that every setting reaches its part."""
from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.compose import build_app
from stream_app.core.program import default_program_text, load_program, parse_program
from stream_app.settings import DEFAULTS, load_settings
from tests.certificates import write_certificates
from tests.unit.shell.test_contracts import env_table

ROOT = Path(__file__).resolve().parents[3]
SHELL_PACKAGES = ("agents", "tables", "topics", "stream_app")


def wire(env: dict[str, str] | None = None, program_text: str | None = None):
    settings = load_settings({"LOYALTY_STORE": "memory://", **(env or {})})
    program = parse_program(program_text) if program_text else load_program(settings.rules_path)
    return build_app(settings, program)


def test_agent_table_and_topic_names_are_those_of_the_previous_release() -> None:
    """Existing consumer groups, changelog topics and offsets stay valid across the refactor.

    The names below are what the release before the composition root registered (read off
    `faust -A stream_app.app` at commit 76688db: agents named after their module path).
    Issue 14 added the reward agents, their table and the member agent's reward-replies input.
    """
    app = wire({"LOYALTY_APP_ID": "shop"}).app
    assert sorted(app.agents) == ["agents.devices.index_devices", "agents.process.process",
                                  "agents.rewards.allocate", "agents.rewards.forward_catalog"]
    assert {name: table.changelog_topic.get_topic_name() for name, table in app.tables.items()} == {
        "members": "shop-members-changelog", "devices": "shop-devices-changelog",
        "member-index": "shop-member-index-changelog",  # new in the release that added the index
        "rewards": "shop-rewards-changelog"}
    assert app.conf.id == "shop"  # the consumer group
    process = app.agents["agents.process.process"]
    assert sorted(process.channel.topics) == sorted(f"loyalty.{k}" for k in (
        "orders", "reviews", "shares", "logins", "members", "redemptions", "admin", "due", "referrals",
        "reward-replies"))
    assert sorted(app.agents["agents.rewards.allocate"].channel.topics) == ["loyalty.reward-requests"]
    assert sorted(app.agents["agents.rewards.forward_catalog"].channel.topics) == [
        "loyalty.catalog", "loyalty.coupon-codes"]


def test_two_apps_live_in_one_process_each_with_its_program_and_store(tmp_path) -> None:
    generous = default_program_text().replace("[shares]\npoints = 5", "[shares]\npoints = 50")
    one = wire({"LOYALTY_APP_ID": "one"})
    two = wire({"LOYALTY_APP_ID": "two", "LOYALTY_STORE": "rocksdb://", "LOYALTY_DATA_DIR": str(tmp_path)},
               generous)
    assert one.app is not two.app and one.parts.members is not two.parts.members
    assert (one.parts.program.share_points, two.parts.program.share_points) == (5, 50)
    assert (str(one.app.conf.store), str(two.app.conf.store)) == ("memory:", "rocksdb:")


@pytest.mark.parametrize("module", sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts) for package in SHELL_PACKAGES
    for p in (ROOT / package).rglob("*.py") if p.name != "__init__.py" and "core" not in p.parts
    and p.relative_to(ROOT).as_posix() != "stream_app/app.py"))
def test_each_shell_module_imports_on_its_own(module: str) -> None:
    """No import cycle: each module imports in a fresh interpreter without the app module first."""
    done = subprocess.run([sys.executable, "-c", f"import {module}; import sys; "
                           "sys.exit('stream_app.app' in sys.modules)"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_nothing_imports_the_app_module() -> None:
    importers = []
    for path in ROOT.rglob("*.py"):
        if {".venv", ".cache", ".local"} & set(path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if "stream_app.app" in names:
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers == []


def test_builtin_faust_pages_are_not_registered() -> None:
    app = wire().app
    assert all(not str(bp).startswith("faust.web.apps.") for _, bp in app.web.blueprints._enabled)


def test_a_fetch_hands_over_at_most_one_intake_batch() -> None:
    """Unbounded, a fetch brings up to 1 MiB of every partition, and a topic partition the event-time merge
    paused keeps arriving for the rest of that fetch, past the merge's cap (agents/intake.py `_pace`)."""
    from agents.intake import CAP, READ_BATCH

    app = wire().app
    assert app.conf.broker_max_poll_records == READ_BATCH and READ_BATCH * 4 < CAP // 2


def test_the_worker_creates_every_topic_and_changelog_as_faust_would_before_it_starts() -> None:
    """topics/declare.py creates them at worker init; each with the partitions, replication and
    config Faust's own declaration (aiokafka driver's `_topic_config` plus the topic's config) gives."""
    from faust.transport.drivers.aiokafka import Transport
    from mode.utils.times import want_seconds

    from topics.declare import worker_topics

    wired = wire({"LOYALTY_APP_ID": "shop", "LOYALTY_PARTITIONS": "6", "LOYALTY_TOPIC_PREFIX": "p."})
    app, parts = wired.app, wired.parts
    specs = {spec.name: spec for spec in worker_topics(app, parts.topics.produced.values())}
    topics = [*parts.topics.produced.values(), *(table.changelog_topic for table in app.tables.values())]
    assert set(specs) == {name for topic in topics for name in topic.topics}
    assert {name for name in specs if name.endswith("-changelog")} == {
        f"shop-{table}-changelog" for table in ("members", "devices", "member-index", "rewards")}
    for topic in topics:
        retention = int(want_seconds(topic.retention) * 1000) if topic.retention else None
        want = {k: str(v) for k, v in {**Transport._topic_config(None, retention, topic.compacting, topic.deleting),
                                       **(topic.config or {})}.items()}
        for name in topic.topics:
            assert (specs[name].partitions, specs[name].replication, specs[name].config) == (6, 1, want), name
    assert specs["shop-members-changelog"].config["cleanup.policy"] == "compact"
    assert specs["p.catalog"].config["cleanup.policy"] == "compact"
    assert specs["p.orders"].config == {}


# -- every documented variable has an effect ------------------------------------------------------

def _credentials(wired):
    creds = wired.app.conf.broker_credentials
    return None if creds is None else (type(creds).__name__, str(getattr(creds, "protocol", "")),
                                       getattr(getattr(creds, "mechanism", None), "value", None),
                                       getattr(creds, "username", None), getattr(creds, "password", None))


def _tls(wired):
    """What the TLS context trusts and presents: the CA's subject and whether a client certificate is loaded."""
    context = wired.app.conf.broker_credentials.context
    return ([dict(x[0] for x in ca["subject"])["commonName"] for ca in context.get_ca_certs()],
            context.cert_store_stats()["x509"] > 0)


SASL = {"LOYALTY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "LOYALTY_KAFKA_SASL_USERNAME": "u",
        "LOYALTY_KAFKA_SASL_PASSWORD": "p"}


def _effects(tmp_path: Path) -> dict:
    """For each variable: (its value, or the environment that sets it together with what it needs,
    a function of the wired app giving what it set, the expected result)."""
    write_certificates(tmp_path)
    (tmp_path / "password").write_text("from-a-file\n")
    tls = {"LOYALTY_KAFKA_SECURITY_PROTOCOL": "SSL"}
    rules = tmp_path / "rules.toml"
    rules.write_text(default_program_text().replace("[shares]\npoints = 5", "[shares]\npoints = 9"))
    return {
        "LOYALTY_BROKER": ("kafka://k1:9093", lambda w: str(w.app.conf.broker[0]), "kafka://k1:9093"),
        "LOYALTY_APP_ID": ("other", lambda w: w.app.conf.id, "other"),
        "LOYALTY_STORE": ("rocksdb://", lambda w: str(w.app.conf.store), "rocksdb:"),
        "LOYALTY_DATA_DIR": (str(tmp_path / "d"), lambda w: str(w.app.conf.datadir).startswith(str(tmp_path)), True),
        "LOYALTY_WEB_HOST": ("w7.example", lambda w: w.app.conf.web_host, "w7.example"),
        "LOYALTY_WEB_PORT": ("7077", lambda w: w.app.conf.web_port, 7077),
        "LOYALTY_WEB_BIND": ("0.0.0.0", lambda w: w.app.conf.web_bind, "0.0.0.0"),
        "LOYALTY_TOPIC_PREFIX": ("shop.", lambda w: sorted(w.parts.topics.produced["orders"].topics), ["shop.orders"]),
        "LOYALTY_PARTITIONS": ("3", lambda w: (w.app.conf.topic_partitions, w.parts.members.partitions), (3, 3)),
        "LOYALTY_REPLICATION": ("3", lambda w: w.app.conf.topic_replication_factor, 3),
        "LOYALTY_RULES": (str(rules), lambda w: w.processor.versions.at(0).share_points, 9),
        "LOYALTY_REDIS_URL": ("redis://r:6379/2", lambda w: (w.parts.projection.enabled, w.parts.projection.url),
                              (True, "redis://r:6379/2")),
        "LOYALTY_DUE_TICK": ("PT5S", lambda w: w.due_work.interval, 5.0),
        "LOYALTY_SESSION_TIMEOUT": ("PT20S", lambda w: (w.app.conf.broker_session_timeout,
                                                        w.app.conf.broker_heartbeat_interval), (20.0, 3.0)),
        "LOYALTY_TIER_SCAN_INTERVAL": ("PT10M", lambda w: w.observer.tier_scan_interval, 600.0),
        "LOYALTY_LOG_LEVEL": ("error", _log_level_after_worker_init, logging.ERROR),
        "LOYALTY_ADMIN_TOKEN": ("a-secret", lambda w: w.parts.settings.admin_token, "a-secret"),
        "LOYALTY_READ_TOKEN": ("r-secret", lambda w: w.parts.settings.read_token, "r-secret"),
        "LOYALTY_PII_KEY": ("k", lambda w: w.processor.pii_key, b"k"),
        "LOYALTY_ORDER_GRACE": ("PT0.5S", lambda w: w.processor.intake._merge._grace, 500),
        "LOYALTY_WORKER_NAME": ("worker-7", lambda w: w.app.conf.consumer_group_instance_id, "worker-7"),
        "LOYALTY_KAFKA_SECURITY_PROTOCOL": ("SSL", lambda w: _credentials(w)[0], "SSLCredentials"),
        "LOYALTY_KAFKA_SASL_MECHANISM": ({**SASL, "LOYALTY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
                                         lambda w: _credentials(w)[2], "SCRAM-SHA-512"),
        "LOYALTY_KAFKA_SASL_USERNAME": ({**SASL, "LOYALTY_KAFKA_SASL_USERNAME": "shop"},
                                        lambda w: _credentials(w)[3], "shop"),
        "LOYALTY_KAFKA_SASL_PASSWORD": ({**SASL, "LOYALTY_KAFKA_SASL_PASSWORD": "s3cret"},
                                        lambda w: _credentials(w)[4], "s3cret"),
        "LOYALTY_KAFKA_SASL_PASSWORD_FILE": (
            {**{k: v for k, v in SASL.items() if k != "LOYALTY_KAFKA_SASL_PASSWORD"},
             "LOYALTY_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password")}, lambda w: _credentials(w)[4],
            "from-a-file"),
        "LOYALTY_KAFKA_SSL_CA_FILE": ({**tls, "LOYALTY_KAFKA_SSL_CA_FILE": str(tmp_path / "ca.pem")},
                                      lambda w: "loyalty-test-ca" in _tls(w)[0], True),
        "LOYALTY_KAFKA_SSL_CERT_FILE": ({**tls, "LOYALTY_KAFKA_SSL_CA_FILE": str(tmp_path / "ca.pem"),
                                         "LOYALTY_KAFKA_SSL_CERT_FILE": str(tmp_path / "client.crt"),
                                         "LOYALTY_KAFKA_SSL_KEY_FILE": str(tmp_path / "client.key")},
                                        lambda w: _client_certificate(w, tmp_path), "client"),
        "LOYALTY_KAFKA_SSL_KEY_FILE": ({**tls, "LOYALTY_KAFKA_SSL_CERT_FILE": str(tmp_path / "client.crt"),
                                        "LOYALTY_KAFKA_SSL_KEY_FILE": str(tmp_path / "client.key")},
                                       lambda w: _client_certificate(w, tmp_path), "client"),
    }


def _client_certificate(wired, tmp_path: Path) -> str | None:
    """The CN of the client certificate the worker's TLS context presents, seen by a server that requires
    one: a TLS handshake between the two contexts, shuttled through memory buffers."""
    import ssl

    client = wired.app.conf.broker_credentials.context
    client.load_verify_locations(tmp_path / "ca.pem")  # trust the test broker's certificate either way
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "broker.crt", tmp_path / "broker.key")
    server.load_verify_locations(tmp_path / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_end = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_end = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client_end), ("server", server_end)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except ssl.SSLError:
                    return None
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    peer = server_end.getpeercert() if all(done.values()) else None
    return dict(x[0] for x in peer["subject"])["commonName"] if peer else None


def _log_level_after_worker_init(wired) -> int:
    root = logging.getLogger()
    before = root.level
    try:
        wired.app.on_worker_init.send()
        return root.level
    finally:
        root.setLevel(before)


def test_every_documented_variable_has_an_effect_on_the_wired_app(tmp_path) -> None:
    effects = _effects(tmp_path)
    assert set(effects) == set(env_table()) == set(DEFAULTS), "a variable without an effect test"
    baseline = wire({"LOYALTY_DATA_DIR": "/elsewhere"})
    plain_tls = wire({"LOYALTY_KAFKA_SECURITY_PROTOCOL": "SSL"})  # the baseline of the TLS file variables
    for name, (value, read, expected) in effects.items():
        changed = wire(value if isinstance(value, dict) else {name: value})
        assert read(changed) == expected, name
        before = plain_tls if "_SSL_" in name else wire(SASL) if "_SASL_" in name else baseline
        try:
            unchanged = read(before)
        except Exception:  # e.g. no client certificate to read
            unchanged = None
        assert unchanged != expected, f"{name}: the default already gives {expected!r}"


def test_the_benchmark_imports_nothing_from_the_tests() -> None:
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "bench").rglob("*")
                 if p.is_file() and p.suffix in (".py", ".sh") and "tests." in p.read_text("utf-8")
                 and ("import tests" in p.read_text("utf-8") or "from tests" in p.read_text("utf-8"))]
    assert offenders == []

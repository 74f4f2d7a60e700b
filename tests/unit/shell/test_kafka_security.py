"""Kafka security: the LOYALTY_KAFKA_* settings, the faust credentials and aiokafka options built from them,
and the bounded login check (against real local sockets: one refusing, one that never answers)."""
from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream_app import cli
from stream_app.kafka_security import (
    LoginFailed,
    check_login,
    client_options,
    describe,
    exit_unless_login,
    faust_credentials,
    ssl_context,
)
from stream_app.settings import KafkaSecurity, load_kafka_security, load_settings
from tests.certificates import openssl, write_certificates

SECRET = "s3cr3t-pa55"
SASL = {"LOYALTY_KAFKA_SASL_USERNAME": "app", "LOYALTY_KAFKA_SASL_PASSWORD": SECRET}


def security(**env: str) -> KafkaSecurity:
    return load_kafka_security({f"LOYALTY_KAFKA_{name.upper()}": value for name, value in env.items()})


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to write the test certificates")
    folder = tmp_path_factory.mktemp("tls")
    write_certificates(folder)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes256", "-pass", "pass:x",
            "-out", "encrypted.key", cwd=folder)
    return folder


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections and never sends a byte (a broker that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


# -- settings ----------------------------------------------------------------------------------------

def test_the_default_is_plaintext_without_credentials():
    assert load_settings({}).kafka_security == load_kafka_security({}) == KafkaSecurity()
    assert KafkaSecurity().protocol == "PLAINTEXT" and not KafkaSecurity().uses_sasl and not KafkaSecurity().uses_tls


@pytest.mark.parametrize(("protocol", "env", "sasl", "tls"), [
    ("PLAINTEXT", {}, False, False),
    ("SSL", {}, False, True),
    ("SASL_PLAINTEXT", SASL, True, False),
    ("SASL_SSL", SASL, True, True),
    ("sasl_ssl", SASL, True, True),  # Kafka's own clients accept any case
])
def test_each_protocol(protocol, env, sasl, tls):
    parsed = load_kafka_security({"LOYALTY_KAFKA_SECURITY_PROTOCOL": protocol, **env})
    assert (parsed.protocol, parsed.uses_sasl, parsed.uses_tls) == (protocol.upper(), sasl, tls)
    assert (parsed.username, parsed.password) == (("app", SECRET) if sasl else ("", ""))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "scram-sha-512"])
def test_each_sasl_mechanism(mechanism):
    assert security(security_protocol="SASL_SSL", sasl_mechanism=mechanism, sasl_username="app",
                    sasl_password=SECRET).mechanism == mechanism.upper()


@pytest.mark.parametrize(("env", "message"), [
    ({"security_protocol": "TLS"}, "LOYALTY_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
                                   "SASL_SSL, got 'TLS'"),
    ({"security_protocol": ""}, "LOYALTY_KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"sasl_mechanism": "GSSAPI"}, "LOYALTY_KAFKA_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, "
                                   "got 'GSSAPI'"),
    ({"security_protocol": "SASL_SSL", "sasl_password": SECRET}, "SASL_SSL needs LOYALTY_KAFKA_SASL_USERNAME"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "app"},
     "SASL_PLAINTEXT needs LOYALTY_KAFKA_SASL_PASSWORD or LOYALTY_KAFKA_SASL_PASSWORD_FILE"),
    ({"sasl_username": "app", "sasl_password": SECRET},
     "LOYALTY_KAFKA_SASL_USERNAME, LOYALTY_KAFKA_SASL_PASSWORD set, but LOYALTY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
     "does not use SASL"),
    ({"security_protocol": "SSL", "sasl_password_file": "/run/secrets/kafka"}, "does not use SASL"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "app", "sasl_password": SECRET,
      "ssl_ca_file": "/ca.pem"}, "LOYALTY_KAFKA_SSL_CA_FILE set, but LOYALTY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
                                 "does not use TLS"),
    ({"ssl_cert_file": "/c.pem"}, "LOYALTY_KAFKA_SSL_CERT_FILE set, but LOYALTY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_key_file": "/k.pem"}, "LOYALTY_KAFKA_SSL_KEY_FILE needs "
                                                            "LOYALTY_KAFKA_SSL_CERT_FILE"),
])
def test_settings_that_do_not_fit_are_rejected_with_the_variable_named(env, message):
    with pytest.raises(ValueError) as error:
        security(**env)
    assert message in str(error.value)
    assert SECRET not in str(error.value)


def test_load_settings_rejects_them_too():
    with pytest.raises(ValueError, match="LOYALTY_KAFKA_SASL_MECHANISM"):
        load_settings({"LOYALTY_KAFKA_SASL_MECHANISM": "MD5"})


@pytest.mark.parametrize("content", [f"{SECRET}\n", f"{SECRET}\r\n", SECRET])
def test_the_password_file_is_read_without_its_trailing_newline(tmp_path, content):
    path = tmp_path / "password"
    path.write_bytes(content.encode())
    parsed = security(security_protocol="SASL_SSL", sasl_username="app", sasl_password_file=str(path))
    assert parsed.password == SECRET


def test_the_password_file_keeps_inner_and_leading_spaces(tmp_path):
    (tmp_path / "password").write_text(" two words \n")
    parsed = security(security_protocol="SASL_SSL", sasl_username="app",
                      sasl_password_file=str(tmp_path / "password"))
    assert parsed.password == " two words "


def test_the_password_file_is_read_once_at_load(tmp_path):
    path = tmp_path / "password"
    path.write_text(SECRET)
    parsed = security(security_protocol="SASL_SSL", sasl_username="app", sasl_password_file=str(path))
    path.write_text("rotated")
    assert parsed.password == SECRET


def test_password_and_password_file_together_are_an_error(tmp_path):
    (tmp_path / "password").write_text(SECRET)
    with pytest.raises(ValueError, match="set LOYALTY_KAFKA_SASL_PASSWORD or LOYALTY_KAFKA_SASL_PASSWORD_FILE, "
                                         "not both"):
        security(security_protocol="SASL_SSL", sasl_username="app", sasl_password=SECRET,
                 sasl_password_file=str(tmp_path / "password"))


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("\n", "is empty")])
def test_a_missing_or_empty_password_file_is_an_error(tmp_path, content, message):
    path = tmp_path / "password"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=f"LOYALTY_KAFKA_SASL_PASSWORD_FILE: .*{message}"):
        security(security_protocol="SASL_SSL", sasl_username="app", sasl_password_file=str(path))


def test_repr_of_the_settings_hides_the_password(tmp_path):
    (tmp_path / "password").write_text(SECRET)
    for env in ({"LOYALTY_KAFKA_SASL_PASSWORD": SECRET},
                {"LOYALTY_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password")}):
        settings = load_settings({"LOYALTY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                  "LOYALTY_KAFKA_SASL_USERNAME": "app", **env})
        assert settings.kafka_security.password == SECRET
        for text in (repr(settings), str(settings), repr(settings.kafka_security)):
            assert SECRET not in text
            assert "username='app'" in text


# -- what the clients get -------------------------------------------------------------------------------

def test_bootstrap_servers_from_a_faust_broker_list():
    assert load_settings({"LOYALTY_BROKER": "kafka://a:9092;kafka://b:9093"}).bootstrap_servers == "a:9092,b:9093"
    assert load_settings({"LOYALTY_BROKER": "kafka://a:9092;b:9093, c:9094"}).bootstrap_servers == (
        "a:9092,b:9093,c:9094")


def test_plaintext_options_and_no_credentials():
    assert client_options(KafkaSecurity()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(KafkaSecurity()) is None
    assert ssl_context(KafkaSecurity()) is None


def test_sasl_plaintext_options_and_credentials():
    parsed = security(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", **{
        "sasl_username": "app", "sasl_password": SECRET})
    assert client_options(parsed) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                                      "sasl_plain_username": "app", "sasl_plain_password": SECRET}
    credentials = faust_credentials(parsed)
    assert isinstance(credentials, faust.SASLCredentials)
    assert SECRET not in repr(credentials)
    # what Faust's aiokafka driver hands its producer and consumers: exactly our client options
    assert credentials_to_aiokafka_auth(credentials) == {**client_options(parsed), "ssl_context": None}


def test_sasl_ssl_options_and_credentials_with_a_ca_file(tls):
    parsed = security(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="app",
                      sasl_password=SECRET, ssl_ca_file=str(tls / "ca.pem"))
    options = client_options(parsed)
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "app", "sasl_plain_password": SECRET}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()] == [
        {"commonName": "loyalty-test-ca"}]
    credentials = faust_credentials(parsed)
    assert isinstance(credentials, faust.SASLCredentials)
    given = dict(credentials_to_aiokafka_auth(credentials))
    assert isinstance(given.pop("ssl_context"), ssl.SSLContext)
    assert given == options


def test_ssl_with_a_client_certificate(tls):
    parsed = security(security_protocol="SSL", ssl_ca_file=str(tls / "ca.pem"),
                      ssl_cert_file=str(tls / "client.crt"), ssl_key_file=str(tls / "client.key"))
    options = client_options(parsed)
    assert options["security_protocol"] == "SSL" and isinstance(options["ssl_context"], ssl.SSLContext)
    assert set(options) == {"security_protocol", "ssl_context"}
    credentials = faust_credentials(parsed)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_ssl_without_a_ca_file_trusts_the_systems_cas():
    context = ssl_context(security(security_protocol="SSL"))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize(("files", "message"), [
    ({"ssl_ca_file": "missing.pem"}, "LOYALTY_KAFKA_SSL_CA_FILE=.*missing.pem: No such file"),
    ({"ssl_ca_file": "client.key"}, "LOYALTY_KAFKA_SSL_CA_FILE=.*client.key: "),
    ({"ssl_cert_file": "client.crt", "ssl_key_file": "broker.key"}, "LOYALTY_KAFKA_SSL_CERT_FILE=.*client.crt, "
                                                                    "LOYALTY_KAFKA_SSL_KEY_FILE=.*broker.key: "),
    ({"ssl_cert_file": "missing.crt"}, "LOYALTY_KAFKA_SSL_CERT_FILE=.*missing.crt, LOYALTY_KAFKA_SSL_KEY_FILE="
                                       r"\(in the certificate file\): No such file"),
    ({"ssl_cert_file": "client.crt", "ssl_key_file": "encrypted.key"}, "the key is encrypted"),
])
def test_tls_files_that_do_not_load_are_named(tls, files, message):
    parsed = security(security_protocol="SSL", **{name: str(tls / path) for name, path in files.items()})
    with pytest.raises(ValueError, match=message):
        client_options(parsed)  # an encrypted key raises at once: OpenSSL does not prompt on the terminal


def test_describe_names_protocol_mechanism_and_user_never_the_password():
    parsed = security(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="app",
                      sasl_password=SECRET)
    assert describe(client_options(parsed)) == "SASL_PLAINTEXT, SCRAM-SHA-512 as user 'app'"
    assert describe(client_options(KafkaSecurity())) == "PLAINTEXT"


# -- the login check -------------------------------------------------------------------------------------

async def test_check_login_reports_every_server_and_stays_within_its_bound(closed_port, silent_port):
    options = client_options(security(security_protocol="SASL_PLAINTEXT", sasl_username="app",
                                      sasl_password=SECRET))
    bootstrap = f"127.0.0.1:{closed_port},127.0.0.1:{silent_port}"
    started = time.monotonic()
    with pytest.raises(LoginFailed) as failed:
        await check_login(bootstrap, options, timeout=0.5)
    assert time.monotonic() - started < 3
    assert str(failed.value) == (
        f"cannot connect to Kafka at {bootstrap} over SASL_PLAINTEXT, PLAIN as user 'app': "
        f"127.0.0.1:{closed_port}: connection refused (no broker listens there); "
        f"127.0.0.1:{silent_port}: no answer within 0.5 s")
    assert SECRET not in str(failed.value)


async def test_check_login_bounds_a_tls_handshake_that_never_completes(silent_port):
    options = client_options(security(security_protocol="SSL"))
    started = time.monotonic()
    with pytest.raises(LoginFailed, match=f"over SSL: 127.0.0.1:{silent_port}: no answer within 0.5 s"):
        await check_login(f"127.0.0.1:{silent_port}", options, timeout=0.5)
    assert time.monotonic() - started < 3


async def test_check_login_names_a_listener_that_closes_the_connection():
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(LoginFailed, match=f"127.0.0.1:{port}: the broker closed the connection "
                                              r"\(a listener of another protocol than PLAINTEXT\?\)"):
            await check_login(f"127.0.0.1:{port}", client_options(KafkaSecurity()), timeout=2)
    finally:
        server.close()
        await server.wait_closed()


def test_the_worker_check_exits_2_with_the_reason_before_faust_starts(closed_port, capsys):
    settings = load_settings({"LOYALTY_BROKER": f"kafka://127.0.0.1:{closed_port}",
                              "LOYALTY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                              "LOYALTY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", **SASL})
    check = exit_unless_login(settings, timeout=1)
    with pytest.raises(SystemExit) as exited:
        check(object())  # as Faust sends app.on_worker_init: the app as sender
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"loyalty: cannot connect to Kafka at 127.0.0.1:{closed_port} over SASL_PLAINTEXT, "
                   f"SCRAM-SHA-512 as user 'app': 127.0.0.1:{closed_port}: connection refused "
                   "(no broker listens there)\n")


# -- the CLI -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["produce", "--members", "2", "--events", "2"], ["replay", "events.jsonl"]])
def test_cli_rejects_bad_security_settings_with_status_2(command, monkeypatch, capsys):
    monkeypatch.setenv("LOYALTY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LOYALTY_KAFKA_SASL_USERNAME", "app")
    assert cli.main(command) == 2
    assert capsys.readouterr().err == ("loyalty: LOYALTY_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs "
                                       "LOYALTY_KAFKA_SASL_PASSWORD or LOYALTY_KAFKA_SASL_PASSWORD_FILE\n")


def test_cli_produce_to_an_unreachable_broker_fails_with_status_1(closed_port, monkeypatch, capsys):
    monkeypatch.setenv("LOYALTY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["produce", "--members", "2", "--events", "2", "--bootstrap", f"127.0.0.1:{closed_port}"]) == 1
    err = capsys.readouterr().err
    assert err == (f"loyalty: cannot connect to Kafka at 127.0.0.1:{closed_port} over SASL_PLAINTEXT, PLAIN as user "
                   f"'app': 127.0.0.1:{closed_port}: connection refused (no broker listens there)\n")

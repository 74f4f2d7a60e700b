"""Kafka security for every client of the project, from one KafkaSecurity (stream_app/settings.py).

`faust_credentials` is what the worker passes to `faust.App(broker_credentials=...)`; `client_options`
are the same settings as keyword arguments of aiokafka's producer, consumer and admin client (the
CLI, the bench, the tests). `check_login` connects once, bounded in time, and turns a wrong
password, a TLS failure or an unreachable broker into one clear error; `exit_unless_login` runs it
before the worker starts, so that such a worker stops with that line and status 2 rather than with
Faust's traceback of aiokafka's generic "Unable to bootstrap" (the reason only in an earlier log
line), or a wait on a broker that never answers. Nothing here logs or formats the password.
"""
from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import Any

from stream_app.settings import KafkaSecurity, Settings

#: How long one bootstrap server may take to accept a connection, log in and answer a metadata request.
LOGIN_TIMEOUT_S = 10.0


class LoginFailed(RuntimeError):
    """No bootstrap server accepted a connection and a login with the configured security."""


def _no_passphrase() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key (a worker would hang).
    raise ValueError("the key is encrypted; give an unencrypted PEM key")


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL: the CA file (else the system's CAs), the client certificate if any."""
    if not security.uses_tls:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=security.ca_file or None)
    except OSError as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"LOYALTY_KAFKA_SSL_CA_FILE={security.ca_file}: {exc.strerror or exc}") from None
    if security.cert_file:
        try:
            context.load_cert_chain(security.cert_file, security.key_file or None, password=_no_passphrase)
        except (OSError, ValueError) as exc:
            raise ValueError(f"LOYALTY_KAFKA_SSL_CERT_FILE={security.cert_file}, LOYALTY_KAFKA_SSL_KEY_FILE="
                             f"{security.key_file or '(in the certificate file)'}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return context


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient (they include the password)."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        options["ssl_context"] = ssl_context(security)
    if security.uses_sasl:
        options.update(sasl_mechanism=security.mechanism, sasl_plain_username=security.username,
                       sasl_plain_password=security.password)
    return options


def faust_credentials(security: KafkaSecurity) -> Any:
    """faust.SASLCredentials (SASL_PLAINTEXT, or SASL_SSL with its TLS context), faust.SSLCredentials (SSL), or
    None (PLAINTEXT): Faust's aiokafka driver turns them into the same options as `client_options`."""
    import faust

    if security.uses_sasl:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     mechanism=security.mechanism, ssl_context=ssl_context(security))
    if security.uses_tls:
        return faust.SSLCredentials(ssl_context(security))
    return None


def describe(options: Mapping[str, Any]) -> str:
    """The security of client options in words, never the password: `SASL_SSL, SCRAM-SHA-512 as user 'app'`."""
    text = options.get("security_protocol", "PLAINTEXT")
    if "sasl_mechanism" in options:
        text += f", {options['sasl_mechanism']} as user {options.get('sasl_plain_username')!r}"
    return text


def _reason(exc: BaseException, options: Mapping[str, Any]) -> str:
    from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

    protocol = options.get("security_protocol", "PLAINTEXT")
    if isinstance(exc, SaslAuthenticationFailed):
        return f"authentication failed ({exc.args[0] if exc.args else 'wrong user name or password'})"
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"the broker does not accept SASL mechanism {options.get('sasl_mechanism')}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message}; see LOYALTY_KAFKA_SSL_CA_FILE)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc} (is the listener {protocol}?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listens there)"
    if isinstance(exc, KafkaConnectionError | ConnectionError):
        wants = " or one that requires a client certificate" if protocol.endswith("SSL") else ""
        return f"the broker closed the connection (a listener of another protocol than {protocol}{wants}?)"
    return str(exc) or type(exc).__name__


async def check_login(bootstrap: str, options: Mapping[str, Any], timeout: float = LOGIN_TIMEOUT_S) -> None:
    """Connect to the bootstrap servers in turn with `options` until one logs us in and answers a metadata request.

    Raises LoginFailed naming the servers, the protocol, the mechanism and user, and each server's reason;
    each server gets at most `timeout` seconds.
    """
    from aiokafka.conn import collect_hosts, create_conn
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.metadata import MetadataRequest

    reasons = []
    for host, port, _ in collect_hosts(bootstrap, randomize=False):
        try:
            async with asyncio.timeout(timeout):
                conn = await create_conn(host, port, client_id="loyalty-login-check",
                                         request_timeout_ms=int(timeout * 1000), **options)
                try:
                    await conn.send(MetadataRequest([]))
                finally:
                    conn.close()
            return
        except TimeoutError:
            reasons.append(f"{host}:{port}: no answer within {timeout:g} s")
        except (OSError, KafkaError) as exc:
            reasons.append(f"{host}:{port}: {_reason(exc, options)}")
    raise LoginFailed(f"cannot connect to Kafka at {bootstrap} over {describe(options)}: {'; '.join(reasons)}")


def exit_unless_login(settings: Settings, timeout: float = LOGIN_TIMEOUT_S) -> Callable[..., None]:
    """A receiver for `app.on_worker_init` (sent before the worker starts): check the login; on failure say why
    on stderr and exit with status 2, before Faust starts its services."""

    def check(*_: object, **__: object) -> None:
        bootstrap = settings.bootstrap_servers
        loop = asyncio.new_event_loop()  # not the worker's loop: that one is created after this
        try:
            loop.run_until_complete(check_login(bootstrap, client_options(settings.kafka_security), timeout))
        except LoginFailed as exc:
            print(f"loyalty: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        finally:
            loop.close()

    return check

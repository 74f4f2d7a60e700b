"""Throw-away TLS material written with openssl: a CA, a broker and a client certificate (PEM).

Used by the secured test broker (tests/integration/secure_kafka.py) and the unit tests of the TLS
settings; both leaf certificates name localhost and 127.0.0.1, for hostname checks either way.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

_LEAF_EXTENSIONS = ("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.strip()}")


def write_certificates(folder: Path) -> None:
    """ca.pem (+ ca.key), broker.crt / broker.key, broker.pem (key and chain: Kafka's PEM keystore),
    client.crt / client.key (mutual TLS), valid for two days from now."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=loyalty-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    (folder / "leaf.ext").write_text(_LEAF_EXTENSIONS)
    for name in ("broker", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "leaf.ext", cwd=folder)
    (folder / "broker.pem").write_text("".join((folder / f).read_text() for f in ("broker.key", "broker.crt",
                                                                                    "ca.pem")))

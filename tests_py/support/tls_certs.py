#!/usr/bin/env python3
"""Throw-away TLS material for tests, made with the openssl CLI.

``make_certs(directory)`` writes a CA, a server certificate for 127.0.0.1
(and ``localhost``) signed by it, and a client certificate signed by it, and
returns their paths. Keys are EC P-256, valid for one day. Nothing is
installed anywhere: tests point clients at these files (a CA file, or
SSL_CERT_FILE in a subprocess), and ``redis_server.RedisServer(tls=...)``
serves with them. ``python tests_py/support/tls_certs.py DIR`` writes a set.
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404 # runs openssl
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """The paths make_certs wrote: a test CA, a server and a client certificate it signed, another CA."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a second CA that signed nothing here: trusting only it must fail


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl command is not installed")
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True)  # nosec B603 # openssl at the absolute path shutil.which found, arguments from this file, no shell
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key), cwd=directory)
    _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", str(cert), cwd=directory)
    return cert, key


def make_leaf(directory: Path, name: str, ca: tuple[Path, Path], usage: str, san: str | None) -> tuple[Path, Path]:
    """A certificate ``name`` signed by ``ca`` (cert, key), with extended key usage ``usage``
    (``serverAuth``/``clientAuth``) and subjectAltName ``san``; returns (cert, key)."""
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", f"extendedKeyUsage={usage}"]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key), cwd=directory)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr), cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "1", "-sha256", "-extfile", str(ext), "-out", str(cert), cwd=directory)
    return cert, key


def make_certs(directory: Path) -> TlsFiles:
    """Write the CAs and certificates of TlsFiles into ``directory`` (created if needed)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    other = _ca(directory, "other-ca")
    server = make_leaf(directory, "server", ca, "serverAuth", "IP:127.0.0.1,DNS:localhost")
    client = make_leaf(directory, "client", ca, "clientAuth", None)
    for key in (ca[1], other[1], server[1], client[1]):
        key.chmod(0o600)
    return TlsFiles(ca[0], ca[1], server[0], server[1], client[0], client[1], other[0])


if __name__ == "__main__":
    out = make_certs(Path(sys.argv[1] if len(sys.argv) > 1 else "tls"))
    for field, path in vars(out).items():
        print(f"{field}: {path}")

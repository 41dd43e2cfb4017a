"""Redis over TLS (rediss://) and with ACL users, on the engine RATE_LIMITER_ENGINE selects (§8, §9).

Certificates are made at test time by support/tls_certs.py (openssl CLI): a CA,
a server certificate for 127.0.0.1, a client certificate, and an unrelated CA.
Each case starts its own redis-server (support/redis_server.py) with
``--tls-port`` on loopback.

* ``redis_tls_ca_file``: the server is verified against that CA.
* ``redis_tls_cert_file`` + ``redis_tls_key_file``: mTLS, ``--tls-auth-clients yes``.
* The system trust store: ``SSL_CERT_FILE`` points at a bundle holding the
  test CA, in a subprocess (OpenSSL for Python, crypto/x509 for Go both read
  it on Linux), so nothing is installed on the machine.
* ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` set inside this process after the Go
  runtime started (as python-dotenv or a settings loader would): the engine
  built afterwards must trust them (Go reads its environment only at start).
* ``redis_ssl_check_hostname: false``: a certificate for another host name is
  accepted, one from an unknown CA is still refused.
* ACL: ``redis://user:password@host`` against a server whose default user is off.

A request "decided" by Redis carries X-RateLimit headers; a fail-open one has none.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PACKAGE_PARENT, require_command
from rate_limiter_go.config import ConfigError
from support.plugin_helpers import call_tool, make_plugin, unique_name
from support.redis_server import RedisServer
from support.tls_certs import TlsFiles, make_certs, make_leaf

REPO = Path(__file__).resolve().parents[1]

ROOT = Path(__file__).resolve().parent.parent

ENGINE = os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() or "auto"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    require_command("redis-server")
    require_command("openssl")
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: TlsFiles) -> Iterator[RedisServer]:
    """TLS only (no plain port), client certificates not required."""
    with RedisServer(workdir=tmp_path_factory.mktemp("tls"), tls=pki) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: TlsFiles) -> Iterator[RedisServer]:
    """TLS only, a client certificate signed by the test CA required."""
    with RedisServer(workdir=tmp_path_factory.mktemp("mtls"), tls=pki, tls_auth_clients=True) as server:
        yield server


def _config(url: str, **extra: Any) -> dict[str, Any]:
    return {"by_user": "2/h", "backend": "redis", "redis_url": url, "redis_key_prefix": unique_name("tls"),
            "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000, **extra}


async def _decided(config: dict[str, Any]) -> list[bool | None]:
    """Three calls: True/False = admitted/refused by Redis (headers present), None = not decided (fail-open)."""
    plugin = make_plugin(config)
    outcomes: list[bool | None] = []
    try:
        for _ in range(3):
            result = await call_tool(plugin, user="tls-user@example.com")
            if result.continue_processing:
                outcomes.append(True if result.http_headers else None)
            else:
                assert result.violation.code in ("RATE_LIMIT", "BACKEND_UNAVAILABLE")
                outcomes.append(False if result.violation.code == "RATE_LIMIT" else None)
    finally:
        await plugin.shutdown()
    return outcomes


async def test_ca_file_verifies_the_server(tls_server: RedisServer, pki: TlsFiles) -> None:
    """redis_tls_ca_file: the 2/h limit is enforced over TLS (admitted, admitted, refused)."""
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    assert await _decided(_config(url, redis_tls_ca_file=str(pki.ca_cert))) == [True, True, False]


async def test_untrusted_server_is_not_used(tls_server: RedisServer, pki: TlsFiles) -> None:
    """Another CA, or the machine's trust store (which lacks the test CA): TLS fails, fail_mode open applies."""
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    assert await _decided(_config(url, redis_tls_ca_file=str(pki.other_ca_cert))) == [None, None, None]
    assert await _decided(_config(url)) == [None, None, None]


async def test_client_certificate_for_mtls(mtls_server: RedisServer, pki: TlsFiles) -> None:
    """--tls-auth-clients yes: with the client certificate the limit is enforced."""
    url = f"rediss://127.0.0.1:{mtls_server.port}/0"
    config = _config(url, redis_tls_ca_file=str(pki.ca_cert), redis_tls_cert_file=str(pki.client_cert),
                     redis_tls_key_file=str(pki.client_key))
    assert await _decided(config) == [True, True, False]


async def test_mtls_without_client_certificate_fails_per_fail_mode(mtls_server: RedisServer, pki: TlsFiles) -> None:
    """--tls-auth-clients yes and no client certificate: refused by the server; open admits, closed refuses (503)."""
    url = f"rediss://127.0.0.1:{mtls_server.port}/0"
    assert await _decided(_config(url, redis_tls_ca_file=str(pki.ca_cert))) == [None, None, None]
    plugin = make_plugin(_config(url, redis_tls_ca_file=str(pki.ca_cert), fail_mode="closed"))
    result = await call_tool(plugin)
    await plugin.shutdown()
    assert not result.continue_processing and result.violation.code == "BACKEND_UNAVAILABLE"
    assert result.violation.http_status_code == 503


_SUBPROCESS = """
import asyncio, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from support.plugin_helpers import call_tool, make_plugin
async def main():
    plugin = make_plugin(json.loads(sys.argv[3]))
    out = []
    for _ in range(3):
        r = await call_tool(plugin, user="tls-user@example.com")
        out.append(r.violation.code if not r.continue_processing else ("admitted" if r.http_headers else "fail_open"))
    await plugin.shutdown()
    print(json.dumps({"engine": plugin.engine.name, "outcomes": out}))
asyncio.run(main())
"""


def _run_with_trust_store(config: dict[str, Any], bundle: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if bundle is not None:
        env["SSL_CERT_FILE"] = str(bundle)
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(PACKAGE_PARENT), str(ROOT / "tests_py"), json.dumps(config)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_system_trust_store_via_ssl_cert_file(tls_server: RedisServer, pki: TlsFiles, tmp_path: Path) -> None:
    """rediss:// with no CA file uses the system trust store; SSL_CERT_FILE names it for both engines."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.other_ca_cert.read_bytes() + pki.ca_cert.read_bytes())  # the test CA among others
    config = _config(f"rediss://127.0.0.1:{tls_server.port}/0")
    trusted = _run_with_trust_store(config, bundle)
    assert trusted["outcomes"] == ["admitted", "admitted", "RATE_LIMIT"], trusted
    untrusted = _run_with_trust_store(_config(config["redis_url"]), None)
    assert untrusted["outcomes"] == ["fail_open"] * 3, untrusted
    if ENGINE in ("python", "go"):
        assert trusted["engine"] == ENGINE


# -- ACL users in the URL --------------------------------------------------------------


def _documented_commands(kind: str) -> list[str]:
    """The commands docs/redis-backend.md lists for ACL users on the line starting ``- <kind>``."""
    doc = (REPO / "docs" / "redis-backend.md").read_text(encoding="utf-8")
    block = doc.split("<!-- acl-commands:begin -->")[1].split("<!-- acl-commands:end -->")[0]
    line = next(ln for ln in block.splitlines() if ln.startswith(f"- {kind}"))
    return [c.strip("`") for c in line.split(":", 1)[1].replace(",", " ").split() if c.startswith("`") or c[:1].isupper()]


def test_acl_command_list_is_the_scripts() -> None:
    """The commands docs/redis-backend.md lists as run inside the scripts are exactly the scripts' redis.call names."""
    in_scripts = set()
    for lua in (REPO / "backends" / "redis" / "lua").glob("*.lua"):
        in_scripts |= set(re.findall(r"redis\.call\('([A-Z]+)'", lua.read_text(encoding="utf-8")))
    assert in_scripts and set(_documented_commands("run inside the scripts")) == in_scripts


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A plain redis-server whose default user is off; user "limiter" may run scripts on rl-ish keys only."""
    require_command("redis-server")
    acl = [
        "--user", "default", "off",
        "--user", "limiter", "on", ">s3cr:et@x", "~acl*", "+@scripting", "+ping", "+hello", "+auth", "+time",
        "+zadd", "+zrange", "+zremrangebyscore", "+zcard", "+pexpireat", "+hget", "+hset", "+hmget", "+get",
        "+set", "+incr", "+del",
    ]  # fmt: skip
    with RedisServer(workdir=tmp_path_factory.mktemp("acl"), args=acl, username="limiter", password="s3cr:et@x") as server:
        yield server


async def test_acl_user_and_password_in_url(acl_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """redis://user:password@host: the limit is enforced; a wrong password fails open and is never logged."""
    caplog.set_level(logging.DEBUG)
    good = f"redis://limiter:s3cr%3Aet%40x@127.0.0.1:{acl_server.port}/0"
    assert await _decided(_config(good, redis_key_prefix=unique_name("acl"))) == [True, True, False]
    bad = f"redis://limiter:wrong-pass-913@127.0.0.1:{acl_server.port}/0"
    assert await _decided(_config(bad, redis_key_prefix=unique_name("acl"))) == [None, None, None]
    nobody = f"redis://127.0.0.1:{acl_server.port}/0"  # default user is off
    assert await _decided(_config(nobody, redis_key_prefix=unique_name("acl"))) == [None, None, None]
    assert "wrong-pass-913" not in caplog.text and "s3cr" not in caplog.text


# -- validation at init ------------------------------------------------------------------


def _problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        make_plugin(config)
    return err.value.problems


def test_tls_file_settings_are_validated_at_init(pki: TlsFiles, tmp_path: Path) -> None:
    tls_url = "rediss://127.0.0.1:1/0"
    missing = str(tmp_path / "missing.pem")
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text("x")
    unreadable.chmod(0)
    cases: list[tuple[dict[str, Any], str]] = [
        (_config("redis://127.0.0.1:1/0", redis_tls_ca_file=str(pki.ca_cert)), "redis_tls_ca_file: only allowed"),
        (_config(tls_url, redis_tls_ca_file=missing), "redis_tls_ca_file: cannot read"),
        (_config(tls_url, redis_tls_ca_file=7), "redis_tls_ca_file: must be the path"),
        (_config(tls_url, redis_tls_ca_file=""), "redis_tls_ca_file: must be the path"),
        (_config(tls_url, redis_tls_cert_file=str(pki.client_cert)), "redis_tls_cert_file: needs redis_ssl_keyfile"),
        (_config(tls_url, redis_tls_key_file=str(pki.client_key)), "redis_tls_key_file: needs redis_ssl_certfile"),
        (_config(tls_url, redis_tls_cert_file=missing, redis_tls_key_file=str(pki.client_key)),
         "redis_tls_cert_file: cannot read"),
        ({"redis_tls_ca_file": str(pki.ca_cert)}, "redis_tls_ca_file: only allowed"),
    ]
    if os.geteuid() != 0:  # root reads any file
        cases.append((_config(tls_url, redis_tls_ca_file=str(unreadable)), "redis_tls_ca_file: cannot read"))
    for config, expected in cases:
        problems = _problems(config)
        assert any(p.startswith(expected) for p in problems), (expected, problems)


def test_tls_files_are_part_of_the_canonical_json(pki: TlsFiles) -> None:
    """Set files are handed to the Go engine; unset ones leave the JSON as it was before the keys existed."""
    from rate_limiter_go.config import parse_config

    plain = json.loads(parse_config(_config("rediss://127.0.0.1:1/0")).canonical_json())
    assert not any(k.startswith("redis_tls_") for k in plain)
    full = parse_config(_config("rediss://127.0.0.1:1/0", redis_tls_ca_file=str(pki.ca_cert),
                                redis_tls_cert_file=str(pki.client_cert), redis_tls_key_file=str(pki.client_key)))
    doc = json.loads(full.canonical_json())
    assert (doc["redis_tls_ca_file"], doc["redis_tls_cert_file"], doc["redis_tls_key_file"]) == (
        str(pki.ca_cert), str(pki.client_cert), str(pki.client_key))


# -- the process's trust settings, set after the Go runtime started (issue 10, item 5) ------


def _start_go_runtime() -> None:
    """Load the Go extension (starting its runtime, which copies the environment once) if it is built."""
    from rate_limiter_go import _native

    if _native.native_available():
        _native.load_native()


def _hashed_cert_dir(directory: Path, ca_cert: Path) -> Path:
    """A directory in OpenSSL's c_rehash layout (<subject hash>.0) holding ca_cert."""
    directory.mkdir()
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_cert)], capture_output=True,
                            text=True, check=True).stdout.strip()
    shutil.copy(ca_cert, directory / f"{digest}.0")
    return directory


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
async def test_trust_variable_set_at_run_time_is_used(
    tls_server: RedisServer, pki: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """SSL_CERT_FILE or SSL_CERT_DIR set inside the process after Go started (as python-dotenv or the
    gateway's settings loader do): the engine built afterwards trusts the CA found only there."""
    _start_go_runtime()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    assert await _decided(_config(url)) == [None, None, None]  # the CA is in no trust store yet
    if variable == "SSL_CERT_FILE":
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(pki.other_ca_cert.read_bytes() + pki.ca_cert.read_bytes())
        monkeypatch.setenv(variable, str(bundle))
    else:
        monkeypatch.setenv(variable, f"{tmp_path / 'missing'}:{_hashed_cert_dir(tmp_path / 'certs', pki.ca_cert)}")
    assert await _decided(_config(url)) == [True, True, False]


def test_go_config_carries_the_trust_variables_only_for_rediss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Go engine gets SSL_CERT_FILE / SSL_CERT_DIR as they are when it is built, for rediss:// only."""
    from rate_limiter_go.config import parse_config
    from rate_limiter_go.engine_go import go_config_json

    monkeypatch.setenv("SSL_CERT_FILE", "/x/ca.pem")
    monkeypatch.setenv("SSL_CERT_DIR", "/x/a:/x/b")
    tls = json.loads(go_config_json(parse_config(_config("rediss://127.0.0.1:1/0"))))
    assert (tls["host_ssl_cert_file"], tls["host_ssl_cert_dir"]) == ("/x/ca.pem", "/x/a:/x/b")
    for config in (_config("redis://127.0.0.1:1/0"), {"by_user": "1/s"}):
        limits = parse_config(config)
        assert go_config_json(limits) == limits.canonical_json()
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_DIR", "")
    limits = parse_config(_config("rediss://127.0.0.1:1/0"))
    assert go_config_json(limits) == limits.canonical_json()


# -- redis_ssl_check_hostname ----------------------------------------------------------------


@pytest.fixture(scope="module")
def other_host_server(tmp_path_factory: pytest.TempPathFactory, pki: TlsFiles) -> Iterator[RedisServer]:
    """TLS only, with a certificate from the test CA issued for other.example, not 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("other-host")
    cert = make_leaf(workdir, "other-host", (pki.ca_cert, pki.ca_key), "serverAuth", "DNS:other.example")
    with RedisServer(workdir=workdir, tls=pki, tls_server_cert=cert, tls_check_hostname=False) as server:
        yield server


async def test_check_hostname_false_verifies_the_chain_but_not_the_name(
    other_host_server: RedisServer, pki: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server certificate for another host name: refused by default, accepted with
    redis_ssl_check_hostname false; a certificate from an unknown CA is refused either way."""
    url = f"rediss://127.0.0.1:{other_host_server.port}/0"
    trusted = str(pki.ca_cert)
    assert await _decided(_config(url, redis_tls_ca_file=trusted)) == [None, None, None]
    assert await _decided(_config(url, redis_tls_ca_file=trusted, redis_ssl_check_hostname=True)) == [None] * 3
    assert await _decided(_config(url, redis_tls_ca_file=trusted, redis_ssl_check_hostname=False)) == [
        True, True, False]
    unknown = str(pki.other_ca_cert)
    assert await _decided(_config(url, redis_tls_ca_file=unknown, redis_ssl_check_hostname=False)) == [None] * 3
    # No CA file: the system trust store (lacking the test CA) refuses it, with or without the name check ...
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert await _decided(_config(url, redis_ssl_check_hostname=False)) == [None, None, None]
    # ... and the process's SSL_CERT_FILE extends it for the chain check too.
    _start_go_runtime()
    monkeypatch.setenv("SSL_CERT_FILE", trusted)
    assert await _decided(_config(url, redis_ssl_check_hostname=False)) == [True, True, False]
    assert await _decided(_config(url)) == [None, None, None]


async def test_check_hostname_false_with_the_right_host_still_works(tls_server: RedisServer, pki: TlsFiles) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    assert await _decided(_config(url, redis_tls_ca_file=str(pki.ca_cert), redis_ssl_check_hostname=False)) == [
        True, True, False]

"""Fixtures shared by every Python test.

* ``redis_server`` (session): a private ``redis-server`` on a free loopback
  port, no persistence: a ``support.redis_server.RedisServer`` (the one helper
  that starts redis-server for tests, benchmarks, chaos runs and the rig).
  Attributes ``url``, ``port``, ``pid``; helpers ``stop()``, ``start()`` (same
  port), ``pause()``/``resume()`` (SIGSTOP / SIGCONT), ``flush()``,
  ``client()`` (a sync redis-py client) and ``ensure_running()``. Missing
  redis-server: a test FAILURE when CI=true, otherwise a skip saying why
  (``require_command``, also for ``openssl``).
* ``redis_url`` (function): the server running and answering, database
  flushed; the URL to put in a config.
* ``clock``: a :class:`ManualClock` for explicit ``now_us`` values.
* ``hung_redis``: a loopback TCP listener that accepts and never answers.
* ``make_engine``: ``make_engine(raw_config_dict, store_name=...)`` builds the
  engine RATE_LIMITER_ENGINE selects (rate_limiter_go.engines.select_engine)
  from a raw config mapping via parse_config, and closes it after the test.
  Tests written against it run on both engines (parity).
* ``make_engine_sync``: the same for synchronous tests (memory backend only).
* autouse: the process-wide memory stores (Python registry, and the Go engine's
  when it exists) are emptied around every test.
* ``PACKAGE_PARENT``: the directory this process imports ``rate_limiter_go``
  from (an installed wheel under ``make test-py``, ``python/`` in the dev
  venv); subprocess scripts put it first on their path.
* Session checks: with ``RATE_LIMITER_ENGINE=go`` the run fails at once when
  the Go engine cannot load, and at the end unless the Go runtime ran in this
  process and a freshly built plugin answered from the Go engine.

Tests cite docs/semantics.md by § number.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rate_limiter_go
from rate_limiter_go import _native
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine import Engine
from rate_limiter_go.engine_python.memory import reset_registry
from support.redis_cluster import RedisCluster, RedisSentinel
from support.redis_server import RedisServer, RedisUnavailableError, find_redis_server

#: Where ``import rate_limiter_go`` comes from in this run (see the module docstring).
PACKAGE_PARENT = Path(rate_limiter_go.__file__).resolve().parent.parent


def _engine_requested() -> str:
    return os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() or "auto"


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"rate_limiter_go {rate_limiter_go.__version__} from {PACKAGE_PARENT}; "
        f"RATE_LIMITER_ENGINE={_engine_requested()}; Go extension: "
        f"{_native.native_unavailable_reason() or 'present'}"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    if _engine_requested() == "go" and not _native.native_available():
        pytest.exit(f"RATE_LIMITER_ENGINE=go but the Go engine is unavailable: "
                    f"{_native.native_unavailable_reason()}", returncode=1)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A `go` run that never reached the Go engine is a failed run, whatever the tests said."""
    if _engine_requested() != "go" or session.testscollected == 0:
        return
    problem = None
    if _native.loaded_in_pid() != os.getpid():
        problem = "the Go runtime never started in this test process"
    else:
        from support.plugin_helpers import call_tool, make_plugin

        plugin = make_plugin({"by_user": "1/h"})
        if plugin.engine.name != "go":
            problem = f"a plugin built now runs the {plugin.engine.name!r} engine"
        else:
            outcomes = [asyncio.run(call_tool(plugin)).continue_processing for _ in range(2)]
            if outcomes != [True, False]:
                problem = f"the Go engine answered {outcomes} to two calls under a 1/h limit"
    if problem:
        session.config.get_terminal_writer().line(f"RATE_LIMITER_ENGINE=go: FAILED: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: 2027-01-15T08:00:00Z in µs: a realistic epoch, aligned to every window
#: (1 s, 60 s, 3600 s), and in the future so Redis PEXPIREAT keeps test state.
EPOCH_US = 1_800_000_000_000_000


class ManualClock:
    """An explicit clock for ``now_us`` arguments (§2). Starts at EPOCH_US."""

    def __init__(self, start_us: int = EPOCH_US) -> None:
        self.start_us = start_us
        self.now_us = start_us

    def advance(self, seconds: float = 0, *, us: int = 0) -> int:
        """Move forward by ``seconds`` (rounded to the µs) plus ``us``; returns the new now_us."""
        self.now_us += round(seconds * 1_000_000) + us
        return self.now_us

    def at(self, seconds: float = 0, *, us: int = 0) -> int:
        """Set now to ``start + seconds + us`` (the worked examples' t); returns the new now_us."""
        self.now_us = self.start_us + round(seconds * 1_000_000) + us
        return self.now_us


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(raw: dict[str, Any], store_name: str = "rate_limiter_test") -> Engine:
        from rate_limiter_go.engines import select_engine

        engine = select_engine(parse_config(raw), store_name)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


@pytest.fixture
def make_engine_sync() -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(raw: dict[str, Any], store_name: str = "rate_limiter_test") -> Engine:
        from rate_limiter_go.engines import select_engine

        engine = select_engine(parse_config(raw), store_name)
        if not engine.sync:
            raise ValueError("make_engine_sync is for the memory backend; use make_engine in an async test")
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        asyncio.run(engine.close())


def _reset_memory_stores() -> None:
    reset_registry()
    try:  # the Go engine's process-wide stores too, when that engine exists (it never loads the extension for this)
        from rate_limiter_go.engine_go import reset_memory_stores
    except ImportError:
        return
    reset_memory_stores()


@pytest.fixture(autouse=True)
def _fresh_memory_registry() -> Iterator[None]:
    _reset_memory_stores()
    yield
    _reset_memory_stores()


def require_command(name: str) -> str:
    """The path of command ``name`` (``redis-server``, ``openssl``): a test FAILURE when it is
    missing and CI=true, otherwise a skip saying why."""
    if name == "redis-server":
        try:
            return find_redis_server()
        except RedisUnavailableError as e:
            reason = str(e)
    else:
        found = shutil.which(name)
        if found is not None:
            return found
        reason = f"the {name} command is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's private plain-TCP redis-server (support/redis_server.py)."""
    binary = require_command("redis-server")
    with RedisServer(binary=binary, workdir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """The session's local Redis Cluster, 3 primaries + 3 replicas (support/redis_cluster.py).

    Tests share it through unique key prefixes; one that kills or pauses a node must restore it."""
    require_command("redis-server")
    try:
        with RedisCluster() as cluster:
            yield cluster
    except RedisUnavailableError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {e}", pytrace=False)
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """The session's local Sentinel deployment: 1 primary, 2 replicas, 3 sentinels (support/redis_cluster.py)."""
    require_command("redis-server")
    try:
        with RedisSentinel() as deployment:
            yield deployment
    except RedisUnavailableError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {e}", pytrace=False)
        pytest.skip(str(e))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the running private Redis, its data, scripts and command stats reset."""
    redis_server.ensure_running()
    redis_server.flush()
    return redis_server.url


class HungRedis:
    """A TCP listener that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="hung-redis", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)  # held open, never read, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()
        self._sock.close()


@pytest.fixture
def hung_redis() -> Iterator[HungRedis]:
    server = HungRedis()
    try:
        yield server
    finally:
        server.close()

"""Everything a process writes, not only Python log records, carries no identity (§7, §8).

tests_py/test_logs.py checks the Python log records in-process. This file
runs a whole scenario in a fresh interpreter and captures its stdout and
stderr, which also includes whatever the Go runtime and go-redis print. Both
engines run: blocks, Redis refused, Redis hung (accepts, never answers), a
Redis that refuses scripts, an auto-engine fallback, and shutdown. The users,
tenants and tools are secrets, some of them hostile: a newline, a key
look-alike, braces, non-ASCII. None of them, raw or §6-escaped, may appear in
the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PACKAGE_PARENT
from rate_limiter_go.keys import escape_identity
from support.go_helpers import require_go_engine

ROOT = Path(__file__).resolve().parent.parent

# Each test here runs both engines in its own subprocesses: once per `make test-py` is enough.
pytestmark = pytest.mark.skipif(
    os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() == "python",
    reason="runs both engines itself; it runs in the RATE_LIMITER_ENGINE=go (or auto) pass",
)

USERS = ["SECRETUSER-41d@corp.example", "SECRETUSER-nl\nrl:fw:user:1/3600:x", "SECRETUSER-ü{tag}"]
TENANTS = ["SECRETTENANT-7", "SECRETTENANT {b}"]
TOOLS = ["secrettool-a", "secrettool:b"]
FRAGMENTS = ["SECRETUSER", "SECRETTENANT", "secrettool", "SECRETTOOL"]

_SCENARIO = r"""
import asyncio, json, logging, os, socket, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
from support.plugin_helpers import call_tool, fetch_prompt, make_plugin
from rate_limiter_go import _native
import rate_limiter_go.engines as engines

users, tenants, tools = json.loads(sys.argv[3])
redis_url = sys.argv[4]
closed_port = int(sys.argv[5])
hung = socket.socket(); hung.bind(("127.0.0.1", 0)); hung.listen(16)  # accepts, never answers
counts = {}

def tally(what, r):
    key = what + ":" + ("ok" if r.continue_processing else r.violation.code)
    counts[key] = counts.get(key, 0) + 1

async def run(engine):
    os.environ["RATE_LIMITER_ENGINE"] = engine
    limits = {"by_user": "1/h", "by_tenant": "2/h", "by_tool": {t: "1/h" for t in tools}}
    backends = {
        "memory": {},
        "live": {"backend": "redis", "redis_url": redis_url, "redis_key_prefix": "logs" + engine},
        "refused": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{closed_port}/0"},
        "hung": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{hung.getsockname()[1]}/0",
                 "redis_timeout_ms": 20, "redis_connect_timeout_ms": 20},
    }
    for name, backend in backends.items():
        for fail_mode in ("open", "closed"):
            plugin = make_plugin({**limits, **backend, "fail_mode": fail_mode, "redis_breaker_failures": 2,
                                  "redis_breaker_cooldown_ms": 50})
            await plugin.initialize()
            plugin.error_log._interval_s = 0  # every error logged: the most output there can be
            for u in users:
                for t in tenants:
                    for tool in tools:
                        tally(f"{engine}:{name}", await call_tool(plugin, tool, user=u, tenant=t))
                        tally(f"{engine}:{name}", await fetch_prompt(plugin, tool, user={"email": u}, tenant=t))
            await plugin.shutdown()

async def main():
    for engine in ("python", "go"):
        await run(engine)
    # auto falling back to Python (the Go extension reported missing): the fallback warning path.
    engines.reset_fallback_warning()
    _native.native_available = lambda: False
    await run("auto")
    print(json.dumps(counts))

asyncio.run(main())
"""


@pytest.fixture
def scenario_output(redis_url: str) -> tuple[str, dict[str, int]]:
    require_go_engine()
    from support.redis_server import free_port

    proc = subprocess.run(
        [sys.executable, "-c", _SCENARIO, str(PACKAGE_PARENT), str(ROOT / "tests_py"),
         json.dumps([USERS, TENANTS, TOOLS]), redis_url, str(free_port())],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc.stdout + proc.stderr, counts


def test_no_identity_in_any_output(scenario_output: tuple[str, dict[str, int]]) -> None:
    text, counts = scenario_output
    # The scenario did what it says: blocks on memory and live Redis, fail-open and 503s on the broken ones.
    for engine in ("python", "go"):
        assert counts.get(f"{engine}:memory:RATE_LIMIT", 0) > 0, counts
        assert counts.get(f"{engine}:live:RATE_LIMIT", 0) > 0, counts
        for broken in ("refused", "hung"):
            assert counts.get(f"{engine}:{broken}:ok", 0) > 0, counts
            assert counts.get(f"{engine}:{broken}:BACKEND_UNAVAILABLE", 0) > 0, counts
    assert "engine error" in text  # errors were logged, so the check below looked at real error lines
    assert "Go engine not available, using the Python engine" in text
    for fragment in FRAGMENTS:
        assert fragment not in text, f"{fragment!r} leaked: " + text[max(0, text.find(fragment) - 200):][:400]
    for identity in USERS + TENANTS + TOOLS:
        for form in {identity, escape_identity(identity), identity.lower(), escape_identity(identity.lower())}:
            assert form not in text, f"{form!r} leaked"


_OUTAGE = r"""
import asyncio, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import os
os.environ["RATE_LIMITER_ENGINE"] = sys.argv[3]
from support.plugin_helpers import call_tool, make_plugin

async def main():
    plugin = make_plugin({"by_user": "10/s", "backend": "redis", "redis_url": f"redis://127.0.0.1:{sys.argv[4]}/0"})
    end = time.monotonic() + 3.0  # a 3 s outage under 32 concurrent callers, default breaker (5 failures, 1 s)

    async def caller(i):
        while time.monotonic() < end:
            await call_tool(plugin, user=f"u{i}")
            await asyncio.sleep(0.005)

    await asyncio.gather(*(caller(i) for i in range(32)))
    await plugin.shutdown()

asyncio.run(main())
"""


@pytest.mark.parametrize("engine", ["python", "go"])
def test_backend_errors_are_rate_limited_in_all_output(engine: str) -> None:
    """§8: backend errors are logged at most once per 10 s per plugin instance. During a 3 s outage under load
    that means one error line (the first), whatever writes it."""
    if engine == "go":
        require_go_engine()
    from support.redis_server import free_port

    proc = subprocess.run(
        [sys.executable, "-c", _OUTAGE, str(PACKAGE_PARENT), str(ROOT / "tests_py"), engine, str(free_port())],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    plugin_lines = [line for line in lines if "engine error" in line]
    assert len(plugin_lines) == 1, plugin_lines  # the plugin's own warning: once
    assert len(lines) == 1, lines[:5]

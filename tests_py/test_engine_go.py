"""The Go engine's own contract (docs/engine.md): lazy loading and fork (also
through the plugin: multiprocessing, gunicorn --preload with 4 workers, on the
engine RATE_LIMITER_ENGINE selects), the identity marker across the binding,
error mapping, and the asynchronous Redis path (eventfd completions, several
event loops, no blocking).
Decision values themselves are checked against the Python engine in
test_parity.py."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import gc
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EPOCH_US, PACKAGE_PARENT
from rate_limiter_go import _native
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine import EngineError
from support.go_helpers import require_go_engine, reset_go_memory_stores
from support.plugin_helpers import unique_name
from support.redis_server import free_port


@pytest.fixture(scope="module")
def GoEngine() -> type:  # noqa: N802 - the fixture stands for the class
    return require_go_engine()


@pytest.fixture(autouse=True)
def _fresh_go_stores() -> Iterator[None]:
    reset_go_memory_stores()
    yield
    reset_go_memory_stores()


@pytest.fixture(params=["fast", "packed"])
def entry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The binding entries evaluate() and check() use: the extension's evaluate_fast and submit_fast
    (Decision built in C), or gopy's pyext_Evaluate and pyext_Submit and the Python decoder, as with an
    extension built without tools/build/fastpath."""
    if request.param == "packed":
        from rate_limiter_go import engine_go

        monkeypatch.setattr(engine_go, "fast_entry", lambda mod: None)
    return str(request.param)


def memory_engine(cls: type, rate: str = "2/s", name: str = "t", **extra: Any) -> Any:
    return cls(parse_config({"by_user": rate, **extra}), name)


def redis_engine(cls: type, url: str, rate: str = "3/m", **extra: Any) -> Any:
    raw = {"by_user": rate, "backend": "redis", "redis_url": url, "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000, **extra}
    return cls(parse_config(raw), "t")


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (the Go runtime starts once per process)."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


# -- loading and fork --------------------------------------------------------


def test_construction_does_not_start_go(GoEngine: type) -> None:
    """The extension loads on the first evaluation, not at import or construction."""
    r = run_python(
        """
        import sys
        from rate_limiter_go import _native
        from rate_limiter_go.config import parse_config
        from rate_limiter_go.engine_go import GoEngine
        e = GoEngine(parse_config({"by_user": "2/s"}), "lazy")
        assert _native.loaded_in_pid() is None and "rate_limiter_go._goext.pyext" not in sys.modules
        d = e.evaluate("alice", None, None)
        assert d.admitted and d.dimension == "user", d
        assert _native.loaded_in_pid() is not None
        print("ok")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_fork_before_first_use_works_and_after_is_refused(GoEngine: type) -> None:
    """gunicorn --preload: engines built in the master work in workers forked
    before Go started; a child forked after Go started gets EngineError, no hang."""
    r = run_python(
        """
        import os
        from rate_limiter_go.config import parse_config
        from rate_limiter_go.engine import EngineError
        from rate_limiter_go.engine_go import GoEngine
        e = GoEngine(parse_config({"by_user": "2/s"}), "fork")
        pid = os.fork()
        if pid == 0:  # worker forked before Go started: loads its own runtime
            d = e.evaluate("alice", None, None)
            os._exit(0 if d.admitted and d.remaining == 1 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert e.evaluate("alice", None, None).remaining == 1  # separate process, separate memory
        pid = os.fork()
        if pid == 0:  # forked after Go started in the parent
            try:
                e.evaluate("alice", None, None)
            except EngineError as err:
                os._exit(0 if "fork" in str(err) else 4)
            os._exit(5)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        print("ok")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_construction_refuses_without_extension(GoEngine: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "native_available", lambda: False)
    with pytest.raises(ImportError, match="native extension"):
        memory_engine(GoEngine)


# -- fork through the plugin: multiprocessing after Go ran, gunicorn --preload (§8, §10) --
#
# The Go runtime does not survive fork(). The loader (_native.py) marks a child
# forked after the runtime started, and the Go engine then refuses to call into
# it, so nothing hangs; what the child gets instead is documented here:
#
# * an engine inherited from the parent: every call is an EngineError, so
#   fail_mode applies (open: admitted without headers; closed: 503);
# * a new plugin with RATE_LIMITER_ENGINE=python: works normally;
# * a new plugin: auto falls back to the Python engine, go fails at init
#   (``native_available()`` is False in such a child).
#
# With ``gunicorn --preload`` the plugin is built in the master but the Go
# runtime starts lazily, at the first request, so each worker starts its own:
# with the Redis backend the 4 workers together admit exactly the limit; with
# the memory backend each worker counts on its own (§10 is per process).


ROOT = Path(__file__).resolve().parent.parent
ENGINE = os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() or "auto"
CHILD_TIMEOUT_S = 30

_FORK_PROBE = r"""
import asyncio, json, multiprocessing as mp, os, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from support.plugin_helpers import call_tool, make_plugin

def outcome(r):
    if r.continue_processing:
        return "admitted" if r.http_headers else "fail_open"
    return r.violation.code

def child(q, plugin_open, plugin_closed):
    out = {"inherited_open": outcome(asyncio.run(call_tool(plugin_open))),
           "inherited_closed": outcome(asyncio.run(call_tool(plugin_closed)))}
    for mode in ("auto", "go", "python"):
        os.environ["RATE_LIMITER_ENGINE"] = mode
        try:
            p = make_plugin({"by_user": "2/h"})
            out["new_" + mode] = [p.engine.name] + [outcome(asyncio.run(call_tool(p))) for _ in range(3)]
        except Exception as e:
            out["new_" + mode] = [type(e).__name__]
    junk = [bytearray(1 << 20) for _ in range(200)]  # the reported hang came with allocation (GC) pressure
    del junk
    q.put(out)

os.environ["RATE_LIMITER_ENGINE"] = "go"
po = make_plugin({"by_user": "2/h"})
pc = make_plugin({"by_user": "2/h", "fail_mode": "closed"})
parent = [outcome(asyncio.run(call_tool(po))), outcome(asyncio.run(call_tool(pc)))]  # starts the Go runtime
ctx = mp.get_context("fork")
q = ctx.Queue()
proc = ctx.Process(target=child, args=(q, po, pc))
proc.start()
proc.join(float(sys.argv[3]))
hung = proc.is_alive()
if hung:
    proc.kill()
    proc.join()
res = None if hung else q.get(timeout=5)
after = outcome(asyncio.run(call_tool(po)))
print(json.dumps({"parent": parent, "parent_after": after, "hung": hung, "exitcode": proc.exitcode, "child": res}))
"""


@pytest.fixture(scope="module")
def fork_probe() -> dict[str, Any]:
    """Run the probe in a fresh interpreter: the parent starts Go, then forks with multiprocessing."""
    require_go_engine()
    if ENGINE == "python":
        pytest.skip("the probe sets its engines itself; it runs in the RATE_LIMITER_ENGINE=go (or auto) pass")
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_PROBE, str(PACKAGE_PARENT), str(ROOT / "tests_py"), str(CHILD_TIMEOUT_S)],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT_S + 60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_forked_child_does_not_hang_and_applies_fail_mode(fork_probe: dict[str, Any]) -> None:
    """The child exits normally; an inherited Go engine fails per fail_mode; the parent is unaffected."""
    assert fork_probe["parent"] == ["admitted", "admitted"]
    assert fork_probe["hung"] is False and fork_probe["exitcode"] == 0, fork_probe
    child = fork_probe["child"]
    assert child["inherited_open"] == "fail_open"
    assert child["inherited_closed"] == "BACKEND_UNAVAILABLE"
    assert child["new_python"] == ["python", "admitted", "admitted", "RATE_LIMIT"]
    assert fork_probe["parent_after"] == "admitted"  # the parent's counter: 2/h, this is its second call


def test_auto_in_forked_child_uses_the_python_engine(fork_probe: dict[str, Any]) -> None:
    assert fork_probe["child"]["new_auto"] == ["python", "admitted", "admitted", "RATE_LIMIT"]


def test_go_in_forked_child_fails_at_init(fork_probe: dict[str, Any]) -> None:
    assert fork_probe["child"]["new_go"] == ["EngineUnavailableError"]


# -- gunicorn --preload, 4 workers -----------------------------------------------------------------


class Gunicorn:
    def __init__(self, config: dict[str, Any], warmup: bool = False) -> None:
        self.port = free_port()
        env = dict(os.environ, RL_CONFIG=json.dumps(config), RL_WARMUP="1" if warmup else "0",
                   RL_SERVE_DELAY_MS="40",  # keeps a sync worker busy so the others get requests too
                   PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), str(ROOT / "tests_py")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "--workers", "4", "--bind", f"127.0.0.1:{self.port}",
             "--timeout", "20", "--graceful-timeout", "3", "--log-level", "warning", "support.gunicorn_app:app"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with contextlib.closing(http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)) as c:
                    c.request("GET", "/health?")
                    c.getresponse().read()
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("gunicorn did not start: " + self.output[-3000:])
                time.sleep(0.1)

    output = ""

    def get(self, user: str) -> tuple[int, dict[str, Any]]:
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)) as c:
            c.request("GET", "/?" + user)
            r = c.getresponse()
            return r.status, json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # quick shutdown: nothing to drain here
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.output = self.proc.stdout.read().decode(errors="replace")


def _requests(server: Gunicorn, user: str, count: int) -> list[tuple[int, dict[str, Any]]]:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: server.get(user), range(count)))


def _gunicorn() -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: gunicorn is not installed (requirements-dev.txt)", pytrace=False)
        pytest.skip("gunicorn is not installed (make venv)")
    if ENGINE == "go":
        require_go_engine()


def test_gunicorn_preload_redis_workers_share_the_limit(redis_url: str) -> None:
    """Redis: 4 forked workers together admit exactly the limit, whichever worker serves."""
    _gunicorn()
    server = Gunicorn({"by_user": "10/h", "backend": "redis", "redis_url": redis_url,
                       "redis_key_prefix": unique_name("gun"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000})
    try:
        replies = _requests(server, "shared@example.com", 60)
    finally:
        server.stop()
    outcomes = collections.Counter(body["outcome"] for _, body in replies)
    assert outcomes == {"admitted": 10, "RATE_LIMIT": 50}, (outcomes, server.output[-2000:])
    assert len({body["pid"] for _, body in replies}) >= 2  # more than one worker served
    if ENGINE in ("python", "go"):
        assert {body["engine"] for _, body in replies} == {ENGINE}


def test_gunicorn_preload_memory_each_worker_counts_alone() -> None:
    """Memory: every worker has its own store (per process), so each admits up to the limit itself."""
    _gunicorn()
    server = Gunicorn({"by_user": "3/h"})
    try:
        replies = _requests(server, "alone@example.com", 60)
    finally:
        server.stop()
    per_pid: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for _, body in replies:
        per_pid[body["pid"]][body["outcome"]] += 1
    assert len(per_pid) >= 2, ("one worker served every request", dict(per_pid))
    for pid, counts in per_pid.items():
        served = sum(counts.values())
        assert counts["admitted"] == min(3, served), (pid, counts, server.output[-2000:])
        assert counts["admitted"] + counts["RATE_LIMIT"] == served


def test_gunicorn_preload_after_go_ran_in_master_fails_open_without_hanging() -> None:
    """If the master itself ran the Go engine before forking, workers cannot use it: they answer
    (no hang, within the timeouts) and fail open per §8. Documented behaviour, not a recommendation."""
    _gunicorn()
    require_go_engine()
    if ENGINE != "go":
        pytest.skip("about the Go engine: runs with RATE_LIMITER_ENGINE=go")
    server = Gunicorn({"by_user": "3/h"}, warmup=True)
    try:
        replies = _requests(server, "warm@example.com", 24)
    finally:
        server.stop()
    assert {body["outcome"] for _, body in replies} == {"fail_open"}, server.output[-2000:]


# -- identities across the binding --------------------------------------------


def test_wire_identity() -> None:
    """docs/engine.md: only NUL, lone surrogates and a leading marker need the escaped form."""
    from rate_limiter_go.engine_go import MARKER, wire_identity
    from rate_limiter_go.keys import escape_identity

    assert wire_identity("alice@example.com") == "alice@example.com"
    assert wire_identity("é:x") == "é:x"
    for raw in ("a\x00b", "\ud800", "\x01alice", "x\udfffy"):
        assert wire_identity(raw) == MARKER + escape_identity(raw)


@pytest.mark.parametrize(
    "a, b",
    [
        ("\x01alice", "alice"),  # a leading marker byte is part of the identity
        ("a\x00b", "a%00b"),  # the escaped spelling of one is a different identity
        ("\ud800", "%ED%A0%80"),
        ("a\x00b", "a"),  # C strings end at NUL: must not truncate
    ],
)
def test_identities_that_look_alike_have_their_own_counters(GoEngine: type, a: str, b: str, entry: str) -> None:
    """§6: distinct identities never share a counter, whatever the binding does."""
    e = memory_engine(GoEngine, "1/m")
    assert e.evaluate(a, None, None, EPOCH_US).admitted
    assert e.evaluate(b, None, None, EPOCH_US).admitted
    assert not e.evaluate(a, None, None, EPOCH_US).admitted
    assert not e.evaluate(b, None, None, EPOCH_US).admitted


def test_tool_names_that_need_escaping(GoEngine: type, entry: str) -> None:
    e = GoEngine(parse_config({"by_tool": {"x\x00y": "1/m", "\x01t": "2/m"}}), "tools")
    assert e.evaluate("u", None, "x\x00y", EPOCH_US).dimension == "tool"
    assert not e.evaluate("u", None, "x\x00y", EPOCH_US).admitted
    assert e.evaluate("u", None, "x", EPOCH_US).dimension is None
    assert e.evaluate("u", None, "\x01t", EPOCH_US).limit == 2


def test_tool_name_with_lone_surrogate_is_refused(GoEngine: type) -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        GoEngine(parse_config({"by_tool": {"\ud800": "1/m"}}), "t")


# -- errors ----------------------------------------------------------------------


def test_bad_arguments_raise_value_error(GoEngine: type, entry: str) -> None:
    e = memory_engine(GoEngine)
    with pytest.raises(ValueError):
        e.evaluate("", None, None, EPOCH_US)
    with pytest.raises(ValueError):
        e.evaluate("u", None, None, -1)
    with pytest.raises(ValueError):
        e.evaluate("u", None, None, 1 << 60)  # beyond the engine's time range
    assert e.evaluate("u", None, None, EPOCH_US).admitted  # nothing was consumed by the refusals
    assert e.evaluate("u", None, None, EPOCH_US).remaining == 0


async def test_closed_engine_raises_engine_error(GoEngine: type) -> None:
    e = memory_engine(GoEngine)
    assert e.evaluate("u", None, None).admitted
    await e.close()
    with pytest.raises(EngineError):
        e.evaluate("u", None, None)
    fresh = memory_engine(GoEngine)
    await fresh.close()
    with pytest.raises(EngineError, match="after close"):
        fresh.evaluate("u", None, None)


async def test_check_on_memory_is_evaluate(GoEngine: type) -> None:
    e = memory_engine(GoEngine, "1/m")
    assert e.sync
    assert (await e.check("u", None, None, EPOCH_US)).admitted
    assert not e.evaluate("u", None, None, EPOCH_US).admitted


def test_decisions_are_shared_immutable_values(GoEngine: type, entry: str) -> None:
    """The decision cache returns equal values; a Decision cannot be modified."""
    e = memory_engine(GoEngine, "5/m", by_tool={"a": "2/m", "b": "3/m"})
    first = e.evaluate("u1", None, None, EPOCH_US)
    again = e.evaluate("u2", None, None, EPOCH_US)
    assert first == again
    with pytest.raises(AttributeError):
        first.remaining = 0  # type: ignore[misc]
    # Tools with different limits never reuse each other's decision.
    on_a = e.evaluate("u3", None, "a", EPOCH_US)
    on_b = e.evaluate("u4", None, "b", EPOCH_US)
    assert (on_a.dimension, on_a.limit, on_a.remaining) == ("tool", 2, 1)
    assert (on_b.dimension, on_b.limit, on_b.remaining) == ("tool", 3, 2)


@pytest.mark.parametrize(
    ("algorithm", "admitted_cached"), [("fixed_window", True), ("sliding_window", False), ("token_bucket", False)]
)
def test_decision_cache_keeps_refusals_and_fixed_window_admissions(
    GoEngine: type, algorithm: str, admitted_cached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals repeat until Retry-After, so they are cached; admitted answers only in a fixed window,
    where keys share the reset (engine_go, decode). The cache serves the packed entries (pyext_Evaluate,
    and check() on Redis); evaluate_fast builds every Decision in C."""
    from rate_limiter_go import engine_go

    monkeypatch.setattr(engine_go, "fast_entry", lambda mod: None)
    e = memory_engine(GoEngine, "1/m", algorithm=algorithm)
    admitted = e.evaluate("u1", None, None, EPOCH_US)
    refused = e.evaluate("u1", None, None, EPOCH_US)
    assert admitted.admitted and not refused.admitted
    cached = set(e._cache.values())
    assert refused in cached
    assert (admitted in cached) is admitted_cached
    assert e.evaluate("u1", None, None, EPOCH_US) is refused  # a cache hit: the same instance


# -- the fast entry (tools/build/fastpath) -------------------------------------------


def _fast(GoEngine: type) -> Any:  # noqa: N803 - the fixture's name
    from rate_limiter_go.engine_go import fast_entry

    fast = fast_entry(_native.load_native())
    assert fast is not None, "the extension was built without tools/build/fastpath (make build adds it)"
    return fast


def test_make_build_includes_the_fast_entry(GoEngine: type) -> None:
    """evaluate() goes through evaluate_fast, and add_fast crosses into Go."""
    _fast(GoEngine)
    assert _native.load_native()._pyext.add_fast(2, 40) == 42
    e = memory_engine(GoEngine)
    e.evaluate("u", None, None, EPOCH_US)
    assert isinstance(e.evaluate, functools.partial) and e.evaluate.func is _fast(GoEngine)


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket"])
def test_fast_and_packed_entries_decide_alike(GoEngine: type, algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Decision built in C equals the one the Python decoder builds from the same packed result,
    on every dimension, admitted and refused, with per-tool limits and a tool that needs escaping."""
    from rate_limiter_go import engine_go
    from rate_limiter_go.engine import Decision

    raw = {
        "algorithm": algorithm,
        "by_user": "20/m",
        "by_user_per_server": "2/m",
        "by_tenant": "8/m",
        "by_tool": {"search": "2/m", "x\x00y": "3/m", "fetch": "5/h"},
    }
    fast = GoEngine(parse_config(raw), "alike-fast")
    fast.evaluate("warm", None, None, EPOCH_US)  # binds now: binding picks the entry
    monkeypatch.setattr(engine_go, "fast_entry", lambda mod: None)
    packed = GoEngine(parse_config(raw), "alike-packed")
    packed.evaluate("warm", None, None, EPOCH_US)
    assert isinstance(fast.evaluate, functools.partial) and not isinstance(packed.evaluate, functools.partial)
    requests = [
        (user, tenant, tool, server)
        for user in ("alice", "bob", "é:x")
        for tenant in (None, "t1")
        for tool in (None, "search", "x\x00y", "fetch", "other")
        for server in (None, "s1")
    ]
    requests += [("carol", None, None, None)] * 21  # the user dimension refuses the last
    seen = set()
    for step in range(3):
        for user, tenant, tool, server in requests:
            now = EPOCH_US + step * 1000
            a = fast.evaluate(user, tenant, tool, now, server)
            b = packed.evaluate(user, tenant, tool, now, server)
            assert type(a) is Decision and a == b, (user, tenant, tool, server)
            assert not gc.is_tracked(a)  # built in C from atoms: nothing for the cyclic GC to follow
            seen.add((a.admitted, a.dimension))
    assert {(True, d) for d in ("user", "user_per_server", "tenant", "tool")} <= seen
    assert {(False, d) for d in ("user", "user_per_server", "tenant", "tool")} <= seen


def test_fast_entry_arguments(GoEngine: type) -> None:
    """evaluate_fast takes evaluate()'s arguments after (ctx, handle), positional or by name; without
    a context it returns the packed int and refuses what gopy's "s" converter refuses; with one it
    raises as ``unpack`` for error codes."""
    from rate_limiter_go.engine_go import unpack

    fast = _fast(GoEngine)
    e = memory_engine(GoEngine, "3/m")
    e.evaluate("warm", None, None, EPOCH_US)
    h, ctx = e._handle, e.fast_context()
    for bad in [
        (ctx, h, b"bytes", None, None, EPOCH_US),
        (ctx, h, None, None, None, EPOCH_US),
        (ctx, h, "u", None, None, 1.5),
        (ctx, h, "u", None),
        (ctx, h, "u", None, None, EPOCH_US, None, 1),
    ]:
        with pytest.raises(TypeError):
            fast(*bad)
    with pytest.raises(TypeError):
        fast(ctx, h, "u", None, None, EPOCH_US, now_us=EPOCH_US)
    with pytest.raises(TypeError):
        fast(ctx, h, "u", None, None, when=EPOCH_US)
    with pytest.raises(OverflowError):
        fast(ctx, 1 << 70, "u", None, None, EPOCH_US)
    with pytest.raises(ValueError, match="null"):
        fast(None, h, "a\x00b", None, None, EPOCH_US)
    with pytest.raises(UnicodeEncodeError):
        fast(None, h, "\ud800", None, None, EPOCH_US)
    assert unpack(fast(None, h, "u", None, None, EPOCH_US)) == (True, 0, 2, EPOCH_US // 1_000_000 + 60)
    d = fast(ctx, h, "u", None, None, EPOCH_US)
    assert (d.admitted, d.dimension, d.remaining) == (True, "user", 1)
    d = fast(ctx, h, tool=None, tenant=None, user="u", now_us=EPOCH_US, server=None)
    assert (d.admitted, d.dimension, d.remaining) == (True, "user", 0)
    assert fast(None, 1 << 40, "u", None, None, EPOCH_US) == -2  # no such handle
    assert fast(None, h, "", None, None, EPOCH_US) == -3  # empty user
    with pytest.raises(EngineError, match="unknown limiter handle"):
        fast(ctx, 1 << 40, "u", None, None, EPOCH_US)
    with pytest.raises(ValueError, match="bad argument"):
        fast(ctx, h, "", None, None, EPOCH_US)
    # Non-ASCII identities cross as their UTF-8 bytes: one counter per identity.
    assert fast(ctx, h, "é", None, None, EPOCH_US).remaining == 2
    assert fast(ctx, h, "é", "", "", EPOCH_US).remaining == 1
    # With a context, identities that need the wire form get it in C: the same counters as passing
    # the wire form verbatim (without a context nothing is converted).
    from rate_limiter_go.engine_go import wire_identity

    for raw in ("a\x00b", "\ud800", "\x01x", "\x00"):
        assert fast(ctx, h, raw, None, None, EPOCH_US).remaining == 2
        assert unpack(fast(None, h, wire_identity(raw), None, None, EPOCH_US))[2] == 1


def test_fast_entry_falls_back_for_what_it_cannot_build(GoEngine: type) -> None:
    """A tool missing from the context's table goes to the context's fallback, which decodes it
    in Python to the same Decision."""
    fast = _fast(GoEngine)
    e = GoEngine(parse_config({"by_tool": {"search": "5/m", "x\x00y": "7/m"}}), "fallback")
    e.evaluate("warm", None, None, EPOCH_US)
    ctx = e.fast_context()
    bare = (*ctx[:3], {}, *ctx[4:])
    for tool in ("search", "x\x00y"):
        a = fast(ctx, e._handle, "u", None, tool, EPOCH_US)
        b = fast(bare, e._handle, "u2", None, tool, EPOCH_US)
        assert a.dimension == "tool" and a.limit == b.limit and a.remaining == b.remaining + 1


def test_fast_entry_keeps_no_reference(GoEngine: type) -> None:
    """Identities crossing as they are or through their wire form (a new str, released after the
    call into Go), Decisions built in C: no reference kept, no Python memory left behind."""
    import tracemalloc

    e = GoEngine(
        parse_config({"by_user": "1000000/s", "by_tenant": "1000000/s", "by_tool": {"x\x00y": "1000000/s"}}), "refs"
    )
    ids = ["a\x00b", "\ud800", "\x01x", "plain", "é"]
    tool = "x\x00y"

    def run(n: int) -> None:
        for _ in range(n):
            for i in ids:
                e.evaluate(i, i, tool, 0, i)

    run(100)
    refs = [sys.getrefcount(i) for i in (*ids, tool)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(4000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(i) for i in (*ids, tool)] == refs
    assert grown < 64_000, f"{grown} bytes of Python memory left after 20,000 calls"


async def test_submit_fast_arguments_and_references(GoEngine: type, redis_url: str) -> None:
    """submit_fast takes evaluate_fast's arguments; without a context it returns Submit's int (the
    no-limit result at once, error codes), with one it raises for a code and returns a ticket or a
    Decision; answering refusals at once keeps no reference and leaves no Python memory behind."""
    import tracemalloc

    submit = _native.load_native()._pyext.submit_fast
    e = redis_engine(GoEngine, redis_url, "1/h", by_tool={"x\x00y": "1/h"})
    try:
        await e.check("warm", None, None)  # binds
        ctx, h = e.fast_context(), e._handle
        tools_only = GoEngine(parse_config({"by_tool": {"t": "1/h"}, "backend": "redis", "redis_url": redis_url}), "t")
        try:
            await tools_only.check("warm", None, None)  # binds
            assert submit(None, tools_only._handle, "u", None, "other", 0) == 9  # no dimension applies: at once
        finally:
            await tools_only.close()
        assert submit(None, h, "", None, None, 0) == -3 and submit(None, 1 << 40, "u", None, None, 0) == -2
        with pytest.raises(ValueError, match="bad argument"):
            submit(ctx, h, "", None, None, 0)
        with pytest.raises(TypeError, match="submit_fast"):
            submit(ctx, h)
        ids = ["a\x00b", "\ud800", "\x01x", "plain", "é"]
        for i in ids:  # admitted, then refused by Redis and remembered
            for _ in range(2):
                await e.check(i, None, "x\x00y")
        refs = [sys.getrefcount(i) for i in ids]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(2000):
                for i in ids:
                    d = submit(ctx, h, i, None, "x\x00y", 0)
                    assert not d.admitted
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert [sys.getrefcount(i) for i in ids] == refs
        assert grown < 64_000, f"{grown} bytes of Python memory left after 10,000 calls"
        ticket = submit(ctx, h, "someone new", None, None, 0)
        assert isinstance(ticket, int) and ticket <= ctx[-1] < 0
        from rate_limiter_go.completion import completions
        from rate_limiter_go.engine_go import unpack

        assert unpack(await completions(_native.load_native()).wait(ticket))[0]  # admitted
    finally:
        await e.close()


async def test_fast_entry_holds_the_gil_on_memory_only(GoEngine: type, redis_url: str) -> None:
    """Memory: the GIL stays held during the call into Go (bounded CPU work); Redis: released."""
    assert memory_engine(GoEngine).fast_context()[6] is True
    r = redis_engine(GoEngine, redis_url)
    assert r.fast_context()[6] is False
    await r.close()


def test_memory_evaluate_from_threads_stays_exact(GoEngine: type) -> None:
    """Threads calling evaluate() at once (the GIL held across each call into Go on memory):
    exactly the limit is admitted."""
    e = memory_engine(GoEngine, "500/m")
    e.evaluate("warm", None, None, EPOCH_US)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: e.evaluate("shared", None, None, EPOCH_US).admitted, range(800)))
    assert sum(got) == 500


# -- Redis: the asynchronous path -------------------------------------------------


async def test_redis_check_and_sync_evaluate(GoEngine: type, redis_url: str) -> None:
    e = redis_engine(GoEngine, redis_url)
    assert not e.sync
    try:
        got = [await e.check("alice", None, None, EPOCH_US) for _ in range(4)]
        assert [d.admitted for d in got] == [True, True, True, False]
        assert got[-1].retry_after_s == 60
        # evaluate() works on Redis too (blocking this thread, not the GIL)
        assert not e.evaluate("alice", None, None, EPOCH_US).admitted
    finally:
        await e.close()


async def test_redis_check_through_either_entry(GoEngine: type, redis_url: str, entry: str) -> None:
    """check() on Redis through submit_fast or gopy's Submit: identities that need the wire form keep
    their own counters, a refusal Redis gave is answered again without suspending, and bad arguments
    raise before anything is evaluated."""
    e = redis_engine(GoEngine, redis_url, "1/m", by_tool={"x\x00y": "1/m"})
    try:
        assert (await e.check("warm", None, None, EPOCH_US)).admitted  # binds: binding picks the entry
        assert isinstance(e._begin, functools.partial) == (entry == "fast")
        users = ("a\x00b", "a", "\ud800", "%ED%A0%80", "\x01alice", "alice")
        assert all([(await e.check(u, None, None, EPOCH_US)).admitted for u in users])
        for u in users:
            remote = await e.check(u, None, None, EPOCH_US + 1)
            step = e.check(u, None, None, EPOCH_US + 2)
            with pytest.raises(StopIteration) as done:
                step.send(None)  # remembered (§12): answered without suspending
            local = done.value.value
            assert not remote.admitted and not local.admitted and local.dimension == remote.dimension == "user"
        tool = await e.check("bob", None, "x\x00y", EPOCH_US)
        assert tool.admitted and tool.dimension == "user"  # user: 0 left, tool: 0 left; the first wins
        assert not (await e.check("carol", None, "x\x00y", EPOCH_US)).admitted
        for bad in (("", EPOCH_US), ("u", -1), ("u", 1 << 60)):
            with pytest.raises(ValueError):
                await e.check(bad[0], None, None, bad[1])
        assert (await e.check("u", None, None, EPOCH_US)).admitted  # the refused calls consumed nothing
    finally:
        await e.close()


async def test_redis_concurrent_checks(GoEngine: type, redis_url: str) -> None:
    """Many checks in flight on one loop resolve to the right tickets: exactly the limit admitted."""
    e = redis_engine(GoEngine, redis_url, "50/m")
    try:
        got = await asyncio.gather(*(e.check(f"user{i % 4}", None, None, EPOCH_US) for i in range(400)))
    finally:
        await e.close()
    assert sum(d.admitted for d in got) == 200  # 4 users x 50
    for i in range(4):
        mine = [d for j, d in enumerate(got) if j % 4 == i]
        assert sorted(d.remaining for d in mine if d.admitted) == list(range(50))


async def test_redis_wait_does_not_block_the_loop(GoEngine: type, redis_server: Any, redis_url: str) -> None:
    """While Redis does not answer, the event loop keeps running other tasks (§8 timeouts apply in Go)."""
    e = redis_engine(GoEngine, redis_url)
    try:
        await e.check("warm", None, None, EPOCH_US)  # connect first, so the pause hits a command
        redis_server.pause()
        try:
            task = asyncio.ensure_future(e.check("alice", None, None, EPOCH_US))
            ticks = 0
            for _ in range(10):
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks == 10 and not task.done()
        finally:
            redis_server.resume()
        d = await task
        assert d.admitted and d.remaining == 2
    finally:
        await e.close()


async def test_redis_unreachable_raises_engine_error(GoEngine: type, hung_redis: Any) -> None:
    e = GoEngine(
        parse_config({"by_user": "1/s", "backend": "redis", "redis_url": hung_redis.url, "redis_timeout_ms": 30}),
        "hung",
    )
    try:
        with pytest.raises(EngineError, match="unavailable"):
            await e.check("alice", None, None)
    finally:
        await e.close()


async def test_redis_cancelled_check_leaves_the_path_working(GoEngine: type, redis_server: Any, redis_url: str) -> None:
    e = redis_engine(GoEngine, redis_url)
    try:
        await e.check("warm", None, None, EPOCH_US)
        redis_server.pause()
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(e.check("alice", None, None, EPOCH_US), 0.05)
        finally:
            redis_server.resume()
        await asyncio.sleep(0.1)  # let the abandoned evaluation finish
        d = await e.check("bob", None, None, EPOCH_US)
        assert d.admitted and d.remaining == 2
    finally:
        await e.close()


def test_redis_several_loops_in_threads(GoEngine: type, redis_url: str) -> None:
    """One engine used from event loops in several threads (and loops that close):
    every check completes, and the counter is exact."""
    e = redis_engine(GoEngine, redis_url, "60/m")
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        async def run() -> None:
            got = await asyncio.gather(*(e.check("shared", None, None, EPOCH_US) for _ in range(40)))
            with lock:
                results.extend(d.admitted for d in got)

        try:
            for _ in range(2):  # a new loop each round; the old one closes
                asyncio.run(asyncio.wait_for(run(), 20))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == 240, (len(results), time.monotonic() - started)
    assert sum(results) == 60
    asyncio.run(e.close())


def test_fast_decision_equals_a_normally_built_one() -> None:
    """engine_go builds Decisions through tuple.__new__: same value, same type, still immutable."""
    from rate_limiter_go.engine import Decision
    from rate_limiter_go.engine_go import _new_decision

    for args in [(True, "user", 10, 9, 1_800_000_060, 0), (False, "tool", 3, 0, 1_800_003_600, 3600)]:
        fast, slow = _new_decision(Decision, args), Decision(*args)
        assert type(fast) is Decision and fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
        assert (fast.admitted, fast.dimension, fast.limit) == args[:3]
        assert (fast.remaining, fast.reset_at_unix, fast.retry_after_s) == args[3:]
        with pytest.raises(AttributeError):
            fast.limit = 1  # type: ignore[misc]

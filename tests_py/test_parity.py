"""Parity: the Go engine and the Python engine give identical Decision sequences.

Both engines are built directly (not through RATE_LIMITER_ENGINE) from the
same LimiterConfig, fed the same requests at the same explicit ``now_us``
(§2), and compared decision by decision, errors included. Memory engines get
different store names so they do not share state (§10); Redis engines get
different key prefixes (§6) on one private redis-server, except in the
rolling-upgrade tests, where they share one prefix and must share counters.

Covers §3 (all three algorithms), §4 (all-or-nothing, reported dimension,
all four dimensions), §5 (which dimensions apply), §6 (escaping, hashing,
the composed user_per_server identity, the binding's identity marker) and
§7 (header values).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import EPOCH_US
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rate_limiter_go.config import LimiterConfig, parse_config
from rate_limiter_go.engine import Decision, Engine
from rate_limiter_go.engine_python.engine import PythonEngine
from support.go_helpers import require_go_engine, reset_go_memory_stores

# Both engines are built here whatever RATE_LIMITER_ENGINE says, so the python pass of `make
# test-py` would repeat the go pass's work exactly: run once per CPython, in the go (or auto) pass.
pytestmark = pytest.mark.skipif(
    os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() == "python",
    reason="builds both engines itself; it runs in the RATE_LIMITER_ENGINE=go (or auto) pass",
)

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")

# Dimension sets: one dimension, three, all four, and ones where often none applies.
DIMENSIONS: dict[str, dict[str, Any]] = {
    "1dim": {"by_user": "3/s"},
    "3dim": {"by_user": "4/s", "by_tenant": "3/s", "by_tool": {"search": "2/s", "a:b": "5/m", "Fetch ": "3/h"}},
    "4dim": {
        "by_user": "4/s",
        "by_user_per_server": "2/s",
        "by_tenant": "3/s",
        "by_tool": {"search": "2/s", "a:b": "5/m", "Fetch ": "3/h"},
    },
    "no-user": {"by_tenant": "2/s", "by_tool": {"search": "3/s"}},
    "per-server": {"by_user_per_server": "3/s", "by_tool": {"search": "2/s"}},
}

# Identities that exercise §6 escaping, hashing and the binding's marker; "" is
# refused by both engines (the caller normalises an unknown user to "anonymous").
USERS = ["alice@example.com", "bob", "team:1 {a}", "é", "x\x00y", "\x01z", "\ud800", "anonymous", "u" * 200, ""]
TENANTS = [None, "t1", "t:2", "\x01t", "t\x00", "\udfff"]
TOOLS = [None, "search", "a:b", "fetch", "unlisted"]
# Virtual servers (None: a prompt fetch or a call without a server). "v" * 120 makes the
# composed user_per_server identity longer than 128 bytes, so it is hashed (§6).
SERVERS = [None, "s1", "srv:2 {x}", "\x01s", "s\x00", "\udc80", "v" * 120, "é"]

_counter = itertools.count()


def _unique(tag: str) -> str:
    """A fresh store name or key prefix: examples never see each other's state."""
    return f"{tag}{os.getpid()}x{next(_counter)}"


@pytest.fixture(scope="module")
def go_engine_class() -> type:
    return require_go_engine()


@pytest.fixture(autouse=True)
def _fresh_go_stores() -> Iterator[None]:
    reset_go_memory_stores()
    yield
    reset_go_memory_stores()


# Generous Redis timeouts: a loaded CI machine must not turn a slow answer into a
# spurious difference (failures are the business of the Redis backend tests).
SLOW_OK = {"redis_timeout_ms": 5000, "redis_connect_timeout_ms": 5000}


def config(algorithm: str, dims: str, backend: str = "memory", **extra: Any) -> LimiterConfig:
    raw: dict[str, Any] = {"algorithm": algorithm, "backend": backend, **DIMENSIONS[dims], **extra}
    if backend == "redis":
        raw.update(SLOW_OK)
    return parse_config(raw)


Step = tuple  # (advance_us, user, tenant, tool) or (advance_us, user, tenant, tool, server)


def _server(step: Step) -> str | None:
    return step[4] if len(step) > 4 else None


def _outcome(call: Callable[[], Decision]) -> Decision | tuple[str, str]:
    try:
        return call()
    except Exception as e:  # the two engines must fail alike too
        return ("error", type(e).__name__)


def run_sync(engine: Engine, steps: list[Step], start_us: int) -> list[Decision | tuple[str, str]]:
    now, out = start_us, []
    for step in steps:
        advance, user, tenant, tool = step[:4]
        now += advance
        out.append(_outcome(lambda: engine.evaluate(user, tenant, tool, now, _server(step))))
    return out


async def run_async(engine: Engine, steps: list[Step], start_us: int) -> list[Decision | tuple[str, str]]:
    now, out = start_us, []
    for step in steps:
        advance, user, tenant, tool = step[:4]
        now += advance
        try:
            out.append(await engine.check(user, tenant, tool, now, _server(step)))
        except Exception as e:
            out.append(("error", type(e).__name__))
    return out


def note_kinds(decisions: list[Any]) -> None:
    """Tell Hypothesis's statistics which outcomes a trace reached (coverage of the comparison)."""
    for d in decisions:
        if not isinstance(d, Decision):  # ("error", name); a Decision is a NamedTuple, so test for it first
            event(f"outcome: error {d[1]}")
        elif d.dimension is None:
            event("outcome: no dimension")
        else:
            event(f"outcome: {'admitted' if d.admitted else 'blocked'} by {d.dimension}")


def first_difference(a: list[Any], b: list[Any], steps: list[Step]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"step {i} {steps[i]!r}: go {x!r} != python {y!r}"
    return f"lengths {len(a)} != {len(b)}"


# -- strategies ----------------------------------------------------------------

# Mostly bursts (so limits are reached), sometimes a window's length or much more.
advances = st.one_of(
    st.just(0),
    st.integers(1, 2_000),
    st.integers(1, 200_000),
    st.integers(100_000, 1_200_000),  # around a one-second window
    st.integers(50_000_000, 3_700_000_000),  # minutes to an hour
)
# Few identities most of the time, so that counters fill up.
users = st.one_of(st.sampled_from(USERS[:2]), st.sampled_from(USERS[:2]), st.sampled_from(USERS))
tenants = st.one_of(st.sampled_from(TENANTS[:2]), st.sampled_from(TENANTS))
servers = st.one_of(st.sampled_from(SERVERS[:2]), st.sampled_from(SERVERS))
steps_strategy = st.lists(
    st.tuples(advances, users, tenants, st.sampled_from(TOOLS), servers),
    min_size=1,
    max_size=60,
)
start_strategy = st.integers(0, 3_600_000_000)  # offset from EPOCH_US, so windows are not always aligned


# -- memory ------------------------------------------------------------------


@pytest.mark.parametrize("dims", list(DIMENSIONS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps_strategy, offset=start_strategy)
def test_memory_random_traces(go_engine_class: type, algorithm: str, dims: str, steps: list[Step], offset: int) -> None:
    """§3-§7 on the memory backend: random traces give identical decisions."""
    cfg = config(algorithm, dims)
    go = go_engine_class(cfg, _unique("go"))
    py = PythonEngine(cfg, _unique("py"))
    start = EPOCH_US + offset
    got, want = run_sync(go, steps, start), run_sync(py, steps, start)
    note_kinds(want)
    assert got == want, first_difference(got, want, steps)
    asyncio.run(go.close())


def _worked_example(algorithm: str) -> tuple[str, list[tuple[float, bool, int, float, int]]]:
    """The §3 worked examples: (rate, [(t_s, admitted, remaining, reset_s, retry_after_s)])."""
    if algorithm == "fixed_window":  # §3.1, at t = 10.0 s ...
        return "3/s", [
            (10.0, True, 2, 11, 0),
            (10.2, True, 1, 11, 0),
            (10.4, True, 0, 11, 0),
            (10.6, False, 0, 11, 1),
            (11.0, True, 2, 12, 0),
        ]
    if algorithm == "sliding_window":  # §3.2
        return "2/s", [
            (0.0, True, 1, 1.0, 0),
            (0.5, True, 0, 1.0, 0),
            (0.7, False, 0, 1.0, 1),
            (1.0, True, 0, 1.5, 0),
            (1.2, False, 0, 1.5, 1),
        ]
    return "2/s", [  # §3.3
        (0.0, True, 1, 0.5, 0),
        (0.0, True, 0, 1.0, 0),
        (0.0, False, 0, 1.0, 1),
        (0.25, False, 0, 1.0, 1),
        (0.5, True, 0, 1.5, 0),
    ]


def _expected(algorithm: str) -> tuple[str, list[tuple[int, Decision]]]:
    """The worked example as (now_us, Decision) with §7 rounding of the reset time."""
    rate, rows = _worked_example(algorithm)
    limit = int(rate.split("/")[0])
    out = []
    for t_s, admitted, remaining, reset_s, retry in rows:
        now_us = EPOCH_US + round(t_s * 1_000_000)
        reset_unix = -(-(EPOCH_US + round(reset_s * 1_000_000)) // 1_000_000)
        out.append((now_us, Decision(admitted, "user", limit, remaining, reset_unix, retry)))
    return rate, out


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memory_worked_examples(go_engine_class: type, algorithm: str) -> None:
    """§3.1-§3.3 worked examples, both engines, memory backend."""
    rate, rows = _expected(algorithm)
    cfg = parse_config({"algorithm": algorithm, "by_user": rate})
    for engine in (go_engine_class(cfg, _unique("go")), PythonEngine(cfg, _unique("py"))):
        got = [engine.evaluate("alice@example.com", None, None, now_us) for now_us, _ in rows]
        assert got == [d for _, d in rows], engine.name


def _all_or_nothing_script() -> list[Step]:
    # by_user 4/s, by_tenant 3/s, search 2/s (DIMENSIONS["3dim"]), all at one instant.
    return [
        (0, "u1", "t1", "search"),  # admitted: user 3, tenant 2, tool 1 left
        (0, "u1", "t1", "search"),  # admitted: tool 0 left -> reported tool
        (0, "u1", "t1", "search"),  # blocked by tool: nothing consumed (§4)
        (0, "u1", "t1", None),  # admitted: user 1, tenant 0 left
        (0, "u2", "t1", None),  # blocked by tenant; u2 untouched
        (0, "u2", None, None),  # admitted: u2 still has 3 left
        (0, "u1", None, "a:b"),  # admitted: user 0 left
        (0, "u1", None, "a:b"),  # blocked by user; a:b keeps 4
        (0, "u3", None, "a:b"),  # admitted: a:b 3 left, u3 3 left -> user reported (tie to the earliest)
        (1_000_000, "u1", "t1", "search"),  # a second later the per-second limits refill
    ]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memory_all_or_nothing_script(go_engine_class: type, algorithm: str) -> None:
    """§4 on a fixed script: identical decisions, and a refused request consumed nothing."""
    cfg = config(algorithm, "3dim")
    steps = _all_or_nothing_script()
    got = run_sync(go_engine_class(cfg, _unique("go")), steps, EPOCH_US)
    want = run_sync(PythonEngine(cfg, _unique("py")), steps, EPOCH_US)
    assert got == want, first_difference(got, want, steps)
    assert [d.admitted for d in got] == [True, True, False, True, False, True, True, False, True, True]
    assert got[2].dimension == "tool" and got[4].dimension == "tenant" and got[7].dimension == "user"
    assert got[5].remaining == 3  # u2's refused request at step 4 spent nothing


def _four_dimension_script() -> list[Step]:
    # by_user 4/s, by_user_per_server 2/s, by_tenant 3/s, search 2/s (DIMENSIONS["4dim"]), one instant.
    return [
        (0, "u1", "t1", None, "s1"),  # admitted: user 3, u1@s1 1, tenant 2 left -> user_per_server
        (0, "u1", None, "search", "s1"),  # admitted: user 2, u1@s1 0, search 1 -> user_per_server
        (0, "u1", "t1", "search", "s1"),  # blocked by u1@s1: nothing consumed (§4)
        (0, "u1", "t1", "search", "s2"),  # admitted: user 1, u1@s2 1, tenant 1, search 0 -> tool
        (0, "u1", "t1", None, None),  # admitted: user 0, tenant 0: tie -> user (the earliest)
        (0, "u2", "t1", None, "s1"),  # blocked by tenant; u2 and u2@s1 untouched
        (0, "u2", None, None, "s1"),  # admitted: user 3, u2@s1 1 -> user_per_server, 1 left
        (0, "u1", None, None, "s3"),  # blocked by user; u1@s3 untouched
        (0, "u3", None, None, "s1"),  # admitted: the per-server counter is per user, not per server
        (1_000_000, "u1", "t1", "search", "s1"),  # a second later every per-second limit refilled
    ]


def _check_four_dimension_script(got: list[Any]) -> None:
    assert [d.admitted for d in got] == [True, True, False, True, True, False, True, False, True, True]
    assert [d.dimension for d in got] == [
        "user_per_server", "user_per_server", "user_per_server", "tool", "user",
        "tenant", "user_per_server", "user", "user_per_server", "user_per_server",
    ]
    assert [d.limit for d in got[:4]] == [2, 2, 2, 2]
    assert got[6].remaining == 1  # u2's refused request at step 5 spent nothing on u2@s1
    assert got[8].remaining == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memory_four_dimensions_script(go_engine_class: type, algorithm: str) -> None:
    """§4 with user_per_server among the four dimensions: order, reported dimension, nothing consumed when refused."""
    cfg = config(algorithm, "4dim")
    steps = _four_dimension_script()
    got = run_sync(go_engine_class(cfg, _unique("go")), steps, EPOCH_US)
    want = run_sync(PythonEngine(cfg, _unique("py")), steps, EPOCH_US)
    assert got == want, first_difference(got, want, steps)
    _check_four_dimension_script(got)


def test_memory_store_name_and_config_share_state(go_engine_class: type) -> None:
    """§10: Go engines with the same store name and config share counters, like Python ones."""
    cfg = config("fixed_window", "1dim")
    name = _unique("shared")
    a, b = go_engine_class(cfg, name), go_engine_class(cfg, name)
    other = go_engine_class(cfg, _unique("other"))
    assert [a.evaluate("u", None, None, EPOCH_US).remaining for _ in range(2)] == [2, 1]
    assert b.evaluate("u", None, None, EPOCH_US).remaining == 0
    assert other.evaluate("u", None, None, EPOCH_US).remaining == 2


# -- redis -------------------------------------------------------------------


@pytest.mark.parametrize("dims", list(DIMENSIONS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps_strategy, offset=start_strategy)
def test_redis_random_traces(
    go_engine_class: type, redis_server: Any, algorithm: str, dims: str, steps: list[Step], offset: int
) -> None:
    """§3-§7 and §9 on Redis: random traces give identical decisions (separate key prefixes)."""
    redis_server.ensure_running()
    url = redis_server.url
    cfg_go = config(algorithm, dims, "redis", redis_url=url, redis_key_prefix=_unique("go"))
    cfg_py = config(algorithm, dims, "redis", redis_url=url, redis_key_prefix=_unique("py"))
    start = EPOCH_US + offset

    async def both() -> tuple[list[Any], list[Any]]:
        go, py = go_engine_class(cfg_go, "parity"), PythonEngine(cfg_py, "parity")
        try:
            return await run_async(go, steps, start), await run_async(py, steps, start)
        finally:
            await go.close()
            await py.close()

    got, want = asyncio.run(both())
    note_kinds(want)
    assert got == want, first_difference(got, want, steps)
    assert not any(isinstance(x, tuple) and x[1] == "EngineError" for x in got), got


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_redis_worked_examples(go_engine_class: type, redis_url: str, algorithm: str) -> None:
    """§3 worked examples on Redis through both engines (separate prefixes)."""
    rate, rows = _expected(algorithm)
    for engine_cls, prefix in ((go_engine_class, "g"), (PythonEngine, "p")):
        raw = {"algorithm": algorithm, "by_user": rate, "backend": "redis", "redis_url": redis_url, **SLOW_OK}
        cfg = parse_config({**raw, "redis_key_prefix": prefix})
        engine = engine_cls(cfg, "worked")
        try:
            got = [await engine.check("alice@example.com", None, None, now_us) for now_us, _ in rows]
        finally:
            await engine.close()
        assert got == [d for _, d in rows], engine.name


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_redis_all_or_nothing_script(go_engine_class: type, redis_url: str, algorithm: str) -> None:
    """§4 on Redis, fixed script: both engines agree with each other and with memory."""
    steps = _all_or_nothing_script()
    go = go_engine_class(config(algorithm, "3dim", "redis", redis_url=redis_url, redis_key_prefix="g"), "s")
    py = PythonEngine(config(algorithm, "3dim", "redis", redis_url=redis_url, redis_key_prefix="p"), "s")
    try:
        got, want = await run_async(go, steps, EPOCH_US), await run_async(py, steps, EPOCH_US)
    finally:
        await go.close()
        await py.close()
    assert got == want, first_difference(got, want, steps)
    on_memory = run_sync(PythonEngine(config(algorithm, "3dim"), _unique("m")), steps, EPOCH_US)
    assert got == on_memory


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_redis_four_dimensions_script(go_engine_class: type, redis_url: str, algorithm: str) -> None:
    """§4 and §9 with four keys per script call: both engines agree with each other and with memory."""
    steps = _four_dimension_script()
    go = go_engine_class(config(algorithm, "4dim", "redis", redis_url=redis_url, redis_key_prefix=_unique("g")), "s")
    py = PythonEngine(config(algorithm, "4dim", "redis", redis_url=redis_url, redis_key_prefix=_unique("p")), "s")
    try:
        got, want = await run_async(go, steps, EPOCH_US), await run_async(py, steps, EPOCH_US)
    finally:
        await go.close()
        await py.close()
    assert got == want, first_difference(got, want, steps)
    _check_four_dimension_script(got)
    assert got == run_sync(PythonEngine(config(algorithm, "4dim"), _unique("m")), steps, EPOCH_US)


# -- rolling upgrade: one Redis, one prefix, both engines -----------------------

mixed_steps = st.lists(
    st.tuples(st.booleans(), advances, users, tenants, st.sampled_from(TOOLS), servers),
    min_size=1,
    max_size=60,
)


@pytest.mark.parametrize("remembered", [0, 10_000], ids=["refusals-not-remembered", "refusals-remembered"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=mixed_steps, offset=start_strategy)
def test_redis_interleaved_engines_share_counters(
    go_engine_class: type,
    redis_server: Any,
    algorithm: str,
    remembered: int,
    steps: list[tuple[Any, ...]],
    offset: int,
) -> None:
    """A request sequence split at random between a Go and a Python gateway on one Redis
    (same prefix) answers exactly as if one engine had served it all: the engines
    share counters, as in a rolling upgrade (§6, §9).

    With §12's remembered refusals each gateway remembers only the refusals it got and
    reports only the keys it remembers, so there the verdicts must match (a refusal is
    never answered locally when another gateway could admit), not the reported dimension.
    """
    redis_server.ensure_running()
    url = redis_server.url
    extra = {"redis_blocked_max_keys": remembered}
    shared = config(algorithm, "4dim", "redis", redis_url=url, redis_key_prefix=_unique("mix"), **extra)
    alone = config(algorithm, "4dim", "redis", redis_url=url, redis_key_prefix=_unique("one"), **extra)
    start = EPOCH_US + offset
    plain: list[Step] = [step[1:] for step in steps]

    async def run() -> tuple[list[Any], list[Any]]:
        go, py = go_engine_class(shared, "mix"), PythonEngine(shared, "mix")
        reference = PythonEngine(alone, "one")
        try:
            now, mixed = start, []
            for use_go, adv, user, tenant, tool, server in steps:
                now += adv
                engine = go if use_go else py
                try:
                    mixed.append(await engine.check(user, tenant, tool, now, server))
                except Exception as e:
                    mixed.append(("error", type(e).__name__))
            return mixed, await run_async(reference, plain, start)
        finally:
            for e in (go, py, reference):
                await e.close()

    mixed, reference = asyncio.run(run())
    note_kinds(reference)
    if remembered:
        verdicts = [d.admitted if isinstance(d, Decision) else d for d in mixed]
        assert verdicts == [d.admitted if isinstance(d, Decision) else d for d in reference], first_difference(
            mixed, reference, plain
        )
    else:
        assert mixed == reference, first_difference(mixed, reference, plain)


async def test_redis_go_then_python_continue_one_counter(go_engine_class: type, redis_url: str) -> None:
    """Deterministic rolling upgrade: the Go gateway spends 2 of 3, the Python one sees 1 left, then 0."""
    cfg = config("sliding_window", "1dim", "redis", redis_url=redis_url)
    go, py = go_engine_class(cfg, "a"), PythonEngine(cfg, "b")
    try:
        assert (await go.check("alice", None, None, EPOCH_US)).remaining == 2
        assert (await go.check("alice", None, None, EPOCH_US + 1)).remaining == 1
        assert (await py.check("alice", None, None, EPOCH_US + 2)).remaining == 0
        blocked_py = await py.check("alice", None, None, EPOCH_US + 3)
        blocked_go = await go.check("alice", None, None, EPOCH_US + 3)
    finally:
        await go.close()
        await py.close()
    assert not blocked_py.admitted and blocked_py == blocked_go

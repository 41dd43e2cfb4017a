"""§4: several dimensions, all or nothing, and which dimension is reported; §5 which dimensions apply.

Behavioural tests go through ``make_engine`` (the engine RATE_LIMITER_ENGINE
selects) on memory and Redis; state is also inspected directly, in Redis (the
key layout of §6 is shared by both engines) and in the Python memory store.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine import NO_LIMIT
from rate_limiter_go.engine_python.engine import PythonEngine
from rate_limiter_go.engine_python.selection import reported_index
from rate_limiter_go.keys import key_prefix, state_key, user_server_segment

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
S = 1_000_000


@pytest.fixture(params=["memory", "redis"])
def backend_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend": "memory"}
    return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}


def three_dimensions(tight: str, algorithm: str) -> dict[str, Any]:
    """user, tenant and tool limits of 3/s, except ``tight`` at 1/s."""
    rate = {d: ("1/s" if d == tight else "3/s") for d in ("user", "tenant", "tool")}
    return {
        "by_user": rate["user"],
        "by_tenant": rate["tenant"],
        "by_tool": {"search": rate["tool"]},
        "algorithm": algorithm,
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("tight", ["user", "tenant", "tool"])
async def test_blocked_by_one_dimension_consumes_nothing_in_the_others(
    make_engine, backend_settings, clock, tight: str, algorithm: str
) -> None:
    """§4.3: a request refused by one dimension never spends quota in another (facts.md fault #1)."""
    engine = make_engine({**three_dimensions(tight, algorithm), **backend_settings})
    now = clock.at(0.0)
    first = await engine.check("alice", "t1", "search", now)
    assert first.admitted and first.dimension == tight and first.remaining == 0
    for _ in range(3):
        blocked = await engine.check("alice", "t1", "search", now)
        assert not blocked.admitted and blocked.dimension == tight

    # Avoid the exhausted dimension; the other two have spent exactly one of their three.
    def next_request(i: int) -> tuple[str, str | None, str | None]:
        if tight == "user":
            return f"user-{i}", "t1", "search"
        if tight == "tenant":
            return "alice", None, "search"
        return "alice", "t1", None

    results = [await engine.check(*next_request(i), now) for i in range(3)]
    assert [r.admitted for r in results] == [True, True, False]
    assert results[2].dimension != tight


def four_dimensions(tight: str, algorithm: str) -> dict[str, Any]:
    """user, user_per_server, tenant and tool limits of 3/s, except ``tight`` at 1/s."""
    rate = {d: ("1/s" if d == tight else "3/s") for d in ("user", "user_per_server", "tenant", "tool")}
    return {
        "by_user": rate["user"],
        "by_user_per_server": rate["user_per_server"],
        "by_tenant": rate["tenant"],
        "by_tool": {"search": rate["tool"]},
        "algorithm": algorithm,
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("tight", ["user", "user_per_server", "tenant", "tool"])
async def test_four_dimensions_blocked_by_one_consumes_nothing_in_the_others(
    make_engine, backend_settings, clock, tight: str, algorithm: str
) -> None:
    """§4.3 with by_user_per_server: one script call / one lock over four keys, all or nothing."""
    engine = make_engine({**four_dimensions(tight, algorithm), **backend_settings})
    now = clock.at(0.0)
    first = await engine.check("alice", "t1", "search", now, "s1")
    assert first.admitted and (first.dimension, first.remaining, first.limit) == (tight, 0, 1)
    for _ in range(3):
        blocked = await engine.check("alice", "t1", "search", now, "s1")
        assert not blocked.admitted and blocked.dimension == tight

    # Avoid the exhausted dimension; the other three have spent exactly one of their three.
    avoid = {
        "user": lambda i: (f"user-{i}", "t1", "search", f"s-{i}"),  # a new user is a new user@server too
        "user_per_server": lambda i: ("alice", "t1", "search", f"s-{i}"),
        "tenant": lambda i: ("alice", None, "search", "s1"),
        "tool": lambda i: ("alice", "t1", None, "s1"),
    }[tight]
    results = [await engine.check(*avoid(i)[:3], now, avoid(i)[3]) for i in range(3)]
    assert [r.admitted for r in results] == [True, True, False]
    assert results[2].dimension != tight


async def test_user_per_server_skipped_without_a_server(make_engine, backend_settings, clock) -> None:
    """§5: server None skips by_user_per_server; it counts per (user, server), not per user or per server."""
    engine = make_engine({"by_user_per_server": "1/s", **backend_settings})
    now = clock.at(0.0)
    for _ in range(3):
        assert await engine.check("alice", None, None, now, None) == NO_LIMIT
    first = await engine.check("alice", None, None, now, "s1")
    assert first.admitted and (first.dimension, first.limit, first.remaining) == ("user_per_server", 1, 0)
    assert not (await engine.check("alice", None, None, now, "s1")).admitted
    assert (await engine.check("alice", None, None, now, "s2")).admitted  # another server
    assert (await engine.check("bob", None, None, now, "s1")).admitted  # another user


@pytest.mark.parametrize(
    ("config", "dimension", "remaining"),
    [
        ({"by_user": "3/s", "by_user_per_server": "3/s"}, "user", 2),  # tie: user before user_per_server
        ({"by_user_per_server": "3/s", "by_tenant": "3/s", "by_tool": {"search": "3/s"}}, "user_per_server", 2),
        ({"by_user": "5/s", "by_user_per_server": "2/s", "by_tenant": "3/s"}, "user_per_server", 1),
        ({"by_user": "5/s", "by_user_per_server": "4/s", "by_tenant": "3/s"}, "tenant", 2),
    ],
)
async def test_four_dimensions_admitted_reports_the_smallest_remaining(
    make_engine, backend_settings, clock, config, dimension, remaining
) -> None:
    """§4: ties go to the earliest in the order user, user_per_server, tenant, tool."""
    engine = make_engine({**config, **backend_settings})
    decision = await engine.check("alice", "t1", "search", clock.at(0.0), "s1")
    assert decision.admitted and (decision.dimension, decision.remaining) == (dimension, remaining)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_blocked_by_user_and_user_per_server_reports_the_largest_retry_after(
    make_engine, backend_settings, clock, algorithm: str
) -> None:
    """§4: user 1/s and user_per_server 1/m both refuse: user_per_server (60 s) is reported; an equal wait
    (user_per_server 1/s and tenant 1/s) goes to user_per_server, the earlier."""
    engine = make_engine({"by_user": "1/s", "by_user_per_server": "1/m", "algorithm": algorithm, **backend_settings})
    now = clock.at(0.0)
    assert (await engine.check("alice", None, None, now, "s1")).admitted
    decision = await engine.check("alice", None, None, now, "s1")
    assert (decision.admitted, decision.dimension, decision.retry_after_s) == (False, "user_per_server", 60)
    assert (await engine.check("alice", None, None, now + 60 * S, "s1")).admitted

    tie = make_engine({"by_user_per_server": "1/s", "by_tenant": "1/s", "algorithm": algorithm, **backend_settings})
    assert (await tie.check("alice", "t1", None, now, "s1")).admitted
    decision = await tie.check("alice", "t1", None, now, "s1")
    assert (decision.admitted, decision.dimension, decision.retry_after_s) == (False, "user_per_server", 1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_four_dimensions_blocked_request_leaves_redis_state_untouched(
    make_engine, redis_url, clock, algorithm: str
) -> None:
    """§4.3 and §6 on Redis with four keys: the keys are where §6 says, and a refusal writes none of them."""
    config = {**four_dimensions("tenant", algorithm), "backend": "redis", "redis_url": redis_url}
    engine = make_engine(config)
    now = clock.at(0.0)
    assert (await engine.check("alice", "t1", "search", now, "srv 1")).admitted
    rc = redis.Redis.from_url(redis_url)
    cfg = parse_config(config)
    keys = [
        state_key("rl", algorithm, "user", cfg.by_user, "alice"),
        key_prefix("rl", algorithm, "user_per_server", cfg.by_user_per_server) + user_server_segment("alice", "srv 1"),
        state_key("rl", algorithm, "tenant", cfg.by_tenant, "t1"),
        state_key("rl", algorithm, "tool", cfg.by_tool["search"], "search"),
    ]
    assert keys[1].endswith(":user_per_server:3/1:{alice}:srv%201")

    def snapshot() -> list[Any]:
        if algorithm == "sliding_window":
            return [rc.zrange(k, 0, -1, withscores=True) for k in keys]
        return [rc.hgetall(k) for k in keys]

    before = snapshot()
    assert all(before), "every dimension consumed on admission"
    for i in range(5):
        assert not (await engine.check("alice", "t1", "search", now + i, "srv 1")).admitted
    assert snapshot() == before
    rc.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_blocked_request_leaves_redis_state_untouched(make_engine, redis_url, clock, algorithm: str) -> None:
    """§4.3 on Redis, by reading the §6 keys: only the admitted request wrote anything."""
    config = {**three_dimensions("tenant", algorithm), "backend": "redis", "redis_url": redis_url}
    engine = make_engine(config)
    now = clock.at(0.0)
    assert (await engine.check("alice", "t1", "search", now)).admitted
    rc = redis.Redis.from_url(redis_url)
    cfg = parse_config(config)
    keys = [
        state_key("rl", algorithm, "user", cfg.by_user, "alice"),
        state_key("rl", algorithm, "tenant", cfg.by_tenant, "t1"),
        state_key("rl", algorithm, "tool", cfg.by_tool["search"], "search"),
    ]

    def snapshot() -> list[Any]:
        if algorithm == "sliding_window":
            return [rc.zrange(k, 0, -1, withscores=True) for k in keys]
        return [rc.hgetall(k) for k in keys]

    before = snapshot()
    assert all(before), "every dimension consumed on admission"
    for i in range(5):
        assert not (await engine.check("alice", "t1", "search", now + i)).admitted
    assert snapshot() == before
    if algorithm == "fixed_window":
        assert [int(h[b"c"]) for h in before] == [1, 1, 1]
    rc.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_blocked_request_leaves_memory_state_untouched(clock, algorithm: str) -> None:
    """§4.3 on the Python memory store, by reading its states."""
    engine = PythonEngine(parse_config(three_dimensions("tool", algorithm)), "aon")
    now = clock.at(0.0)
    assert engine.evaluate("alice", "t1", "search", now).admitted
    states = engine._store.states

    def snapshot() -> dict[str, Any]:
        # Sliding-window logs are deques mutated in place: compare their contents.
        return {k: (v[0], list(v[1])) if algorithm == "sliding_window" else v for k, v in states.items()}

    before = snapshot()
    assert len(before) == 3
    for i in range(5):
        assert not engine.evaluate("alice", "t1", "search", now + i).admitted
    assert snapshot() == before


@pytest.mark.parametrize("algorithm", ["fixed_window", "token_bucket", "sliding_window"])
async def test_blocked_reports_the_largest_retry_after(make_engine, backend_settings, clock, algorithm: str) -> None:
    """§4: blocked by user (1/s) and tenant (1/m): the tenant is reported, so retrying after Retry-After works."""
    engine = make_engine({"by_user": "1/s", "by_tenant": "1/m", "algorithm": algorithm, **backend_settings})
    now = clock.at(0.0)
    assert (await engine.check("alice", "t1", None, now)).admitted
    decision = await engine.check("alice", "t1", None, now)
    assert not decision.admitted
    assert (decision.dimension, decision.limit, decision.retry_after_s) == ("tenant", 1, 60)
    assert (await engine.check("alice", "t1", None, now + 60 * S)).admitted


async def test_blocked_tie_goes_to_the_earliest_dimension(make_engine, backend_settings, clock) -> None:
    """§4: equal retry_after: user before tool."""
    engine = make_engine({"by_user": "1/s", "by_tool": {"search": "1/s"}, **backend_settings})
    now = clock.at(0.0)
    assert (await engine.check("alice", None, "search", now)).admitted
    decision = await engine.check("alice", None, "search", now)
    assert not decision.admitted and decision.dimension == "user"


async def test_blocked_reports_only_refusing_dimensions(make_engine, backend_settings, clock) -> None:
    """§4: a dimension that said ok is never reported for a blocked request, even with less remaining."""
    engine = make_engine({"by_user": "1/s", "by_tenant": "5/s", **backend_settings})
    now = clock.at(0.0)
    assert (await engine.check("alice", "t1", None, now)).admitted
    decision = await engine.check("alice", "t1", None, now)
    assert not decision.admitted and decision.dimension == "user" and decision.remaining == 0


@pytest.mark.parametrize(
    ("config", "request_args", "dimension", "remaining"),
    [
        ({"by_user": "5/s", "by_tenant": "3/s"}, ("alice", "t1", None), "tenant", 2),  # smallest remaining
        ({"by_user": "3/s", "by_tool": {"search": "3/s"}}, ("alice", None, "search"), "user", 2),  # tie: earliest
        ({"by_tenant": "3/s", "by_tool": {"search": "2/s"}}, ("alice", "t1", "search"), "tool", 1),
        ({"by_user": "3/s", "by_tenant": "3/s", "by_tool": {"search": "3/s"}}, ("alice", "t1", "search"), "user", 2),
    ],
)
async def test_admitted_reports_the_smallest_remaining(
    make_engine, backend_settings, clock, config, request_args, dimension, remaining
) -> None:
    engine = make_engine({**config, **backend_settings})
    decision = await engine.check(*request_args, clock.at(0.0))
    assert decision.admitted and (decision.dimension, decision.remaining) == (dimension, remaining)


async def test_dimensions_that_do_not_apply_are_skipped(make_engine, backend_settings, clock) -> None:
    """§5: tenant None skips the tenant; a tool not in by_tool skips the tool; nothing left: admitted, no headers."""
    engine = make_engine({"by_tenant": "1/s", "by_tool": {"search": "1/s"}, **backend_settings})
    now = clock.at(0.0)
    assert await engine.check("alice", None, None, now) == NO_LIMIT
    assert await engine.check("alice", None, "other", now) == NO_LIMIT
    for _ in range(3):
        assert (await engine.check("alice", None, None, now)).admitted
    first = await engine.check("alice", "t1", "other", now)
    assert first.admitted and first.dimension == "tenant"
    assert not (await engine.check("bob", "t1", "other", now)).admitted  # the tenant is shared by its users


def test_reported_index_rules() -> None:
    """§4 selection, directly."""
    # blocked: largest retry among ok=False; ties -> earliest
    assert reported_index(False, [False, False, True], [0, 0, 9], [5, 7, 0]) == 1
    assert reported_index(False, [False, True, False], [0, 0, 0], [7, 0, 7]) == 0
    assert reported_index(False, [True, True, False], [0, 0, 0], [0, 0, 1]) == 2
    # admitted: smallest remaining; ties -> earliest
    assert reported_index(True, [True, True, True], [4, 2, 2], [0, 0, 0]) == 1
    assert reported_index(True, [True, True], [3, 3], [0, 0]) == 0
    with pytest.raises(ValueError):
        reported_index(False, [True, True], [1, 1], [0, 0])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memory_evaluation_is_atomic_across_threads(make_engine_sync, clock, algorithm: str) -> None:
    """§4: check and consume are one step; 8 threads x 50 requests at one instant admit exactly the limit."""
    engine = make_engine_sync(
        {"by_user": "100/m", "by_tenant": "60/m", "by_tool": {"search": "80/m"}, "algorithm": algorithm}
    )
    now = clock.at(0.0)
    admitted = [0] * 8
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            if engine.evaluate("alice", "t1", "search", now).admitted:
                admitted[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 60


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_redis_evaluation_is_atomic_under_concurrency(make_engine, redis_url, clock, algorithm: str) -> None:
    """§4 on Redis: 200 concurrent requests at one instant admit exactly the tightest limit."""
    engine = make_engine(
        {
            "by_user": "100/m",
            "by_tenant": "60/m",
            "algorithm": algorithm,
            "backend": "redis",
            "redis_url": redis_url,
            "redis_timeout_ms": 5000,
            "redis_connect_timeout_ms": 5000,
        }
    )
    now = clock.at(0.0)
    decisions = await asyncio.gather(*(engine.check("alice", "t1", None, now) for _ in range(200)))
    assert sum(d.admitted for d in decisions) == 60


@pytest.mark.parametrize(
    ("user", "tenant", "now_us"),
    [
        ("", "t1", 0),  # the caller normalises a missing user to "anonymous" (§5)
        (None, "t1", 0),
        ("alice", "", 0),  # no tenant is None, not ""
        ("alice", 42, 0),
        ("alice", "t1", -5),
        ("alice", "t1", 1.8e15),  # floats would break the integer µs arithmetic (§2)
        ("alice", "t1", (1 << 52) + 1),
    ],
)
def test_bad_arguments_fail_before_any_state_changes(user, tenant, now_us) -> None:
    engine = PythonEngine(parse_config({"by_user": "5/s", "by_tenant": "5/s"}), "bad-input")
    with pytest.raises(ValueError):
        engine.evaluate(user, tenant, None, now_us)
    assert len(engine._store) == 0

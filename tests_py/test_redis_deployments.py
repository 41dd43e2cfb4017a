"""The Python engine on Redis Sentinel and Redis Cluster (docs/semantics.md §11), real local deployments.

Decisions on a Cluster, with a request's dimensions on three different
primaries, equal the decisions on one Redis for the same requests and
clocks; a Sentinel failover is followed.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from typing import Any

import pytest
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine import EngineError
from rate_limiter_go.engine_python.engine import PythonEngine
from rate_limiter_go.engine_python.redis_cluster import key_slot
from support.redis_cluster import SENTINEL_MASTER, RedisCluster, RedisSentinel

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")








def _config(algorithm: str, url: str, prefix: str, **extra: Any) -> Any:
    return parse_config({
        "backend": "redis", "redis_url": url, "redis_key_prefix": prefix, "algorithm": algorithm,
        "by_user": "4/s", "by_tenant": "6/s", "by_tool": {"search": "3/s", "fetch": "5/s"},
        "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000,
        # §12 off: a Cluster with three dimensions remembers no refusal, and a local
        # refusal reports only the keys it remembers (tests_py/test_local_refusals.py).
        "redis_blocked_max_keys": 0, **extra,
    })


@pytest.mark.parametrize("deployment", ["cluster", "sentinel"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_deployment_decides_as_one_redis(
    request: pytest.FixtureRequest, redis_url: str, algorithm: str, deployment: str
) -> None:
    """§11: on a Cluster (dimensions on different primaries) and on Sentinel, the same requests at the
    same times get the same answers as on one Redis."""
    rng = random.Random(algorithm)
    users = ["alice", "bob", "carol"]
    tenants = [None, "t1", "t2"]
    tools = [None, "search", "fetch"]
    # Explicit clocks ahead of the real one: state expires by Redis's own clock (PEXPIREAT), and
    # both runs must see it alive. Times only move forward, as the cluster clock does (§11.1).
    now = time.time_ns() // 1000 + 300_000_000
    requests = []
    for _ in range(120):
        now += rng.randrange(0, 90_000)
        requests.append((rng.choice(users), rng.choice(tenants), rng.choice(tools), now))

    async def decide(config: Any) -> list:
        engine = PythonEngine(config, "deploy")
        try:
            return [await engine.check(u, t, tool, now) for u, t, tool, now in requests]
        finally:
            await engine.close()

    prefix = "d" + uuid.uuid4().hex[:8]
    if deployment == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        extra: dict[str, Any] = {"redis_mode": "cluster"}
        url = cluster.url
    else:
        sentinel: RedisSentinel = request.getfixturevalue("redis_sentinel")
        extra = {"redis_mode": "sentinel", "redis_sentinels": sentinel.sentinel_addrs,
                 "redis_sentinel_master": SENTINEL_MASTER}
        url = "redis://ignored.invalid:1/0"
    one = asyncio.run(decide(_config(algorithm, redis_url, prefix)))
    deployed = asyncio.run(decide(_config(algorithm, url, prefix, **extra)))
    assert deployed == one
    assert any(not d.admitted for d in one) and any(d.admitted for d in one)


def test_cluster_groups_span_primaries(redis_cluster: RedisCluster) -> None:
    """The test above is only meaningful if a request's keys sit on several primaries."""
    keys = ["rl:fw:user:4/1:{alice}", "rl:fw:tenant:6/1:{t1}", "rl:fw:tool:3/1:{search}"]
    assert len({key_slot(k) for k in keys}) == 3
    assert len({redis_cluster.primary_for(k).port for k in keys}) >= 2


def _spread_identities(redis_cluster: RedisCluster) -> tuple[str, str, str]:
    """A user and a tenant whose keys sit on two primaries other than tool "search"'s and each other's."""
    tool = "search"
    used = {redis_cluster.primary_for(f"{{{tool}}}").port}  # a key's slot is its identity's, the hash tag (§6)

    def pick(stem: str) -> str:
        for i in range(1000):
            name = f"{stem}{i}"
            port = redis_cluster.primary_for(f"{{{name}}}").port
            if port not in used:
                used.add(port)
                return name
        raise AssertionError("no identity found on a free primary")

    return pick("u"), pick("t"), tool


def test_cluster_refusal_consumes_nothing_under_concurrency(redis_cluster: RedisCluster) -> None:
    """Three dimensions on three primaries, 200 concurrent requests: never more than the tightest
    limit admitted, and every counter settles to the admitted count (a refusal consumed nothing once
    its give-back landed). Refusals in flight may hold units and refuse others meanwhile (§11.1,
    Bounds); requests one at a time afterwards admit exactly the rest of the limit."""
    prefix = "c" + uuid.uuid4().hex[:8]
    user, tenant, tool = _spread_identities(redis_cluster)
    config = parse_config({
        "backend": "redis", "redis_url": redis_cluster.url, "redis_key_prefix": prefix, "redis_mode": "cluster",
        "by_user": "50/h", "by_tenant": "30/h", "by_tool": {"search": "40/h"},
        "redis_timeout_ms": 5000, "redis_connect_timeout_ms": 5000,
    })

    async def scenario() -> tuple[int, int, int]:
        engine = PythonEngine(config, "conc")
        try:
            burst = sum(d.admitted for d in await asyncio.gather(*(engine.check(user, tenant, tool) for _ in range(200))))
            counts = []
            import redis

            client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
            try:
                for dimension, rate, identity in (("user", "50/3600", user), ("tenant", "30/3600", tenant),
                                                  ("tool", "40/3600", tool)):
                    counts.append(int(client.hget(f"{prefix}:fw:{dimension}:{rate}:{{{identity}}}", "c")))
            finally:
                client.close()
            assert counts == [burst] * 3
            after = sum([(await engine.check(user, tenant, tool)).admitted for _ in range(40)])
            assert engine._redis is not None and engine._redis.give_backs_lost == 0
            return burst, after, len(counts)
        finally:
            await engine.close()

    burst, after, _ = asyncio.run(scenario())
    assert burst <= 30  # possibly 0: refusals in flight hold units and refuse one another (§11.1, Bounds)
    assert burst + after == 30


def test_sentinel_limits_and_follows_a_failover(redis_sentinel: RedisSentinel) -> None:
    config = parse_config({
        "backend": "redis", "redis_url": "redis://ignored.invalid:1/0", "redis_key_prefix": "s" + uuid.uuid4().hex[:8],
        "redis_mode": "sentinel", "redis_sentinels": redis_sentinel.sentinel_addrs, "redis_sentinel_master": SENTINEL_MASTER,
        "by_user": "3/h", "redis_timeout_ms": 1000, "redis_connect_timeout_ms": 1000, "redis_breaker_cooldown_ms": 200,
    })

    async def scenario() -> None:
        engine = PythonEngine(config, "sentinel")
        try:
            assert [(await engine.check("alice", None, None)).admitted for _ in range(4)] == [True] * 3 + [False]
            new_port = await asyncio.to_thread(redis_sentinel.failover)
            promoted = time.monotonic()
            # Enforcement has resumed when a decision is written to the new primary. Until the
            # sentinels demote the old primary it still takes writes (Sentinel's known window:
            # those writes are lost); then it answers READONLY and the client asks the sentinels.
            with redis_sentinel.node(new_port).client() as new_primary:
                for attempt in range(10_000):
                    user = f"bob{attempt}"
                    try:
                        decision = await engine.check(user, None, None)
                    except EngineError:
                        decision = None
                    if decision is not None and new_primary.exists(f"{config.redis_key_prefix}:fw:user:3/3600:{{{user}}}"):
                        break
                    assert time.monotonic() - promoted < 10, "no decision on the new primary 10 s after the failover"
                    await asyncio.sleep(0.02)
            resumed_s = time.monotonic() - promoted
            print(f"sentinel failover: decisions on the new primary {resumed_s:.2f} s after its promotion")
            assert decision.admitted
            assert resumed_s < 2 + config.redis_breaker_cooldown_ms / 1000
        finally:
            await engine.close()

    asyncio.run(scenario())


@pytest.mark.skipif(
    os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() == "python",
    reason="builds both engines itself; it runs in the RATE_LIMITER_ENGINE=go (or auto) pass",
)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_go_and_python_share_counters_on_cluster(redis_cluster: RedisCluster, algorithm: str) -> None:
    """§11: a Go and a Python instance on one Cluster count together, request by request, as one
    engine on one Redis does: alternating engines give the single-engine answers."""
    from support.go_helpers import require_go_engine

    go_engine_class = require_go_engine()
    prefix = "x" + uuid.uuid4().hex[:8]
    config = _config(algorithm, redis_cluster.url, prefix, redis_mode="cluster")
    # At the start of a second (the limits are per second), 300 s ahead: the 8 requests, 7 ms apart
    # in all, fall in one fixed window (an unaligned start crossed a boundary once in CI: 4 admitted).
    now = (time.time_ns() // 1_000_000_000 + 300) * 1_000_000
    requests = [("alice", "t1", "search", now + i * 1000) for i in range(8)]

    async def alternate() -> list:
        go, py = go_engine_class(config, "mix"), PythonEngine(config, "mix")
        try:
            return [await (go if i % 2 else py).check(*r) for i, r in enumerate(requests)]
        finally:
            await go.close()
            await py.close()

    async def alone() -> list:
        py = PythonEngine(_config(algorithm, redis_cluster.url, prefix + "one", redis_mode="cluster"), "one")
        try:
            return [await py.check(*r) for r in requests]
        finally:
            await py.close()

    mixed, single = asyncio.run(alternate()), asyncio.run(alone())
    assert mixed == single
    assert [d.admitted for d in single] == [True] * 3 + [False] * 5  # the tool's 3/s binds


def test_cluster_reloads_flushed_scripts(redis_cluster: RedisCluster) -> None:
    """SCRIPT FLUSH on every node (the script cache is not replicated: a failover looks like this): the
    next request loads the scripts again, the refused one's give-back too, and counts carry on."""
    prefix = "f" + uuid.uuid4().hex[:8]
    config = _config("sliding_window", redis_cluster.url, prefix, redis_mode="cluster")

    async def scenario() -> list:
        engine = PythonEngine(config, "flush")
        try:
            remaining = []
            for i in range(4):
                if i == 2:
                    for node in redis_cluster.nodes:
                        with node.client() as c:
                            c.script_flush()
                remaining.append((await engine.check("alice", "t1", "search")).remaining)
            assert engine._redis is not None and engine._redis.give_backs_lost == 0
            return remaining
        finally:
            await engine.close()

    assert asyncio.run(scenario()) == [2, 1, 0, 0]  # the tool's 3/s reports, then refuses
    import redis

    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        assert client.zcard(f"{prefix}:sw:user:4/1:{{alice}}") == 3  # the refused request was given back
    finally:
        client.close()

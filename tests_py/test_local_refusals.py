"""§12 remembered refusals: a client that keeps calling while refused costs Redis nothing,
and a local refusal is always one Redis would give.

The engine-level tests run on the engine of the pass (RATE_LIMITER_ENGINE) against a
private redis-server; Redis's own INFO commandstats counts the commands.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis
from rate_limiter_go.config import INT_SETTINGS, ConfigError, parse_config
from rate_limiter_go.engine_python.blocked import DRIFT_DIVISOR, SWEEP_EVERY_NS, BlockedCache
from rate_limiter_go.engine_python.redis_backend import blocked_max_keys_of

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
SLOW_OK = {"redis_timeout_ms": 5000, "redis_connect_timeout_ms": 5000}


def total_commands(url: str) -> int:
    with redis.Redis.from_url(url) as rc:
        return sum(v["calls"] for v in rc.info("commandstats").values())


# -- the cache alone ------------------------------------------------------------

SENT_NS, RECEIVED_NS = 1_000_000_000, 1_002_000_000  # a 2 ms round trip
REPLY_NOW_US, WAIT_US = 5_000_000_000_000, 3_000_000  # Redis clock; a 3 s wait
EXPIRES_NS = SENT_NS + (WAIT_US - WAIT_US // DRIFT_DIVISOR) * 1000


def refused_reply(*outcomes: tuple[int, int]) -> list[int]:
    """A blocked §9 reply at REPLY_NOW_US; per key (retry_after_us, reset_at_us), retry 0 = admitting."""
    reply = [0, REPLY_NOW_US]
    for retry, reset in outcomes:
        reply += (0, 0, reset, retry) if retry else (1, 2, reset, 0)
    return reply


@pytest.mark.parametrize(
    ("at_ns", "want_retry_us"),
    [
        (RECEIVED_NS, WAIT_US),
        (RECEIVED_NS + 1_000_000_000, WAIT_US - 1_000_000 + 1_000),  # a second less, plus the drift allowance
        (EXPIRES_NS - 1, None),  # still blocked; checked against the bound below
        (EXPIRES_NS, 0),  # Redis may admit by now: ask it
        (EXPIRES_NS + 10**10, 0),
    ],
)
def test_cache_follows_redis_time_on_the_monotonic_clock(at_ns: int, want_retry_us: int | None) -> None:
    cache = BlockedCache(10, clock_ns=lambda: at_ns)
    keys, limits = ["k"], [("1", "3600000000")]
    cache.record(keys, refused_reply((WAIT_US, REPLY_NOW_US + WAIT_US)), SENT_NS, RECEIVED_NS)
    reply = cache.answer(keys, limits, 0)
    if want_retry_us == 0:
        assert reply is None and len(cache) == 0  # expired entries are dropped when looked up
        return
    assert reply is not None and reply[:3] == [0, reply[1], 0] and reply[4] == REPLY_NOW_US + WAIT_US
    retry = reply[5]
    if want_retry_us is not None:
        assert retry == want_retry_us
    assert retry >= WAIT_US - (at_ns - RECEIVED_NS) // 1000  # never shorter than the wait Redis may still ask


@pytest.mark.parametrize(
    ("now_us", "blocked"),
    [(REPLY_NOW_US, True), (REPLY_NOW_US + WAIT_US - 1, True), (REPLY_NOW_US + WAIT_US, False), (REPLY_NOW_US - 1, False)],
)
def test_cache_with_an_explicit_clock_answers_as_the_script(now_us: int, blocked: bool) -> None:
    cache = BlockedCache(10, clock_ns=lambda: 0)
    cache.record(["k"], refused_reply((WAIT_US, REPLY_NOW_US + WAIT_US)), 0, 0)
    reply = cache.answer(["k"], [("3", "1000000")], now_us)
    assert (reply is not None) == blocked
    if blocked:
        assert reply == [0, now_us, 0, 0, REPLY_NOW_US + WAIT_US, REPLY_NOW_US + WAIT_US - now_us]
    assert len(cache) == 1  # an explicit clock may go back: the entry stays


def test_cache_reports_only_remembered_keys() -> None:
    cache = BlockedCache(10, clock_ns=lambda: 0)
    keys, limits = ["user", "tenant", "tool"], [("5", "1000000"), ("7", "1000000"), ("9", "1000000")]
    now = REPLY_NOW_US
    cache.record(keys, refused_reply((0, now + 10**6), (300_000, now + 300_000), (700_000, now + 700_000)), 0, 0)
    assert len(cache) == 2
    reply = cache.answer(keys, limits, now + 100_000)
    assert reply == [0, now + 100_000, 1, 5, 0, 0, 0, 0, now + 300_000, 200_000, 0, 0, now + 700_000, 600_000]
    assert cache.answer(keys[:1], limits[:1], now + 100_000) is None
    assert cache.local_refusals == 1


def test_cache_ignores_admitting_and_malformed_replies() -> None:
    cache = BlockedCache(10, clock_ns=lambda: 0)
    cache.record(["k"], [1, REPLY_NOW_US, 1, 0, REPLY_NOW_US + 1, 0], 0, 0)
    cache.record(["k"], [0, REPLY_NOW_US, 0], 0, 0)
    cache.record(["k"], "not a reply", 0, 0)  # type: ignore[arg-type]
    assert len(cache) == 0


def test_cache_bound_and_sweep() -> None:
    mono = [0]
    cache = BlockedCache(3, clock_ns=lambda: mono[0])

    def refuse(key: str, wait_us: int) -> None:
        cache.record([key], refused_reply((wait_us, REPLY_NOW_US + wait_us)), mono[0], mono[0])

    for i in range(3):
        refuse(f"live{i}", 3_600_000_000)
    mono[0] += 2 * SWEEP_EVERY_NS  # a sweep is due, but every entry is live
    refuse("short", 1_000)
    assert len(cache) == 3 and cache.answer(["short"], [("1", "1")], 0) is None
    cache._entries["live0"] = cache._entries["live0"].__class__(0, 1, 1, 0, mono[0])  # expired now
    refuse("next", 1_000)  # within a second of the last sweep: no room
    assert cache.answer(["next"], [("1", "1")], 0) is None
    mono[0] += 2 * SWEEP_EVERY_NS
    refuse("next", 5_000_000)
    assert len(cache) == 3 and cache.answer(["next"], [("1", "1")], 0) is not None


@pytest.mark.parametrize("bad", [-1, INT_SETTINGS["redis_blocked_max_keys"].hi + 1, "10", True, 1.5])
def test_setting_is_validated_at_init(bad: Any) -> None:
    with pytest.raises(ConfigError, match="redis_blocked_max_keys"):
        parse_config({"by_user": "1/s", "backend": "redis", "redis_url": "redis://x", "redis_blocked_max_keys": bad})


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ({}, 10_000),
        ({"redis_blocked_max_keys": 0}, 0),
        ({"redis_mode": "cluster"}, 10_000),  # by_user alone: one key per request
        ({"redis_mode": "cluster", "by_tool": {"a": "1/s", "b": "2/s"}, "by_user": None}, 10_000),
        ({"redis_mode": "cluster", "by_tenant": "1/s"}, 0),  # two dimensions: give-backs
        ({"redis_mode": "cluster", "by_user_per_server": "1/s"}, 0),
    ],
)
def test_cluster_remembers_only_with_one_dimension(raw: dict[str, Any], want: int) -> None:
    config = parse_config({"by_user": "1/s", "backend": "redis", "redis_url": "redis://x:1", **raw})
    assert blocked_max_keys_of(config) == want


# -- through the engine of this pass, on a real Redis ------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_refused_client_costs_redis_almost_nothing(make_engine, redis_url: str, algorithm: str) -> None:
    """At most 0.05 Redis commands per refused request while the client is blocked (the issue's bound)."""
    engine = make_engine({"by_user": "3/h", "backend": "redis", "redis_url": redis_url, "algorithm": algorithm, **SLOW_OK})
    assert (await engine.check("abuser", None, None)).admitted  # connections and script loaded
    before = total_commands(redis_url)
    calls = 1000
    decisions = [await engine.check("abuser", None, None) for _ in range(calls)]
    spent = total_commands(redis_url) - before - 2  # the two INFO calls
    refused = sum(not d.admitted for d in decisions)
    assert refused == calls - 2  # 3 per hour, one spent above
    assert spent / refused <= 0.05, f"{spent} Redis commands for {refused} refused requests"
    assert all(d.retry_after_s > 0 and d.remaining == 0 for d in decisions if not d.admitted)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_waiting_the_retry_after_is_admitted(make_engine, redis_url: str, algorithm: str) -> None:
    """A remembered refusal never outlives Redis's: after the announced Retry-After, admitted."""
    engine = make_engine({"by_user": "1/s", "backend": "redis", "redis_url": redis_url, "algorithm": algorithm, **SLOW_OK})
    decisions = [await engine.check("u", None, None) for _ in range(3)]  # admitted, refused, refused locally
    assert [d.admitted for d in decisions] == [True, False, False]
    await asyncio.sleep(decisions[-1].retry_after_s)
    assert (await engine.check("u", None, None)).admitted


@pytest.mark.parametrize("dims", ["user", "user+tenant+tool"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_local_refusals_are_redis_refusals(make_engine, redis_url: str, algorithm: str, dims: str) -> None:
    """The same requests at the same explicit times with local refusals on and off: the same
    verdicts; a local refusal's Retry-After is never beyond Redis's and, when it reports the same
    dimension, every header agrees; with one dimension the answers are identical."""
    rng = random.Random(f"{algorithm}{dims}")
    raw = {"by_user": "4/s", "backend": "redis", "redis_url": redis_url, "algorithm": algorithm, **SLOW_OK}
    if dims != "user":
        raw.update(by_tenant="6/s", by_tool={"search": "3/s", "fetch": "5/s"})
    now = 1_900_000_000_000_000
    steps = []
    for _ in range(300):
        now += rng.randrange(30_000)
        steps.append((rng.choice(["alice", "bob"]), rng.choice([None, "t1"]), rng.choice([None, "search", "fetch"]), now))
    on = make_engine({**raw, "redis_key_prefix": f"on{rng.randrange(10**9)}"})
    off = make_engine({**raw, "redis_key_prefix": f"off{rng.randrange(10**9)}", "redis_blocked_max_keys": 0})
    before = total_commands(redis_url)
    got = [await on.check(u, t, tool, n) for u, t, tool, n in steps]
    spent_on = total_commands(redis_url) - before
    want = [await off.check(u, t, tool, n) for u, t, tool, n in steps]
    spent_off = total_commands(redis_url) - before - spent_on
    blocked = sum(not w.admitted for w in want)
    assert blocked >= 20, "the sequence tests nothing"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.admitted == w.admitted, (i, steps[i], g, w)
        if dims == "user" or g.dimension == w.dimension:
            assert g == w, (i, steps[i], g, w)
        if not g.admitted:
            assert g.retry_after_s <= w.retry_after_s, (i, g, w)
    assert spent_on < spent_off, (spent_on, spent_off)  # some refusals were answered without Redis


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_remembered_refusal_is_answered_without_waiting(make_engine, redis_url: str, algorithm: str) -> None:
    """A refusal answered from memory needs no I/O, so check() returns it without suspending:
    the coroutine finishes on its first step (the Go engine does not hand it to a goroutine).
    A request that reaches Redis suspends at least once, so this fails if the refusal did."""
    engine = make_engine({"by_user": "1/h", "backend": "redis", "redis_url": redis_url, "algorithm": algorithm, **SLOW_OK})
    assert (await engine.check("u", None, None)).admitted
    refused = await engine.check("u", None, None)  # asks Redis, which refuses and is remembered
    assert not refused.admitted
    step = engine.check("u", None, None)
    with pytest.raises(StopIteration) as done:
        step.send(None)  # a coroutine that suspended would return the future it waits for instead
    local = done.value.value
    assert not local.admitted and local.dimension == "user" and 0 < local.retry_after_s <= refused.retry_after_s

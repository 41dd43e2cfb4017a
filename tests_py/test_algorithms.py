"""§3 algorithms: every worked example, window edges, rounding, refill, on memory and on Redis.

Three levels, same expectations:

* one key through ``engine_python.algorithms`` (the memory state functions);
* one key through the Redis script (``RedisBackend.run``, raw µs reply, §9);
* the engine RATE_LIMITER_ENGINE selects (``make_engine``), memory and Redis
  backends, as Decisions in header units (§7).

Times are explicit (``clock``, §2), starting at an epoch aligned to every window.
The last section drives the sliding-window script alone with a clock that steps back.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine import Decision
from rate_limiter_go.engine_python.algorithms import ALGORITHMS, ceil_div
from rate_limiter_go.engine_python.redis_backend import RedisBackend
from rate_limiter_go.scripts import script_text

S = 1_000_000  # µs per second

# Rows: (t in s, admitted, remaining, reset_at in s, retry_after in µs), relative to the clock's start.
WORKED_EXAMPLES: dict[str, tuple[str, list[tuple[float, bool, int, float, int]]]] = {
    # §3.1, 3/s
    "fixed_window": (
        "3/s",
        [
            (10.0, True, 2, 11.0, 0),
            (10.2, True, 1, 11.0, 0),
            (10.4, True, 0, 11.0, 0),
            (10.6, False, 0, 11.0, 400_000),
            (11.0, True, 2, 12.0, 0),
        ],
    ),
    # §3.2, 2/s
    "sliding_window": (
        "2/s",
        [
            (0.0, True, 1, 1.0, 0),
            (0.5, True, 0, 1.0, 0),
            (0.7, False, 0, 1.0, 300_000),
            (1.0, True, 0, 1.5, 0),  # the 0.0 entry stops counting at exactly 1.0
            (1.2, False, 0, 1.5, 300_000),
        ],
    ),
    # §3.3, 2/s
    "token_bucket": (
        "2/s",
        [
            (0.0, True, 1, 0.5, 0),
            (0.0, True, 0, 1.0, 0),
            (0.0, False, 0, 1.0, 500_000),
            (0.25, False, 0, 1.0, 250_000),
            (0.5, True, 0, 1.5, 0),
        ],
    ),
}

RATES = {"3/s": (3, S), "2/s": (2, S)}

Outcome = tuple[bool, int, int, int]  # admitted, remaining, reset_at_us, retry_after_us
Requester = Callable[[int], Awaitable[Outcome]]


class MemoryKey:
    """One key driven through the algorithm functions, as the memory store does (check, then admit or refuse)."""

    def __init__(self, algorithm: str, limit: int, window_us: int) -> None:
        self.algo = ALGORITHMS[algorithm]
        self.limit, self.window_us = limit, window_us
        self.state: Any = None

    async def __call__(self, now_us: int) -> Outcome:
        probe = self.algo.check(self.state, now_us, self.limit, self.window_us)
        if probe[0]:
            self.state, remaining, reset_at = self.algo.admit(self.state, probe, now_us, self.limit, self.window_us)
            return True, remaining, reset_at, 0
        remaining, reset_at, retry = self.algo.refuse(probe, now_us, self.limit, self.window_us, True)
        return False, remaining, reset_at, retry


class RedisKey:
    """One key driven through the §9 script with an explicit now (ARGV[1])."""

    def __init__(self, url: str, algorithm: str, limit: int, window_us: int) -> None:
        config = parse_config(
            {"by_user": "1/s", "algorithm": algorithm, "backend": "redis", "redis_url": url, "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}
        )
        self.backend = RedisBackend(config)
        self.key = f"rl:test:{algorithm}:{limit}/{window_us}"
        self.argv = (str(limit), str(window_us))

    async def __call__(self, now_us: int) -> Outcome:
        reply = await self.backend.run([self.key], [self.argv], now_us)
        assert reply[1] == now_us  # the override was used, not Redis TIME
        return reply[0] == 1, reply[3], reply[4], reply[5]


@pytest.fixture(params=["memory", "redis"])
async def single_key(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[str, int, int], Requester]]:
    """A factory (algorithm, limit, window_us) -> async requester for one key on the parametrised level."""
    made: list[RedisKey] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    def make(algorithm: str, limit: int, window_us: int) -> Requester:
        if request.param == "memory":
            return MemoryKey(algorithm, limit, window_us)
        key = RedisKey(url, algorithm, limit, window_us)
        made.append(key)
        return key

    yield make
    for key in made:
        await key.backend.close()


@pytest.mark.parametrize("algorithm", sorted(WORKED_EXAMPLES))
async def test_worked_example_in_microseconds(single_key, clock, algorithm: str) -> None:
    """§3.1, §3.2, §3.3 tables, exactly, in µs."""
    rate, rows = WORKED_EXAMPLES[algorithm]
    request = single_key(algorithm, *RATES[rate])
    for t, admitted, remaining, reset_s, retry_us in rows:
        got = await request(clock.at(t))
        assert got == (admitted, remaining, clock.start_us + round(reset_s * S), retry_us), f"t={t}"


@pytest.fixture(params=["memory", "redis"])
def backend_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend": "memory"}
    return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}


@pytest.mark.parametrize("algorithm", sorted(WORKED_EXAMPLES))
async def test_worked_example_as_decisions(make_engine, backend_settings, clock, algorithm: str) -> None:
    """The same tables through the selected engine: §7 units (reset rounded up, Retry-After >= 1 and rounded up)."""
    rate, rows = WORKED_EXAMPLES[algorithm]
    limit = RATES[rate][0]
    engine = make_engine({"by_user": rate, "algorithm": algorithm, **backend_settings})
    start_s = clock.start_us // S
    for t, admitted, remaining, reset_s, retry_us in rows:
        decision = await engine.check("alice@example.com", None, None, clock.at(t))
        expected = Decision(
            admitted=admitted,
            dimension="user",
            limit=limit,
            remaining=remaining,
            reset_at_unix=start_s + ceil_div(round(reset_s * S), S),
            retry_after_s=0 if admitted else max(1, ceil_div(retry_us, S)),
        )
        assert decision == expected, f"t={t}"


async def test_fixed_window_edges_exactly(single_key, clock) -> None:
    """§3.1: windows aligned to the epoch; the last µs of a window is still that window."""
    request = single_key("fixed_window", 1, S)
    assert await request(clock.at(5.0)) == (True, 0, clock.start_us + 6 * S, 0)
    assert await request(clock.at(6.0, us=-1)) == (False, 0, clock.start_us + 6 * S, 1)
    assert await request(clock.at(6.0)) == (True, 0, clock.start_us + 7 * S, 0)


async def test_sliding_window_entry_stops_counting_at_exactly_t_plus_w(single_key, clock) -> None:
    """§3.2: an entry admitted at t counts while t > now - W."""
    request = single_key("sliding_window", 1, S)
    admitted_at = clock.at(3.3)
    assert await request(admitted_at) == (True, 0, admitted_at + S, 0)
    assert await request(admitted_at + S - 1) == (False, 0, admitted_at + S, 1)
    assert await request(admitted_at + S) == (True, 0, admitted_at + 2 * S, 0)


async def test_sliding_window_requests_at_one_instant_are_separate_entries(single_key, clock) -> None:
    """§3.2: several requests may share one now_us; each is its own entry (Redis member '<now>:<count>')."""
    request = single_key("sliding_window", 3, S)
    now = clock.at(1.0)
    assert [await request(now) for _ in range(4)] == [
        (True, 2, now + S, 0),
        (True, 1, now + S, 0),
        (True, 0, now + S, 0),
        (False, 0, now + S, S),
    ]


async def test_token_bucket_retry_after_is_exact(single_key, clock) -> None:
    """§3.3: retry_after = ceil_div(W - scaled, L); one µs earlier is still refused, then admitted."""
    request = single_key("token_bucket", 3, S)
    now = clock.at(0.0)
    for expected_remaining in (2, 1, 0):
        assert (await request(now))[:2] == (True, expected_remaining)
    admitted, remaining, reset_at, retry = await request(now)
    assert (admitted, remaining, reset_at, retry) == (False, 0, now + S, ceil_div(S, 3))
    assert retry == 333_334
    assert (await request(now + retry - 1))[0] is False
    assert (await request(now + retry))[0] is True


async def test_token_bucket_keeps_refilling_under_frequent_calls(single_key, clock) -> None:
    """§3.3 and the facts.md fault: refused calls every 1 ms must not stop the refill (10/s: one token per 100 ms)."""
    request = single_key("token_bucket", 10, S)
    start = clock.at(0.0)
    for _ in range(10):
        assert (await request(start))[0] is True
    outcomes = [await request(start + ms * 1000) for ms in range(1, 101)]
    assert all(not o[0] for o in outcomes[:99]), "refused before a whole token refilled"
    assert [o[3] for o in outcomes[:3]] == [99_000, 98_000, 97_000]  # retry_after shrinks as tokens refill
    assert outcomes[99] == (True, 0, start + 100_000 + S, 0), "one token must have refilled at exactly 100 ms"


async def test_token_bucket_refill_is_capped_at_capacity(single_key, clock) -> None:
    """§3.3: elapsed is clamped to W and the level to L*W; a long idle bucket is just full."""
    request = single_key("token_bucket", 2, S)
    assert (await request(clock.at(0.0)))[:2] == (True, 1)
    outcome = await request(clock.at(3600.0))
    assert outcome == (True, 1, clock.now_us + S // 2, 0)


@pytest.mark.parametrize("algorithm", sorted(WORKED_EXAMPLES))
async def test_refused_requests_consume_nothing(single_key, clock, algorithm: str) -> None:
    """§3: 'Not admitted: nothing is written'. A hundred refusals leave the next admission where it was."""
    request = single_key(algorithm, 2, S)
    now = clock.at(0.0)
    assert (await request(now))[0] and (await request(now))[0]
    refusals = [await request(now + i) for i in range(100)]
    assert not any(o[0] for o in refusals)
    # All three algorithms admit again at exactly +W... and token bucket already at +W/2 (one token).
    first_again = now + (S // 2 if algorithm == "token_bucket" else S)
    assert (await request(first_again - 1))[0] is False
    assert (await request(first_again))[0] is True


@pytest.mark.parametrize(
    ("rate", "blocked_at_s", "retry_after_s"),
    [
        ("1/m", 0.5, 60),  # 59.5 s rounds up to 60
        ("1/m", 58.9, 2),  # 1.1 s rounds UP to 2, never down to 1 (facts.md fault)
        ("1/m", 59.999999, 1),  # 1 µs left: Retry-After is at least 1
        ("1/s", 0.6, 1),  # 0.4 s -> 1
    ],
)
async def test_fixed_window_retry_after_rounds_up(
    make_engine, backend_settings, clock, rate, blocked_at_s, retry_after_s
):
    """§7: Retry-After = max(1, ceil(retry_after_us / 1e6)); a client waiting that long is never early."""
    engine = make_engine({"by_user": rate, "algorithm": "fixed_window", **backend_settings})
    assert (await engine.check("bob", None, None, clock.at(0.0))).admitted
    decision = await engine.check("bob", None, None, clock.at(blocked_at_s))
    assert not decision.admitted
    assert decision.retry_after_s == retry_after_s
    assert (await engine.check("bob", None, None, clock.now_us + retry_after_s * S)).admitted


async def test_redis_uses_redis_time_without_override(redis_url: str) -> None:
    """§2: with now_us = 0 the script reads Redis TIME (reply[1] is Redis's clock, within a few seconds of ours)."""
    import time

    request = RedisKey(redis_url, "fixed_window", 5, S)
    try:
        reply = await request.backend.run([request.key], [request.argv], 0)
    finally:
        await request.backend.close()
    assert abs(reply[1] - time.time_ns() // 1000) < 5 * S
    assert reply[0] == 1 and reply[3] == 4


@pytest.mark.parametrize("algorithm", sorted(WORKED_EXAMPLES))
@pytest.mark.parametrize(("limit", "window_us"), [(1, S), (3, S), (5, 60 * S), (1000, 3600 * S)])
async def test_memory_functions_and_redis_script_agree_to_the_microsecond(
    redis_url, clock, algorithm, limit, window_us
) -> None:
    """§3: the Python algorithms and the Lua script give identical µs answers on random request sequences."""
    rng = random.Random(limit)
    memory_key = MemoryKey(algorithm, limit, window_us)
    redis_key = RedisKey(redis_url, algorithm, limit, window_us)
    try:
        now = clock.at(0.0)
        for step in range(max(400, 3 * limit)):
            # Bursts at one instant, small steps, and jumps landing exactly on window multiples.
            now += rng.choice([0, 0, 1, 999, rng.randrange(window_us // 4), window_us - now % window_us, window_us])
            assert await memory_key(now) == await redis_key(now), f"step {step}"
    finally:
        await redis_key.backend.close()


@pytest.mark.parametrize("algorithm", sorted(WORKED_EXAMPLES))
async def test_memory_and_redis_engines_agree_on_three_dimensions(make_engine, redis_url, clock, algorithm) -> None:
    """§4 + §7: same Decisions from both backends for mixed users, tenants and tools."""
    rng = random.Random(7)
    raw = {"by_user": "4/s", "by_tenant": "6/s", "by_tool": {"search": "5/s", "fetch": "2/s"}, "algorithm": algorithm}
    memory_engine = make_engine({**raw, "backend": "memory"})
    # §12 off: a local refusal reports only the keys it remembers (its own tests: test_local_refusals.py).
    redis_engine = make_engine({
        **raw, "backend": "redis", "redis_url": redis_url, "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000,
        "redis_blocked_max_keys": 0,
    })
    now = clock.at(0.0)
    for step in range(400):
        now += rng.choice([0, 0, 1, 50_000, 250_000, S])
        args = (
            rng.choice(["alice", "bob", "anonymous"]),
            rng.choice(["t1", "t2", None]),
            rng.choice(["search", "fetch", None, "other"]),
        )
        assert await memory_engine.check(*args, now) == await redis_engine.check(*args, now), f"step {step}: {args}"


# --- §3.2 sliding-window members stay unique on Redis when the clock steps back ----------
#
# Scenario: limit 2 on key A. Entries at t=0 and t=5 s. At t=10 s the t=0 entry
# expires, but a second key (limit 1, already full) refuses the request, so
# nothing is added and A holds only "<t5>:1". If the clock then steps back to
# t=5 s, A's count before the append is 1 again: the naive member "<t5>:1" would
# replace the existing entry instead of adding one, and a third request would
# get through where the memory engines refuse it.


W = 10_000_000  # µs
T0 = 1_800_000_000_000_000


def _run_sliding_script(client: redis.Redis, keys: list[str], now_us: int, limits: list[tuple[int, int]]) -> list[int]:
    argv: list[str] = [str(now_us)]
    for limit, window_us in limits:
        argv += [str(limit), str(window_us)]
    return client.eval(script_text("sliding_window"), len(keys), *keys, *argv)


def test_member_is_unique_after_the_clock_steps_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    a_only = [(2, W)]
    assert _run_sliding_script(client, ["A"], T0, a_only)[0] == 1
    assert _run_sliding_script(client, ["A"], T0 + 5_000_000, a_only)[0] == 1
    # fill B, then a request at t=10 s is refused by B: A's t=0 entry expired, nothing added
    assert _run_sliding_script(client, ["B"], T0 + 10_000_000, [(1, W)])[0] == 1
    both = [(2, W), (1, W)]
    assert _run_sliding_script(client, ["A", "B"], T0 + 10_000_000, both)[0] == 0
    assert client.zcard("A") == 1
    # the clock steps back to t=5 s: A has one entry, so one more is admitted and really added
    assert _run_sliding_script(client, ["A"], T0 + 5_000_000, a_only)[0] == 1
    assert client.zcard("A") == 2
    # and A is now full: a third request at the same instant is refused
    assert _run_sliding_script(client, ["A"], T0 + 5_000_000, a_only)[0] == 0

"""The Cluster give-back scripts (docs/semantics.md §11.1) on a real Redis.

A give-back must leave a key exactly as if the refused request had never
consumed: after "consume R, give R back", every later request gets the same
answer as without R. Checked per algorithm on random request sequences with
explicit clocks, on one Redis (the scripts are per slot group, so one Redis
is their whole world).
"""

from __future__ import annotations

import random
import time
import uuid

import pytest
import redis
from rate_limiter_go.scripts import give_back_text, script_text

pytestmark = pytest.mark.usefixtures("redis_server")

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
RATES = ((3, 1_000_000), (5, 60_000_000), (2, 3_600_000_000))


def _run(client: redis.Redis, text: str, keys: list[str], now_us: int, rates: list[tuple[int, int]]) -> list:
    args: list[str] = [str(now_us)]
    for limit, window_us in rates:
        args += [str(limit), str(window_us)]
    return client.eval(text, len(keys), *keys, *args)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("seed", range(12))
def test_give_back_restores_the_state_without_the_request(redis_url: str, algorithm: str, seed: int) -> None:
    rng = random.Random(seed)
    client = redis.Redis.from_url(redis_url)
    check, give_back = script_text(algorithm), give_back_text(algorithm)
    limit, window_us = RATES[seed % len(RATES)]
    rates = [(limit, window_us), (limit + 1, window_us)]
    # Explicit clocks from the real one on: state expires by Redis's own clock (PEXPIREAT).
    base = time.time_ns() // 1000 + rng.randrange(window_us)
    times = sorted(base + rng.randrange(2 * window_us) for _ in range(12))
    extra_at = rng.randrange(len(times))  # R arrives at times[extra_at], before that index's request
    answers = {}
    for with_r in (False, True):
        tag = uuid.uuid4().hex
        keys = [f"gb:{algorithm}:{{{tag}}}:a", f"gb:{algorithm}:{{{tag}}}:b"]
        out = []
        for i, now in enumerate(times):
            if with_r and i == extra_at:
                reply = _run(client, check, keys, now, rates)
                if reply[0] == 1:  # R consumed: a Cluster would give it back when another group refused
                    assert _run(client, give_back, keys, now, rates) == len(keys)
            out.append(_run(client, check, keys, now, rates))
        answers[with_r] = out
    assert answers[True] == answers[False]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_give_back_of_missing_state_gives_nothing(redis_url: str, algorithm: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"gb:none:{{{uuid.uuid4().hex}}}"
    assert _run(client, give_back_text(algorithm), [key], time.time_ns() // 1000, [(3, 1_000_000)]) == 0
    assert client.exists(key) == 0


def test_fixed_window_give_back_after_the_window_ended_gives_nothing(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"gb:fw:{{{uuid.uuid4().hex}}}"
    now = time.time_ns() // 1000
    rate = [(3, 1_000_000)]
    assert _run(client, script_text("fixed_window"), [key], now, rate)[0] == 1
    # Given back at a time in the next window: that window never counted the request.
    assert _run(client, give_back_text("fixed_window"), [key], now + 1_000_000, rate) == 0

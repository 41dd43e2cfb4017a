"""§3.2: sliding-window members stay unique on Redis even when the clock steps back.

Scenario: limit 2 on key A. Entries at t=0 and t=5 s. At t=10 s the t=0 entry
expires, but a second key (limit 1, already full) refuses the request, so
nothing is added and A holds only "<t5>:1". If the clock then steps back to
t=5 s, A's count before the append is 1 again: the naive member "<t5>:1" would
replace the existing entry instead of adding one, and a third request would
get through where the memory engines refuse it.
"""

from __future__ import annotations

import redis
from rate_limiter_go.scripts import script_text

W = 10_000_000  # µs
T0 = 1_800_000_000_000_000


def _run(client: redis.Redis, keys: list[str], now_us: int, limits: list[tuple[int, int]]) -> list[int]:
    argv: list[str] = [str(now_us)]
    for limit, window_us in limits:
        argv += [str(limit), str(window_us)]
    return client.eval(script_text("sliding_window"), len(keys), *keys, *argv)


def test_member_is_unique_after_the_clock_steps_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    a_only = [(2, W)]
    assert _run(client, ["A"], T0, a_only)[0] == 1
    assert _run(client, ["A"], T0 + 5_000_000, a_only)[0] == 1
    # fill B, then a request at t=10 s is refused by B: A's t=0 entry expired, nothing added
    assert _run(client, ["B"], T0 + 10_000_000, [(1, W)])[0] == 1
    both = [(2, W), (1, W)]
    assert _run(client, ["A", "B"], T0 + 10_000_000, both)[0] == 0
    assert client.zcard("A") == 1
    # the clock steps back to t=5 s: A has one entry, so one more is admitted and really added
    assert _run(client, ["A"], T0 + 5_000_000, a_only)[0] == 1
    assert client.zcard("A") == 2
    # and A is now full: a third request at the same instant is refused
    assert _run(client, ["A"], T0 + 5_000_000, a_only)[0] == 0

"""The Go engine does not leak memory per call.

gopy leaks the C string of every string or error a Go function returns, so the
binding's request path returns integers only (docs/engine.md). These tests
hold it to that: resident memory, read from /proc/self/statm, must not grow
by more than 5 MB over millions of calls once warmed up.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import pytest
from conftest import EPOCH_US
from rate_limiter_go.config import parse_config
from support.go_helpers import require_go_engine

LIMIT_BYTES = 5 * 1024 * 1024

# About a minute on a 2-core machine: `make test` runs it; `-m "not slow"` skips it. These tests
# build the Go engine themselves whatever RATE_LIMITER_ENGINE says, so they run once per CPython:
# in the go (or auto) pass of `make test-py`.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() == "python",
        reason="builds the Go engine itself; it runs in the RATE_LIMITER_ENGINE=go (or auto) pass",
    ),
]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def GoEngine() -> type:  # noqa: N802 - the fixture stands for the class
    return require_go_engine()


def test_rss_flat_over_5m_memory_evaluations(GoEngine: type) -> None:
    """5,000,000 evaluate() calls with three identity strings each: RSS grows < 5 MB."""
    engine = GoEngine(
        parse_config({"by_user": "1000000/s", "by_tenant": "1000/m", "by_tool": {"search": "100/h"}}),
        "rss-memory",
    )
    evaluate = engine.evaluate
    users = [f"user{i}@example.com" for i in range(100)]
    # i % 3 == 0: the 100/h tool, refused after warm-up; 1: a tenant and an
    # unlimited tool; 2: the user alone, never refused at 1,000,000/s.
    tenants = [None, "team:a", None]
    tools = ["search", "other", None]

    def run(n: int) -> int:
        admitted = 0
        for i in range(n):
            admitted += evaluate(users[i % 100], tenants[i % 3], tools[i % 3]).admitted
        return admitted

    run(300_000)  # warm-up: keys created, Go heap and decision cache at steady size
    gc.collect()
    before = rss_bytes()
    admitted = run(5_000_000)
    gc.collect()
    growth = rss_bytes() - before
    assert 5_000_000 // 3 <= admitted < 5_000_000  # the loop really evaluated: admitted and refused requests
    assert growth < LIMIT_BYTES, f"RSS grew by {growth / 1e6:.1f} MB over 5,000,000 calls"


def test_rss_flat_over_redis_submissions(GoEngine: type, redis_url: str) -> None:
    """100,000 asynchronous checks (Submit + eventfd + TakeResult): RSS grows < 5 MB."""
    engine = GoEngine(
        parse_config({"by_user": "1000000/h", "backend": "redis", "redis_url": redis_url, "redis_timeout_ms": 5000, "redis_connect_timeout_ms": 5000}),
        "rss-redis",
    )

    async def run(n: int, batch: int = 100) -> int:
        admitted = 0
        for start in range(0, n, batch):
            got: list[Any] = await asyncio.gather(
                *(engine.check(f"user{i % 50}", None, None, EPOCH_US) for i in range(start, start + batch))
            )
            admitted += sum(d.admitted for d in got)
        return admitted

    async def measure() -> tuple[int, int]:
        await run(20_000)
        gc.collect()
        before = rss_bytes()
        admitted = await run(100_000)
        gc.collect()
        return admitted, rss_bytes() - before

    try:
        admitted, growth = asyncio.run(measure())
    finally:
        asyncio.run(engine.close())
    assert admitted == 100_000
    assert growth < LIMIT_BYTES, f"RSS grew by {growth / 1e6:.1f} MB over 100,000 checks"

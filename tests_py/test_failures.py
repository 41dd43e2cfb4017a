"""Backend failures through the plugin: fail_mode open/closed, bounded latency, nothing escapes (docs/semantics.md §8).

Real failures only: the private redis-server stopped or paused (SIGSTOP), and a
TCP listener that accepts and never answers (hung_redis).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.plugin_helpers import RATE_HEADERS, call_tool, fetch_prompt, make_plugin, unique_name

# Generous for a loaded 2-core CI machine; the configured timeouts are 50 ms.
UPPER_BOUND_S = 1.0


def _config(url: str, fail_mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "by_user": "100/h",
        "backend": "redis",
        "redis_url": url,
        "redis_key_prefix": unique_name("f"),
        "fail_mode": fail_mode,
        "redis_connect_timeout_ms": 50,
        "redis_timeout_ms": 50,
        **extra,
    }


def _assert_open(result: Any) -> None:
    # §8 open: admitted, no headers, no violation.
    assert result.continue_processing is True
    assert result.http_headers is None and result.violation is None


def _assert_closed(result: Any) -> None:
    # §8 closed: 503 BACKEND_UNAVAILABLE with Retry-After: 1.
    assert result.continue_processing is False
    violation = result.violation
    assert violation is not None
    assert violation.code == "BACKEND_UNAVAILABLE"
    assert violation.http_status_code == 503
    assert violation.http_headers == {"Retry-After": "1"}


CHECKS = {"open": _assert_open, "closed": _assert_closed}


async def _timed_call(plugin: Any, hook: str = "tool") -> tuple[Any, float]:
    started = time.monotonic()
    if hook == "tool":
        result = await call_tool(plugin)
    else:
        result = await fetch_prompt(plugin, "greeting")
    return result, time.monotonic() - started


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_stopped(redis_server: Any, redis_url: str, fail_mode: str) -> None:
    plugin = make_plugin(_config(redis_url, fail_mode, redis_timeout_ms=2000, redis_connect_timeout_ms=2000))
    assert set((await call_tool(plugin)).http_headers) == set(RATE_HEADERS)  # working first
    redis_server.stop()
    try:
        for hook in ("tool", "prompt", "tool", "tool", "tool", "tool", "tool"):  # past the breaker threshold
            result, took = await _timed_call(plugin, hook)
            CHECKS[fail_mode](result)
            assert took < UPPER_BOUND_S
    finally:
        redis_server.ensure_running()
        await plugin.shutdown()


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_that_never_answers(hung_redis: Any, fail_mode: str) -> None:
    plugin = make_plugin(_config(hung_redis.url, fail_mode))
    try:
        for _ in range(3):
            result, took = await _timed_call(plugin)
            CHECKS[fail_mode](result)
            assert took < UPPER_BOUND_S, f"hook took {took:.3f} s against a hung Redis"
    finally:
        await plugin.shutdown()


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_paused_then_resumed(redis_server: Any, redis_url: str, fail_mode: str) -> None:
    plugin = make_plugin(_config(redis_url, fail_mode, redis_breaker_cooldown_ms=100))
    first = await call_tool(plugin)  # a pooled connection exists before the pause
    assert first.http_headers["X-RateLimit-Remaining"] == "99"
    redis_server.pause()
    try:
        for _ in range(3):
            result, took = await _timed_call(plugin)
            CHECKS[fail_mode](result)
            assert took < UPPER_BOUND_S, f"hook took {took:.3f} s against a paused Redis"
    finally:
        redis_server.resume()
    # After the breaker cooldown a probe goes through and the limiter works again (§8).
    deadline = time.monotonic() + 5
    while True:
        result = await call_tool(plugin)
        if result.http_headers is not None:
            break
        assert time.monotonic() < deadline, "the limiter did not recover after Redis resumed"
        await asyncio.sleep(0.05)
    remaining = int(result.http_headers["X-RateLimit-Remaining"])
    # Failed calls did not count; calls the paused server ran after SIGCONT may have counted.
    assert 95 <= remaining <= 98
    await plugin.shutdown()


async def test_concurrent_requests_against_a_hung_redis_all_return(hung_redis: Any) -> None:
    plugin = make_plugin(_config(hung_redis.url, "open"))
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(call_tool(plugin, user=f"u{i}@example.com") for i in range(20)))
        took = time.monotonic() - started
        for result in results:
            _assert_open(result)
        assert took < 2 * UPPER_BOUND_S
    finally:
        await plugin.shutdown()


async def test_memory_backend_is_unaffected_by_redis_settings(hung_redis: Any) -> None:
    # redis_url is only used by the redis backend.
    plugin = make_plugin({"by_user": "1/h", "backend": "memory", "redis_url": hung_redis.url, "fail_mode": "closed"})
    assert set((await call_tool(plugin)).http_headers) == set(RATE_HEADERS)
    assert (await call_tool(plugin)).violation.code == "RATE_LIMIT"

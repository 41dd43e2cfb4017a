"""by_user_per_server through the plugin (§5, §7): tool calls only, per (user, virtual server).

The engine is the one RATE_LIMITER_ENGINE selects; hooks get real cpex
payloads and contexts whose ``global_context.server_id`` names the virtual
server. Memory and Redis backends both.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from rate_limiter_go.config import parse_config
from support.plugin_helpers import ALGORITHMS, call_tool, fetch_prompt, make_plugin, unique_name


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend": "memory"}
    return {
        "backend": "redis",
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_key_prefix": unique_name("ups"),
        "redis_timeout_ms": 2000,
        "redis_connect_timeout_ms": 2000,
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_limits_each_user_on_each_server(backend: dict[str, Any], algorithm: str) -> None:
    plugin = make_plugin({"by_user_per_server": "2/h", "algorithm": algorithm, **backend})
    try:
        for remaining in ("1", "0"):
            ok = await call_tool(plugin, user="a@example.com", server="srv-1")
            assert ok.continue_processing and ok.http_headers["X-RateLimit-Remaining"] == remaining
            assert ok.http_headers["X-RateLimit-Limit"] == "2"
        blocked = await call_tool(plugin, user="a@example.com", server=" srv-1 ")  # stripped: the same server
        assert not blocked.continue_processing and blocked.violation.details["dimension"] == "user_per_server"
        assert blocked.violation.details["window_s"] == 3600 and blocked.violation.details["limit"] == 2
        # Another server, another user: their own counters.
        assert (await call_tool(plugin, user="a@example.com", server="srv-2")).continue_processing
        assert (await call_tool(plugin, user="b@example.com", server="srv-1")).continue_processing
    finally:
        await plugin.shutdown()


async def test_skipped_without_a_server(backend: dict[str, Any]) -> None:
    """§5: server_id None, empty or blank: the dimension does not apply (no headers, nothing counted)."""
    plugin = make_plugin({"by_user_per_server": "1/h", **backend})
    try:
        for missing in (None, "", "   "):
            for _ in range(2):
                result = await call_tool(plugin, server=missing)
                assert result.continue_processing and result.http_headers is None and result.violation is None
        assert (await call_tool(plugin, server="\t7 ")).continue_processing
        assert not (await call_tool(plugin, server="7")).continue_processing  # the same server, stripped
    finally:
        await plugin.shutdown()


async def test_prompt_fetches_never_check_or_consume_it(backend: dict[str, Any]) -> None:
    """§5: prompt_pre_fetch ignores by_user_per_server even when the context names a server."""
    plugin = make_plugin({"by_user_per_server": "1/h", "by_tool": {"greeting": "5/h"}, **backend})
    try:
        for remaining in ("4", "3", "2"):
            prompt = await fetch_prompt(plugin, "greeting", server="srv-1")
            assert prompt.continue_processing
            assert prompt.http_headers["X-RateLimit-Limit"] == "5"  # the prompt id's limit, never the per-server one
            assert prompt.http_headers["X-RateLimit-Remaining"] == remaining
        none = await fetch_prompt(plugin, "other", server="srv-1")
        assert none.continue_processing and none.http_headers is None
        # The tool call still has its one request: the prompt fetches spent nothing of it.
        first = await call_tool(plugin, "search", server="srv-1")
        assert first.continue_processing and first.http_headers["X-RateLimit-Remaining"] == "0"
        assert not (await call_tool(plugin, "search", server="srv-1")).continue_processing
        # A blocked user_per_server does not block the prompt.
        assert (await fetch_prompt(plugin, "greeting", server="srv-1")).continue_processing
    finally:
        await plugin.shutdown()


async def test_anonymous_callers_share_one_counter_per_server() -> None:
    plugin = make_plugin({"by_user_per_server": "1/h"})
    assert (await call_tool(plugin, user=None, server="s")).continue_processing
    assert not (await call_tool(plugin, user="  ", server="s")).continue_processing
    assert (await call_tool(plugin, user=None, server="t")).continue_processing


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_violation_names_the_kind_never_an_identity(algorithm: str, caplog: pytest.LogCaptureFixture) -> None:
    user, tenant, server = "user-SECRET-1@example.com", "tenant-SECRET-2", "server-SECRET-3"
    plugin = make_plugin(
        {"by_user": "5/h", "by_user_per_server": "1/h", "by_tenant": "5/h", "algorithm": algorithm}
    )
    caplog.set_level(logging.DEBUG)
    await plugin.initialize()
    assert (await call_tool(plugin, user=user, tenant=tenant, server=server)).continue_processing
    violation = (await call_tool(plugin, user=user, tenant=tenant, server=server)).violation
    assert violation is not None and violation.code == "RATE_LIMIT"
    assert violation.details["dimension"] == "user_per_server"
    assert "per-user-per-server" in violation.description
    dumped = violation.model_dump_json() + repr(violation.details) + violation.description + caplog.text
    for identity in (user, tenant, server, "SECRET"):
        assert identity not in dumped
    assert "dimensions=user,user_per_server,tenant" in caplog.text  # the start-up line names the kind


def test_null_turns_it_off_and_canonical_json_is_unchanged_without_it() -> None:
    """The setting is off when absent or null; set, it reaches the Go engine in the canonical JSON."""
    assert parse_config({"by_user_per_server": None}).by_user_per_server is None
    assert "by_user_per_server" not in parse_config({"by_user": "1/s"}).canonical_json()
    assert '"by_user_per_server":{"limit":3,"window_s":60}' in parse_config({"by_user_per_server": "3/m"}).canonical_json()

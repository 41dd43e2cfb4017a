"""The plugin inside the real cpex framework: PluginManager / TenantPluginManager loaded from YAML.

What cpex does with our results (measured here, not assumed): in enforce mode a
violation halts the call and keeps its headers; admitted calls' http_headers are
dropped from the merged result; permissive mode logs the violation and lets the
call through; a plugin whose __init__ raises is skipped (plugin_count 0) unless
PLUGINS_FAIL_ON_PLUGIN_ERROR=true, which makes initialize() raise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cpex.framework import (
    GlobalContext,
    PluginManager,
    PluginViolationError,
    PromptHookType,
    PromptPrehookPayload,
    TenantPluginManager,
    ToolHookType,
    ToolPreInvokePayload,
)
from cpex.framework.settings import settings as cpex_settings
from support.plugin_helpers import ALGORITHMS, BLOCKED_HEADERS, call_tool, plugin_entry, unique_name, write_plugins_yaml


@pytest.fixture(autouse=True)
def _fresh_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # PluginManager is a process-wide Borg singleton; cpex caches its env settings.
    monkeypatch.delenv("PLUGINS_FAIL_ON_PLUGIN_ERROR", raising=False)
    cpex_settings.cache_clear()
    PluginManager.reset()
    yield
    PluginManager.reset()
    cpex_settings.cache_clear()


@pytest.fixture(params=["memory", "redis"])
def backend_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend": "memory"}
    url = request.getfixturevalue("redis_url")
    return {"backend": "redis", "redis_url": url, "redis_key_prefix": unique_name("fw"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}


async def _tool(pm: PluginManager, tool: str = "search", user: str = "alice@example.com", **kw: Any) -> Any:
    payload = ToolPreInvokePayload(name=tool, args={"q": "x"})
    gctx = GlobalContext(request_id=unique_name("req"), user=user, tenant_id="team-1")
    result, _ = await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, payload, global_context=gctx, **kw)
    return result


async def _manager(tmp_path: Path, config: dict[str, Any] | None, mode: str = "enforce") -> PluginManager:
    path = write_plugins_yaml(tmp_path / "plugins.yaml", [plugin_entry(config, name="rate_limiter", mode=mode)])
    pm = PluginManager(str(path))
    await pm.initialize()
    return pm


def _assert_rate_violation(result: Any, limit: int) -> None:
    assert result.continue_processing is False
    violation = result.violation
    assert violation is not None
    assert violation.code == "RATE_LIMIT" and violation.http_status_code == 429
    assert violation.reason == "Rate limit exceeded"
    assert violation.plugin_name == "rate_limiter"  # set by the manager
    assert set(violation.http_headers) == set(BLOCKED_HEADERS)
    assert violation.http_headers["X-RateLimit-Limit"] == str(limit)
    assert violation.http_headers["X-RateLimit-Remaining"] == "0"
    assert int(violation.http_headers["Retry-After"]) >= 1


async def test_enforce_mode_blocks_with_429_and_keeps_headers(tmp_path: Path) -> None:
    pm = await _manager(tmp_path, {"by_user": "2/h"})
    assert pm.plugin_count == 1
    try:
        for _ in range(2):
            admitted = await _tool(pm)
            assert admitted.continue_processing is True and admitted.violation is None
            # cpex 0.1.x drops success-path headers from the merged result (facts.md); the plugin sets them.
            assert admitted.http_headers is None
        _assert_rate_violation(await _tool(pm), limit=2)
    finally:
        await pm.shutdown()


async def test_admitted_headers_are_produced_by_the_loaded_plugin(tmp_path: Path) -> None:
    # The same instance the manager runs, called directly: this is where the admitted headers are.
    pm = await _manager(tmp_path, {"by_user": "2/h"})
    try:
        plugin = pm.get_plugin("rate_limiter")
        assert type(plugin).__name__ == "RateLimiterPlugin"
        await _tool(pm)
        direct = await call_tool(plugin, user="alice@example.com")
        assert direct.http_headers["X-RateLimit-Remaining"] == "0"  # the manager's call counted
    finally:
        await pm.shutdown()


async def test_violations_as_exceptions_carry_the_violation(tmp_path: Path) -> None:
    pm = await _manager(tmp_path, {"by_user": "1/h"})
    try:
        await _tool(pm)
        with pytest.raises(PluginViolationError) as info:
            await _tool(pm, violations_as_exceptions=True)
        violation = info.value.violation
        assert violation is not None and violation.http_status_code == 429
        assert set(violation.http_headers) == set(BLOCKED_HEADERS)
    finally:
        await pm.shutdown()


async def test_permissive_mode_lets_the_violation_through(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pm = await _manager(tmp_path, {"by_user": "1/h"}, mode="permissive")
    assert pm.plugin_count == 1
    try:
        with caplog.at_level(logging.WARNING):
            first = await _tool(pm)
            second = await _tool(pm)
        assert first.continue_processing is True
        assert second.continue_processing is True and second.violation is None
        # cpex logged the suppressed violation: the plugin did refuse it.
        assert any("RATE_LIMIT" in r.getMessage() and "pipeline continues" in r.getMessage() for r in caplog.records)
    finally:
        await pm.shutdown()


async def test_prompt_hook_through_the_manager(tmp_path: Path) -> None:
    pm = await _manager(tmp_path, {"by_tool": {"greeting": "1/h"}})
    try:
        gctx = GlobalContext(request_id="r1", user="alice@example.com")
        payload = PromptPrehookPayload(prompt_id="Greeting", args={})
        first, _ = await pm.invoke_hook(PromptHookType.PROMPT_PRE_FETCH, payload, global_context=gctx)
        second, _ = await pm.invoke_hook(PromptHookType.PROMPT_PRE_FETCH, payload, global_context=gctx)
        assert first.continue_processing is True
        _assert_rate_violation(second, limit=1)
        assert second.violation.details["dimension"] == "tool"
    finally:
        await pm.shutdown()


async def test_bad_config_is_skipped_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # cpex's default: a plugin that fails to load is logged and skipped (no rate limiting at all!).
    with caplog.at_level(logging.ERROR):
        pm = await _manager(tmp_path, {"by_user": 30, "backend": "redis"})
    assert pm.initialized and pm.plugin_count == 0
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "by_user: a rate must be a string" in messages
    assert "redis_url: required when backend is redis" in messages


async def test_bad_config_fails_initialize_with_fail_on_plugin_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGINS_FAIL_ON_PLUGIN_ERROR", "true")
    cpex_settings.cache_clear()
    path = write_plugins_yaml(tmp_path / "plugins.yaml", [plugin_entry({"by_user": "5/x"}, name="rate_limiter")])
    pm = PluginManager(str(path))
    with pytest.raises(RuntimeError, match="rate_limiter") as info:
        await pm.initialize()
    assert "by_user" in str(info.value) and "unknown unit" in str(info.value)
    assert pm.plugin_count == 0


async def test_all_algorithms_on_both_backends(tmp_path: Path, backend_config: dict[str, Any], algorithm: str) -> None:
    pm = await _manager(
        tmp_path, {"by_user": "2/h", "by_tool": {"search": "5/h"}, "algorithm": algorithm, **backend_config}
    )
    assert pm.plugin_count == 1
    try:
        results = [await _tool(pm) for _ in range(3)]
        assert [r.continue_processing for r in results] == [True, True, False]
        _assert_rate_violation(results[2], limit=2)
        assert results[2].violation.details["dimension"] == "user"
        # Another user is not affected; the tool limit (5/h) has 3 left after 2 admitted calls.
        other = await _tool(pm, user="bob@example.com")
        assert other.continue_processing is True
    finally:
        await pm.shutdown()


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_tenant_managers_share_counters_like_the_gateway(tmp_path: Path) -> None:
    # The gateway keeps one TenantPluginManager per "<team>::<tool>" and rebuilds it every 30 s;
    # instances with the same plugin name and config must share one memory store (§10).
    name = unique_name("shared")
    path = write_plugins_yaml(tmp_path / "plugins.yaml", [plugin_entry({"by_user": "3/h"}, name=name)])
    managers = [TenantPluginManager(config=str(path)) for _ in range(3)]
    for tpm in managers:
        await tpm.initialize()
        assert tpm.plugin_count == 1
    try:
        outcomes = [(await _tool(tpm)).continue_processing for tpm in managers]
        assert outcomes == [True, True, True]
        rebuilt = TenantPluginManager(config=str(path))
        await rebuilt.initialize()
        managers.append(rebuilt)
        blocked = await _tool(rebuilt)
        assert blocked.continue_processing is False
        assert blocked.violation.http_headers["X-RateLimit-Limit"] == "3"
    finally:
        for tpm in managers:
            await tpm.shutdown()

"""What the plugin gives the gateway's observability: result.metadata["rate_limiter"].

Gateway 1.1.0 records a plugin result's metadata into its spans and metric
rows, keeping only allow-listed fields: for a rate limiter the numbers
``allowed`` and ``throttled`` and the string ``backend``. The plugin writes
exactly those, only when the hook's ``extensions.request.trace_id`` is set,
and never an identity. Refusals also carry them as cpex denial metadata
(numbers only) where cpex has that field.
"""

from __future__ import annotations

from typing import Any

import pytest
from cpex.framework import PromptPrehookPayload, ToolPreInvokePayload, ToolPreInvokeResult
from cpex.framework.extensions import Extensions
from cpex.framework.extensions.request import RequestExtension
from support.plugin_helpers import make_plugin, plugin_context

TRACED = Extensions(request=RequestExtension(trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))


async def _tool(plugin: Any, extensions: Any, user: str = "alice@example.com") -> Any:
    return await plugin.tool_pre_invoke(ToolPreInvokePayload(name="search", args={}), plugin_context(user), extensions)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_traced_calls_carry_allowed_throttled_backend(backend: str, request: pytest.FixtureRequest) -> None:
    config: dict[str, Any] = {"by_user": "1/h"}
    if backend == "redis":
        config |= {"backend": "redis", "redis_url": request.getfixturevalue("redis_url"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}
    plugin = make_plugin(config)
    admitted = await _tool(plugin, TRACED)
    refused = await _tool(plugin, TRACED)
    await plugin.shutdown()
    assert admitted.metadata == {"rate_limiter": {"allowed": 1, "throttled": 0, "backend": backend}}
    assert refused.continue_processing is False
    assert refused.metadata == {"rate_limiter": {"allowed": 0, "throttled": 1, "backend": backend}}
    if "denial_metadata" in ToolPreInvokeResult.model_fields:
        assert refused.denial_metadata == {"rate_limiter.allowed": 0, "rate_limiter.throttled": 1}


async def test_untraced_calls_carry_no_metadata() -> None:
    plugin = make_plugin({"by_user": "1/h"})
    admitted = await _tool(plugin, None)
    refused = await _tool(plugin, Extensions(request=RequestExtension()))  # extensions without a trace id
    assert not admitted.metadata and not refused.metadata
    assert getattr(refused, "denial_metadata", None) is None


async def test_no_applicable_limit_and_prompts_are_counted_too() -> None:
    plugin = make_plugin({"by_tool": {"other": "1/h"}})
    result = await _tool(plugin, TRACED)
    assert result.metadata == {"rate_limiter": {"allowed": 1, "throttled": 0, "backend": "memory"}}
    prompt = await plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="p", args={}),
                                           plugin_context("alice@example.com"), TRACED)
    assert prompt.metadata == {"rate_limiter": {"allowed": 1, "throttled": 0, "backend": "memory"}}


@pytest.mark.parametrize(("fail_mode", "allowed"), [("open", 1), ("closed", 0)])
async def test_backend_failure_is_neither_allowed_by_a_limit_nor_throttled(fail_mode: str, allowed: int) -> None:
    plugin = make_plugin({"by_user": "5/s", "backend": "redis", "redis_url": "redis://127.0.0.1:1/0",
                          "redis_connect_timeout_ms": 50, "fail_mode": fail_mode})
    result = await _tool(plugin, TRACED)
    await plugin.shutdown()
    assert result.metadata == {"rate_limiter": {"allowed": allowed, "throttled": 0, "backend": "redis"}}


async def test_metadata_never_holds_an_identity() -> None:
    plugin = make_plugin({"by_user": "1/h", "by_tenant": "5/h"})
    results = [await _tool(plugin, TRACED, user="SECRET-user@corp.example") for _ in range(2)]
    text = repr([r.metadata for r in results]) + repr([getattr(r, "denial_metadata", None) for r in results])
    assert "SECRET" not in text and "corp.example" not in text

"""Results built without validation (rate_limiter_go.results) equal validated cpex construction.

Every result the plugin returns is rebuilt here with validated cpex construction
from its own field values, and the two must be indistinguishable (type, fields
and their order, fields set, extras, private attributes, model_dump): admitted,
refused, no dimension and fail-closed results of both hooks, with both engines.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
from cpex.framework import PluginViolation, PromptPrehookResult, ToolPreInvokeResult
from rate_limiter_go import results
from rate_limiter_go.results import BUILDERS, new_violation, same_model
from support.plugin_helpers import call_tool, fetch_prompt, make_plugin

# The cpex versions the fast builders mirror (0.1.3: gateway 1.0.7, 0.1.4: 1.1.0 and constraints.txt);
# with another the validated form may be used.
MIRRORED_CPEX = ("0.1.3", "0.1.4")


def validated_copy(model: Any) -> Any:
    """``model`` rebuilt by validated construction from the fields it was given (a violation inside too)."""
    given = {name: getattr(model, name) for name in model.__pydantic_fields_set__}
    if isinstance(given.get("violation"), PluginViolation):
        given["violation"] = validated_copy(given["violation"])
    return type(model)(**given)


def test_fast_builders_are_in_use_with_the_mirrored_cpex() -> None:
    version = importlib.metadata.version("cpex")
    if version not in MIRRORED_CPEX:
        pytest.skip(f"cpex {version}: results are built with validation (the fast form mirrors {MIRRORED_CPEX})")
    assert results.FAST, "the fast result builders disagree with validated construction for this cpex"


async def _hook(plugin: Any, hook: str, **kw: Any) -> Any:
    return await (call_tool(plugin, **kw) if hook == "tool" else fetch_prompt(plugin, "search", **kw))


@pytest.mark.parametrize("hook", ["tool", "prompt"])
async def test_plugin_results_equal_validated_construction(hook: str) -> None:
    plugin = make_plugin({"by_user": "2/h", "by_tool": {"search": "5/h"}})
    admitted = [await _hook(plugin, hook) for _ in range(2)]
    refused = await _hook(plugin, hook)
    expected_type = ToolPreInvokeResult if hook == "tool" else PromptPrehookResult
    for result in admitted:
        assert type(result) is expected_type and result.continue_processing and result.http_headers
        assert same_model(result, validated_copy(result))
    assert not refused.continue_processing and refused.violation.code == "RATE_LIMIT"
    assert refused.violation.http_headers["Retry-After"]
    assert same_model(refused, validated_copy(refused))
    assert same_model(refused.violation, validated_copy(refused.violation))
    await plugin.shutdown()


@pytest.mark.parametrize("hook", ["tool", "prompt"])
async def test_no_dimension_result_equals_validated_construction(hook: str) -> None:
    plugin = make_plugin({"by_tool": {"other": "5/h"}})  # nothing applies to "search"
    result = await _hook(plugin, hook)
    assert result.http_headers is None and result.violation is None
    assert same_model(result, validated_copy(result))
    assert same_model(result, type(result)())
    await plugin.shutdown()


@pytest.mark.parametrize("hook", ["tool", "prompt"])
async def test_fail_closed_result_equals_validated_construction(hook: str) -> None:
    # Nothing listens on port 1 of loopback: every check fails and fail_mode closed refuses.
    plugin = make_plugin(
        {
            "by_user": "5/h",
            "backend": "redis",
            "redis_url": "redis://127.0.0.1:1/0",
            "redis_timeout_ms": 200,
            "redis_connect_timeout_ms": 200,
            "fail_mode": "closed",
        }
    )
    result = await _hook(plugin, hook)
    assert not result.continue_processing and result.violation.code == "BACKEND_UNAVAILABLE"
    assert same_model(result, validated_copy(result))
    await plugin.shutdown()


@pytest.mark.parametrize("result_type", [ToolPreInvokeResult, PromptPrehookResult])
def test_builders_give_fresh_mutable_fields(result_type: Any) -> None:
    build = BUILDERS[result_type]
    a, b = build.admitted({"X-RateLimit-Limit": "1"}), build.admitted({"X-RateLimit-Limit": "1"})
    for field in ("metadata", "background_tasks", "executions"):
        assert getattr(a, field) == getattr(b, field) and getattr(a, field) is not getattr(b, field)
    a.metadata["rate_limiter"] = {"allowed": 1}
    assert build.empty().metadata == {}


def test_violation_private_name_is_per_instance_and_settable() -> None:
    headers = {"Retry-After": "1"}
    a = new_violation("Rate limit exceeded", "d", "RATE_LIMIT", {"limit": 1}, 429, headers)
    b = new_violation("Rate limit exceeded", "d", "RATE_LIMIT", {"limit": 1}, 429, headers)
    a.plugin_name = "limiter"  # what the plugin manager does with a violation
    assert a.plugin_name == "limiter" and b.plugin_name == ""
    with pytest.raises(ValueError):
        a.plugin_name = " "  # cpex's own setter still runs
    assert same_model(b, validated_copy(b))


def test_same_model_tells_different_instances_apart() -> None:
    build = BUILDERS[ToolPreInvokeResult]
    assert not same_model(build.admitted({"X-RateLimit-Limit": "1"}), build.admitted({"X-RateLimit-Limit": "2"}))
    # same values, but one was given the default explicitly: the fields set differ
    assert not same_model(build.empty(), ToolPreInvokeResult(continue_processing=True))

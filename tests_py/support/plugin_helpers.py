"""Helpers for the plugin-layer tests: build real plugins, make real cpex calls, bound expected header values.

Nothing here replaces a part: plugins are real RateLimiterPlugin instances with
the engine RATE_LIMITER_ENGINE selects, payloads and contexts are real cpex models.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from cpex.framework import (
    GlobalContext,
    PluginConfig,
    PluginContext,
    PromptPrehookPayload,
    ToolPreInvokePayload,
)
from rate_limiter_go.plugin import RateLimiterPlugin

KIND = "rate_limiter_go.plugin.RateLimiterPlugin"
HOOKS = ["tool_pre_invoke", "prompt_pre_fetch"]
ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
BLOCKED_HEADERS = (*RATE_HEADERS, "Retry-After")


def unique_name(prefix: str = "rl") -> str:
    """A plugin name (or key prefix) no other test uses: memory stores are shared by name + config (§10)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def clear_of_window_end(window_s: int, margin_s: float = 10.0) -> None:
    """Sleep past the next fixed-window boundary (§3.1: epoch-aligned windows of the wall clock)
    when fewer than ``margin_s`` seconds, at most a quarter of the window, remain before it: a
    burst of wall-clock calls made next then falls in one window on a slow machine too."""
    margin = min(margin_s, window_s / 4)
    left = window_s - time.time() % window_s
    if left < margin:
        time.sleep(left + 0.05)


def make_plugin(config: dict[str, Any] | None, name: str | None = None) -> RateLimiterPlugin:
    """A RateLimiterPlugin built the way cpex builds it: from a PluginConfig."""
    return RateLimiterPlugin(PluginConfig(name=name or unique_name(), kind=KIND, hooks=HOOKS, config=config))


def plugin_context(
    user: Any = "alice@example.com", tenant: str | None = None, request_id: str = "req-1", server: Any = None
) -> PluginContext:
    return PluginContext(
        global_context=GlobalContext(request_id=request_id, user=user, tenant_id=tenant, server_id=server)
    )


async def call_tool(
    plugin: RateLimiterPlugin,
    tool: str = "search",
    user: Any = "alice@example.com",
    tenant: str | None = None,
    server: Any = None,
) -> Any:
    return await plugin.tool_pre_invoke(
        ToolPreInvokePayload(name=tool, args={}), plugin_context(user, tenant, server=server)
    )


async def fetch_prompt(
    plugin: RateLimiterPlugin,
    prompt_id: str,
    user: Any = "alice@example.com",
    tenant: str | None = None,
    server: Any = None,
) -> Any:
    return await plugin.prompt_pre_fetch(
        PromptPrehookPayload(prompt_id=prompt_id, args={}), plugin_context(user, tenant, server=server)
    )


def now_us() -> int:
    return time.time_ns() // 1000


def ceil_div(a: int, b: int) -> int:
    """§2: least q with q*b >= a (a >= 0, b > 0)."""
    return -(-a // b)


@dataclass(frozen=True)
class Timed:
    """A hook result and the wall-clock interval [before_us, after_us] that contains the engine's now_us."""

    result: Any
    before_us: int
    after_us: int


async def timed(call: Callable[[], Any]) -> Timed:
    # The backend clock (process clock, or Redis TIME on this host) reads the
    # same wall clock, so its now_us lies in [before, after] (§2).
    before = now_us()
    result = await call()
    return Timed(result, before, now_us())


def within(value: str, fn: Callable[..., int], *bounds: tuple[int, int]) -> bool:
    """True when int(value) lies between fn at the lower and fn at the upper ends of each bound.

    ``fn`` must be monotonic in each argument; ``bounds`` are (low, high) pairs.
    """
    import itertools

    candidates = [fn(*corner) for corner in itertools.product(*bounds)]
    return min(candidates) <= int(value) <= max(candidates)


def write_plugins_yaml(path: Path, plugins: list[dict[str, Any]]) -> Path:
    """Write a cpex plugin configuration file and return its path."""
    path.write_text(yaml.safe_dump({"plugins": plugins, "plugin_dirs": []}, sort_keys=False))
    return path


def plugin_entry(config: dict[str, Any] | None, name: str | None = None, mode: str = "enforce") -> dict[str, Any]:
    """One ``plugins:`` item of a cpex YAML configuration for this plugin."""
    return {
        "name": name or unique_name(),
        "kind": KIND,
        "hooks": list(HOOKS),
        "mode": mode,
        "priority": 10,
        "config": config,
    }

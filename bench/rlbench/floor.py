"""The floor: a cpex plugin with the same hooks that limits nothing but returns the same result objects.

Its time is what every subject pays anyway (the coroutine, reading the
context, building the headers dict and the cpex result, and on the blocked
path the PluginViolation), so ``subject - floor`` is the limiter's own share.
The numbers in the headers are computed per call, as a limiter would.

The results are built the cheapest correct way, which is the way our plugin
builds them: ``rate_limiter_go.results`` fills the cpex objects from trusted
values without validating them again (checked against validated construction
when the builders are made). So the floor stays the floor, and the peers,
which validate their results, pay what they pay.
"""

from __future__ import annotations

import time
from typing import Any

from cpex.framework import (
    Plugin,
    PluginConfig,
    PluginContext,
    PromptPrehookPayload,
    PromptPrehookResult,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)
from rate_limiter_go.results import BUILDERS, ResultBuilders, new_violation

_TOOL = BUILDERS[ToolPreInvokeResult]
_PROMPT = BUILDERS[PromptPrehookResult]


class FloorPlugin(Plugin):
    """``config: {path: admitted|blocked}`` selects which result shape every call returns."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        path = (config.config or {}).get("path", "admitted")
        if path not in ("admitted", "blocked"):
            raise ValueError(f"floor: path must be 'admitted' or 'blocked', got {path!r}")
        self._blocked = path == "blocked"

    async def tool_pre_invoke(
        self, payload: ToolPreInvokePayload, context: PluginContext, extensions: Any = None
    ) -> ToolPreInvokeResult:
        return self._result(context, _TOOL)

    async def prompt_pre_fetch(
        self, payload: PromptPrehookPayload, context: PluginContext, extensions: Any = None
    ) -> PromptPrehookResult:
        return self._result(context, _PROMPT)

    def _result(self, context: PluginContext, build: ResultBuilders) -> Any:
        _ = context.global_context.user  # the one context read every limiter does
        reset_at_unix = time.time_ns() // 1_000_000_000 + 1
        headers = {
            "X-RateLimit-Limit": str(100),
            "X-RateLimit-Remaining": str(0 if self._blocked else 99),
            "X-RateLimit-Reset": str(reset_at_unix),
        }
        if not self._blocked:
            return build.admitted(headers)
        headers["Retry-After"] = "1"
        violation = new_violation(
            "Rate limit exceeded",
            "The per-user limit of 100 requests per 1 s is used up; retry after 1 s.",
            "RATE_LIMIT",
            {"dimension": "user", "limit": 100, "window_s": 1, "remaining": 0,
             "reset_at_unix": reset_at_unix, "retry_after_s": 1},
            429,
            headers,
        )  # fmt: skip
        return build.refused(violation)

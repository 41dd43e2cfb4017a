"""The floor: a cpex plugin with the same hooks that limits nothing but returns the same result objects.

Its time is what every subject pays anyway (the coroutine, reading the
context, building the headers dict and the cpex result, and on the blocked
path the PluginViolation), so ``subject - floor`` is the limiter's own share.
The numbers in the headers are computed per call, as a limiter would.
"""

from __future__ import annotations

import time
from typing import Any

from cpex.framework import (
    Plugin,
    PluginConfig,
    PluginContext,
    PluginViolation,
    PromptPrehookPayload,
    PromptPrehookResult,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)


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
        return self._result(context, ToolPreInvokeResult)

    async def prompt_pre_fetch(
        self, payload: PromptPrehookPayload, context: PluginContext, extensions: Any = None
    ) -> PromptPrehookResult:
        return self._result(context, PromptPrehookResult)

    def _result(self, context: PluginContext, result_type: Any) -> Any:
        _ = context.global_context.user  # the one context read every limiter does
        reset_at_unix = time.time_ns() // 1_000_000_000 + 1
        headers = {
            "X-RateLimit-Limit": str(100),
            "X-RateLimit-Remaining": str(0 if self._blocked else 99),
            "X-RateLimit-Reset": str(reset_at_unix),
        }
        if not self._blocked:
            return result_type(http_headers=headers)
        headers["Retry-After"] = "1"
        violation = PluginViolation(
            reason="Rate limit exceeded",
            description="The per-user limit of 100 requests per 1 s is used up; retry after 1 s.",
            code="RATE_LIMIT",
            details={"dimension": "user", "limit": 100, "window_s": 1, "remaining": 0,
                     "reset_at_unix": reset_at_unix, "retry_after_s": 1},
            http_status_code=429,
            http_headers=headers,
        )  # fmt: skip
        return result_type(continue_processing=False, violation=violation)

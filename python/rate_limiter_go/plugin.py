"""The cpex plugin: config validation at init, one engine call per request, cpex results.

Everything below this layer (config, identity, engines) is framework-free; this
module is the only one that speaks cpex. The per-request path is deliberately
short because it is the hot path of both engines: extract identities, call the
engine once (a direct call when the engine is synchronous), build the result.
Contract: docs/semantics.md §4, §5, §7, §8.
"""

from __future__ import annotations

import logging
from typing import Any

from cpex.framework import (
    Plugin,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPrehookPayload,
    PromptPrehookResult,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)
from cpex.framework.hooks.http import HttpHeaderPayload, HttpPostRequestPayload, HttpPreRequestPayload

from rate_limiter_go.config import LimiterConfig, parse_config
from rate_limiter_go.engine import Decision
from rate_limiter_go.engines import select_engine
from rate_limiter_go.error_log import ERROR_LOG_INTERVAL_S, ErrorLog, sanitise_error
from rate_limiter_go.header_handoff import HANDOFF
from rate_limiter_go.identity import ANONYMOUS, server_identity, tenant_identity, tool_key, user_identity
from rate_limiter_go.results import BUILDERS, ResultBuilders, new_violation

logger = logging.getLogger(__name__)

_KIND_TEXT = {"user": "per-user", "user_per_server": "per-user-per-server", "tenant": "per-tenant", "tool": "per-tool"}


class RateLimiterPlugin(Plugin):
    """Rate limits tool calls and prompt fetches by user, tenant and tool.

    Configuration (the ``config:`` block) is validated in ``__init__``: a bad
    configuration raises ValueError listing every problem, so the plugin never
    starts half-configured. The engine (Go or Python) is chosen there too.
    """

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.limits: LimiterConfig = parse_config(config.config)
        self.engine = select_engine(self.limits, config.name)
        self._sync = bool(self.engine.sync)
        self._by_user = self.limits.by_user is not None
        self._by_user_per_server = self.limits.by_user_per_server is not None
        self._by_tenant = self.limits.by_tenant is not None
        self._tools = dict(self.limits.by_tool)  # a plain dict: the fastest membership test
        self._fail_closed = self.limits.fail_mode == "closed"
        self.error_log = ErrorLog(config.name, ERROR_LOG_INTERVAL_S, logger)
        hooks = {getattr(h, "value", h) for h in config.hooks or ()}
        # Admitted headers go to the HTTP response only through http_post_request; keep them
        # only when that hook is listed (otherwise nothing would ever take them).
        self._handoff = HANDOFF if self.limits.admitted_headers and "http_post_request" in hooks else None
        # cpex >= 0.1.4 results have denial_metadata (opt-in numbers for refusals); 0.1.3 does not.
        self._denial_metadata = "denial_metadata" in ToolPreInvokeResult.model_fields

    async def initialize(self) -> None:
        """Log which engine serves this instance (no identities, no tool names)."""
        dims = [
            d
            for d, on in (
                ("user", self._by_user),
                ("user_per_server", self._by_user_per_server),
                ("tenant", self._by_tenant),
                ("tool", bool(self._tools)),
            )
            if on
        ]
        logger.info(
            "rate limiter %s: engine=%s backend=%s algorithm=%s dimensions=%s fail_mode=%s",
            self.name,
            self.engine.name,
            self.limits.backend,
            self.limits.algorithm,
            ",".join(dims) or "none",
            self.limits.fail_mode,
        )

    async def shutdown(self) -> None:
        """Close the engine's connections; memory counters live on in the process-wide store (§10)."""
        try:
            await self.engine.close()
        except Exception as exc:
            logger.warning(
                "rate limiter %s: closing the engine failed: %s",
                self.name,
                sanitise_error(exc, self.limits.redis_key_prefix),
            )

    async def tool_pre_invoke(
        self, payload: ToolPreInvokePayload, context: PluginContext, extensions: Any = None
    ) -> ToolPreInvokeResult:
        """Count one call of ``payload.name`` against every dimension that applies."""
        if self._sync:  # nothing to await: the whole hook is this one coroutine
            return self._limit(payload.name, context, _TOOL, extensions, self._by_user_per_server)
        return await self._limit_async(payload.name, context, _TOOL, extensions, self._by_user_per_server)

    async def prompt_pre_fetch(
        self, payload: PromptPrehookPayload, context: PluginContext, extensions: Any = None
    ) -> PromptPrehookResult:
        """Count one fetch of prompt ``payload.prompt_id``; ``by_tool`` limits apply to prompt ids (§5)."""
        if self._sync:
            return self._limit(payload.prompt_id, context, _PROMPT, extensions)
        return await self._limit_async(payload.prompt_id, context, _PROMPT, extensions)

    async def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult:
        """Changes nothing. Listing it makes the gateway give the tool hook the request id that
        http_post_request sees, which the admitted-headers handoff needs (docs/gateway.md)."""
        return PluginResult()

    async def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> PluginResult:
        """Set the X-RateLimit-* headers of this request's admitted tool call on its HTTP response."""
        if self._handoff is None:
            return PluginResult()
        try:
            gctx = context.global_context
            headers = self._handoff.take((self.name, gctx.request_id, user_identity(gctx.user)))
        except Exception:  # never let a missing or odd context break the response
            return PluginResult()
        if headers is None:
            return PluginResult()
        return PluginResult(modified_payload=HttpHeaderPayload(root=dict(headers)))

    def _limit(
        self, name: object, context: PluginContext, build: ResultBuilders, extensions: Any, per_server: bool = False
    ) -> Any:
        """The request path of both hooks with a synchronous engine: identities, one engine call, the result.

        ``per_server``: the by_user_per_server dimension applies (tool calls only, §5)."""
        try:
            tool, user, tenant, server = self._identities(name, context, per_server)
            # self.engine.evaluate is looked up per call on purpose: the Go engine
            # replaces it on the instance with a faster closure after its first call.
            decision = self.engine.evaluate(user, tenant, tool, 0, server)
        except Exception as exc:  # §8: no engine or backend error escapes a hook
            return self._failed(exc, context, name, build, extensions)
        return self._answer(decision, tool, build, extensions, context, user, server)

    async def _limit_async(
        self, name: object, context: PluginContext, build: ResultBuilders, extensions: Any, per_server: bool = False
    ) -> Any:
        """``_limit`` with an engine that is awaited (Redis: the event loop runs on meanwhile)."""
        try:
            tool, user, tenant, server = self._identities(name, context, per_server)
            decision = await self.engine.check(user, tenant, tool, 0, server)
        except Exception as exc:  # §8: no engine or backend error escapes a hook
            return self._failed(exc, context, name, build, extensions)
        return self._answer(decision, tool, build, extensions, context, user, server)

    def _identities(
        self, name: object, context: PluginContext, per_server: bool
    ) -> tuple[str | None, str, str | None, str | None]:
        """(tool, user, tenant, server) of a request, each only when a configured dimension needs it (§5)."""
        gctx = context.global_context
        tool = None
        if self._tools:
            key = tool_key(name)
            if key in self._tools:
                tool = key
        server = server_identity(gctx.server_id) if per_server else None
        user = user_identity(gctx.user) if self._by_user or server is not None else ANONYMOUS
        tenant = tenant_identity(gctx.tenant_id) if self._by_tenant else None
        return tool, user, tenant, server

    def _failed(
        self, exc: Exception, context: PluginContext, name: object, build: ResultBuilders, extensions: Any
    ) -> Any:
        """The answer when the engine failed (§8), traced like any other."""
        result = self._on_error(exc, context, name, build)
        if extensions is not None:
            self._trace(result, extensions, admitted=not self._fail_closed, throttled=False)
        return result

    def _answer(
        self,
        decision: Decision,
        tool: str | None,
        build: ResultBuilders,
        extensions: Any,
        context: PluginContext,
        user: str,
        server: str | None,
    ) -> Any:
        """The cpex result of a decision (headers: §7), its admitted headers handed off, traced.

        One function from decision to result: on a memory backend a Python call is a visible
        share of the whole hook (docs/benchmarks.md, "Where the time goes")."""
        if decision.dimension is None:
            result = build.empty()
        else:
            headers = {
                "X-RateLimit-Limit": str(decision.limit),
                "X-RateLimit-Remaining": str(decision.remaining),
                "X-RateLimit-Reset": str(decision.reset_at_unix),
            }
            if decision.admitted:
                result = build.admitted(headers)
            else:
                headers["Retry-After"] = str(decision.retry_after_s)
                result = build.refused(self._rate_violation(decision, tool, headers))
        if self._handoff is not None and decision.admitted and decision.dimension is not None:
            # the caller, as http_post_request will compute it; already known when a user dimension ran
            gctx = context.global_context
            caller = user if self._by_user or server is not None else user_identity(gctx.user)
            self._handoff.put((self.name, gctx.request_id, caller), result.http_headers)
        if extensions is not None:
            self._trace(result, extensions, admitted=decision.admitted, throttled=not decision.admitted)
        return result

    def _trace(self, result: Any, extensions: Any, admitted: bool, throttled: bool) -> None:
        """The gateway's observability fields, only for a traced request; numbers and the backend, never an id."""
        request = getattr(extensions, "request", None)
        if request is None or not getattr(request, "trace_id", None):
            return
        allowed, throttled_n = int(admitted), int(throttled)
        result.metadata["rate_limiter"] = {"allowed": allowed, "throttled": throttled_n, "backend": self.limits.backend}
        if throttled and self._denial_metadata:
            result.denial_metadata = {"rate_limiter.allowed": allowed, "rate_limiter.throttled": throttled_n}

    def _rate_violation(self, decision: Decision, tool: str | None, headers: dict[str, str]) -> PluginViolation:
        dimension = decision.dimension or ""
        window_s = self._window_s(dimension, tool)
        # Kind of limit only: the user, tenant or tool name never goes into a violation (§7).
        description = (
            f"The {_KIND_TEXT.get(dimension, dimension)} limit of {decision.limit} requests per "
            f"{window_s} s is used up; retry after {decision.retry_after_s} s."
        )
        details = {
            "dimension": dimension,
            "limit": decision.limit,
            "window_s": window_s,
            "remaining": decision.remaining,
            "reset_at_unix": decision.reset_at_unix,
            "retry_after_s": decision.retry_after_s,
        }
        return new_violation("Rate limit exceeded", description, "RATE_LIMIT", details, 429, headers)

    def _window_s(self, dimension: str, tool: str | None) -> int:
        rate = None
        if dimension == "user":
            rate = self.limits.by_user
        elif dimension == "user_per_server":
            rate = self.limits.by_user_per_server
        elif dimension == "tenant":
            rate = self.limits.by_tenant
        elif dimension == "tool" and tool is not None:
            rate = self._tools.get(tool)
        return rate.window_s if rate is not None else 0

    def _on_error(self, exc: Exception, context: PluginContext, name: object, build: ResultBuilders) -> Any:
        def describe() -> str:
            # Only computed when a warning is actually written.
            try:
                gctx = context.global_context
                identities = (
                    user_identity(gctx.user),
                    tenant_identity(gctx.tenant_id),
                    server_identity(getattr(gctx, "server_id", None)),
                    tool_key(name),
                )
            except Exception:
                identities = ()
            return sanitise_error(exc, self.limits.redis_key_prefix, identities)

        self.error_log.report(describe, self.limits.fail_mode)
        if not self._fail_closed:
            return build.empty()
        return build.refused(
            PluginViolation(
                reason="Rate limiter unavailable",
                description="The rate limiter could not reach its backend and is configured to refuse "
                "requests then (fail_mode: closed).",
                code="BACKEND_UNAVAILABLE",
                details={"fail_mode": "closed"},
                http_status_code=503,
                http_headers={"Retry-After": "1"},
            ),
        )


_TOOL = BUILDERS[ToolPreInvokeResult]
_PROMPT = BUILDERS[PromptPrehookResult]

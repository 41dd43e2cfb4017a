"""A minimal cpex plugin over the ``limits`` library: the peer that a gateway author could write in an afternoon.

Same hooks, same ``config:`` keys (by_user, by_tenant, by_tool, algorithm,
backend, redis_url) and the same result objects as our plugin. ``limits``
has no atomic multi-key check and ``hit()`` answers only yes/no, so per
request the wrapper calls ``hit()`` per dimension in the order user, tenant,
tool (stopping at the first refusal, whose earlier hits stay consumed: not
all-or-nothing), then ``get_window_stats()`` for the headers: of every
dimension when admitted (the smallest remaining is reported), of the refusing
one when blocked. On Redis each of those calls is its own round trip.

Algorithms: ``fixed_window`` -> FixedWindowRateLimiter, ``sliding_window``
-> MovingWindowRateLimiter (an exact log, like ours). ``limits`` has no token
bucket. Memory uses the synchronous MemoryStorage (no I/O, like our memory
path); Redis uses ``limits.aio`` with redis-py's asyncio client.
"""

from __future__ import annotations

import time
from typing import Any

import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
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

SUPPORTED_ALGORITHMS = ("fixed_window", "sliding_window")
#: redis-py's asyncio client needs one connection per call in flight; its pool refuses more than this.
MAX_CONNECTIONS = 1024

_ITEM_BY_WINDOW = {
    "s": limits.RateLimitItemPerSecond,
    "m": limits.RateLimitItemPerMinute,
    "h": limits.RateLimitItemPerHour,
}
_WINDOW_S = {"s": 1, "m": 60, "h": 3600}


def _item(rate: str) -> tuple[limits.RateLimitItem, int]:
    """``"<count>/<s|m|h>"`` -> (limits item, window in seconds)."""
    count, _, unit = rate.replace(" ", "").partition("/")
    unit = unit.lower()[:1]
    if not count.isdigit() or unit not in _ITEM_BY_WINDOW:
        raise ValueError(f"limits wrapper: unsupported rate {rate!r}")
    return _ITEM_BY_WINDOW[unit](int(count)), _WINDOW_S[unit]


def _user_of(user: object) -> str:
    if isinstance(user, str):
        return user.strip() or "anonymous"
    if isinstance(user, dict):
        for field in ("email", "id", "sub"):
            if user.get(field) is not None:
                return str(user[field]).strip() or "anonymous"
        return "anonymous"
    return "anonymous" if user is None else (str(user).strip() or "anonymous")


class LimitsPlugin(Plugin):
    """Rate limits tool calls and prompt fetches with ``limits``; see the module docstring."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        cfg = dict(config.config or {})
        algorithm = cfg.get("algorithm", "fixed_window")
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"limits wrapper: algorithm {algorithm!r} has no limits equivalent")
        self._user = _item(cfg["by_user"]) if cfg.get("by_user") else None
        self._tenant = _item(cfg["by_tenant"]) if cfg.get("by_tenant") else None
        self._tools = {name.strip().lower(): _item(r) for name, r in (cfg.get("by_tool") or {}).items()}
        self._async = cfg.get("backend", "memory") == "redis"
        if self._async:
            url = str(cfg["redis_url"])
            self._storage: Any = limits.aio.storage.RedisStorage(
                "async+" + url,
                implementation="redispy",
                key_prefix=cfg.get("redis_key_prefix", "LIMITS"),
                max_connections=MAX_CONNECTIONS,
            )
            strategies: Any = limits.aio.strategies
        else:
            self._storage = limits.storage.MemoryStorage()
            strategies = limits.strategies
        cls = strategies.FixedWindowRateLimiter if algorithm == "fixed_window" else strategies.MovingWindowRateLimiter
        self._limiter = cls(self._storage)

    async def shutdown(self) -> None:
        if self._async:
            bridge = getattr(self._storage, "bridge", None)
            storage = getattr(bridge, "storage", None)
            if storage is not None and hasattr(storage, "aclose"):
                await storage.aclose()

    def _dimensions(self, context: PluginContext, name: object) -> list[tuple[str, limits.RateLimitItem, int, str]]:
        gctx = context.global_context
        dims = []
        if self._user is not None:
            dims.append(("user", self._user[0], self._user[1], _user_of(gctx.user)))
        if self._tenant is not None and gctx.tenant_id is not None:
            tenant = str(gctx.tenant_id).strip()
            if tenant:
                dims.append(("tenant", self._tenant[0], self._tenant[1], tenant))
        if self._tools:
            tool = "" if name is None else str(name).strip().lower()
            spec = self._tools.get(tool)
            if spec is not None:
                dims.append(("tool", spec[0], spec[1], tool))
        return dims

    async def _decide(self, context: PluginContext, name: object, result_type: Any) -> Any:
        dims = self._dimensions(context, name)
        if not dims:
            return result_type()
        limiter = self._limiter
        refused = None
        for dim in dims:
            ok = await limiter.hit(dim[1], dim[0], dim[3]) if self._async else limiter.hit(dim[1], dim[0], dim[3])
            if not ok:
                refused = dim
                break
        if refused is None:
            reported, stats = None, None
            for dim in dims:
                s = (
                    await limiter.get_window_stats(dim[1], dim[0], dim[3])
                    if self._async
                    else limiter.get_window_stats(dim[1], dim[0], dim[3])
                )
                if stats is None or s.remaining < stats.remaining:
                    reported, stats = dim, s
            assert reported is not None and stats is not None
            return result_type(http_headers=self._headers(reported, stats))
        stats = (
            await limiter.get_window_stats(refused[1], refused[0], refused[3])
            if self._async
            else limiter.get_window_stats(refused[1], refused[0], refused[3])
        )
        headers = self._headers(refused, stats)
        retry_after_s = max(1, -int(-(stats.reset_time - time.time()) // 1))
        headers["Retry-After"] = str(retry_after_s)
        violation = PluginViolation(
            reason="Rate limit exceeded",
            description=f"The per-{refused[0]} limit is used up; retry after {retry_after_s} s.",
            code="RATE_LIMIT",
            details={"dimension": refused[0], "limit": refused[1].amount, "window_s": refused[2]},
            http_status_code=429,
            http_headers=headers,
        )
        return result_type(continue_processing=False, violation=violation)

    @staticmethod
    def _headers(dim: tuple[str, limits.RateLimitItem, int, str], stats: Any) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(dim[1].amount),
            "X-RateLimit-Remaining": str(max(0, int(stats.remaining))),
            "X-RateLimit-Reset": str(-int(-stats.reset_time // 1)),
        }

    async def tool_pre_invoke(
        self, payload: ToolPreInvokePayload, context: PluginContext, extensions: Any = None
    ) -> ToolPreInvokeResult:
        return await self._decide(context, payload.name, ToolPreInvokeResult)

    async def prompt_pre_fetch(
        self, payload: PromptPrehookPayload, context: PluginContext, extensions: Any = None
    ) -> PromptPrehookResult:
        return await self._decide(context, payload.prompt_id, PromptPrehookResult)

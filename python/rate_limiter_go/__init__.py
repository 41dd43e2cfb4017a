"""Rate limiter plugin for the ContextForge MCP gateway (Go engine via gopy, pure-Python fallback).

Use it from a cpex plugin configuration as ``kind: rate_limiter_go.plugin.RateLimiterPlugin``.
``RateLimiterPlugin`` is also importable from here; it is loaded lazily so that
importing the package (e.g. by the native loader) does not import cpex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RateLimiterPlugin", "__version__"]

if TYPE_CHECKING:
    from rate_limiter_go.plugin import RateLimiterPlugin


def __getattr__(name: str) -> Any:
    if name == "RateLimiterPlugin":
        from rate_limiter_go.plugin import RateLimiterPlugin

        return RateLimiterPlugin
    raise AttributeError(f"module 'rate_limiter_go' has no attribute {name!r}")

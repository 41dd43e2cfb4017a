"""Plugin configuration: the one place where settings are parsed and validated.

``parse_config(raw)`` turns the plugin's ``config:`` mapping into a frozen
:class:`LimiterConfig` or raises one ValueError listing every problem. Engines
receive only LimiterConfig, never the raw mapping. Rules: docs/semantics.md §1,
§5, §6, §8, §10 and the README's configuration table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
BACKENDS = ("memory", "redis")
FAIL_MODES = ("open", "closed")


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``window_s`` seconds (§1)."""

    limit: int
    window_s: int

    @property
    def window_us(self) -> int:
        return self.window_s * 1_000_000

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_s}"


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    """A validated configuration. Tool names in ``by_tool`` are normalised (§5)."""

    by_user: Rate | None = None
    by_tenant: Rate | None = None
    by_tool: Mapping[str, Rate] = field(default_factory=lambda: MappingProxyType({}))
    algorithm: str = "fixed_window"
    backend: str = "memory"
    redis_url: str | None = None
    redis_key_prefix: str = "rl"
    fail_mode: str = "open"
    redis_connect_timeout_ms: int = 50
    redis_timeout_ms: int = 50
    redis_breaker_failures: int = 5
    redis_breaker_cooldown_ms: int = 1000
    memory_max_keys: int = 100_000

    def canonical_json(self) -> str:
        """A deterministic JSON rendering: identifies the shared memory store
        (§10) and is the configuration handed to the Go engine. Rates are
        written as ``{"limit": n, "window_s": w}``."""

        def rate(r: Rate | None) -> dict[str, int] | None:
            return None if r is None else {"limit": r.limit, "window_s": r.window_s}

        doc = {
            "algorithm": self.algorithm,
            "backend": self.backend,
            "by_tenant": rate(self.by_tenant),
            "by_tool": {name: rate(r) for name, r in sorted(self.by_tool.items())},
            "by_user": rate(self.by_user),
            "fail_mode": self.fail_mode,
            "memory_max_keys": self.memory_max_keys,
            "redis_breaker_cooldown_ms": self.redis_breaker_cooldown_ms,
            "redis_breaker_failures": self.redis_breaker_failures,
            "redis_connect_timeout_ms": self.redis_connect_timeout_ms,
            "redis_key_prefix": self.redis_key_prefix,
            "redis_timeout_ms": self.redis_timeout_ms,
            "redis_url": self.redis_url,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

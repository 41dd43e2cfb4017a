"""What every subject is asked: the scenario matrix, the equivalent configurations and the request pool.

A scenario fixes backend, algorithm, number of dimensions and path. The
admitted path uses limits no run can reach (1,000,000 per second, the largest
count docs/semantics.md §1 allows, and a one-second window so sliding-window
logs stay short); the blocked path uses 1 per hour on every configured
dimension, so after the warm-up every request is refused. Requests cycle
through a fixed pool of prebuilt cpex payloads and contexts (64 users, 8
tenants, one limited tool): building them is the gateway's work, not the
limiter's, and stays outside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpex.framework import GlobalContext, PluginContext, PromptPrehookPayload, ToolPreInvokePayload

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
BACKENDS = ("memory", "redis")
DIMS = (1, 3)
PATHS = ("admitted", "blocked")
#: Only in the Cluster cells (and their standalone counterparts): 3 dimensions, the user's limit spent
#: (BLOCKED_RATE) while tenant and tool admit (ADMITTED_RATE), so the request is refused by one
#: dimension; on a Cluster the tenant and tool slot groups consume and are given back (§11.1).
PARTIAL = "partial"
HOOKS = ("tool_pre_invoke", "prompt_pre_fetch")

ADMITTED_RATE = "1000000/s"
BLOCKED_RATE = "1/h"
TOOL = "search"

POOL_USERS = 64
POOL_TENANTS = 8

# Short labels for tables.
ALGO_SHORT = {"fixed_window": "fixed", "sliding_window": "sliding", "token_bucket": "bucket"}
HOOK_SHORT = {"tool_pre_invoke": "tool", "prompt_pre_fetch": "prompt"}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One cell of the matrix (hook excluded: both hooks share a plugin instance)."""

    backend: str
    algorithm: str
    dims: int
    path: str

    @property
    def rate(self) -> str:
        """The rate of the user dimension; on the partial path the others have ADMITTED_RATE."""
        return ADMITTED_RATE if self.path == "admitted" else BLOCKED_RATE

    @property
    def admitted(self) -> bool:
        """Whether the path's requests are admitted (after the warm-up)."""
        return self.path == "admitted"

    def label(self) -> str:
        return f"{self.backend}/{ALGO_SHORT[self.algorithm]}/{self.dims}d/{self.path}"


def scenarios(backends: tuple[str, ...] = BACKENDS) -> list[Scenario]:
    """Every scenario of the matrix, in a stable order."""
    return [
        Scenario(backend, algorithm, dims, path)
        for backend in backends
        for algorithm in ALGORITHMS
        for dims in DIMS
        for path in PATHS
    ]


def partial_scenarios() -> list[Scenario]:
    """The partial path on Redis, every algorithm, 3 dimensions (see PARTIAL)."""
    return [Scenario("redis", algorithm, 3, PARTIAL) for algorithm in ALGORITHMS]


def limiter_config(s: Scenario, redis_url: str | None, key_prefix: str) -> dict[str, Any]:
    """The ``config:`` mapping for our plugin and for cpex-rate-limiter (both accept this shape).

    One dimension is ``by_user``; three are user, tenant and the pool's tool.
    """
    if s.path == PARTIAL and s.dims != 3:
        raise ValueError(f"scenario {s.label()}: the partial path needs 3 dimensions")
    others = ADMITTED_RATE if s.path == PARTIAL else s.rate
    cfg: dict[str, Any] = {
        "by_user": s.rate,
        "algorithm": s.algorithm,
        "backend": s.backend,
        "redis_key_prefix": key_prefix,
        "fail_mode": "open",
    }
    if s.dims == 3:
        cfg["by_tenant"] = others
        cfg["by_tool"] = {TOOL: others}
    if s.backend == "redis":
        if redis_url is None:
            raise ValueError(f"scenario {s.label()} needs a redis_url")
        cfg["redis_url"] = redis_url
    return cfg


@dataclass(frozen=True, slots=True)
class Request:
    """One prebuilt request: both hook payloads and the context the manager would pass."""

    tool_payload: ToolPreInvokePayload
    prompt_payload: PromptPrehookPayload
    context: PluginContext
    user: str
    tenant: str


def request_pool(size: int = POOL_USERS) -> list[Request]:
    """``size`` requests from distinct users spread over POOL_TENANTS tenants, all for TOOL."""
    pool = []
    for i in range(size):
        user = f"user-{i:03d}@example.com"
        tenant = f"team-{i % POOL_TENANTS}"
        gctx = GlobalContext(request_id=f"bench-{i}", user=user, tenant_id=tenant, server_id="server-1")
        pool.append(
            Request(
                tool_payload=ToolPreInvokePayload(name=TOOL, args={"query": "rate limits"}),
                prompt_payload=PromptPrehookPayload(prompt_id=TOOL, args={}),
                context=PluginContext(global_context=gctx),
                user=user,
                tenant=tenant,
            )
        )
    return pool

"""The engine boundary: what the plugin asks an engine and what it gets back.

Both engines (pure Python in ``engine_python``, Go in ``engine_go``) implement
:class:`Engine`. The plugin extracts the identities, makes one engine call per
request and turns the :class:`Decision` into a cpex result. Semantics of every
field: docs/semantics.md.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

# Dimension names in evaluation order (docs/semantics.md §4).
DIMENSIONS: tuple[str, str, str, str] = ("user", "user_per_server", "tenant", "tool")


class Decision(NamedTuple):
    """One request's answer, taken from the reported dimension (§4, §7).

    ``dimension`` is None when no dimension applied: the request is admitted
    and no headers are sent.

    An immutable NamedTuple rather than a frozen dataclass: building one is
    a single tuple allocation, which matters on the hot path (docs/engine.md).
    Being a tuple, a Decision is always truthy and compares equal to a plain
    tuple of the same fields: test ``decision.admitted``, never ``decision``.
    """

    admitted: bool
    dimension: str | None
    limit: int = 0
    remaining: int = 0
    reset_at_unix: int = 0
    retry_after_s: int = 0  # 0 when admitted, else >= 1


# Shared instance for "no dimension applied": avoids an allocation per request.
NO_LIMIT = Decision(admitted=True, dimension=None)


class EngineError(Exception):
    """The backend or the engine could not answer; the plugin applies fail_mode (§8)."""


class Engine(Protocol):
    """A rate limiting engine bound to one validated configuration."""

    name: str  # "python" or "go"
    sync: bool  # True when evaluate() answers without I/O (memory backend)

    def evaluate(
        self, user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
    ) -> Decision:
        """Synchronous form of check(), only for engines with ``sync`` True.

        The memory path stays a direct call: no coroutine, no event-loop hop.
        """
        ...

    async def check(
        self, user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
    ) -> Decision:
        """Evaluate and (if admitted) consume one request.

        ``user`` is already normalised (never empty); ``tenant`` is None when the
        tenant dimension does not apply; ``tool`` is the normalised tool name,
        or None; ``server`` is the normalised virtual server of a tool call, or
        None when the user_per_server dimension does not apply (prompt
        fetches, no server). ``now_us`` = 0 uses the backend's clock (§2); tests pass an
        explicit time. Raises EngineError on backend failure.
        """
        ...

    async def close(self) -> None:
        """Release connections. Memory state is process-wide and survives (§10)."""
        ...

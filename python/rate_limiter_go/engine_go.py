"""The Go engine: a thin wrapper over the gopy extension ``rate_limiter_go._goext.pyext``.

One request is one call into Go, which builds the keys, evaluates every
dimension all-or-nothing and packs the reported dimension into one int64
(docs/engine.md). The memory backend answers synchronously, through the
extension's hand-written entry ``evaluate_fast``; the Redis backend runs in a goroutine and completes through an
eventfd watched by the event loop (completion.py), so a hook never blocks the
loop for a Redis round trip.

The extension is imported lazily, on the first evaluation, through
``_native.load_native()``: importing it starts the Go runtime, which does not
survive fork(), so a ``gunicorn --preload`` master that builds plugins must
not start it.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from typing import Any, Callable

from rate_limiter_go import _native
from rate_limiter_go.completion import completions
from rate_limiter_go.config import LimiterConfig
from rate_limiter_go.engine import DIMENSIONS, NO_LIMIT, Decision, EngineError
from rate_limiter_go.keys import escape_identity

__all__ = ["ABI_VERSION", "GoEngine", "MARKER", "go_config_json", "reset_memory_stores", "unpack", "wire_identity"]

#: The pyext API version this wrapper speaks (pyext.ABIVersion()).
ABI_VERSION = 5

#: Leads an identity that is passed already escaped (docs/engine.md): C strings
#: cannot carry NUL or lone surrogates, and a raw identity starting with the
#: marker must not be mistaken for an escaped one.
MARKER = "\x01"

# Packed result layout (docs/engine.md): bit 0 admitted, bits 1-3 dimension,
# bits 4-24 value, bits 25-62 reset.
_DIM_MASK = 7
_VALUE_SHIFT = 4
_VALUE_MASK = (1 << 21) - 1
_RESET_SHIFT = 25
_TOOL_DIMENSION = 3
_NONE_DIMENSION = 4
_PACKED_NO_LIMIT = 1 | _NONE_DIMENSION << 1

_ERRORS = {
    -1: "backend unavailable",
    -2: "unknown limiter handle (closed?)",
    -3: "bad argument",
    -4: "internal error in the Go engine",
}

# Decision is a NamedTuple: its generated __new__ is a Python-level function
# that passes its arguments on to tuple.__new__. Calling tuple.__new__
# directly builds the same value without that extra frame (checked by
# test_engine_go); called as is, not through functools.partial, which costs
# as much as the frame it saves. The fields must keep this order.
_DECISION_FIELDS = ("admitted", "dimension", "limit", "remaining", "reset_at_unix", "retry_after_s")
if not issubclass(Decision, tuple) or getattr(Decision, "_fields", None) != _DECISION_FIELDS:
    raise ImportError("rate_limiter_go.engine.Decision changed shape: update engine_go._new_decision")

#: _new_decision(Decision, (admitted, dimension, limit, remaining, reset_at_unix, retry_after_s))
#: == Decision(admitted, dimension, limit, remaining, reset_at_unix, retry_after_s)
_new_decision: Callable[[type[Decision], tuple[bool, str, int, int, int, int]], Decision] = tuple.__new__


# Decisions are immutable, so equal packed results can share one instance;
# the cache is cleared when it reaches this size.
_CACHE_MAX = 4096


def wire_identity(identity: str) -> str:
    """The form in which an identity crosses the binding (docs/engine.md).

    An identity containing NUL or a lone surrogate, or starting with MARKER,
    becomes MARKER + its §6 escaped form; any other passes unchanged.
    """
    if identity[:1] == MARKER or "\x00" in identity:
        return MARKER + escape_identity(identity)
    try:
        identity.encode("utf-8")
    except UnicodeEncodeError:
        return MARKER + escape_identity(identity)
    return identity


# JSON field -> the environment variable whose value at engine construction it carries.
_HOST_TRUST = (("host_ssl_cert_file", "SSL_CERT_FILE"), ("host_ssl_cert_dir", "SSL_CERT_DIR"))


def go_config_json(config: LimiterConfig) -> str:
    """The configuration JSON for the Go engine: ``canonical_json()``, plus, for a
    ``rediss://`` Redis, this process's SSL_CERT_FILE and SSL_CERT_DIR as they are now.

    Go copies the environment once, when its runtime starts, and never sees a variable
    set later (by the gateway's settings loader, python-dotenv, a test), whereas
    OpenSSL (the Python engine) reads them on every connection; so they are handed
    over explicitly (docs/redis-backend.md, TLS). Unset or empty variables are left out.
    """
    text = config.canonical_json()
    if config.backend != "redis" or not (config.redis_url or "").startswith("rediss://"):
        return text
    host = {field: os.environ.get(variable, "") for field, variable in _HOST_TRUST}
    host = {field: value for field, value in host.items() if value}
    if not host:
        return text
    doc = json.loads(text)
    doc.update(host)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def unpack(packed: int) -> tuple[bool, int, int, int]:
    """Split a packed result into (admitted, dimension index, value, reset_at_unix).

    value is the remaining count when admitted, Retry-After seconds when
    blocked; the dimension index is into DIMENSIONS, 4 meaning that no
    dimension applied. Negative packed
    values are error codes: -3 (bad argument) raises ValueError, like the
    Python engine for the same input; the others raise EngineError.
    """
    if packed < 0:
        if packed == -3:
            raise ValueError("Go engine: bad argument (empty user, malformed marked identity or now_us out of range)")
        raise EngineError(f"Go engine: {_ERRORS.get(packed, f'error code {packed}')}")
    return bool(packed & 1), (packed >> 1) & _DIM_MASK, (packed >> _VALUE_SHIFT) & _VALUE_MASK, packed >> _RESET_SHIFT


class GoEngine:
    """rate_limiter_go.engine.Engine on the Go extension.

    ``store_name`` (the plugin name) and the configuration identify the
    process-wide state shared by every engine with the same pair (§10).
    """

    name = "go"

    def __init__(self, config: LimiterConfig, store_name: str) -> None:
        if not _native.native_available():
            raise ImportError(
                "the Go engine needs the native extension: "
                + (_native.native_unavailable_reason() or "rate_limiter_go._goext is not built")
            )
        for tool in config.by_tool:
            try:
                tool.encode("utf-8")
            except UnicodeEncodeError:
                # JSON would carry it, but Go decodes a lone surrogate as U+FFFD.
                raise ValueError("the Go engine cannot use a by_tool name containing a lone surrogate") from None
        self.config = config
        self.sync = config.backend == "memory"
        self._store_name = store_name
        self._config_json = go_config_json(config)  # the trust variables as of now, plugin init
        # Limits by dimension index (DIMENSIONS) but the tool's, which depends on the tool.
        self._limits: tuple[int, int, int] = (
            config.by_user.limit if config.by_user else 0,
            config.by_user_per_server.limit if config.by_user_per_server else 0,
            config.by_tenant.limit if config.by_tenant else 0,
        )
        self._tool_limits: dict[str, int] = {name: rate.limit for name, rate in config.by_tool.items()}
        # When every tool has the same limit, a tool decision depends on the
        # packed value alone and may be cached like the others.
        self._tool_uniform = len({r.limit for r in config.by_tool.values()}) <= 1
        self._cache: dict[int, Decision] = {_PACKED_NO_LIMIT: NO_LIMIT}
        self._handle = 0
        self._closed = False
        self._lock = threading.Lock()
        self._mod: Any = None
        self._decode: Callable[[int, str | None], Decision] = _unbound
        self._finalizer: weakref.finalize | None = None
        self._max_ticket = 0  # pyext.MaxTicket, set by _bind
        # check()'s start: a Decision answered at once, or a ticket to await; set by _bind.
        self._begin: Callable[..., Decision | int] = _unbound_begin

    # -- binding -------------------------------------------------------------

    def _bind(self) -> Any:
        """Load the extension and create the Go limiter, once; raise EngineError if impossible."""
        with self._lock:
            if self._mod is not None:
                return self._mod
            if self._closed:
                raise EngineError("Go engine: used after close()")
            try:
                mod = _native.load_native()
            except (ImportError, RuntimeError) as e:  # RuntimeError: NativeForkError
                raise EngineError(f"Go engine unavailable: {e}") from e
            abi = mod.ABIVersion()
            if abi != ABI_VERSION:
                raise EngineError(f"Go extension speaks ABI {abi}, this wrapper {ABI_VERSION}: rebuild (make build)")
            try:
                handle = mod.NewLimiter(wire_identity(self._store_name), self._config_json)
            except RuntimeError as e:
                raise EngineError(f"Go engine rejected the configuration: {e}") from e
            if handle < 1:
                raise EngineError(f"Go engine: NewLimiter returned {handle}")
            self._handle = handle
            self._max_ticket = mod.TicketBound()
            self._finalizer = weakref.finalize(self, _close_handle, mod, handle)
            self._install_fast_path(mod, handle)
            self._mod = mod
            _bound.add(self)
            return mod

    def _unbind_after_fork(self) -> None:
        """In a child forked after this engine started Go: drop the fast path so
        the next call goes through _bind, which refuses (NativeForkError)."""
        self.__dict__.pop("evaluate", None)
        self._mod = None

    def _install_fast_path(self, mod: Any, handle: int) -> None:
        """Replace evaluate() on this instance by the C entry point bound to this engine.

        ``evaluate_fast`` (tools/build/fastpath) when the extension has it: a
        partial of the C function, no Python code per request. Otherwise a
        closure over gopy's C entry point (skipping gopy's Python-level
        wrapper) and the Python decoder, which check() shares.
        """
        new = _new_decision
        cache = self._cache
        limits = (*self._limits, 0)
        tool_limits = self._tool_limits
        tool_uniform = self._tool_uniform
        # Whether admitted decisions are worth caching. A refusal repeats until its
        # Retry-After (every refused call of a key gets the same packed value), so
        # refusals always are. An admitted answer repeats only when another key has
        # the same remaining count and reset: common in a fixed window, whose reset is
        # the same epoch-aligned boundary for every key, rare in the sliding window
        # and token bucket, whose reset depends on each key's own history; there an
        # insertion on every admitted call would cost more than its few hits save.
        cache_admitted = self.config.algorithm == "fixed_window"

        def decode(packed: int, tool: str | None) -> Decision:
            """The Decision of a packed result that is not in the cache (docs/engine.md, "Packed result")."""
            if packed < 0:
                unpack(packed)  # raises
            dim = (packed >> 1) & _DIM_MASK  # 4 (none) is always in the cache
            value = (packed >> _VALUE_SHIFT) & _VALUE_MASK
            reset = packed >> _RESET_SHIFT
            limit = limits[dim] if dim != _TOOL_DIMENSION else tool_limits[tool]  # type: ignore[index]  # configured
            if packed & 1:
                d = new(Decision, (True, DIMENSIONS[dim], limit, value, reset, 0))
            else:
                d = new(Decision, (False, DIMENSIONS[dim], limit, 0, reset, value))
            # A tool decision with per-tool limits is not cacheable: the packed value does not say which tool.
            if (cache_admitted or not packed & 1) and (dim != _TOOL_DIMENSION or tool_uniform):
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                    cache[_PACKED_NO_LIMIT] = NO_LIMIT
                cache[packed] = d
            return d

        self._decode = decode
        fast = fast_entry(mod)
        if fast is not None:
            # evaluate_fast and submit_fast take evaluate()'s arguments after these two and do
            # all of their work in C (wire forms included): no Python frame per request.
            ctx = self.fast_context()
            self.evaluate = functools.partial(fast, ctx, handle)  # type: ignore[method-assign]
            self._begin = functools.partial(mod._pyext.submit_fast, ctx, handle)
        else:
            self.evaluate = self._packed_evaluate(mod, handle, decode)  # type: ignore[method-assign]
            self._begin = self._packed_begin(mod, handle, decode)

    def fast_context(self) -> tuple[Any, ...]:
        """The first argument of ``evaluate_fast`` and ``submit_fast`` (docs/engine.md, "The fast
        entries"): what they need to build a Decision in C, in the order
        tools/build/fastpath/fastpath.c reads it; its last item is pyext.MaxTicket, the largest
        ticket ``submit_fast`` returns.

        The tool limits are keyed by the names as they cross (wire form); C calls
        ``wire_identity`` for an identity that needs the wire form. ``fallback`` gets
        what C does not build: it raises for an error code (as ``unpack``) and decodes anything
        else. The GIL is held during the call into Go on the memory backend (a few hundred ns of
        CPU work that never waits), released on Redis (a round trip).
        """
        limits = (*self._limits, None)
        wire_tools = {wire_identity(name): limit for name, limit in self._tool_limits.items()}

        def fallback(packed: int, wire_tool: str) -> Decision:
            admitted, dim, value, reset = unpack(packed)  # raises for an error code
            if dim == _NONE_DIMENSION:
                return NO_LIMIT
            limit = limits[dim] if dim != _TOOL_DIMENSION else wire_tools[wire_tool]
            if admitted:
                return _new_decision(Decision, (True, DIMENSIONS[dim], limit, value, reset, 0))  # type: ignore[arg-type]
            return _new_decision(Decision, (False, DIMENSIONS[dim], limit, 0, reset, value))  # type: ignore[arg-type]

        return (Decision, DIMENSIONS, limits, wire_tools, NO_LIMIT, fallback, self.sync, wire_identity, self._max_ticket)

    def _packed_evaluate(
        self, mod: Any, handle: int, decode: Callable[[int, str | None], Decision]
    ) -> Callable[..., Decision]:
        """evaluate() on gopy's wrapper of pyext.Evaluate (an extension built without the fast path)."""
        raw = getattr(getattr(mod, "_pyext", None), "pyext_Evaluate", None) or mod.Evaluate
        cache_get = self._cache.get

        def evaluate(
            user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
        ) -> Decision:
            packed = _cross(raw, handle, user, tenant, tool, now_us, server)
            d = cache_get(packed)
            return d if d is not None else decode(packed, tool)

        return evaluate

    def _packed_begin(
        self, mod: Any, handle: int, decode: Callable[[int, str | None], Decision]
    ) -> Callable[..., Decision | int]:
        """check()'s start on gopy's wrapper of pyext.Submit (an extension built without the fast
        path): the Decision Submit answered at once, or its ticket."""
        raw = getattr(getattr(mod, "_pyext", None), "pyext_Submit", None) or mod.Submit
        cache_get = self._cache.get
        max_ticket = self._max_ticket

        def begin(
            user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
        ) -> Decision | int:
            packed = _cross(raw, handle, user, tenant, tool, now_us, server)
            if packed <= max_ticket:
                return packed
            d = cache_get(packed)
            return d if d is not None else decode(packed, tool)  # decode raises for an error code

        return begin

    # -- Engine --------------------------------------------------------------

    def evaluate(
        self, user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
    ) -> Decision:
        """Evaluate and consume one request (§4) with one call into Go.

        Meant for the memory backend (``sync``); with Redis it blocks the
        calling thread (not the GIL) for the round trip. Raises EngineError
        when the engine or backend fails.
        """
        self._bind()
        return self.evaluate(user, tenant, tool, now_us, server)  # the fast path installed by _bind

    async def check(
        self, user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
    ) -> Decision:
        """Evaluate one request; with Redis the event loop keeps running meanwhile."""
        if self.sync:
            return self.evaluate(user, tenant, tool, now_us, server)
        mod = self._mod or self._bind()
        # Submit answers at once what needs no I/O (a remembered refusal, §12): no suspension.
        started = self._begin(user, tenant, tool, now_us, server)
        if started.__class__ is not int:
            return started  # type: ignore[return-value]
        packed = await completions(mod).wait(started)  # type: ignore[arg-type]
        d = self._cache.get(packed)
        return d if d is not None else self._decode(packed, tool)

    async def close(self) -> None:
        """Release the Go limiter (and its share of the Redis pool); memory state survives (§10)."""
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()  # runs _close_handle once


# Engines bound to the Go runtime of this process. A child forked after Go
# started must not call into it (the runtime does not survive fork), and the
# fast path calls the extension directly, so the fork hook unbinds them.
_bound: weakref.WeakSet[GoEngine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # completion.py drops its eventfd bridge in the child with a hook of its own.
    for engine in list(_bound):
        engine._unbind_after_fork()
    _bound.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def fast_entry(mod: Any) -> Callable[..., Any] | None:
    """The extension's ``evaluate_fast`` (tools/build/fastpath), or None if it was built without it."""
    return getattr(getattr(mod, "_pyext", None), "evaluate_fast", None)


def _unbound(packed: int, tool: str | None) -> Decision:
    raise EngineError("Go engine: not bound")  # replaced by _bind before any result exists


def _unbound_begin(*args: Any) -> Decision | int:
    raise EngineError("Go engine: not bound")  # replaced by _bind before check() calls it


def _cross(
    raw: Callable[[int, str, str, str, str, int], int],
    handle: int,
    user: str,
    tenant: str | None,
    tool: str | None,
    now_us: int,
    server: str | None,
) -> int:
    """``raw(handle, user, server, tenant, tool, now_us)`` through gopy's C string converter, each
    identity in the form it must cross in (docs/engine.md, "Identities that cannot cross as C
    strings"): as itself when it can, else its wire form. C's ``rl_wire`` applies the same rule to
    the fast entries."""
    # Only "" and strings starting with "\x00" or MARKER compare below "\x02" and need the wire form.
    u = user if user >= "\x02" else wire_identity(user)
    s = "" if server is None else server if server >= "\x02" else wire_identity(server)
    t = "" if tenant is None else tenant if tenant >= "\x02" else wire_identity(tenant)
    w = "" if tool is None else tool if tool >= "\x02" else wire_identity(tool)
    try:
        return raw(handle, u, s, t, w, now_us)
    except (ValueError, UnicodeEncodeError):  # NUL inside, or a lone surrogate: pass escaped
        return raw(
            handle, wire_identity(user), wire_identity(server or ""), wire_identity(tenant or ""), wire_identity(tool or ""), now_us
        )


def reset_memory_stores() -> None:
    """Forget the Go engine's shared memory stores, for tests (the Python
    engine's counterpart is engine_python.memory.reset_registry). Engines
    already bound keep their store. Does nothing, and does not load the
    extension, if this process has not loaded it."""
    if _native.loaded_in_pid() == os.getpid():
        _native.load_native().ResetMemoryStores()


def _close_handle(mod: Any, handle: int) -> None:
    # A forked child must not call into the parent's Go runtime.
    if _native.loaded_in_pid() == os.getpid():
        mod.CloseLimiter(handle)

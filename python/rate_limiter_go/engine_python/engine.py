"""PythonEngine: the pure-Python engine, fallback for and parity reference of the Go engine.

Memory backend: a synchronous evaluation under the shared store's lock (§4,
§10). Redis backend: one EVALSHA per request through ``redis_backend`` (§9).
Both report through ``selection`` (§4, §7).
"""

from __future__ import annotations

import time

from rate_limiter_go.config import LimiterConfig, Rate
from rate_limiter_go.engine import NO_LIMIT, Decision
from rate_limiter_go.engine_python.algorithms import ALGORITHMS
from rate_limiter_go.engine_python.memory import shared_store
from rate_limiter_go.engine_python.selection import decision_from_script_reply, reported_index, to_decision
from rate_limiter_go.keys import key_prefix, key_segment, user_server_segment

__all__ = ["KEY_CACHE_SIZE", "MAX_NOW_US", "PythonEngine"]


class _Dimension:
    """One configured dimension, with everything a request needs precomputed."""

    __slots__ = ("name", "key", "limit", "window_us", "argv")

    def __init__(self, name: str, key: str, rate: Rate) -> None:
        self.name = name
        self.key = key  # the key prefix ending in ':' (user, user_per_server, tenant), or the whole key (tool)
        self.limit = rate.limit
        self.window_us = rate.window_us
        self.argv = (str(rate.limit), str(rate.window_us))  # §9 ARGV pair


#: Largest explicit now_us accepted (the year 2112): keeps now + window below 2^53, exact in Lua (as the Go engine).
MAX_NOW_US = 1 << 52

#: Entries per identity -> key cache; a full cache is simply emptied (cheap, and no LRU bookkeeping per hit).
KEY_CACHE_SIZE = 4096


def _remember(cache: dict[str, str], identity: str, key: str) -> str:
    if len(cache) >= KEY_CACHE_SIZE:
        cache.clear()
    cache[identity] = key
    return key


class PythonEngine:
    """The §1-§10 semantics in Python, bound to one validated configuration.

    ``store_name`` (the plugin's name) and the configuration select the shared
    memory store (§10); the Redis backend ignores it.
    """

    name = "python"

    def __init__(self, config: LimiterConfig, store_name: str) -> None:
        if not isinstance(config, LimiterConfig):
            raise TypeError(f"config must be a LimiterConfig, not {type(config).__name__}")
        if config.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {config.algorithm!r}")
        self.config = config
        self.sync = config.backend == "memory"
        self._algorithm = ALGORITHMS[config.algorithm]
        prefix, algorithm = config.redis_key_prefix, config.algorithm
        self._user = (
            _Dimension("user", key_prefix(prefix, algorithm, "user", config.by_user), config.by_user)
            if config.by_user is not None
            else None
        )
        self._user_server = (
            _Dimension(
                "user_per_server",
                key_prefix(prefix, algorithm, "user_per_server", config.by_user_per_server),
                config.by_user_per_server,
            )
            if config.by_user_per_server is not None
            else None
        )
        self._tenant = (
            _Dimension("tenant", key_prefix(prefix, algorithm, "tenant", config.by_tenant), config.by_tenant)
            if config.by_tenant is not None
            else None
        )
        # Tool names come from the configuration, so their keys are complete already.
        self._tools = {
            tool: _Dimension("tool", key_prefix(prefix, algorithm, "tool", rate) + key_segment(tool), rate)
            for tool, rate in config.by_tool.items()
        }
        # identity -> full key: escaping is the costliest step of building a key and callers repeat.
        self._user_keys: dict[str, str] = {}
        self._tenant_keys: dict[str, str] = {}
        self._user_server_keys: dict[tuple[str, str], str] = {}
        if self.sync:
            self._store = shared_store(store_name, config)
            self._redis = None
        else:
            from rate_limiter_go.engine_python.redis_backend import RedisBackend

            self._store = None
            self._redis = RedisBackend(config)

    def _dimensions(
        self, user: str, tenant: str | None, tool: str | None, server: str | None = None
    ) -> list[tuple[_Dimension, str]]:
        """The request's (dimension, key) pairs in order user, user_per_server, tenant, tool (§5)."""
        if not user or not isinstance(user, str):
            raise ValueError("user must be a non-empty str (normalised by the caller, 'anonymous' if unknown)")
        dims = []
        if self._user is not None:
            key = self._user_keys.get(user)
            if key is None:
                key = _remember(self._user_keys, user, self._user.key + key_segment(user))
            dims.append((self._user, key))
        if server is not None and self._user_server is not None:
            pair = (user, server)
            key = self._user_server_keys.get(pair)
            if key is None:
                if not server or not isinstance(server, str):
                    raise ValueError("server must be None or a non-empty str")
                key = self._user_server.key + user_server_segment(user, server)
                if len(self._user_server_keys) >= KEY_CACHE_SIZE:
                    self._user_server_keys.clear()
                self._user_server_keys[pair] = key
            dims.append((self._user_server, key))
        if tenant is not None and self._tenant is not None:
            key = self._tenant_keys.get(tenant)
            if key is None:
                if not tenant or not isinstance(tenant, str):
                    raise ValueError("tenant must be None or a non-empty str")
                key = _remember(self._tenant_keys, tenant, self._tenant.key + key_segment(tenant))
            dims.append((self._tenant, key))
        if tool is not None:
            spec = self._tools.get(tool)
            if spec is not None:
                dims.append((spec, spec.key))
        return dims

    def evaluate(
        self, user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
    ) -> Decision:
        """Check and (if admitted) consume one request on the memory backend; see Engine.check."""
        store = self._store
        if store is None:
            raise RuntimeError("evaluate() needs the memory backend; use 'await check()' with redis")
        dims = self._dimensions(user, tenant, tool, server)
        if not dims:
            return NO_LIMIT
        if now_us == 0:
            now_us = time.time_ns() // 1000
        elif type(now_us) is not int or not 0 < now_us <= MAX_NOW_US:
            raise ValueError(
                f"now_us must be an int in 1..2^52 (µs since the epoch) or 0 for the clock, got {now_us!r}"
            )
        algorithm = self._algorithm
        check = algorithm.check

        if len(dims) == 1:  # the common case, without the per-dimension lists
            spec, key = dims[0]
            limit, window_us = spec.limit, spec.window_us
            with store.lock:
                state = store.states.get(key)
                probe = check(state, now_us, limit, window_us)
                if probe[0]:
                    new_state, remaining, reset_at_us = algorithm.admit(state, probe, now_us, limit, window_us)
                    store.put(key, new_state, now_us)
                    retry_after_us = 0
                else:
                    remaining, reset_at_us, retry_after_us = algorithm.refuse(probe, now_us, limit, window_us, True)
                store.sweep(now_us)
            return to_decision(probe[0], spec.name, limit, remaining, reset_at_us, retry_after_us)

        olds = []
        probes = []
        oks = []
        remainings = []
        resets = []
        retries = []
        with store.lock:
            states = store.states
            for spec, key in dims:
                state = states.get(key)
                probe = check(state, now_us, spec.limit, spec.window_us)
                olds.append(state)
                probes.append(probe)
                oks.append(probe[0])
            admitted = all(oks)
            if admitted:
                admit = algorithm.admit
                for (spec, key), state, probe in zip(dims, olds, probes):
                    new_state, remaining, reset_at_us = admit(state, probe, now_us, spec.limit, spec.window_us)
                    store.put(key, new_state, now_us)
                    remainings.append(remaining)
                    resets.append(reset_at_us)
                    retries.append(0)
            else:
                refuse = algorithm.refuse
                for (spec, _), probe in zip(dims, probes):
                    remaining, reset_at_us, retry_after_us = refuse(
                        probe, now_us, spec.limit, spec.window_us, not probe[0]
                    )
                    remainings.append(remaining)
                    resets.append(reset_at_us)
                    retries.append(retry_after_us)
            store.sweep(now_us)
        i = reported_index(admitted, oks, remainings, retries)
        spec = dims[i][0]
        return to_decision(admitted, spec.name, spec.limit, remainings[i], resets[i], retries[i])

    async def check(
        self, user: str, tenant: str | None, tool: str | None, now_us: int = 0, server: str | None = None
    ) -> Decision:
        """Evaluate and (if admitted) consume one request; raises EngineError on backend failure (§8)."""
        if self._redis is None:
            return self.evaluate(user, tenant, tool, now_us, server)
        dims = self._dimensions(user, tenant, tool, server)
        if not dims:
            return NO_LIMIT
        if now_us != 0 and (type(now_us) is not int or not 0 < now_us <= MAX_NOW_US):
            raise ValueError(
                f"now_us must be an int in 1..2^52 (µs since the epoch) or 0 for the clock, got {now_us!r}"
            )
        reply = await self._redis.run([key for _, key in dims], [spec.argv for spec, _ in dims], now_us)
        return decision_from_script_reply(reply, [spec.name for spec, _ in dims], [spec.limit for spec, _ in dims])

    async def close(self) -> None:
        """Release Redis connections; memory state stays in the shared store (§10)."""
        if self._redis is not None:
            await self._redis.close()

"""The process-wide memory store (docs/semantics.md §10).

The gateway rebuilds plugin instances every 30 s and per team and tool, so
counters cannot live on an instance: every instance with the same plugin name
and configuration gets the same :class:`MemoryStore` from :func:`shared_store`,
and closing an instance leaves it alone.

A store is an insertion-ordered map ``key -> state`` (states as in
``algorithms``: a tuple whose first item is ``expires_at_us``) used as a clock:
each request looks at a couple of keys at the front, drops them if expired,
else moves them to the back. So expired state goes away a few keys per
request, every key is visited in turn, and nothing ever walks the whole map.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from itertools import islice
from typing import Any

from rate_limiter_go.config import LimiterConfig

__all__ = ["EVICTION_SAMPLE", "SWEEP_STEP", "MemoryStore", "registry_size", "reset_registry", "shared_store"]

#: Keys examined by the incremental sweep on every request.
SWEEP_STEP = 2
#: Keys examined to make room when the store is full.
EVICTION_SAMPLE = 8


class MemoryStore:
    """Rate limit state for one (plugin name, configuration), bounded to ``max_keys`` keys.

    Callers hold ``lock`` across a request's whole check and commit over
    all its dimensions, which makes §4's all-or-nothing atomic; the methods
    below assume the lock is held.
    """

    __slots__ = ("lock", "max_keys", "states")

    def __init__(self, max_keys: int) -> None:
        if type(max_keys) is not int or max_keys < 1:
            raise ValueError(f"memory_max_keys must be a positive integer, got {max_keys!r}")
        self.lock = threading.Lock()
        self.max_keys = max_keys
        #: key -> state; order is the sweep order (front = examined longest ago).
        self.states: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.states)

    def put(self, key: str, state: Any, now_us: int) -> None:
        """Store ``state`` under ``key``, making room first if ``key`` is new and the store is full."""
        states = self.states
        if key not in states and len(states) >= self.max_keys:
            self.make_room(now_us)
        states[key] = state  # an existing key keeps its place in the sweep order

    def sweep(self, now_us: int) -> None:
        """Examine up to SWEEP_STEP keys at the front: drop the expired, move the others to the back."""
        # Unrolled (SWEEP_STEP == 2): this runs on every request.
        states = self.states
        if not states:
            return
        key = next(iter(states))
        if states[key][0] <= now_us:
            del states[key]
            if not states:
                return
        else:
            states.move_to_end(key)
        key = next(iter(states))
        if states[key][0] <= now_us:
            del states[key]
        else:
            states.move_to_end(key)

    def make_room(self, now_us: int) -> None:
        """Evict for one new key: the expired keys among a front sample, else the soonest-expiring of it."""
        states = self.states
        sample = list(islice(states.items(), EVICTION_SAMPLE))
        expired = [key for key, state in sample if state[0] <= now_us]
        if expired:
            for key in expired:
                del states[key]
        elif sample:
            del states[min(sample, key=lambda item: item[1][0])[0]]


_registry: dict[tuple[str, str], MemoryStore] = {}
_registry_lock = threading.Lock()


def shared_store(store_name: str, config: LimiterConfig) -> MemoryStore:
    """The one store for ``store_name`` (the plugin's name) and this exact configuration, created on first use."""
    ident = (store_name, config.canonical_json())
    store = _registry.get(ident)
    if store is None:
        with _registry_lock:
            store = _registry.get(ident)
            if store is None:
                store = MemoryStore(config.memory_max_keys)
                _registry[ident] = store
    return store


def reset_registry() -> None:
    """Forget every store (tests): later shared_store() calls start empty."""
    with _registry_lock:
        _registry.clear()


def registry_size() -> int:
    """How many distinct stores exist (tests, diagnostics)."""
    return len(_registry)

"""Hands the headers of an admitted tool call to the HTTP response of the same request.

cpex drops the ``http_headers`` of an admitted ``tool_pre_invoke`` result, so
a gateway client would learn its quota only once refused. The gateway's HTTP
middleware runs ``http_post_request`` hooks after the request, and those may
return response headers to set. So the tool hook leaves its headers here and
the post-request hook takes them (docs/gateway.md, "Headers on admitted calls").

Why a process-wide store: the gateway runs HTTP hooks on its global plugin
instance but tool hooks on per-team instances, so the two hooks of one request
usually run on different plugin objects of the same process.

Entries are keyed by (plugin name, request id, caller): the request id can
come from the client's ``X-Correlation-ID`` header, so a request id alone
would let one client read another's quota. Entries are bounded in number
(oldest dropped first) and expire after ``ttl_s``: a request whose
post-request hook never runs (a transport without it, an error) leaves
nothing behind for long. Nothing here is logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

#: Entries kept at most; past that the oldest go first (an idle gateway keeps none for long).
MAX_ENTRIES = 10_000
#: Seconds an entry waits for its post-request hook (longer than any tool call should take).
TTL_S = 60.0

HandoffKey = tuple[str, str, str]  # (plugin name, request id, caller)


class HeaderHandoff:
    """A bounded, expiring map from request to the headers of its admitted call. Thread-safe."""

    __slots__ = ("_entries", "_lock", "max_entries", "ttl_s", "clock")

    def __init__(
        self, max_entries: int = MAX_ENTRIES, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # A plain dict keeps insertion order, which is expiry order (every entry lives ttl_s).
        self._entries: dict[HandoffKey, tuple[float, Mapping[str, str]]] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock  # replaceable in tests

    def put(self, key: HandoffKey, headers: Mapping[str, str]) -> None:
        """Keep ``headers`` for ``key``; a later call for the same key replaces them (the last call counts)."""
        now = self.clock()
        with self._lock:
            entries = self._entries
            entries.pop(key, None)  # re-inserted last: the dict stays in expiry order
            entries[key] = (now + self.ttl_s, headers)
            if len(entries) > self.max_entries:
                del entries[next(iter(entries))]
            # A few expired entries go per put (they are at the front), so the store empties
            # itself at the rate it fills without a sweep of the whole dict.
            for _ in range(2):
                oldest = next(iter(entries))
                if entries[oldest][0] > now:
                    break
                del entries[oldest]

    def take(self, key: HandoffKey) -> Mapping[str, str] | None:
        """Remove and return the headers for ``key``, or None if absent or expired."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: The process-wide store every plugin instance uses (keys carry the plugin name).
HANDOFF = HeaderHandoff()

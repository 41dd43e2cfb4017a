"""Remembered refusals of the Redis backend: docs/semantics.md §12.

A key the script refused stays refused until ``blocked_until_us`` whatever
other gateways do, so a request on it is answered here, with no Redis
command, until then. Redis's clock is followed from the monotonic instants
the refused call was sent and answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["DRIFT_DIVISOR", "SWEEP_EVERY_NS", "BlockedCache"]

#: Allowance for Redis's clock and ours running at different rates: 1/1000 of a wait (§12).
DRIFT_DIVISOR = 1000
#: A full cache sweeps its expired entries at most this often (a sweep walks every entry).
SWEEP_EVERY_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class _Entry:
    now_us: int  # the script's clock when it refused
    until_us: int  # blocked_until_us = now_us + retry_after_us
    reset_at_us: int  # the refusal's reset_at_us
    received_ns: int  # monotonic instant the reply arrived
    expires_at_ns: int  # sent + the wait less the drift allowance

    def wait_us(self, now_us: int, t_ns: int) -> int:
        """retry_after_us still to wait at ``now_us`` (explicit) or monotonic ``t_ns``; 0: not blocked."""
        if now_us:
            return self.until_us - now_us if self.now_us <= now_us < self.until_us else 0
        if t_ns >= self.expires_at_ns:
            return 0
        since_reply_us = (t_ns - self.received_ns) // 1000
        retry = self.until_us - self.now_us - since_reply_us + since_reply_us // DRIFT_DIVISOR
        return retry if retry > 1 else 1


class BlockedCache:
    """At most ``max_keys`` remembered refusals (``max_keys`` >= 1)."""

    def __init__(self, max_keys: int, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if type(max_keys) is not int or max_keys < 1:
            raise ValueError(f"max_keys must be a positive int, got {max_keys!r}")
        self._max_keys = max_keys
        self._entries: dict[str, _Entry] = {}
        self._last_sweep_ns = -SWEEP_EVERY_NS
        self.clock_ns = clock_ns
        #: Requests answered here, without a Redis command.
        self.local_refusals = 0

    def __len__(self) -> int:
        return len(self._entries)

    def answer(self, keys: Sequence[str], limits_windows: Sequence[tuple[str, str]], now_us: int) -> list[int] | None:
        """A §9-shaped reply refusing the request if one of its keys is remembered as blocked, else None.

        Keys not remembered are not consulted: they read as admitting with
        their whole limit left, so they are never the reported one (§12).
        """
        entries = self._entries
        t_ns = 0 if now_us else self.clock_ns()
        reply: list[int] | None = None
        for i, key in enumerate(keys):
            entry = entries.get(key)
            if entry is None:
                continue
            retry_us = entry.wait_us(now_us, t_ns)
            if not retry_us:
                if not now_us:
                    entries.pop(key, None)  # expired for good: the monotonic clock never goes back
                continue
            if reply is None:
                reply_now = now_us or entry.now_us + (t_ns - entry.received_ns) // 1000
                reply = [0, reply_now]
                for _, (limit, _) in zip(keys, limits_windows):
                    reply += (1, int(limit), 0, 0)
            reply[2 + 4 * i : 6 + 4 * i] = (0, 0, entry.reset_at_us, retry_us)
        if reply is not None:
            self.local_refusals += 1
        return reply

    def record(self, keys: Sequence[str], reply: list[int], sent_ns: int, received_ns: int) -> None:
        """Remember the keys that refused in a blocked §9 ``reply``; an admitting reply is ignored."""
        if (
            not isinstance(reply, list)
            or len(reply) != 2 + 4 * len(keys)
            or not all(type(v) is int for v in reply)
            or reply[0] == 1
        ):
            return  # admitted, or malformed (the caller's decoding reports that)
        entries = self._entries
        reply_now = reply[1]
        for i, key in enumerate(keys):
            base = 2 + 4 * i
            if reply[base] == 1:
                continue
            wait_us = reply[base + 3]
            entry = _Entry(
                now_us=reply_now,
                until_us=reply_now + wait_us,
                reset_at_us=reply[base + 2],
                received_ns=received_ns,
                expires_at_ns=sent_ns + (wait_us - wait_us // DRIFT_DIVISOR) * 1000,
            )
            if key not in entries and len(entries) >= self._max_keys and not self._sweep(received_ns):
                continue  # full of live refusals: this key goes to Redis, as without the cache
            entries[key] = entry

    def _sweep(self, t_ns: int) -> bool:
        """Drop expired entries, at most once per SWEEP_EVERY_NS; whether there is room now."""
        if t_ns - self._last_sweep_ns < SWEEP_EVERY_NS:
            return False
        self._last_sweep_ns = t_ns
        entries = self._entries  # in place: callers hold this dict
        for key in [k for k, e in entries.items() if t_ns >= e.expires_at_ns]:
            del entries[key]
        return len(entries) < self._max_keys

"""The three algorithms of docs/semantics.md §3 over in-memory state, in integer µs.

Each algorithm is a class of static functions in two steps, so that a request
with several dimensions can check all of them before any consumes (§4):

* ``check(state, now_us, limit, window_us) -> probe``: reads, never writes.
  ``probe[0]`` is ``ok``; the rest is whatever the later step needs.
* then exactly one of
  ``admit(state, probe, now_us, limit, window_us) -> (new_state, remaining, reset_at_us)``
  (the request is admitted: consume) or
  ``refuse(probe, now_us, limit, window_us, refused) -> (remaining, reset_at_us, retry_after_us)``
  (the request is blocked: nothing is written; ``refused`` says whether this
  dimension is one that said no, and only then is ``retry_after_us`` > 0).

A state is ``None`` (missing) or a tuple whose first item is ``expires_at_us``:
the instant from which it equals missing state and may be dropped (§3, §10).
Fixed window and token bucket states are immutable tuples; the sliding window
keeps its log in a deque that ``check`` prunes and ``admit`` appends to in
place (copying a log of up to ``limit`` entries per request would be absurd).
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from typing import Any

__all__ = ["ALGORITHMS", "FixedWindow", "SlidingWindow", "TokenBucket", "ceil_div"]

State = Any  # None or an algorithm-specific tuple, see each class


def ceil_div(a: int, b: int) -> int:
    """The least q with q*b >= a (§2), for integers a >= 0 and b > 0."""
    return -(-a // b)


class FixedWindow:
    """§3.1. State: ``(window_end_us, count)``; the window end identifies the window."""

    code = "fw"

    @staticmethod
    def check(state: State, now_us: int, limit: int, window_us: int) -> tuple[bool, int, int]:
        """Probe ``(ok, count, window_end_us)``."""
        window_end = now_us - now_us % window_us + window_us
        count = state[1] if state is not None and state[0] == window_end else 0
        return count < limit, count, window_end

    @staticmethod
    def admit(
        state: State, probe: tuple[bool, int, int], now_us: int, limit: int, window_us: int
    ) -> tuple[State, int, int]:
        count = probe[1] + 1
        window_end = probe[2]
        return (window_end, count), limit - count, window_end

    @staticmethod
    def refuse(
        probe: tuple[bool, int, int], now_us: int, limit: int, window_us: int, refused: bool
    ) -> tuple[int, int, int]:
        window_end = probe[2]
        remaining = limit - probe[1]
        return (remaining if remaining > 0 else 0), window_end, (window_end - now_us if refused else 0)


class SlidingWindow:
    """§3.2. State: ``(expires_at_us, log)``, log a sorted deque of admission times.

    ``expires_at_us`` is the newest entry + W, when the last entry stops counting.
    """

    code = "sw"

    @staticmethod
    def check(state: State, now_us: int, limit: int, window_us: int) -> tuple[bool, int, int]:
        """Probe ``(ok, count, oldest_us or -1)``; prunes entries that stopped counting."""
        if state is None:
            return 0 < limit, 0, -1
        log = state[1]
        cutoff = now_us - window_us
        # Housekeeping, not consumption (§3.2): an entry at t counts while t > now - W.
        while log and log[0] <= cutoff:
            log.popleft()
        count = len(log)
        return count < limit, count, (log[0] if count else -1)

    @staticmethod
    def admit(
        state: State, probe: tuple[bool, int, int], now_us: int, limit: int, window_us: int
    ) -> tuple[State, int, int]:
        if state is None:
            log: deque[int] = deque((now_us,))
        else:
            log = state[1]
            if not log or now_us >= log[-1]:
                log.append(now_us)
            else:
                insort(log, now_us)  # a clock that stepped back: keep the log sorted like a Redis zset
        # reset: the oldest entry after the append (§3.2), so a first request gives now + W.
        return (log[-1] + window_us, log), limit - probe[1] - 1, log[0] + window_us

    @staticmethod
    def refuse(
        probe: tuple[bool, int, int], now_us: int, limit: int, window_us: int, refused: bool
    ) -> tuple[int, int, int]:
        oldest = probe[2]
        reset_at = (oldest if oldest != -1 else now_us) + window_us
        remaining = limit - probe[1]
        return (remaining if remaining > 0 else 0), reset_at, (reset_at - now_us if refused else 0)


class TokenBucket:
    """§3.3. State: ``(full_at_us, scaled, updated_us)``; tokens scaled by W (one token = W units)."""

    code = "tb"

    @staticmethod
    def check(state: State, now_us: int, limit: int, window_us: int) -> tuple[bool, int]:
        """Probe ``(ok, scaled)``: the refilled level at ``now_us``, not written back."""
        capacity = limit * window_us
        if state is None:
            scaled = capacity
        else:
            elapsed = now_us - state[2]
            if elapsed < 0:
                elapsed = 0
            elif elapsed > window_us:
                elapsed = window_us
            scaled = state[1] + elapsed * limit
            if scaled > capacity:
                scaled = capacity
        return scaled >= window_us, scaled

    @staticmethod
    def admit(state: State, probe: tuple[bool, int], now_us: int, limit: int, window_us: int) -> tuple[State, int, int]:
        scaled = probe[1] - window_us
        reset_at = now_us - (scaled - limit * window_us) // limit  # now + ceil_div(capacity - scaled, L)
        return (reset_at, scaled, now_us), scaled // window_us, reset_at

    @staticmethod
    def refuse(probe: tuple[bool, int], now_us: int, limit: int, window_us: int, refused: bool) -> tuple[int, int, int]:
        scaled = probe[1]
        reset_at = now_us - (scaled - limit * window_us) // limit
        retry = -((scaled - window_us) // limit) if refused else 0  # ceil_div(W - scaled, L)
        return scaled // window_us, reset_at, retry


#: Config algorithm name -> implementation.
ALGORITHMS: dict[str, type[FixedWindow] | type[SlidingWindow] | type[TokenBucket]] = {
    "fixed_window": FixedWindow,
    "sliding_window": SlidingWindow,
    "token_bucket": TokenBucket,
}

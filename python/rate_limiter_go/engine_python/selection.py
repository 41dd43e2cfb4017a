"""From per-dimension results to one Decision: §4 (reported dimension) and §7 (units).

Shared by the memory path and the Redis path so that both report alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from rate_limiter_go.engine import Decision, EngineError

__all__ = ["decision_from_script_reply", "reported_index", "to_decision"]

_US_PER_S = 1_000_000


def reported_index(admitted: bool, oks: Sequence[bool], remaining: Sequence[int], retry_after_us: Sequence[int]) -> int:
    """Index of the reported dimension among the request's dimensions, in order user, user_per_server, tenant, tool (§4).

    Blocked: among those with ``ok`` false, the largest ``retry_after_us``.
    Admitted: the smallest ``remaining``. Ties go to the earliest.
    """
    best = -1
    if admitted:
        for i, r in enumerate(remaining):
            if best < 0 or r < remaining[best]:
                best = i
    else:
        for i, ok in enumerate(oks):
            if not ok and (best < 0 or retry_after_us[i] > retry_after_us[best]):
                best = i
    if best < 0:
        raise ValueError("no dimension to report" if admitted else "blocked, but every dimension said ok")
    return best


def to_decision(
    admitted: bool, dimension: str, limit: int, remaining: int, reset_at_us: int, retry_after_us: int
) -> Decision:
    """The reported dimension's µs values as header units (§7).

    ``reset_at_unix`` = ceil(reset_at_us / 1e6); ``retry_after_s`` =
    max(1, ceil(retry_after_us / 1e6)) when blocked, else 0.
    """
    reset_at_unix = -(-reset_at_us // _US_PER_S)
    if admitted:
        return Decision(True, dimension, limit, remaining, reset_at_unix, 0)
    retry_after_s = -(-retry_after_us // _US_PER_S)
    return Decision(False, dimension, limit, remaining, reset_at_unix, retry_after_s if retry_after_s > 1 else 1)


def decision_from_script_reply(reply: object, dimensions: Sequence[str], limits: Sequence[int]) -> Decision:
    """Decode a §9 script reply ``{admitted, now_us, (ok, remaining, reset_at_us, retry_after_us) per key}``.

    Raises EngineError when the reply does not have that shape (a script that
    is not ours, or a broken one), rather than guessing.
    """
    n = len(dimensions)
    if not isinstance(reply, list) or len(reply) != 2 + 4 * n or not all(type(v) is int for v in reply):
        raise EngineError(f"unexpected rate limit script reply for {n} key(s): {_describe(reply)}")
    admitted = reply[0] == 1
    oks = [v == 1 for v in reply[2::4]]
    remaining = reply[3::4]
    retry = reply[5::4]
    if admitted != all(oks):
        raise EngineError("inconsistent rate limit script reply: admitted flag disagrees with the per-key flags")
    i = reported_index(admitted, oks, remaining, retry)
    base = 2 + 4 * i
    return to_decision(admitted, dimensions[i], limits[i], reply[base + 1], reply[base + 2], reply[base + 3])


def _describe(reply: object) -> str:
    if isinstance(reply, list):
        return f"list of {len(reply)} item(s) of types {sorted({type(v).__name__ for v in reply})}"
    return type(reply).__name__

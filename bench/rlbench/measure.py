"""Timing: per-call latency in batches, throughput at N calls in flight, and the statistics.

Latency: a batch is ``n`` awaited hook calls in a row on the running event
loop. ``time.perf_counter_ns()`` is read once before the batch and once
after (the batch's total, from which the mean per call comes) and around each
call (the per-call samples, from which p50 and p99 come). Every result is
checked against the expected path (admitted: continue and headers; blocked:
a RATE_LIMIT violation), outside the per-call stamps: a subject that failed
open or was misconfigured makes the run fail instead of looking fast.

Throughput: ``inflight`` coroutines started together with asyncio.gather,
each awaiting calls in a row for a fixed time; requests per second is the
number of completed calls over the wall time from start to the last
completion.

Garbage collection stays on, as in a gateway; the runner freezes the objects
that exist after set-up (``gc.freeze()``) so a collection scans only what the
calls themselves allocate.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

HookCall = Callable[[Any, Any], Awaitable[Any]]


class WrongOutcomeError(RuntimeError):
    """A subject answered something other than the path under test."""


def outcome_ok(result: Any, admitted: bool) -> bool:
    """True when ``result`` is the expected kind of answer for the path."""
    if admitted:
        return bool(result.continue_processing) and bool(result.http_headers)
    v = result.violation
    return (not result.continue_processing) and v is not None and v.code == "RATE_LIMIT"


def describe_result(result: Any) -> str:
    if not hasattr(result, "continue_processing"):
        return repr(result)
    v = getattr(result, "violation", None)
    code = getattr(v, "code", None)
    return f"continue_processing={result.continue_processing} headers={bool(result.http_headers)} violation={code}"


@dataclass
class Case:
    """One measured configuration: a bound hook, its request pool and the samples collected so far."""

    key: tuple[Any, ...]
    call: HookCall
    args: Sequence[tuple[Any, Any]]
    admitted: bool
    expect: Callable[[Any], bool] | None  # checks each result; None for the null hook
    # Blocked path: a window that ends during the run (1/h fixed windows roll over on the hour,
    # buckets refill) admits one request per key; up to ``max_readmitted`` such results are counted, not errors.
    readmitted_ok: Callable[[Any], bool] | None = None
    max_readmitted: int = 0
    readmitted: int = 0
    samples: array = field(default_factory=lambda: array("q"))
    batch_ns: list[int] = field(default_factory=list)
    batch_calls: list[int] = field(default_factory=list)
    cursor: int = 0

    def next_args(self, n: int) -> list[tuple[Any, Any]]:
        """The next ``n`` requests of the pool, cycling."""
        pool, start = self.args, self.cursor
        self.cursor = (start + n) % len(pool)
        return [pool[(start + i) % len(pool)] for i in range(n)]


async def warm_up(case: Case, n: int, strict: bool, max_ns: int | None = None) -> None:
    """Run up to ``n`` calls untimed (fewer if ``max_ns`` passes first); with ``strict`` check every result."""
    expect = case.expect if strict else None
    deadline = None if max_ns is None else perf_counter_ns() + max_ns
    for a, b in case.next_args(n):
        result = await case.call(a, b)
        if expect is not None and not expect(result) and not tolerated(case, result):
            raise WrongOutcomeError(f"{case.key}: warm-up got {describe_result(result)}")
        if deadline is not None and perf_counter_ns() > deadline:
            break


def tolerated(case: Case, result: Any) -> bool:
    """Count ``result`` as a window roll-over on the blocked path if it is one and the allowance is not used up."""
    if case.readmitted_ok is None or case.readmitted >= case.max_readmitted or not case.readmitted_ok(result):
        return False
    case.readmitted += 1
    return True


async def timed_batch(case: Case, n: int, max_ns: int) -> None:
    """Append one batch to the case's samples: ``n`` calls, or fewer once ``max_ns`` have passed.

    The time cap keeps slow subjects (several Redis round trips per call) from
    dominating the run's length; they contribute fewer samples, never none.
    """
    pool, cursor = case.args, case.cursor
    size = len(pool)
    call, expect = case.call, case.expect
    samples = case.samples
    wrong = None
    pc = perf_counter_ns
    start = pc()
    deadline = start + max_ns
    done = 0
    while done < n:
        a, b = pool[(cursor + done) % size]
        t0 = pc()
        result = await call(a, b)
        t1 = pc()
        samples.append(t1 - t0)
        done += 1
        if expect is not None and wrong is None and not expect(result) and not tolerated(case, result):
            wrong = result
        if t1 > deadline:
            break
    total = pc() - start
    case.cursor = (cursor + done) % size
    if wrong is not None:
        raise WrongOutcomeError(f"{case.key}: got {describe_result(wrong)}")
    case.batch_ns.append(total)
    case.batch_calls.append(done)


async def throughput(
    call: HookCall, args: Sequence[tuple[Any, Any]], admitted: bool, inflight: int, duration_ns: int, min_calls: int = 0,
    ok: Callable[[Any], bool] | None = None,
) -> tuple[float, int]:
    """(requests per second, calls) with ``inflight`` calls outstanding on this loop (see module docstring).

    Each worker keeps calling until ``duration_ns`` has passed and it has made
    its share of ``min_calls``; the rate is all completed calls over the time
    until the last worker finished. ``ok`` checks each result (default: the
    hook result of the ``admitted`` path).
    """
    check = ok if ok is not None else (lambda result: outcome_ok(result, admitted))
    wrong: list[Any] = []
    counts = [0] * inflight
    share = -(-min_calls // inflight)
    size = len(args)
    start = perf_counter_ns()
    deadline = start + duration_ns

    async def worker(w: int) -> None:
        i = 0
        offset = w * 7
        while i < share or perf_counter_ns() < deadline:
            a, b = args[(offset + i) % size]
            result = await call(a, b)
            i += 1
            if not wrong and not check(result):
                wrong.append(result)
        counts[w] = i

    await asyncio.gather(*(worker(w) for w in range(inflight)))
    elapsed = perf_counter_ns() - start
    if wrong:
        raise WrongOutcomeError(f"throughput at {inflight} in flight: got {describe_result(wrong[0])}")
    calls = sum(counts)
    return calls * 1e9 / elapsed, calls


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least the first value
    return float(sorted_values[int(rank) - 1])


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Per-call latency of one case in ns.

    ``mean``, ``p50`` and ``p99`` are over every measured call; ``round_means``
    and ``round_p50s`` are per round (one batch each); ``best_p50`` is the
    lowest round p50, the round least disturbed by other work on the machine.
    """

    calls: int
    mean: float
    p50: float
    p99: float
    round_means: tuple[float, ...]
    round_p50s: tuple[float, ...]
    best_p50: float


def latency_stats(case: Case) -> LatencyStats:
    if not case.batch_ns:
        raise ValueError(f"{case.key}: no batches measured")
    ordered = sorted(case.samples)
    calls = sum(case.batch_calls)
    round_p50s = []
    start = 0
    for n in case.batch_calls:
        round_p50s.append(percentile(sorted(case.samples[start : start + n]), 50))
        start += n
    return LatencyStats(
        calls=calls,
        mean=sum(case.batch_ns) / calls,
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        round_means=tuple(t / n for t, n in zip(case.batch_ns, case.batch_calls)),
        round_p50s=tuple(round_p50s),
        best_p50=min(round_p50s),
    )

"""One Redis-cost cell: sequential hook calls between two INFO snapshots of the servers that count.

The same measurement serves one redis-server and a Cluster, so the two sit side
by side: a ``Deployment`` names the servers whose counters are added up (the
one server; a Cluster's primaries, where every script runs) and, on a Cluster,
the replicas, whose CPU (applying the primaries' replication stream) is
reported beside the primaries' and not added to it.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import asdict, dataclass, field
from time import perf_counter_ns
from typing import Any

import redis

from rlbench.measure import HookCall, WrongOutcomeError, describe_result, outcome_ok, percentile
from rlbench.redis_counters import ServerCounters, command_delta, cost_figures, snapshot_all

MIN_CHECKS = 200


@dataclass
class Deployment:
    """The servers a cell reads counters from.

    ``name``: ``standalone`` or ``cluster``; ``url``: what the subjects are
    configured with (the one server, or a Cluster seed node); ``counted``:
    admin clients of the servers whose counters are summed (round trips,
    commands, CPU); ``replicas``: admin clients of servers whose CPU is
    reported separately. ``base_reads`` / ``base_cmds``: what one snapshot of
    ``counted`` adds by itself, measured by ``calibrate()``.
    """

    name: str
    url: str
    counted: list[redis.Redis]
    replicas: list[redis.Redis] = field(default_factory=list)
    base_reads: int = 0
    base_cmds: dict[str, int] = field(default_factory=dict)

    def calibrate(self) -> None:
        """Two snapshots in a row: their difference is one snapshot's own reads and commands."""
        a = snapshot_all(self.counted)
        b = snapshot_all(self.counted)
        self.base_reads, self.base_cmds = b.reads - a.reads, command_delta(a, b)

    def idle_cpu_ms_per_s(self, seconds: float = 1.0) -> dict[str, float]:
        """CPU the counted servers (and the replicas) use per second while no client sends anything."""
        a, ra = snapshot_all(self.counted), snapshot_all(self.replicas)
        t0 = time.monotonic()
        time.sleep(seconds)
        b, rb = snapshot_all(self.counted), snapshot_all(self.replicas)
        elapsed = time.monotonic() - t0
        return {"counted": (b.cpu_s - a.cpu_s) * 1000 / elapsed, "replicas": (rb.cpu_s - ra.cpu_s) * 1000 / elapsed}

    def close(self) -> None:
        for c in (*self.counted, *self.replicas):
            c.close()


def latency_summary(samples: array) -> dict[str, float]:
    """p50 and mean in ns of one cell's per-call times."""
    if not samples:
        raise ValueError("latency of no calls")
    ordered = sorted(samples)
    return {"latency_p50_ns": percentile(ordered, 50), "latency_mean_ns": sum(ordered) / len(ordered)}


async def cost_cell(hook: HookCall, args: list[tuple[Any, Any]], admitted: bool, dep: Deployment, checks: int,
                    max_ms: int, label: str) -> dict[str, Any]:  # fmt: skip
    """Up to ``checks`` sequential calls (at least MIN_CHECKS; fewer once ``max_ms`` have passed).

    First one untimed pass over ``args`` (scripts loaded, connections open, the
    blocked path's keys spent). Every result is checked against the path; on a
    blocked path a window ending during the cell may admit one request per key
    (up to 3 per request of the pool), as in measure.Case.
    """
    for p, c in args:
        await hook(p, c)
    readmitted = 0
    n = 0
    samples = array("q")
    deadline = time.monotonic() + max_ms / 1000
    before, rep_before = snapshot_all(dep.counted), snapshot_all(dep.replicas)
    t_start = time.monotonic()
    while n < checks and (n < MIN_CHECKS or time.monotonic() < deadline):
        p, c = args[n % len(args)]
        n += 1
        t0 = perf_counter_ns()
        result = await hook(p, c)
        samples.append(perf_counter_ns() - t0)
        if not outcome_ok(result, admitted):
            if admitted or not outcome_ok(result, True) or readmitted >= 3 * len(args):
                raise WrongOutcomeError(f"redis cost {label}: {describe_result(result)}")
            readmitted += 1
    elapsed = time.monotonic() - t_start
    after, rep_after = snapshot_all(dep.counted), snapshot_all(dep.replicas)
    figures = cost_figures(before, after, dep.base_reads, dep.base_cmds, n)
    row: dict[str, Any] = {"deployment": dep.name, "checks": n, "elapsed_s": round(elapsed, 3), **asdict(figures),
                           **latency_summary(samples)}  # fmt: skip
    if dep.replicas:
        row["replica_cpu_ms_per_10k"] = _cpu_ms_per_10k(rep_before, rep_after, n)
    return row


def _cpu_ms_per_10k(before: ServerCounters, after: ServerCounters, checks: int) -> float:
    return (after.cpu_s - before.cpu_s) * 1000 * 10_000 / checks

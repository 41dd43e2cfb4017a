"""The Redis server counters the Redis-cost section reads (INFO commandstats, read events, CPU).

The server itself is the shared private redis-server of tests_py/support/redis_server.py (a missing
redis-server binary is an error there, never a silent skip: the Redis half of the matrix is not optional).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """One snapshot of the counters the Redis-cost section differences.

    ``commands`` maps a command name (``evalsha``, ``zadd``, ...) to its call
    count; ``reads`` is ``total_reads_processed`` (read events the server
    handled: one per request/response round trip of a client that waits for
    each reply); ``cpu_s`` is ``used_cpu_sys + used_cpu_user`` in seconds;
    ``errors`` maps an error code (``CROSSSLOT``, ``MOVED``, ``ERR``, ...) to
    the error replies sent (errorstats).
    """

    commands: dict[str, int]
    reads: int
    cpu_s: float
    errors: dict[str, int] = field(default_factory=dict)


def snapshot(client: redis.Redis) -> ServerCounters:
    """Read the counters with one INFO command (one round trip of its own)."""
    info = client.info("all")
    commands: dict[str, int] = {}
    for name, value in info.items():
        if name.startswith("cmdstat_") and isinstance(value, dict):
            commands[name.removeprefix("cmdstat_")] = int(value.get("calls", 0))
    return ServerCounters(
        commands=commands,
        reads=int(info.get("total_reads_processed", 0)),
        cpu_s=float(info.get("used_cpu_sys", 0.0)) + float(info.get("used_cpu_user", 0.0)),
        errors=error_counts(info),
    )


def command_delta(before: ServerCounters, after: ServerCounters) -> dict[str, int]:
    """Calls per command between two snapshots, without zero entries."""
    out = {}
    for name, calls in after.commands.items():
        d = calls - before.commands.get(name, 0)
        if d:
            out[name] = d
    return out


#: The command a replica acknowledges replication with (a read event on its primary, not a request).
REPLICATION_ACK = "replconf"


def error_counts(info: dict[str, object]) -> dict[str, int]:
    """Error replies by code (``CROSSSLOT``, ``MOVED``, ...) from an ``INFO errorstats`` reply as redis-py parses it."""
    out = {}
    for name, value in info.items():
        if name.startswith("errorstat_") and isinstance(value, dict):
            out[name.removeprefix("errorstat_")] = int(value.get("count", 0))
    return out


def error_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Error replies per code between two error_counts, without zero entries."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def total(snapshots: list[ServerCounters]) -> ServerCounters:
    """The counters of several servers (a Cluster's primaries) added up: calls per command, reads and CPU."""
    commands: dict[str, int] = {}
    errors: dict[str, int] = {}
    for s in snapshots:
        for name, calls in s.commands.items():
            commands[name] = commands.get(name, 0) + calls
        for code, n in s.errors.items():
            errors[code] = errors.get(code, 0) + n
    return ServerCounters(
        commands=commands,
        reads=sum(s.reads for s in snapshots),
        cpu_s=sum(s.cpu_s for s in snapshots),
        errors=errors,
    )


def snapshot_all(clients: list[redis.Redis]) -> ServerCounters:
    """One snapshot of each server, added up (one INFO round trip per server)."""
    return total([snapshot(c) for c in clients])


@dataclass(frozen=True, slots=True)
class CostFigures:
    """What one Redis-cost cell reports per request, from two snapshots and the snapshots' own cost.

    ``commands_per_request``: calls per command (scripts and what they run inside);
    ``round_trips_per_request``: read events per request, less the replicas' ``REPLCONF``
    acknowledgements (a Cluster primary reads one from each replica every second: replication,
    not a client's request); ``cpu_ms_per_10k``: CPU of the counted servers per 10,000 checks;
    ``error_replies``: error replies by code over the whole cell (not per request).
    """

    commands_per_request: dict[str, float]
    commands_total: float
    round_trips_per_request: float
    cpu_ms_per_10k: float
    error_replies: dict[str, int] = field(default_factory=dict)


def cost_figures(before: ServerCounters, after: ServerCounters, base_reads: int, base_cmds: dict[str, int],
                 checks: int) -> CostFigures:  # fmt: skip
    """Per-request figures of ``checks`` requests between ``before`` and ``after``.

    ``base_reads`` / ``base_cmds``: what one snapshot itself adds to the counters
    (its INFO commands and their read events, on every server counted); they are
    subtracted once, as the ``after`` snapshot's own cost.
    """
    if checks < 1:
        raise ValueError(f"cost figures of {checks} checks")
    cmds = command_delta(before, after)
    for name, calls in base_cmds.items():
        cmds[name] = cmds.get(name, 0) - calls
        if cmds[name] == 0:
            del cmds[name]
    replication_acks = cmds.get(REPLICATION_ACK, 0)
    return CostFigures(
        commands_per_request={k: v / checks for k, v in sorted(cmds.items())},
        commands_total=sum(cmds.values()) / checks,
        round_trips_per_request=(after.reads - before.reads - base_reads - replication_acks) / checks,
        cpu_ms_per_10k=(after.cpu_s - before.cpu_s) * 1000 * 10_000 / checks,
        error_replies=error_delta(before.errors, after.errors),
    )

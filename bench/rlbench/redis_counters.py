"""The Redis server counters the Redis-cost section reads (INFO commandstats, read events, CPU).

The server itself is the shared private redis-server of tests_py/support/redis_server.py (a missing
redis-server binary is an error there, never a silent skip: the Redis half of the matrix is not optional).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """One snapshot of the counters the Redis-cost section differences.

    ``commands`` maps a command name (``evalsha``, ``zadd``, ...) to its call
    count; ``reads`` is ``total_reads_processed`` (read events the server
    handled: one per request/response round trip of a client that waits for
    each reply); ``cpu_s`` is ``used_cpu_sys + used_cpu_user`` in seconds.
    """

    commands: dict[str, int]
    reads: int
    cpu_s: float


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
    )


def command_delta(before: ServerCounters, after: ServerCounters) -> dict[str, int]:
    """Calls per command between two snapshots, without zero entries."""
    out = {}
    for name, calls in after.commands.items():
        d = calls - before.commands.get(name, 0)
        if d:
            out[name] = d
    return out

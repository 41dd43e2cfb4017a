"""A private redis-server for one benchmark run, and the counters the Redis-cost section reads.

The server listens on a free loopback port, keeps nothing on disk, and is
stopped (by its pid) when the run ends. A missing redis-server binary is an
error, never a silent skip: the Redis half of the matrix is not optional.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis


class RedisUnavailableError(RuntimeError):
    """redis-server is not installed or did not start."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on 127.0.0.1:<free port>, without persistence; use as a context manager."""

    def __init__(self, binary: str | None = None, start_timeout_s: float = 10.0) -> None:
        found = binary or shutil.which("redis-server")
        if not found:
            raise RedisUnavailableError("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.binary = found
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def client(self) -> redis.Redis:
        """A synchronous client for the harness's own bookkeeping (INFO, CONFIG)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> PrivateRedis:
        self._dir = tempfile.TemporaryDirectory(prefix="rlbench-redis-")
        self.port = free_port()
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RedisUnavailableError(f"redis-server exited with {self._proc.returncode}: {err.strip()[:400]}")
            try:
                with self.client() as c:
                    if c.ping():
                        return self
            except redis.RedisError as e:
                last_error = e
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailableError(f"redis-server did not answer PING within {self.start_timeout_s} s: {last_error}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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

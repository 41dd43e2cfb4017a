"""CPU time of processes from /proc, sampled in the background during a load test.

``utime + stime`` of /proc/<pid>/stat covers every thread of the process (the gateway's event loop,
its worker threads and, for the Go engine, the Go runtime's threads). Units: seconds of CPU.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by ``pid`` (user + system), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def maps_contain(pid: int, needle: str) -> bool:
    """Whether a file whose path contains ``needle`` is mapped into ``pid`` (e.g. a loaded .so)."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            return any(needle in line for line in f)
    except OSError:
        return False


class CpuSampler:
    """Samples the CPU seconds of named pids every ``interval_s`` in a daemon thread."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.5) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, float | None]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.time(), {name: cpu_seconds(pid) for name, pid in self.pids.items()}))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def usage(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each process used between the samples nearest to ``start`` and ``end``,
        and the wall seconds between those samples under the key ``"_wall_s"``."""
        times = [t for t, _ in self.samples]
        if len(times) < 2:
            return {"_wall_s": 0.0}
        i = min(max(bisect.bisect_left(times, start), 0), len(times) - 1)
        j = min(max(bisect.bisect_right(times, end) - 1, i), len(times) - 1)
        t_i, a = self.samples[i]
        t_j, b = self.samples[j]
        out = {"_wall_s": t_j - t_i}
        for name in self.pids:
            if a.get(name) is not None and b.get(name) is not None:
                out[name] = b[name] - a[name]
        return out

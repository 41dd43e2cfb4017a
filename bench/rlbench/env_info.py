"""The machine and software a run measured on, for the doc's header."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    return os.getloadavg()


def _go_version() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None:
        return "go not found"
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"go version failed: {e}"
    return out.strip()


def git_revision() -> str:
    """The work tree's commit, with "+changes" when tracked files differ from it."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git work tree?)"
    return rev + (" +changes (uncommitted edits to tracked files)" if dirty else "")


def machine() -> dict[str, Any]:
    """CPU, cores, memory, OS, interpreter, Go, and the load average at the time of the call."""
    try:
        debian = open("/etc/debian_version", encoding="utf-8").read().strip()
    except OSError:
        debian = ""
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()}" + (f" (Debian {debian})" if debian else ""),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "go": _go_version(),
        "git": git_revision(),
        "load_start": load_average(),
    }

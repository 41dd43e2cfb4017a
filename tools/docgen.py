"""Shared by the tools that write generated sections into docs: markers and provenance.

Every generated section is rendered from raw results committed beside its doc; the provenance recorded
with those results (``provenance()``, taken when the measurement starts) says which commit was measured
and whether the work tree was clean, so a re-render never claims a commit it did not measure.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess  # nosec B404 # runs git rev-parse and git status
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout  # nosec B603 B607 # fixed argv (git rev-parse / status), git from PATH


def git_state(outputs: tuple[str, ...] = ()) -> tuple[str, bool]:
    """The short HEAD commit, and whether tracked files match it. Untracked files do not count, nor do
    changes under ``outputs`` (path prefixes): the results and docs the measurement itself rewrites."""
    changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return _git("rev-parse", "--short", "HEAD").strip(), not [p for p in changed if not p.startswith(outputs)]


def git_commit() -> str:
    """The short HEAD commit, with "+ uncommitted changes" when tracked files differ from it."""
    rev, clean = git_state()
    return rev + ("" if clean else " + uncommitted changes")


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def provenance(outputs: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a measurement ran on, to store with its raw results: commit, clean tree (see git_state),
    time, machine, load."""
    rev, clean = git_state(outputs)
    return {
        "commit": rev,
        "clean": clean,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": loadavg(),
    }


def provenance_text(p: dict[str, Any]) -> str:
    """One sentence for a doc: "Measured 2026-11-29 15:00 UTC at commit abc1234 (clean tree) on ..."."""
    tree = "clean tree" if p.get("clean") else "**uncommitted changes in the tree**"
    load = " / ".join(f"{x:g}" for x in p.get("load_before", []))
    after = p.get("load_after")
    return (
        f"Measured {p.get('date_utc', '?')} at commit {p.get('commit', '?')} ({tree}) on {p.get('machine', '?')}, "
        f"{p.get('python', '?')}, {p.get('cpus', '?')} CPUs; load average {load or '?'} before"
        + (f", {' / '.join(f'{x:g}' for x in after)} after" if after else "")
        + "."
    )


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` with ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise RuntimeError(f"{path} has no {start} ... {end} section")
    path.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text), encoding="utf-8")

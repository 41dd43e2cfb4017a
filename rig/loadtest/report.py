"""Markdown for load-test results, and the generated sections of docs/loadtest.md.

Each test owns one section between ``<!-- result:NAME:begin -->`` and ``<!-- result:NAME:end -->``;
a new run of the same test replaces its section, a new test appends one under "## Results".
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "loadtest.md"
RESULTS_HEADING = "## Results"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100); 0.0 for no values."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def environment_line() -> str:
    """When, which commit, which machine: printed with every result."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    load1 = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tree = f"{commit}{' (+ uncommitted changes in the tree)' if dirty else ''}"
    return f"{when}, commit {tree}, {os.cpu_count()} CPUs, load average {load1:.2f} at start"


def update_section(name: str, markdown: str, doc: Path = DOC, heading: str = RESULTS_HEADING) -> None:
    """Replace the generated section ``name`` of ``doc``, or append it under ``heading``."""
    begin, end = f"<!-- result:{name}:begin -->", f"<!-- result:{name}:end -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# Load tests\n\n{heading}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        if heading not in text:
            text = text.rstrip() + f"\n\n{heading}\n"
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")

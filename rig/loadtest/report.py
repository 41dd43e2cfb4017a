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


#: What the rig's measurements rewrite themselves: a change there is not an uncommitted change of the code
#: measured (`make loadtest-correctness` runs four tests; each one after the first found the doc the
#: previous one had just written, and called the tree dirty).
OUTPUTS = ("docs/loadtest.md", "docs/loadtest-results/", "docs/gateway.md", "docs/gateway-results/")


def changed_files(porcelain: str) -> list[str]:
    """Paths of ``git status --porcelain`` lines (the new name of a rename)."""
    return [line[3:].split(" -> ")[-1] for line in porcelain.splitlines() if len(line) > 3]


def environment_line() -> str:
    """When, which commit (and whether the tree was clean, outputs aside), which machine: printed with
    every result."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        porcelain = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        dirty = [p for p in changed_files(porcelain) if not p.startswith(OUTPUTS)]
    except OSError:
        commit, dirty = "?", []
    load1 = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tree = f"{commit} ({'+ uncommitted changes in the tree' if dirty else 'clean tree'})"
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

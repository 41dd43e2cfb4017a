"""Shared by the tools that write generated sections into docs: markers and provenance."""

from __future__ import annotations

import re
import subprocess  # nosec B404 # runs git rev-parse and git status
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The short HEAD commit, with "+ uncommitted changes" when tracked files differ from it."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout  # nosec B603 B607 # fixed argv (git rev-parse), git from PATH
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,  # nosec B603 B607 # fixed argv (git status), git from PATH
                           text=True).stdout.strip()
    return rev.strip() + (" + uncommitted changes" if dirty else "")


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` with ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise RuntimeError(f"{path} has no {start} ... {end} section")
    path.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text), encoding="utf-8")

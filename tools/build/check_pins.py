#!/usr/bin/env python3
"""Fail when a Python version pin is defined anywhere but constraints.txt (make lint).

constraints.txt is the one place each pin lives; requirement lists name packages only and every pip
install passes ``-c constraints.txt`` (docs/build.md, "Pins"). Checked: every tracked requirements
file, Makefile and *.mk, shell scripts, setup.py and pyproject.toml. Two kinds of files may carry a
version: the gateway lock files rig/requirements-gateway-<version>.txt (each release's own full
resolution, installed as is), and pyproject.toml's build-system requires, which the sdist carries to
builds outside this repository and which must agree with constraints.txt.
"""

from __future__ import annotations

import re
import subprocess  # nosec B404 # runs git ls-files
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = "constraints.txt"
LOCK_FILE = re.compile(r"^rig/requirements-gateway-[0-9.]+\.txt$")
CHECKED = re.compile(r"(^|/)(requirements[^/]*\.txt|Makefile|[^/]*\.mk|[^/]*\.sh|setup\.py|pyproject\.toml)$")
PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([0-9][^\s\"',;#]*)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_in(text: str) -> list[tuple[int, str, str]]:
    """(line number, normalised name, version) of every ``name==version`` outside comments."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        out += [(n, norm(m.group(1)), m.group(2)) for m in PIN.finditer(code)]
    return out


def check(root: Path, files: list[str]) -> list[str]:
    """Problems: duplicate pins inside constraints.txt, pins elsewhere, pyproject pins that disagree."""
    problems = []
    defined: dict[str, str] = {}
    for n, name, version in pins_in((root / CONSTRAINTS).read_text(encoding="utf-8")):
        if name in defined:
            problems.append(f"{CONSTRAINTS}:{n}: {name} pinned twice")
        defined[name] = version
    for path in files:
        if path == CONSTRAINTS or LOCK_FILE.match(path) or not CHECKED.search(path):
            continue
        for n, name, version in pins_in((root / path).read_text(encoding="utf-8")):
            if path == "pyproject.toml":
                if defined.get(name) != version:
                    problems.append(f"{path}:{n}: {name}=={version} disagrees with {CONSTRAINTS} ({defined.get(name)})")
            else:
                problems.append(f"{path}:{n}: {name}=={version}: pins belong in {CONSTRAINTS} only")
    return problems


def main() -> int:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()  # nosec B603 B607 # fixed argv (git ls-files), git from PATH
    if CONSTRAINTS not in files:
        files.append(CONSTRAINTS)
    problems = check(ROOT, files)
    for p in problems:
        print(f"check_pins: {p}")
    if not problems:
        print(f"check_pins: every pin is in {CONSTRAINTS} (gateway lock files and pyproject's build pin aside)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

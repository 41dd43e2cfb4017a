#!/usr/bin/env python3
"""Measure the Go engine and write the numbers into docs/engine.md.

Every number in docs/engine.md's "Measurements" section comes from a run of
this script, which replaces the text between the markers
``<!-- measurements:start -->`` and ``<!-- measurements:end -->``:

1. Go benchmarks of the engine over the memory backend
   (``go test -bench . -benchmem ./core``).
2. Per-call cost from Python (timeit, best of 5): the binding alone, the
   GoEngine hot path and the PythonEngine for comparison, 1 and 3 dimensions.
3. The asynchronous Redis path against a private redis-server: one await at a
   time, and 100 in flight, for both engines.
4. Resident memory growth over many Go evaluate() calls.

Usage: .venv/bin/python tools/bench_engine.py [--quick] [--no-write]
Needs `make build` first, and redis-server on PATH for part 3.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import shutil
import subprocess  # nosec B404 # runs go test and go version
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
DOC = os.path.join(ROOT, "docs", "engine.md")
START, END = "<!-- measurements:start -->", "<!-- measurements:end -->"
EPOCH_US = 1_800_000_000_000_000


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def go_benchmarks(quick: bool) -> str:
    benchtime = "100000x" if quick else "1s"
    cmd = ["go", "test", "-run", "XXX", "-bench", ".", "-benchmem", f"-benchtime={benchtime}", "./core"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout  # nosec B603 # argv built above (go test), no shell
    lines = [ln for ln in out.splitlines() if ln.startswith(("Benchmark", "cpu:", "goos", "goarch"))]
    return "$ " + " ".join(cmd) + "\n" + "\n".join(lines)


def per_call(quick: bool) -> list[tuple[str, float]]:
    from rate_limiter_go import _native
    from rate_limiter_go.config import parse_config
    from rate_limiter_go.engine_go import GoEngine
    from rate_limiter_go.engine_python.engine import PythonEngine

    mod = _native.load_native()
    raw = mod._pyext
    one = parse_config({"by_user": "1000000/s"})
    three = parse_config({"by_user": "1000000/s", "by_tenant": "1000000/s", "by_tool": {"search": "1000000/s"}})
    g1, g3 = GoEngine(one, "bench1"), GoEngine(three, "bench3")
    p1, p3 = PythonEngine(one, "bench1"), PythonEngine(three, "bench3")
    blocked = GoEngine(parse_config({"by_user": "1/h"}), "bench-blocked")
    g1.evaluate("x", None, None)  # bind
    g3.evaluate("x", None, None)
    blocked.evaluate("alice@example.com", None, None)  # spends the only request: every later one is refused
    h = g1._handle
    cases: list[tuple[str, Any]] = [
        ("binding only: `_pyext.pyext_Add(1, 2)`", lambda: raw.pyext_Add(1, 2)),
        (
            "binding + Go, 1 dimension: `_pyext.pyext_Evaluate(h, user, '', '', '', 0)`",
            lambda: raw.pyext_Evaluate(h, "alice@example.com", "", "", "", 0),
        ),
        ("GoEngine.evaluate, 1 dimension", lambda: g1.evaluate("alice@example.com", None, None)),
        ("GoEngine.evaluate, 3 dimensions", lambda: g3.evaluate("alice@example.com", "team-a", "search")),
        (
            "GoEngine.evaluate, blocked (same answer each time: decision cache hit)",
            lambda: blocked.evaluate("alice@example.com", None, None),
        ),
        ("PythonEngine.evaluate, 1 dimension", lambda: p1.evaluate("alice@example.com", None, None)),
        ("PythonEngine.evaluate, 3 dimensions", lambda: p3.evaluate("alice@example.com", "team-a", "search")),
    ]
    number = 50_000 if quick else 300_000
    results = []
    for name, fn in cases:
        # CPU time of the process (Go's threads included), less sensitive than
        # wall time to other work on the machine.
        best = min(timeit.repeat(fn, number=number, repeat=3 if quick else 5, timer=time.process_time))
        results.append((name, best / number * 1e9))
    return results


def redis_async(quick: bool) -> list[tuple[str, float]]:
    # The private redis-server helper of tools/chaos.py (this directory).
    from chaos import RedisProc
    from rate_limiter_go.config import parse_config
    from rate_limiter_go.engine_go import GoEngine
    from rate_limiter_go.engine_python.engine import PythonEngine

    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    server = RedisProc(Path(workdir))
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    try:
        cfg = parse_config(
            {
                "by_user": "1000000/s",
                "backend": "redis",
                "redis_url": url,
                "redis_timeout_ms": 5000,
                "redis_connect_timeout_ms": 5000,
            }
        )
        n = 2_000 if quick else 20_000

        async def sequential(engine: Any) -> float:
            for _ in range(500):
                await engine.check("warm", None, None)
            t0 = time.perf_counter()
            for _ in range(n):
                await engine.check("alice@example.com", None, None)
            return (time.perf_counter() - t0) / n * 1e6

        async def in_flight(engine: Any, width: int = 100) -> float:
            t0 = time.perf_counter()
            for _ in range(n // width):
                await asyncio.gather(*(engine.check(f"user{i}", None, None) for i in range(width)))
            return (time.perf_counter() - t0) / (n // width * width) * 1e6

        async def measure(engine_cls: type) -> tuple[float, float]:
            engine = engine_cls(cfg, "bench")
            try:
                return await sequential(engine), await in_flight(engine)
            finally:
                await engine.close()

        out = []
        for label, cls in (("GoEngine", GoEngine), ("PythonEngine", PythonEngine)):
            seq, par = asyncio.run(measure(cls))
            out.append((f"{label}.check on Redis, one at a time (µs per await)", seq))
            out.append((f"{label}.check on Redis, 100 in flight (µs per check)", par))
        return out
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def rss_growth(quick: bool) -> tuple[int, float]:
    from rate_limiter_go.config import parse_config
    from rate_limiter_go.engine_go import GoEngine

    engine = GoEngine(parse_config({"by_user": "1000000/s", "by_tenant": "1000/m"}), "bench-rss")
    ev = engine.evaluate
    users = [f"user{i}@example.com" for i in range(100)]
    for i in range(200_000):
        ev(users[i % 100], "team-a", None)

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    n = 1_000_000 if quick else 5_000_000
    before = rss()
    for i in range(n):
        ev(users[i % 100], "team-a", None)
    return n, (rss() - before) / 1e6


def render(args: argparse.Namespace) -> str:
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = loadavg()
    go = go_benchmarks(args.quick)
    calls = per_call(args.quick)
    redis = redis_async(args.quick) if shutil.which("redis-server") or os.path.exists("/usr/bin/redis-server") else []
    n, growth = rss_growth(args.quick)
    load_after = loadavg()
    cmd = "python tools/bench_engine.py" + (" --quick" if args.quick else "")
    lines = [
        START,
        f"Written by `{cmd}` on {started}: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {subprocess.run(['go', 'version'], capture_output=True, text=True).stdout.strip()}. "  # nosec B603 B607 # fixed argv (go version), go from PATH like every build step
        f"Load average before/after: {load_before} / {load_after} (other work on the machine inflates every figure).",
        "",
        "**Go benchmarks** (engine + memory backend, per request):",
        "",
        "```",
        go,
        "```",
        "",
        "**Per call from Python** (timeit, CPU time of the process, best of several runs; the engines use the "
        "wall clock, keys already present):",
        "",
        "| call | ns per call |",
        "| --- | --- |",
        *[f"| {name} | {ns:.0f} |" for name, ns in calls],
        "",
    ]
    if redis:
        lines += [
            "**Redis, asynchronous path** (private redis-server on loopback, one EVALSHA per check):",
            "",
            "| case | µs |",
            "| --- | --- |",
            *[f"| {name} | {us:.1f} |" for name, us in redis],
            "",
        ]
    lines += [
        f"**Memory growth**: RSS changed by {growth:+.2f} MB over {n:,} `GoEngine.evaluate` calls "
        "(2 identity strings each) after 200,000 warm-up calls.",
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--no-write", action="store_true", help="print instead of updating docs/engine.md")
    args = ap.parse_args()
    section = render(args)
    if args.no_write:
        print(section)
        return 0
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        print(f"{DOC} has no {START} ... {END} section", file=sys.stderr)
        return 1
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(pattern.sub(lambda _: section, doc))
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

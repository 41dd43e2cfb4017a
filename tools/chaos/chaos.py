#!/usr/bin/env python3
"""Long hardening runs (``make chaos``): Redis faults under load, and a key flood.

Every figure in docs/reliability.md comes from a JSON file this script writes
(``--out``, default docs/reliability-results/, committed with the doc), with the
provenance of the run (commit, clean tree, load); tools/chaos/chaos_report.py
turns those files into the tables without measuring again.

``faults``: for each engine (RATE_LIMITER_ENGINE=python / go) and each fault
(Redis killed and restarted, Redis paused with SIGSTOP, Redis replies delayed
by a proxy beyond the command timeout), 32 asyncio tasks call the real
RateLimiterPlugin's ``tool_pre_invoke`` for a fixed time: a baseline, the
fault, and the recovery. Each call is classified:

* ``decided``: the engine answered from Redis (an admitted result with
  X-RateLimit-* headers, or a RATE_LIMIT violation);
* ``fail_open``: admitted without headers (fail_mode open applied, §8);
* ``blocked_by_fault``: refused for any reason but RATE_LIMIT (goal 0);
* ``escaped``: an exception left the hook, or the hook ran longer than the
  watchdog (goal 0).

``flood``: 1,000,000 distinct users through the memory backend of one engine
(run once per engine, each in its own process so RSS is that engine's),
interleaved with a steady "victim" user whose hook latency is measured before
and while the store is full and evicting.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import signal
import statistics
import subprocess  # nosec B404 # a test harness: starts redis-server, chaos_proxy.py, go test
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from cpex.framework import GlobalContext, PluginConfig, PluginContext, ToolPreInvokePayload  # noqa: E402
from rate_limiter_go.plugin import RateLimiterPlugin  # noqa: E402

sys.path.insert(0, str(ROOT / "tools" / "chaos"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests_py"))  # the one private redis-server helper lives with the tests
from chaos_report import RESULTS_DIR, fault_goals_met, flood_goals_met, max_bound_ms  # noqa: E402
from docgen import loadavg, provenance  # noqa: E402
from support.redis_server import RedisServer, free_port  # noqa: E402

KIND = "rate_limiter_go.plugin.RateLimiterPlugin"
OUTPUTS = ("docs/reliability-results/", "docs/reliability.md")  # rewritten by the run: not "uncommitted changes"
WATCHDOG_S = 5.0  # a hook call longer than this counts as escaped (hung)


# --- helpers -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_plugin(engine: str, config: dict[str, Any]) -> RateLimiterPlugin:
    os.environ["RATE_LIMITER_ENGINE"] = engine  # read once, at plugin init
    plugin = RateLimiterPlugin(
        PluginConfig(name=f"chaos-{uuid.uuid4().hex[:8]}", kind=KIND, hooks=["tool_pre_invoke"], config=config)
    )
    if plugin.engine.name != engine:
        raise RuntimeError(f"asked for engine {engine}, got {plugin.engine.name}")
    return plugin


def kill_and_reap(redis: RedisServer) -> None:
    """The "kill" fault: SIGKILL, no shutdown; stop() then only forgets the dead process, and start()
    brings a new, empty server up on the same port."""
    assert redis.proc is not None  # nosec B101 # type narrowing only: with python -O a None proc fails on the next line all the same
    redis.proc.kill()
    redis.proc.wait()
    redis.stop()


# --- faults --------------------------------------------------------------------------------------


async def drive(plugin: RateLimiterPlugin, concurrency: int, duration_s: float, t0: float) -> list[tuple]:
    """``concurrency`` tasks calling the hook until ``duration_s``; one record per call:
    (start_s, end_s, outcome) with times relative to ``t0``."""
    records: list[tuple] = []
    payload = ToolPreInvokePayload(name="work", args={})

    async def worker(i: int) -> None:
        ctx = PluginContext(global_context=GlobalContext(request_id=f"r{i}", user=f"chaos-user-{i}@example.com"))
        end_at = t0 + duration_s
        while True:
            start = time.perf_counter()
            if start >= end_at:
                return
            try:
                result = await asyncio.wait_for(plugin.tool_pre_invoke(payload, ctx), WATCHDOG_S)
            except Exception:  # noqa: BLE001 - counting what escapes is the point
                outcome = "escaped"
            else:
                if result.continue_processing:
                    outcome = "decided" if result.http_headers else "fail_open"
                elif result.violation is not None and result.violation.code == "RATE_LIMIT":
                    outcome = "decided"
                else:
                    outcome = "blocked_by_fault"
            end = time.perf_counter()
            records.append((start - t0, end - t0, outcome))
            await asyncio.sleep(0)  # let the other tasks in even on an all-synchronous path

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return records


def summarise(records: list[tuple], fault_start: float, fault_end: float) -> dict[str, Any]:
    during = [r for r in records if fault_start <= r[0] < fault_end]
    before = [r for r in records if r[0] < fault_start]
    lat_ms = [(r[1] - r[0]) * 1000 for r in during]
    decided_after = sorted(r[1] for r in records if r[0] >= fault_end and r[2] == "decided")
    counts: dict[str, int] = {}
    for r in records:
        counts[r[2]] = counts.get(r[2], 0) + 1
    fail_open_lat = [(r[1] - r[0]) * 1000 for r in during if r[2] == "fail_open"]
    return {
        "calls": len(records),
        "calls_during_fault": len(during),
        "outcomes": counts,
        "blocked_by_fault": counts.get("blocked_by_fault", 0),
        "escaped": counts.get("escaped", 0),
        "fail_open_during_fault": sum(1 for r in during if r[2] == "fail_open"),
        "p50_before_ms": percentile([(r[1] - r[0]) * 1000 for r in before], 50),
        "p99_before_ms": percentile([(r[1] - r[0]) * 1000 for r in before], 99),
        "p50_fault_ms": percentile(lat_ms, 50),
        "p99_fault_ms": percentile(lat_ms, 99),
        "max_fault_ms": max(lat_ms, default=0.0),
        "p50_fail_open_ms": percentile(fail_open_lat, 50),
        "enforce_after_s": (decided_after[0] - fault_end) if decided_after else None,
    }


async def fault_run(engine: str, fault: str, redis: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    proxy = None
    port = redis.port
    if fault == "slow":
        port = free_port()
        proxy = subprocess.Popen(  # nosec B603 # this interpreter and the project's chaos_proxy.py with ports and a delay, no shell
            [sys.executable, str(ROOT / "tools" / "chaos" / "chaos_proxy.py"), str(port), str(redis.port), str(args.slow_ms)],
            stdout=subprocess.PIPE,
        )
        assert proxy.stdout is not None  # nosec B101 # type narrowing only: Popen(stdout=PIPE) always sets stdout
        if proxy.stdout.readline().strip() != b"ready":
            raise RuntimeError("chaos_proxy did not start")
    config = {
        "by_user": "1000000/h",
        "backend": "redis",
        "redis_url": f"redis://127.0.0.1:{port}/0",
        "redis_key_prefix": f"chaos{uuid.uuid4().hex[:6]}",
        "fail_mode": "open",
        "redis_timeout_ms": args.timeout_ms,
        "redis_connect_timeout_ms": args.timeout_ms,
    }
    plugin = make_plugin(engine, config)
    await plugin.initialize()
    t0 = time.perf_counter()
    marks: dict[str, float] = {}

    async def inject() -> None:
        await asyncio.sleep(args.baseline_s)
        marks["start"] = time.perf_counter() - t0
        if fault == "kill":
            kill_and_reap(redis)
        elif fault == "pause":
            redis.pause()
        elif proxy is not None:
            proxy.send_signal(signal.SIGUSR1)
        await asyncio.sleep(args.fault_s)
        if fault == "kill":
            await asyncio.to_thread(redis.start)  # returns once the new server answers PING
        elif fault == "pause":
            redis.resume()
        elif proxy is not None:
            proxy.send_signal(signal.SIGUSR2)
        marks["end"] = time.perf_counter() - t0

    total = args.baseline_s + args.fault_s + args.recovery_s
    injector = asyncio.create_task(inject())
    records = await drive(plugin, args.concurrency, total, t0)
    await injector
    await plugin.shutdown()
    if proxy is not None:
        proxy.terminate()
        proxy.wait()
    summary = summarise(records, marks["start"], marks["end"])
    summary.update(
        engine=engine,
        fault=fault,
        concurrency=args.concurrency,
        fault_s=round(marks["end"] - marks["start"], 3),
        budget_ms=2 * args.timeout_ms,  # connect + command timeout: the most one call may wait (§8)
        timeout_ms=args.timeout_ms,
    )
    return summary


async def memory_reference(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """The same load on the memory backend: the cost a call has when Redis is not involved."""
    plugin = make_plugin(engine, {"by_user": "1000000/h"})
    t0 = time.perf_counter()
    records = await drive(plugin, args.concurrency, 2.0, t0)
    lat = [(r[1] - r[0]) * 1000 for r in records]
    return {"engine": engine, "calls": len(records), "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}


def cmd_faults(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {"provenance": provenance(OUTPUTS), "runs": [], "memory": [],
                               "config": vars(args) | {"out": str(args.out)}}  # fmt: skip
    with RedisServer() as redis:  # one server for every run; a killed one is started again on the same port
        for engine in args.engines.split(","):
            results["memory"].append(asyncio.run(memory_reference(engine, args)))
            for fault in args.faults.split(","):
                redis.ensure_running()
                summary = asyncio.run(fault_run(engine, fault, redis, args))
                results["runs"].append(summary)
                print(
                    f"faults: {engine:6} {fault:5} calls={summary['calls']} blocked_by_fault="
                    f"{summary['blocked_by_fault']} escaped={summary['escaped']} p99_fault="
                    f"{summary['p99_fault_ms']:.2f} ms max={summary['max_fault_ms']:.1f} ms "
                    f"(bound < {max_bound_ms(summary)} ms) "
                    f"enforce_after={summary['enforce_after_s']}",
                    flush=True,
                )
    results["provenance"]["load_after"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    bad = [f"{r['engine']}/{r['fault']}" for r in results["runs"] if not fault_goals_met(r)]
    if bad:
        print(f"faults: goals missed by {', '.join(bad)} (see docs/reliability.md for the criteria)", flush=True)
    return 1 if bad else 0


# --- flood ---------------------------------------------------------------------------------------


def store_len(plugin: RateLimiterPlugin) -> int | None:
    """Keys in the Python engine's memory store; None for the Go engine (not exposed by pyext)."""
    store = getattr(plugin.engine, "_store", None)
    return len(store) if store is not None else None


async def flood(args: argparse.Namespace) -> dict[str, Any]:
    plugin = make_plugin(args.engine, {"by_user": "1000000/h", "memory_max_keys": args.max_keys})
    hook = plugin.tool_pre_invoke
    payload = ToolPreInvokePayload(name="work", args={})
    victim = PluginContext(global_context=GlobalContext(request_id="victim", user="victim@example.com"))
    flooder = PluginContext(global_context=GlobalContext(request_id="flood", user="x"))
    gctx = flooder.global_context
    await hook(payload, victim)  # binds the engine (the Go extension loads here)
    gc.collect()
    rss_start = rss_kib()

    def timed_victim(samples: list[float]) -> None:
        start = time.perf_counter_ns()
        coro = hook(payload, victim)
        try:
            coro.send(None)  # the memory path never suspends: run the coroutine to its end here
        except StopIteration as stop:
            result = stop.value
        else:
            raise RuntimeError("the memory-backend hook suspended")
        samples.append((time.perf_counter_ns() - start) / 1000)
        if not result.continue_processing:
            raise RuntimeError("the victim was refused")

    before: list[float] = []
    for _ in range(args.victim_samples):
        timed_victim(before)

    during: list[float] = []
    flood_lat: list[float] = []
    max_len = 0
    rss_at_fill = None
    rss_max = rss_start
    escaped = 0
    t_start = time.perf_counter()
    for i in range(args.identities):
        gctx.user = f"flood-{i}:%~{{tag}}@example.com"
        start = time.perf_counter_ns()
        try:
            result = await hook(payload, flooder)
        except Exception:  # noqa: BLE001
            escaped += 1
            continue
        if i % 16 == 0:
            flood_lat.append((time.perf_counter_ns() - start) / 1000)
        if not result.continue_processing:
            raise RuntimeError("a flood identity was refused: its first request")
        if i >= args.max_keys and i % args.victim_every == 0:
            timed_victim(during)
        if i % 50_000 == 0 or i == args.max_keys:
            n = store_len(plugin)
            if n is not None:
                max_len = max(max_len, n)
            rss_max = max(rss_max, rss_kib())
            if i == args.max_keys:
                gc.collect()
                rss_at_fill = rss_kib()
    elapsed = time.perf_counter() - t_start
    gc.collect()
    rss_end = rss_kib()
    n = store_len(plugin)
    if n is not None:
        max_len = max(max_len, n)
    return {
        "engine": args.engine,
        "identities": args.identities,
        "memory_max_keys": args.max_keys,
        "seconds": round(elapsed, 1),
        "calls_per_s": round(args.identities / elapsed),
        "escaped": escaped,
        "keys_max_sampled": max_len if n is not None else None,
        "keys_end": n,
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_at_fill_mib": round((rss_at_fill or 0) / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "rss_max_mib": round(max(rss_max, rss_end) / 1024, 1),
        "victim_p50_before_us": percentile(before, 50),
        "victim_p99_before_us": percentile(before, 99),
        "victim_p50_during_us": percentile(during, 50),
        "victim_p99_during_us": percentile(during, 99),
        "victim_max_during_us": max(during, default=0.0),
        "victim_samples_during": len(during),
        "flood_p99_us": percentile(flood_lat, 99),
        "flood_mean_us": statistics.fmean(flood_lat) if flood_lat else 0.0,
    }


def cmd_flood(args: argparse.Namespace) -> int:
    gc.freeze()
    prov = provenance(OUTPUTS)
    result = asyncio.run(flood(args))
    print("flood:", json.dumps(result), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"provenance": prov | {"load_after": loadavg()}, **result}, indent=1) + "\n")
    # The Go store's key count comes from tools/chaos/flood; here only what this process can see is judged.
    ok = flood_goals_met(result, {"keys_max": 0} if result["keys_max_sampled"] is None else None)
    if not ok:
        print("flood: goals missed (see docs/reliability.md for the criteria)", flush=True)
    return 0 if ok else 1


# --- Go fuzzing -----------------------------------------------------------------------------------

FUZZ_TARGETS = (("FuzzParseConfig", "./core"), ("FuzzEscapeIdentity", "./core"))


def cmd_fuzz(args: argparse.Namespace) -> int:
    """``go test -fuzz`` for each target for ``--fuzztime``; a failure keeps Go's reproducer in testdata."""
    results = []
    failed = False
    prov = provenance(OUTPUTS)
    for target, package in FUZZ_TARGETS:
        cmd = ["go", "test", "-run", "^$", "-fuzz", f"^{target}$", "-fuzztime", args.fuzztime, package]
        print("fuzz: " + " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # nosec B603 # argv built above (go test -fuzz), no shell
        tail = (proc.stdout + proc.stderr).strip().splitlines()
        execs = next((line for line in reversed(tail) if "execs:" in line), "")
        match = re.search(r"execs: (\d+)", execs)
        result = "ok" if proc.returncode == 0 else "FAILED: " + (tail[-1] if tail else f"exit {proc.returncode}")
        if match:
            result += f", {int(match.group(1)):,} executions"
        failed |= proc.returncode != 0
        print(f"fuzz: {target}: {result}", flush=True)
        if proc.returncode != 0:
            print("\n".join(tail[-30:]), flush=True)
        results.append({"target": target, "package": package, "fuzztime": args.fuzztime, "result": result})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prov["load_after"] = loadavg()
    args.out.write_text(json.dumps({"provenance": prov, "targets": results}, indent=1) + "\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("faults", help="Redis faults under concurrent load")
    f.add_argument("--engines", default="python,go")
    f.add_argument("--faults", default="kill,pause,slow")
    f.add_argument("--concurrency", type=int, default=32)
    f.add_argument("--baseline-s", type=float, default=2.0)
    f.add_argument("--fault-s", type=float, default=3.0)
    f.add_argument("--recovery-s", type=float, default=3.0)
    f.add_argument("--timeout-ms", type=int, default=50, help="redis_timeout_ms and redis_connect_timeout_ms")
    f.add_argument("--slow-ms", type=int, default=200, help="delay per reply while slowed")
    f.add_argument("--out", type=Path, default=RESULTS_DIR / "faults.json")
    f.set_defaults(fn=cmd_faults)
    fl = sub.add_parser("flood", help="distinct identities through the memory backend")
    fl.add_argument("--engine", required=True, choices=["python", "go"])
    fl.add_argument("--identities", type=int, default=1_000_000)
    fl.add_argument("--max-keys", type=int, default=100_000)
    fl.add_argument("--victim-every", type=int, default=50)
    fl.add_argument("--victim-samples", type=int, default=5_000)
    fl.add_argument("--out", type=Path)
    fl.set_defaults(fn=cmd_flood)
    fz = sub.add_parser("fuzz", help="go test -fuzz on the Go config decoder and identity escaping")
    fz.add_argument("--fuzztime", default="20s")
    fz.add_argument("--out", type=Path, default=RESULTS_DIR / "fuzz.json")
    fz.set_defaults(fn=cmd_fuzz)
    args = parser.parse_args(argv)
    if args.cmd == "flood" and args.out is None:
        args.out = RESULTS_DIR / f"flood-{args.engine}.json"
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())

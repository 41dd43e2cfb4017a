"""The plugin's share of a gateway request: gateway CPU per tools/call with the plugin off, on with the
Go engine and on with the Python engine, on the real gateway (issue 13, target 8).

    python rig/loadtest/cost.py                      # memory and Redis backends, one section each
    python rig/loadtest/cost.py --backends memory --rounds 3 --requests 100 --rate 5
    python rig/loadtest/run.py render                # re-renders these sections too (RENDERERS there)

One rig per backend with three gateways: plugins disabled (``off``), RATE_LIMITER_ENGINE=go and
RATE_LIMITER_ENGINE=python, the same plugin config (limits never reached, three dimensions, so every
call runs the whole check and is admitted). In each round every gateway in turn (the order rotates
from round to round) gets the same fixed number of tools/call at the same fixed rate, sent straight to
it (not through nginx); the gateway's CPU time (user + system of its process group, /proc/<pid>/stat)
is read before and after its batch. The other gateways are idle meanwhile, so machine load hits each
configuration alike. Everything a section shows is computed by ``render_cost`` from its raw results.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import rigctl  # noqa: E402
from classify import ADMITTED, INFRA, UPSTREAM_HEADER, classify  # noqa: E402
from procstat import CLOCK_TICKS, maps_contain  # noqa: E402
from report import table  # noqa: E402

CONFIGS = ("off", "go", "python")  # the gateways of a cost rig, in this order (gw1, gw2, gw3)
NEVER_REACHED = "1000000/m"
GO_EXTENSION_FILE = "_pyext"

#: Answers that fail a section whatever their number: the proxy or the gateway's own limiter answered, or a
#: refusal broke the plugin's contract (the same as the other load tests, run.py infra_verdict).
ALWAYS_FAIL = ("identity_leak", "proxy_response", "gateway_limiter_429", "bad_rate_limit_headers")

#: Two-sided 95 % quantiles of Student's t by degrees of freedom (1..10); beyond 10, 2.228 overstates
#: the interval a little, which is the safe side.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


# --------------------------------------------------------------------------- analysis (pure)


def per_round(batches: Sequence[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Gateway CPU microseconds per request of each batch: round -> config -> µs."""
    out: dict[int, dict[str, float]] = {}
    for b in batches:
        out.setdefault(b["round"], {})[b["config"]] = 1e6 * b["cpu_s"] / b["requests"]
    return out


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student's t); half-width nan for one value."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan
    t = T95.get(len(values) - 1, T95[10])
    return m, t * statistics.stdev(values) / math.sqrt(len(values))


def analyse_cost(batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration: requests, CPU seconds and µs per request pooled over rounds, and the range of the
    per-round figures; per engine: the plugin's cost (on - off, paired within each round, with its 95 %
    interval over rounds) in µs per request and as a share of the request with the plugin on.
    Only rounds that measured all three configurations are paired."""
    stats: dict[str, dict[str, Any]] = {}
    for cfg in CONFIGS:
        bs = [b for b in batches if b["config"] == cfg]
        if not bs:
            continue
        n = sum(b["requests"] for b in bs)
        cpu = sum(b["cpu_s"] for b in bs)
        rounds = [1e6 * b["cpu_s"] / b["requests"] for b in bs]
        stats[cfg] = {"requests": n, "cpu_s": cpu, "us_per_req": 1e6 * cpu / n, "min_us": min(rounds),
                      "max_us": max(rounds)}  # fmt: skip
    rounds = [r for r in per_round(batches).values() if all(c in r for c in CONFIGS)]
    plugin: dict[str, dict[str, float]] = {}
    for eng in ("go", "python"):
        if not rounds:
            break
        diffs = [r[eng] - r["off"] for r in rounds]
        mean, half = mean_ci(diffs)
        on = statistics.fmean(r[eng] for r in rounds)
        plugin[eng] = {"us": mean, "ci_us": half, "share": mean / on, "ci_share": half / on, "rounds": len(rounds)}
    if rounds:
        d, half = mean_ci([r["python"] - r["go"] for r in rounds])
        plugin["python_minus_go"] = {"us": d, "ci_us": half, "rounds": len(rounds)}
    return {"configs": stats, "plugin": plugin}


def _pm(mean: float, half: float, fmt: str) -> str:
    return f"{mean:{fmt}}" + ("" if math.isnan(half) else f" ± {half:{fmt}}")


def render_cost(raw: dict[str, Any], events: dict[str, list[dict]]) -> tuple[list[str], list[str], dict]:
    """Lines, problems and derived figures of a plugin-cost section, from its raw results alone."""
    batches = raw["batches"]
    problems = list(raw["engine_problems"])
    # Raw results from before the infrastructure-error budget existed were judged with none.
    max_infra_pct = raw.get("max_infra_pct", 0.0)
    not_admitted, infra = [], 0
    for b in batches:
        evs = events.get(b["events"], [])
        bad = [e for e in evs if e["cat"] != ADMITTED]
        if len(evs) != b["requests"]:
            problems.append(f"round {b['round']} {b['config']}: {len(evs)} events for {b['requests']} requests")
        if bad:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(Counter(e["cat"] for e in bad).items()))
            not_admitted.append(f"round {b['round']} {b['config']}: {kinds}")
        infra += sum(1 for e in bad if e["cat"] in INFRA and e["cat"] not in ALWAYS_FAIL)
        problems += [f"round {b['round']} {b['config']}: {e['cat']}" for e in bad if e["cat"] in ALWAYS_FAIL][:3]
        if any(e["cat"] not in INFRA for e in bad):  # refused or a tool error, at limits never reached
            problems.append(f"round {b['round']} {b['config']}: {kinds}")
    total = sum(b["requests"] for b in batches)
    if infra and 100 * infra / max(1, total) > max_infra_pct:
        problems.append(f"{infra} infrastructure errors in {total} requests > {max_infra_pct} %")
    a = analyse_cost(batches)
    facts = raw["rig"]
    lat: dict[str, list[float]] = {}
    for b in batches:
        lat.setdefault(b["config"], []).extend(
            (e["t1"] - e["t0"]) * 1000 for e in events.get(b["events"], []) if e["cat"] == ADMITTED
        )
    rows = []
    for cfg, s in a["configs"].items():
        ls = sorted(lat.get(cfg, [])) or [0.0]
        redis_cmds = sum(b.get("redis_commands", 0) for b in batches if b["config"] == cfg)
        wall = sum(b["wall_s"] for b in batches if b["config"] == cfg)
        rows.append([
            cfg if cfg == "off" else f"on, {cfg}", s["requests"], f"{s['requests'] / wall:.1f}", f"{s['us_per_req']:.0f}",
            f"{s['min_us']:.0f} .. {s['max_us']:.0f}", f"{ls[len(ls) // 2]:.1f}",
            f"{redis_cmds / s['requests']:.2f}" if raw["backend"] == "redis" else "-",
        ])  # fmt: skip
    prow = []
    for eng in ("go", "python"):
        p = a["plugin"].get(eng)
        if p:
            prow.append([eng, _pm(p["us"], p["ci_us"], ".0f"), _pm(100 * p["share"], 100 * p["ci_share"], ".2f")])
    idle = raw.get("idle", {})
    idle_txt = ", ".join(f"{c} {1000 * idle[c]:.1f}" for c in CONFIGS if c in idle)
    loads = [b["load1"] for b in batches]
    lines = [
        f"One rig, backend `{raw['backend']}`, `{raw['algorithm']}`, limits by user, tenant and tool of "
        f"{raw['rate_limit']} (never reached: every call runs all three dimensions and is admitted), three gateways: "
        "plugins disabled (`off`), RATE_LIMITER_ENGINE=go, RATE_LIMITER_ENGINE=python. Per round each gateway in turn "
        f"gets {raw['requests']} tools/call at {raw['rate']}/s ({raw['concurrency']} at most in flight, {raw['users']} "
        "users in turn), sent straight to it; its CPU time (user + system of its process group from /proc) is read "
        f"before and after. {raw['rounds']} rounds, the order rotating (round 1: {' '.join(raw['orders'][0])}). "
        f"Run: {raw['run']}; load average (1 min) during the batches {min(loads):.2f} .. {max(loads):.2f}; "
        f"{rigctl.versions_text(facts.get('versions', {}))}.",
        table(["plugin", "requests", "req/s", "gateway CPU µs/req", "per round min .. max", "p50 ms",
               "Redis commands/req*" if raw["backend"] == "redis" else "Redis commands/req"], rows),  # fmt: skip
        "The plugin's cost per tools/call, on minus off paired within each round (mean ± 95 % interval over rounds), "
        "and its share of the request with the plugin on:",
        table(["engine", "plugin CPU µs/req", "share of the gateway's CPU per request, %"], prow),
    ]
    if raw["backend"] == "redis":
        lines.insert(2, "\\* `total_commands_processed` of Redis over the batch, per call: it counts the commands a "
                     "script runs (each `redis.call`) as well as the script call itself, so it is not the number of "
                     "round trips.")  # fmt: skip
    if not_admitted:
        lines.append(
            "Not admitted (counted in the CPU per call like every call sent; infrastructure errors allowed up to "
            f"{max_infra_pct} % of the requests): " + "; ".join(not_admitted) + "."
        )
    lines += [resolution_line(eng, a["plugin"][eng]) for eng in ("go", "python") if eng in a["plugin"]]
    if "python_minus_go" in a["plugin"]:
        d = a["plugin"]["python_minus_go"]
        zero = math.isnan(d["ci_us"]) or abs(d["us"]) <= d["ci_us"]
        lines.append(
            f"Python engine minus Go engine: {_pm(d['us'], d['ci_us'], '.0f')} µs per request"
            + (", not resolved (the interval contains 0)." if zero else
               ": the interval excludes 0, but each interval here is wrong one time in twenty and this section shows "
               "three; the engines' own cost per check differs by microseconds (docs/benchmarks.md), so a difference "
               "of this size would come from how each runs inside the gateway, or from chance.")
        )  # fmt: skip
    achieved = [b["requests"] / b["wall_s"] for b in batches if b["wall_s"] > 0]
    if achieved and min(achieved) < 0.9 * raw["rate"]:
        lines.append(
            f"The gateways did not keep the asked {raw['rate']}/s with {raw['concurrency']} calls in flight (batches "
            f"at {min(achieved):.1f} .. {max(achieved):.1f}/s): other work on the machine slowed their answers. "
            "The CPU per call stays a per-call figure; a longer batch adds a little more idle CPU."
        )
    lines.append(
        f"Idle CPU of each gateway, measured with no load before the rounds, in ms per second: {idle_txt}; it "
        "runs during every batch and nearly cancels in the differences. The engine's own cost per check is the "
        "benchmarks' job (docs/benchmarks.md); this is its weight in a whole gateway request."
    )
    return lines, problems, {**a, "latency_p50_ms": {c: sorted(v)[len(v) // 2] for c, v in lat.items() if v}}


def resolution_line(engine: str, p: dict[str, float]) -> str:
    """Say from the numbers whether the rig resolved the plugin's cost with this engine, and the bound it gives."""
    if math.isnan(p["ci_us"]):
        return f"{engine}: one round, so no interval: this difference alone proves nothing."
    lo, hi = 100 * (p["share"] - p["ci_share"]), 100 * (p["share"] + p["ci_share"])
    if lo <= 0 <= hi:
        return (
            f"{engine}: not resolved: the interval ({lo:.1f} .. {hi:.1f} %) contains 0, the gateway's own work per "
            f"call varied more than the plugin costs; at 95 % confidence (rounds taken as independent) the plugin's "
            f"share is below {hi:.1f} % of the gateway's CPU per tools/call."
        )
    return f"{engine}: resolved: the plugin's share is {lo:.1f} .. {hi:.1f} % of the gateway's CPU per tools/call."


# --------------------------------------------------------------------------- measuring


def group_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of the process group led by ``pid``: the gateway and the processes it
    forked (1.1.0's jq workers), plus children it has already reaped."""
    total = 0.0
    for member in [pid, *[m for m in rigctl._group_members(pid) if m != pid]]:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if member == pid else 0)
        total += ticks / CLOCK_TICKS
    return total


def redis_commands(port: int) -> int:
    """total_commands_processed of the Redis on 127.0.0.1:port (RESP by hand: no client library needed)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        data = b""
        while b"total_commands_processed:" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("no total_commands_processed in INFO stats")


def drive(url: str, callers: list[tuple[int, tuple[str, ...], str]], tool: str, n: int, rate: float,
          concurrency: int) -> list[dict]:  # fmt: skip
    """Send ``n`` tools/call to ``url`` at ``rate`` per second (request i scheduled at start + i/rate, late
    ones sent at once), at most ``concurrency`` in flight, callers in turn; one event per request."""
    host, port = url.removeprefix("http://").split(":")
    start = time.time() + 0.2
    counter = iter(range(n))
    lock = threading.Lock()
    out: list[dict] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            user, identities, token = callers[i % len(callers)]
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                               "params": {"name": tool, "arguments": {"text": "cost", "fail": False}}})  # fmt: skip
            t0 = time.time()
            try:
                conn.request("POST", "/rpc", body, {"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json"})  # fmt: skip
                resp = conn.getresponse()
                data, status = resp.read(), resp.status
                headers = {k.lower(): v for k, v in resp.getheaders()}
                headers[UPSTREAM_HEADER] = f"{host}:{port}"  # straight to the gateway: no proxy made it
                err = None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                data, status, headers, err = None, 0, {}, repr(e)
            t1 = time.time()
            o = classify(status, headers, data, err, identities)
            rec = {"t0": t0, "t1": t1, "user": user, "cat": o.category, "up": f"{host}:{port}", "st": status}
            if o.category != ADMITTED:
                rec["det"] = o.detail
            with lock:
                out.append(rec)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(out, key=lambda e: e["t0"])


def engine_problems(rig: dict[str, Any]) -> list[str]:
    """The Go extension must be mapped into the go gateway only."""
    problems = []
    for g in rig["gateways"]:
        loaded = maps_contain(g["pid"], GO_EXTENSION_FILE)
        if (g["engine"] == "go") != loaded:
            problems.append(f"{g['name']} ({g['engine']}): Go extension {'loaded' if loaded else 'not loaded'}")
    return problems


def measure(a: argparse.Namespace, backend: str) -> int:
    import run  # the load tests' rig handling and raw-result writing (run.py imports this module)

    opts = rigctl.RigOptions(
        engines=list(CONFIGS), backend=backend, algorithm=a.algorithm, by_user=NEVER_REACHED,
        by_tenant=NEVER_REACHED, by_tool={rigctl.TOOL_NAME: NEVER_REACHED}, users=a.users, teams=2,
        gateway_log_level="WARNING", fail_mode="closed", plugin_options={"redis_timeout_ms": 200},
    )  # fmt: skip
    env_line = run.environment_line()

    def body(rig: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict]]]:
        gws = {g["engine"]: g for g in rig["gateways"]}
        callers = []
        for i, u in enumerate(rig["users"]):
            callers.append((i, tuple(x for x in (u["email"], u.get("team")) if x), u["token"]))
        # warm-up: every gateway serves a few calls first (imports, connection pools, first plugin manager)
        for cfg in CONFIGS:
            drive(gws[cfg]["url"], callers, rig["tool"], a.warmup, a.rate, a.concurrency)
        before = {c: group_cpu_seconds(gws[c]["pid"]) for c in CONFIGS}
        time.sleep(a.idle)
        idle = {c: (group_cpu_seconds(gws[c]["pid"]) - before[c]) / a.idle for c in CONFIGS}
        batches, events, orders = [], {}, []
        for rnd in range(a.rounds):
            order = list(CONFIGS[rnd % 3:] + CONFIGS[: rnd % 3])
            orders.append(order)
            for cfg in order:
                g = gws[cfg]
                r0 = redis_commands(rig["redis_port"]) if backend == "redis" else 0
                c0, w0 = group_cpu_seconds(g["pid"]), time.time()
                evs = drive(g["url"], callers, rig["tool"], a.requests, a.rate, a.concurrency)
                c1, w1 = group_cpu_seconds(g["pid"]), time.time()
                r1 = redis_commands(rig["redis_port"]) if backend == "redis" else 0
                name = f"run{len(batches) + 1}-{cfg}-round{rnd + 1}"  # save_raw replaces <section>-run*
                events[name] = evs
                batches.append({
                    "round": rnd + 1, "config": cfg, "gateway": g["name"], "requests": a.requests,
                    "cpu_s": round(c1 - c0, 4), "wall_s": round(w1 - w0, 3), "load1": round(os.getloadavg()[0], 2),
                    "redis_commands": r1 - r0, "events": name,
                })  # fmt: skip
                print(f"round {rnd + 1} {cfg}: {1e6 * (c1 - c0) / a.requests:.0f} µs/req", flush=True)
        inputs = {
            "format": run.RAW_FORMAT, "kind": "plugin-cost", "section": f"plugin-cost-{backend}",
            "title": f"The plugin's share of a gateway request: {backend} backend", "run": env_line,
            "rig": run.rig_facts(rig), "backend": backend, "algorithm": a.algorithm, "rate_limit": NEVER_REACHED,
            "requests": a.requests, "rate": a.rate, "concurrency": a.concurrency, "users": a.users,
            "rounds": a.rounds, "orders": orders, "warmup": a.warmup, "idle_s": a.idle,
            "idle": {c: round(v, 5) for c, v in idle.items()}, "engine_problems": engine_problems(rig),
            "max_infra_pct": a.max_infra_pct,
            "batches": batches,
        }  # fmt: skip
        return inputs, events

    try:
        inputs, events = run._with_rig(opts, False, body)
    except run.TestFailed as e:
        print(f"Verdict: FAIL: {e}", file=sys.stderr)
        return 1
    return run._finish(inputs, events, not a.no_doc)


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default=env("LT_BACKENDS", "memory redis"), help="one section per backend")
    ap.add_argument("--requests", type=int, default=int(env("LT_REQUESTS", "200")), help="per batch")
    ap.add_argument("--rate", type=float, default=float(env("LT_RATE", "8")), help="requests per second")
    ap.add_argument("--concurrency", type=int, default=int(env("LT_CONCURRENCY", "4")))
    ap.add_argument("--rounds", type=int, default=int(env("LT_ROUNDS", "5")))
    ap.add_argument("--users", type=int, default=int(env("LT_USERS", "8")))
    ap.add_argument("--warmup", type=int, default=int(env("LT_WARMUP", "20")), help="calls per gateway first")
    ap.add_argument("--idle", type=float, default=float(env("LT_IDLE_S", "10")), help="seconds of idle CPU")
    ap.add_argument("--algorithm", choices=("fixed_window", "sliding_window", "token_bucket"),
                    default=env("RL_ALGORITHM", "fixed_window"))  # fmt: skip
    ap.add_argument("--max-infra-pct", type=float, default=float(env("LT_MAX_INFRA_PCT", "1.0")),
                    help="infrastructure errors allowed, in % of the requests (the other load tests' budget)")  # fmt: skip
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/loadtest.md")
    a = ap.parse_args(argv)
    backends = a.backends.split()
    if not backends or any(b not in ("memory", "redis") for b in backends):
        ap.error("--backends: memory and/or redis")
    if a.requests < 1 or a.rate <= 0 or a.concurrency < 1 or a.rounds < 1 or a.users < 1 or a.idle <= 0:
        ap.error("--requests, --rate, --concurrency, --rounds, --users and --idle must be positive")
    rigctl.stop_on_sigterm()
    status = 0
    for backend in backends:
        status |= measure(a, backend)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Turns a run's results into docs/benchmarks.md, its PNG chart, and the console summary.

``python -m rlbench.report RESULTS_JSON --doc docs/benchmarks.md [--chart PATH]``
regenerates the doc from a saved run without measuring again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rlbench import baseline, targets
from rlbench.cluster import normalise_error
from rlbench.engine import CROSSING
from rlbench.targets import RATIO_STAT, SCRIPT_ENTRY, hook_stat
from rlbench.workload import ADMITTED_RATE, ALGO_SHORT, BLOCKED_RATE, HOOK_SHORT, PARTIAL, POOL_TENANTS, POOL_USERS

COLUMNS = ("floor", "go", "python", "cpex-rate-limiter", "limits")
COLOURS = {"floor": "#9e9e9e", "go": "#00add8", "python": "#3776ab", "cpex-rate-limiter": "#b7410e",
           "limits": "#6a9f3a", baseline.NAME: "#000000"}  # fmt: skip


def _us(ns: float | None) -> str:
    if ns is None:
        return "–"
    us = ns / 1000
    if abs(us) < 10:
        return f"{us:.2f}"
    return f"{us:.1f}" if abs(us) < 100 else f"{us:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}x"


def _rows(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in results.get("latency", []) if r["kind"] == kind]


def _floor(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Floor rows by (path, hook)."""
    return {(r["path"], r["hook"]): r for r in _rows(results, "floor")}


def _cells(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    seen = {(r["backend"], r["algorithm"], r["dims"], r["path"], r["hook"]) for r in _rows(results, "hook")}
    order = {"memory": 0, "redis": 1, "fixed_window": 0, "sliding_window": 1, "token_bucket": 2, "admitted": 0,
             "blocked": 1, "tool_pre_invoke": 0, "prompt_pre_fetch": 1}  # fmt: skip
    return sorted(seen, key=lambda c: (order[c[0]], order[c[1]], c[2], order[c[3]], order[c[4]]))


def _by_subject(results: dict[str, Any]) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    out: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for r in _rows(results, "hook"):
        out.setdefault(r["subject"], {})[(r["backend"], r["algorithm"], r["dims"], r["path"], r["hook"])] = r
    return out


def _fmt_lat(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    return f"**{_us(r[RATIO_STAT])}** · {_us(r['mean'])} / {_us(r['p50'])} / {_us(r['p99'])}"


# --- console summary ------------------------------------------------------


def summary_text(results: dict[str, Any]) -> str:
    """The target lines and headline ratios, for the terminal."""
    lines = ["", "== rlbench: targets (ratios from this run) =="]
    for t in results.get("targets", []):
        lines.append(f"{t['status']:8s} {t.get('id', ''):5s} {t['name']}: {t['detail']}")
    lines += ["", "== headline (tool hook, admitted, 3 dimensions; best-round p50 / mean us per call) =="]
    subj = _by_subject(results)
    floor = _floor(results).get(("admitted", "tool_pre_invoke"))
    for backend in ("memory", "redis"):
        for algo in results.get("algorithms", []):
            cell = (backend, algo, 3, "admitted", "tool_pre_invoke")
            parts = []
            for s in COLUMNS[1:]:
                r = subj.get(s, {}).get(cell)
                parts.append(f"{s}={_us(r[RATIO_STAT])}/{_us(r['mean'])}" if r else f"{s}=–")
            fl = f"{_us(floor[RATIO_STAT])}/{_us(floor['mean'])}" if floor else "–"
            lines.append(f"{backend:6s} {ALGO_SHORT[algo]:7s} floor={fl} " + " ".join(parts))
    for name, msg in results.get("unavailable", {}).items():
        lines.append(f"NOT AVAILABLE {name}: {msg}")
    if any(t["status"] == "MISS" for t in results.get("targets", [])) and results.get("profiles"):
        lines += ["", "== where the time goes (cProfile of our hooks; see the doc for all) =="]
        for p in results["profiles"]:
            if p["backend"] == "memory" and p["path"] == "admitted":
                lines += [f"-- {p['subject']} engine, {p['backend']}, {p['path']}, 3 dimensions, "
                          f"{p['calls']} calls --", p["text"]]  # fmt: skip
    meta = results.get("meta", {})
    lines.append(f"\nrun took {meta.get('duration_s')} s; load average start {meta.get('load_start')} "
                 f"end {meta.get('load_end')}")  # fmt: skip
    return "\n".join(lines)


# --- Markdown -------------------------------------------------------------


def _targets_md(results: dict[str, Any]) -> list[str]:
    out = ["| # | target | status | numbers (this run) |", "|---|---|---|---|"]
    for t in results.get("targets", []):
        out.append(f"| {t.get('id', '')} | {t['name']} | **{t['status']}** | {t['detail']} |")
    return out + ["", "`13.N` is target N of issue 13 (Performance: at the physical limit), the ones this run is judged "
                  "on; `4.N` are the targets of issue 4 (the first A/B), kept as earlier targets. 13.1 is judged from "
                  "the Go benchmarks of `make bench-engine` (docs/engine.md), 13.8 on the rig."]


def _headline_md(results: dict[str, Any]) -> list[str]:
    go, go_mean = hook_stat(results, "go"), hook_stat(results, "go", "mean")
    out = []
    for other in ("python", "cpex-rate-limiter", "limits"):
        om, om_mean = hook_stat(results, other), hook_stat(results, other, "mean")
        for backend in ("memory", "redis"):
            cells = [c for c in go if c in om and c[0] == backend]
            if not cells:
                continue
            ratios = sorted(om[c] / go[c] for c in cells)
            means = sorted(om_mean[c] / go_mean[c] for c in cells)
            out.append(f"- {other} / Go, {backend}: ratio median {ratios[len(ratios) // 2]:.2f}x, range "
                       f"{ratios[0]:.2f}x..{ratios[-1]:.2f}x over {len(cells)} cells (ratio of means: median "
                       f"{means[len(means) // 2]:.2f}x); > 1 means Go is faster")  # fmt: skip
    eng = {(r["subject"], r["backend"], r["algorithm"], r["dims"], r["path"]): r[RATIO_STAT] for r in _rows(results, "engine")}
    for backend in ("memory", "redis"):
        pairs = [(k, v) for k, v in eng.items() if k[0] == "python" and k[1] == backend and ("go", *k[1:]) in eng]
        ratios = sorted(v / eng[("go", *k[1:])] for k, v in pairs)
        if ratios:
            out.append(f"- Engine only (our engines called directly, no plugin layer), {backend}: python/go ratio "
                       f"median {ratios[len(ratios) // 2]:.2f}x, range {ratios[0]:.2f}x..{ratios[-1]:.2f}x over "
                       f"{len(ratios)} cells")  # fmt: skip
    cost = {(r["subject"], r["algorithm"]): r for r in results.get("redis_cost", [])
            if r["dims"] == 3 and r["path"] == "admitted"}  # fmt: skip
    redis_floor = next((r for r in results.get("redis_cost", []) if r["subject"] == "floor"), None)
    if redis_floor is not None:
        out.append(f"- Redis CPU floor: a script that does nothing, one round trip per request, costs "
                   f"{redis_floor['cpu_ms_per_10k']:.0f} ms of Redis CPU per 10,000 requests here")  # fmt: skip
    for algo in results.get("algorithms", []):
        parts = [f"{s} {cost[(s, algo)]['cpu_ms_per_10k']:.0f} ms / {cost[(s, algo)]['round_trips_per_request']:.0f} "
                 f"round trip{'s' if cost[(s, algo)]['round_trips_per_request'] >= 1.5 else ''}"
                 for s in COLUMNS if (s, algo) in cost]  # fmt: skip
        if parts:
            out.append(f"- Redis CPU per 10,000 checks and round trips per request ({ALGO_SHORT[algo]}, 3 dimensions, "
                       f"admitted): " + ", ".join(parts))  # fmt: skip
    fl = _floor(results)
    for s in ("go", "python"):
        st = hook_stat(results, s)
        shares = sorted(fl[(c[3], c[4])][RATIO_STAT] / st[c] for c in st if c[0] == "memory" and (c[3], c[4]) in fl)
        if shares:
            out.append(f"- The floor (cpex result objects, no limiting) is {shares[0]:.0%}..{shares[-1]:.0%} of the "
                       f"{s} hook on memory: that part no engine can speed up")  # fmt: skip
    return out


def _readmitted_md(results: dict[str, Any]) -> list[str]:
    rows = [r for r in results.get("latency", []) if r.get("readmitted")]
    if not rows:
        return []
    total = sum(r["readmitted"] for r in rows)
    return [f"- Blocked path: {total} calls in {len(rows)} cases were admitted because a window ended during the run "
            "(allowed, see below); they are part of those cases' samples.", ""]  # fmt: skip


def _ceiling_md(results: dict[str, Any]) -> list[str]:
    """How fast the Go hook could be if its engine took no time: the plugin layer's bound on 13.3 and 4.1 (Go/Python)."""
    go, py = hook_stat(results, "go"), hook_stat(results, "python")
    eng = {(r["subject"], r["backend"], r["algorithm"], r["dims"], r["path"]): r[RATIO_STAT] for r in _rows(results, "engine")}
    bounds = []
    for c in go:
        if c[0] != "memory" or c[2] != 3 or c not in py or c[4] != "tool_pre_invoke":
            continue
        e = eng.get(("go", c[0], c[1], c[2], c[3]))
        if e is None or go[c] <= e:
            continue
        layer = go[c] - e  # everything in the Go hook that is not the engine call
        bounds.append((py[c] / layer, py[c], go[c], e, c))
    if not bounds:
        return []
    best = max(bounds)
    ratio, p, g, e, c = best
    return [
        f"Where targets 13.3 and 4.1 (Go against Python) stand: on memory with 3 dimensions the Go hook minus its "
        f"engine call (the plugin layer: identity extraction, the cpex result, the coroutine) is {_us(g - e)} µs in "
        f"the best cell "
        f"({ALGO_SHORT[c[1]]}, {c[3]}); even an engine call costing nothing would make the Go hook at most "
        f"{ratio:.2f}x faster than the Python hook ({_us(p)} µs) there. See \"Where the time goes\" below.",
        "",
    ]


def _latency_md(results: dict[str, Any], backend: str) -> list[str]:
    subj = _by_subject(results)
    floor = _floor(results)
    cols = [c for c in COLUMNS if c == "floor" or c in subj]
    head = ["algorithm", "dims", "path", "hook", *cols, "python/go", "cpex-rs/go", "limits/go"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in _cells(results):
        if cell[0] != backend:
            continue
        _, algo, dims, path, hook = cell
        vals = []
        for c in cols:
            vals.append(_fmt_lat(floor.get((path, hook)) if c == "floor" else subj.get(c, {}).get(cell)))
        g = subj.get("go", {}).get(cell, {}).get(RATIO_STAT)
        ratios = [_ratio(subj.get(o, {}).get(cell, {}).get(RATIO_STAT), g) for o in ("python", "cpex-rate-limiter",
                                                                                "limits")]  # fmt: skip
        out.append("| " + " | ".join([ALGO_SHORT[algo], str(dims), path, HOOK_SHORT[hook], *vals, *ratios]) + " |")
    return out


def _split_md(results: dict[str, Any]) -> list[str]:
    engine = {(r["subject"], r["backend"], r["algorithm"], r["dims"], r["path"]): r for r in _rows(results, "engine")}
    subj = _by_subject(results)
    floor = _floor(results)
    out = [
        "| backend | algorithm | dims | path | floor | go hook | go engine only | go plugin layer | "
        "python hook | python engine only | python plugin layer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in _cells(results):
        backend, algo, dims, path, hook = cell
        if hook != "tool_pre_invoke":
            continue
        row = [backend, ALGO_SHORT[algo], str(dims), path, _us(floor.get((path, hook), {}).get(RATIO_STAT))]
        for s in ("go", "python"):
            h = subj.get(s, {}).get(cell, {}).get(RATIO_STAT)
            e = engine.get((s, backend, algo, dims, path), {}).get(RATIO_STAT)
            row += [_us(h), _us(e), _us(h - e if h is not None and e is not None else None)]
        out.append("| " + " | ".join(row) + " |")
    return out


def _overheads_md(results: dict[str, Any]) -> list[str]:
    null = next((r for r in _rows(results, "null")), None)
    boundary = next((r for r in _rows(results, "boundary")), None)
    out = []
    if null is not None:
        out.append(f"- Harness: an `async def` hook that does nothing costs {_us(null[RATIO_STAT])} µs per awaited call.")
    if null is not None and boundary is not None:
        out.append(f"- gopy boundary: the same coroutine making one no-op call into the Go extension (`ABIVersion`) "
                   f"costs {_us(boundary[RATIO_STAT])} µs, i.e. {_us(boundary[RATIO_STAT] - null[RATIO_STAT])} µs per crossing "
                   "(argument conversion, GIL release and re-acquisition, cgo).")  # fmt: skip
    out += _crossing_md(results)
    out.append("- The Go code alone (no Python): `make bench` runs `bench/gobench` (core.Limiter on the memory "
               "backend), a few hundred ns to a few µs per Evaluate on this machine.")
    return out + [""] if out else out


def _crossing_md(results: dict[str, Any]) -> list[str]:
    """Target 13.2's calls, best round and every round (ns per call, CPU time)."""
    cr = results.get("crossing") or {}
    calls = cr.get("calls") or {}
    if not calls:
        return [f"- Crossing calls (target 13.2): not measured in this run{': ' + cr['error'] if cr.get('error') else ''}."]
    parts = [f"{c['label']} **{c['best_ns']:.0f}** ns (rounds: {', '.join(f'{v:.0f}' for v in c['round_ns'])})"
             for c in (calls[k] for k in CROSSING if k in calls) if c.get("best_ns") is not None]  # fmt: skip
    return ["- Crossing into Go (target 13.2; memory, fixed window, 3 dimensions, one request repeated; best round, CPU "
            "time per call): " + "; ".join(parts) + "."]


def _features_md(results: dict[str, Any]) -> list[str]:
    """Gateway features against the plain tool hook of the same cell (best-round p50)."""
    feature = {(r["subject"], r["backend"], r["hook"]): r for r in _rows(results, "feature")}
    if not feature:
        return ["Not measured in this run.", ""]
    subj = _by_subject(results)
    out = [
        "| backend | subject | tool hook | traced (trace id: metadata) | extra | admitted headers (tool hook + "
        "`http_post_request`) | extra |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend in ("memory", "redis"):
        for subject in COLUMNS:
            plain = subj.get(subject, {}).get((backend, "fixed_window", 3, "admitted", "tool_pre_invoke"))
            traced = feature.get((subject, backend, "traced"))
            handoff = feature.get((subject, backend, "admitted headers"))
            if plain is None or traced is None:
                continue
            base = plain[RATIO_STAT]
            row = [backend, subject, _us(base), _us(traced[RATIO_STAT]), _us(traced[RATIO_STAT] - base)]
            if handoff is not None:
                row += [_us(handoff[RATIO_STAT]), _us(handoff[RATIO_STAT] - base)]
            else:
                row += ["–", "–"]
            out.append("| " + " | ".join(row) + " |")
    return out + [""]


def _concurrency_md(results: dict[str, Any]) -> list[str]:
    rows = results.get("concurrency", [])
    levels = sorted({r["inflight"] for r in rows})
    table: dict[tuple[str, str], dict[int, str]] = {}
    for r in rows:
        if r["rps_best"] is None:
            cell = f"failed open in {r.get('failed_rounds', 0)} of {r.get('failed_rounds', 0)} rounds"
        else:
            cell = f"**{r['rps_best']:,.0f}** ({r['rps_median']:,.0f})"
            if r.get("failed_rounds"):
                cell += f", failed open in {r['failed_rounds']} more rounds"
        table.setdefault((r["subject"], r["backend"] or "–"), {})[r["inflight"]] = cell
    out = ["| subject | backend | " + " | ".join(f"{n} in flight" for n in levels) + " |",
           "|---|---|" + "---|" * len(levels)]  # fmt: skip
    order = {s: i for i, s in enumerate((*COLUMNS, baseline.NAME))}
    backends = {"memory": 0, "redis": 1, "cluster": 2, "–": 3}
    for (subject, backend), by_n in sorted(table.items(), key=lambda kv: (backends.get(kv[0][1], 9), kv[0][1],
                                                                          order.get(kv[0][0], 9))):  # fmt: skip
        out.append(f"| {subject} | {backend} | "
                   + " | ".join(by_n.get(n, "–") for n in levels)
                   + " |")  # fmt: skip
    return out


def _concurrency_redis_md(results: dict[str, Any]) -> list[str]:
    """Redis CPU per 10,000 checks and read events per check of each level on the one redis-server."""
    rows = [r for r in results.get("concurrency", []) if r.get("redis_cpu_ms_per_10k") is not None]
    if not rows:
        return ["Redis CPU under concurrency: not measured in this run.", ""]
    levels = sorted({r["inflight"] for r in rows})
    by = {(r["subject"], r["inflight"]): r for r in rows}
    order = {s: i for i, s in enumerate((*COLUMNS, baseline.NAME))}
    out = ["Redis CPU ms per 10,000 checks / read events per check on the redis-server, over each level's rounds "
           "(fixed window, 3 dimensions, admitted; the one-at-a-time figures of the same cell are in the Redis-cost "
           "table below):", "",
           "| subject | " + " | ".join(f"{n} in flight" for n in levels) + " |", "|---|" + "---|" * len(levels)]  # fmt: skip
    for subject in sorted({r["subject"] for r in rows}, key=lambda x: order.get(x, 9)):
        cells = [f"{by[(subject, n)]['redis_cpu_ms_per_10k']:.0f} / {by[(subject, n)]['redis_reads_per_check']:.2f}"
                 if (subject, n) in by else "–" for n in levels]  # fmt: skip
        out.append(f"| {subject} | " + " | ".join(cells) + " |")
    return out + [""]


def _redis_md(results: dict[str, Any]) -> list[str]:
    out = ["| subject | algorithm | dims | path | script calls per request | other commands per request (run by the "
           "scripts, or sent directly) | round trips per request | Redis CPU ms per 10,000 checks |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    order = {s: i for i, s in enumerate(COLUMNS)}
    rows = sorted(results.get("redis_cost", []), key=lambda r: (order.get(r["subject"], 9), r["algorithm"] or "",
                                                                 r["dims"], r["path"]))  # fmt: skip
    for r in rows:
        if r["subject"] == "floor":
            out.append(f"| floor (EVALSHA of `return 1`, sync client) | – | – | – | evalsha 1.00 | none | "
                       f"{r['round_trips_per_request']:.2f} | {r['cpu_ms_per_10k']:.0f} |")  # fmt: skip
            continue
        cmds = r["commands_per_request"]
        entry = ", ".join(f"{k} {v:.2f}" for k, v in cmds.items() if k in SCRIPT_ENTRY) or "none"
        other = ", ".join(f"{k} {v:.2f}" for k, v in cmds.items() if k not in SCRIPT_ENTRY) or "none"
        out.append(f"| {r['subject']} | {ALGO_SHORT[r['algorithm']]} | {r['dims']} | {r['path']} | {entry} | {other} | "
                   f"{r['round_trips_per_request']:.2f} | {r['cpu_ms_per_10k']:.0f} |")  # fmt: skip
    return out


def _cost_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["subject"], r["algorithm"], r["dims"], r["path"])


def cluster_pairs(results: dict[str, Any]) -> list[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """(standalone row or None, cluster row) for every Cluster cost cell, in table order."""
    cl = results.get("cluster") or {}
    single = {_cost_key(r): r for r in [*results.get("redis_cost", []), *cl.get("standalone_partial", [])]
              if r["subject"] != "floor"}  # fmt: skip
    order = {"go": 0, "python": 1, "fixed_window": 0, "sliding_window": 1, "token_bucket": 2, "admitted": 0,
             "blocked": 1, PARTIAL: 2}  # fmt: skip
    rows = sorted(cl.get("cost", []), key=lambda r: (order.get(r["subject"], 9), order[r["algorithm"]], r["dims"],
                                                     order[r["path"]]))  # fmt: skip
    return [(single.get(_cost_key(r)), r) for r in rows]


def _f(r: dict[str, Any] | None, key: str, fmt: str) -> str:
    return "–" if r is None or r.get(key) is None else format(r[key], fmt)


def _cluster_md(results: dict[str, Any]) -> list[str]:
    pairs = cluster_pairs(results)
    if not pairs:
        return ["Not measured in this run (section `cluster`).", ""]
    nomem = _no_memory(results)
    out = [
        "| subject | algorithm | dims | path | round trips per request: standalone / Cluster | script calls per "
        "request on the Cluster | other commands per request on the Cluster | Redis CPU ms per 10,000 checks: "
        "standalone / Cluster primaries | Cluster / standalone | standalone with §12 off: round trips, CPU ms "
        "per 10,000 | Cluster replicas (not included) | latency µs, p50: standalone / Cluster | mean: "
        "standalone / Cluster |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for single, r in pairs:
        off = nomem.get(_cost_key(r))
        cmds = r["commands_per_request"]
        entry = ", ".join(f"{k} {v:.2f}" for k, v in cmds.items() if k in SCRIPT_ENTRY) or "none"
        other = ", ".join(f"{k} {v:.3f}" for k, v in cmds.items() if k not in SCRIPT_ENTRY) or "none"
        if single is None:
            cpu_ratio = "–"
        elif _local(single) and not _local(r):
            cpu_ratio = (f"{_ratio(r['cpu_ms_per_10k'], off['cpu_ms_per_10k'])} of §12 off" if off
                         else "– (standalone: §12)")  # fmt: skip
        else:
            cpu_ratio = _ratio(r["cpu_ms_per_10k"], single["cpu_ms_per_10k"])
        out.append(
            f"| {r['subject']} | {ALGO_SHORT[r['algorithm']]} | {r['dims']} | {r['path']} | "
            f"{_f(single, 'round_trips_per_request', '.2f')} / **{r['round_trips_per_request']:.2f}** | {entry} | "
            f"{other} | {_f(single, 'cpu_ms_per_10k', '.0f')} / **{r['cpu_ms_per_10k']:.0f}** | {cpu_ratio} | "
            + (f"{off['round_trips_per_request']:.2f}, {off['cpu_ms_per_10k']:.0f} | " if off else "– | ")
            + f"{_f(r, 'replica_cpu_ms_per_10k', '.0f')} | {_us(single.get('latency_p50_ns') if single else None)} / "
            f"{_us(r['latency_p50_ns'])} | {_us(single.get('latency_mean_ns') if single else None)} / "
            f"{_us(r['latency_mean_ns'])} |"
        )
    return out + [""]


def _no_memory(results: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Standalone cells with remembered refusals off, by (subject, algorithm, dims, path)."""
    return {_cost_key(r): r for r in (results.get("cluster") or {}).get("standalone_no_memory", [])}


def _peers_cluster_md(results: dict[str, Any]) -> list[str]:
    rows = (results.get("cluster") or {}).get("peers", [])
    if not rows:
        return ["No peer was tried on the Cluster in this run.", ""]
    out = ["| subject | algorithm | dims | path | outcome | calls with the expected result | error replies from "
           "the Cluster | errors logged or raised by the peer (most frequent first) | keys written |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        distinct = dict.fromkeys(normalise_error(e) for e in r.get("errors", []))  # runs before the folding too
        errors = "; ".join(f"`{e.replace('|', '/').replace('`', chr(39))}`" for e in distinct) or "none"
        replies = ", ".join(f"{k} {v}" for k, v in (r.get("server_errors") or {}).items()) or "none"
        logged = r.get("errors_logged", 0) + r.get("raised", 0)
        out.append(f"| {r['subject']} | {ALGO_SHORT[r['algorithm']]} | {r['dims']} | {r['path']} | **{r['verdict']}** | "
                   f"{r.get('expected', 0)} of {r.get('calls', 0)} | {replies} | {logged}: {errors} | "
                   f"{r.get('keys_written', 0)} |")  # fmt: skip
    return out + [""]


def _our_error_replies(results: dict[str, Any]) -> str:
    rows = (results.get("cluster") or {}).get("cost", [])
    if rows and all("error_replies" not in r for r in rows):
        return "not counted in this run"
    total: dict[str, int] = {}
    for r in rows:
        for code, n in (r.get("error_replies") or {}).items():
            total[code] = total.get(code, 0) + n
    return ", ".join(f"{k} {v}" for k, v in sorted(total.items())) + " error replies" if total else "no error reply"


def _span(values: Any) -> tuple[float, float]:
    v = sorted(values)
    return v[0], v[-1]


def _local(row: dict[str, Any]) -> bool:
    """Whether a cell's requests were mostly answered without Redis (remembered refusals, §12)."""
    return row["round_trips_per_request"] < 0.5


def _cluster_headline(results: dict[str, Any]) -> list[str]:
    out = []
    nomem = _no_memory(results)
    pairs = [(a, b) for a, b in cluster_pairs(results) if a is not None and b["dims"] == 3]
    for subject in ("go", "python"):
        for path in ("admitted", "blocked", PARTIAL):
            sel = [(a, b) for a, b in pairs if b["subject"] == subject and b["path"] == path]
            if not sel:
                continue
            rts, rts1 = _span(b["round_trips_per_request"] for _, b in sel), _span(a["round_trips_per_request"] for a, _ in sel)
            cpu, cpu1 = _span(b["cpu_ms_per_10k"] for _, b in sel), _span(a["cpu_ms_per_10k"] for a, _ in sel)
            line = (f"- Redis Cluster, {subject}, 3 dimensions, {path} (3 algorithms): round trips per request "
                    f"{rts[0]:.2f}..{rts[1]:.2f} (standalone {rts1[0]:.2f}..{rts1[1]:.2f}); Redis CPU per 10,000 checks, "
                    f"primaries summed, {cpu[0]:.0f}..{cpu[1]:.0f} ms (standalone {cpu1[0]:.0f}..{cpu1[1]:.0f} ms)")  # fmt: skip
            if all(not _local(a) for a, _ in sel):
                ratio = _span(b["cpu_ms_per_10k"] / a["cpu_ms_per_10k"] for a, b in sel)
                line += f", {ratio[0]:.2f}x..{ratio[1]:.2f}x"
            elif all(_local(a) for a, _ in sel):
                line += "; standalone answers these from remembered refusals (§12), the Cluster cannot with 3 dimensions"
                offs = [(nomem[_cost_key(b)], b) for _, b in sel if _cost_key(b) in nomem]
                if len(offs) == len(sel):
                    rt0 = _span(o["round_trips_per_request"] for o, _ in offs)
                    cpu0 = _span(o["cpu_ms_per_10k"] for o, _ in offs)
                    ratio = _span(b["cpu_ms_per_10k"] / o["cpu_ms_per_10k"] for o, b in offs)
                    line += (f"; standalone with §12 off: {rt0[0]:.2f}..{rt0[1]:.2f} round trips, {cpu0[0]:.0f}..{cpu0[1]:.0f} "
                             f"ms, Cluster {ratio[0]:.2f}x..{ratio[1]:.2f}x that")  # fmt: skip
            out.append(line)
    peers = (results.get("cluster") or {}).get("peers", [])
    for subject in sorted({r["subject"] for r in peers}):
        mine = [r for r in peers if r["subject"] == subject]
        fails = [r for r in mine if r["verdict"] != "runs"]
        replies: dict[str, int] = {}
        for r in fails:
            for code, n in (r.get("server_errors") or {}).items():
                replies[code] = replies.get(code, 0) + n
        what = ", ".join(f"{k} {v}" for k, v in sorted(replies.items(), key=lambda kv: (kv[0] == "ERR", -kv[1])))
        out.append(f"- {subject} on the Cluster: fails in {len(fails)} of {len(mine)} scenarios"
                   + (f"; the Cluster's error replies: {what}" if what else ""))  # fmt: skip
    return out


def _profiles_md(results: dict[str, Any]) -> list[str]:
    out = []
    for p in results.get("profiles", []):
        out += [f"**{p['subject']} engine, {p['backend']}, {p['path']}, fixed window, 3 dimensions** "
                f"({p['calls']} calls of `tool_pre_invoke`, sorted by own time):", "", "```", p["text"], "```", ""]
    return out


def _cluster_method_md(results: dict[str, Any]) -> list[str]:
    cl = results.get("cluster")
    if not cl:
        return []
    st = results.get("settings", {})
    idle = cl.get("idle_cpu_ms_per_s", {})
    ic, isg = idle.get("cluster", {}), idle.get("standalone", {})
    return [
        f"A local Redis Cluster ({results.get('meta', {}).get('cluster', '3 primaries + 3 replicas')}, on "
        "loopback, started by the project's one launcher `tests_py/support/redis_cluster.py`) runs beside the "
        "standalone server in the same run. Our plugin is configured with `redis_mode: cluster` and `redis_url` = "
        "one seed node, every other setting as on standalone. On a Cluster each dimension's key has its own hash "
        "tag (docs/semantics.md §6, §11.1): the pool's 3-dimension requests (a user, a tenant, the tool) are "
        "three slot groups, each its own script call on its slot's primary, run in parallel, plus, when one "
        "group refuses, a give-back call to each group that consumed. Path **partial** (3 dimensions) is the "
        f"request refused by one dimension only: the user's limit `{BLOCKED_RATE}` is spent, tenant and tool "
        f"allow `{ADMITTED_RATE}`; on standalone that is one script that refuses, on the Cluster the tenant and "
        "tool groups consume and are given back. It is measured on both. The **blocked** path (every limit "
        f"`{BLOCKED_RATE}`) has give-backs on the Cluster too: a refused request consumes nothing (§4), so a key "
        "whose group admitted while another group refused is given back and stays unspent; with the pool's 64 "
        "users on 8 tenants and one tool, the tool's key refuses every request after the first, and each "
        "request's user group (and its tenant's, for 7 of the 8 tenants) admits and is given back: about 1.9 "
        "give-backs per request, where one Redis runs one script that refuses.",
        "",
        "**Remembered refusals** (docs/semantics.md §12, on by default, `redis_blocked_max_keys`): once Redis "
        "has refused a key, our engines refuse further requests on it locally, with no Redis command, until its "
        "Retry-After has passed. On standalone that answers the blocked and partial paths (a few hundredths of a "
        "round trip per request remain: keys re-asked as their remembered refusals run out, and the Cluster "
        "clock's samples). On a Cluster only configurations with one dimension use it (a give-back can lower a "
        "key before its Retry-After, §12), so the 1-dimension blocked cells are answered locally there too, "
        "while every 3-dimension refused request pays its three group scripts and its give-backs. "
        + ("So the 3-dimension refused cells are also measured on standalone with §12 off "
           "(`redis_blocked_max_keys: 0`, same method): one script that refuses, the script-level counterpart of "
           "the Cluster's groups; where standalone answered locally, the Cluster's CPU is set against that."
           if cl.get("standalone_no_memory") else
           "The script cost of those refusals on standalone with §12 off was not measured in this run."),
        "",
        f"Method, the same as the Redis-cost table's: per cell up to {st.get('cluster_checks')} sequential "
        f"`tool_pre_invoke` calls (at least 200; fewer once {st.get('cluster_max_ms')} ms have passed; standalone "
        f"cells: {st.get('redis_checks')} or {st.get('redis_max_ms')} ms) between two `INFO all` snapshots of "
        "every primary, the snapshots' own cost subtracted. A **round trip** is a read event on a Redis server "
        "(`total_reads_processed`): the server reading one request off a client's socket, so one per "
        "request/reply exchange of a client that waits for its reply; on the Cluster they are summed over the "
        "three primaries, so three groups sent in parallel count three (their latency overlaps, their cost does "
        "not). Commands are commandstats calls summed over the primaries (the script calls, what the scripts "
        "run inside, and the cluster clock's `TIME` samples, at most one a second per instance). **Redis CPU** "
        "is `used_cpu_sys + used_cpu_user` of the three primaries, summed; the replicas' CPU (applying the "
        "primaries' replication stream) is shown in its own column and is **not** included; the standalone "
        "server has no replica. Idle, with no client sending anything, the three primaries used "
        f"{ic.get('counted', 0):.1f} ms of CPU per second and the replicas {ic.get('replicas', 0):.1f} (cron, "
        f"cluster bus, replication pings), the standalone server {isg.get('counted', 0):.1f}; that is included "
        "in the figures, not subtracted. Latency: `perf_counter_ns()` around each of the cell's calls, p50 and "
        "mean, the same on both (sequential calls, one in flight).",
        "",
    ]


def _cluster_section_md(results: dict[str, Any]) -> list[str]:
    if not results.get("cluster"):
        return ["Not measured in this run (section `cluster`).", ""]
    return [
        *_cluster_method_md(results),
        *_cluster_md(results),
        "Throughput on the Cluster (fixed window, 3 dimensions, admitted) is in the throughput table above, "
        "backend `cluster`.",
        "",
        "### Peers on the Cluster",
        "",
        "cpex-rate-limiter has no Cluster mode, and our limits wrapper (`bench/rlbench/limits_hook.py`) uses "
        "limits' plain Redis storage (limits has a separate Cluster storage, `redis+cluster://`, which this run "
        "does not try): each is configured as an operator would, with its `redis_url` naming the seed node, and "
        "called once for each of the pool's requests (tool hook, every "
        "Redis scenario it supports). The outcome is what it did, not a time: **runs** when every call had the "
        "path's expected result (admitted with headers, or a `RATE_LIMIT` violation) and nothing was logged "
        "at WARNING or above and no node replied with an error; else **fails**. Error replies are counted on "
        "the nodes (`INFO errorstats` of all six, before and after), which names the error even where the peer "
        "logs only that it failed (`ERR` is every error without a code of its own; the peers' failed calls come "
        f"with them; during our plugin's Cluster cells above: {_our_error_replies(results)}); beside them the "
        "errors the peer logged or raised (slot numbers and node "
        "addresses of `MOVED` folded) and the keys it left on the primaries. Under `fail_mode: open` a failed "
        "call is an admitted request that nothing counted.",
        "",
        *_peers_cluster_md(results),
    ]


def markdown(results: dict[str, Any], chart_name: str) -> str:
    meta = results.get("meta", {})
    st = results.get("settings", {})
    vers = meta.get("versions", {})
    null = next((r for r in _rows(results, "null")), None)
    ls, le = meta.get("load_start") or [0, 0, 0], meta.get("load_end") or [0, 0, 0]
    cores = meta.get("cores") or 0
    loaded = max(ls[0], le[0]) > 0.5 * cores
    lines = [
        "# Benchmarks: the hook path of both engines, side by side with the peers",
        "",
        f"<!-- Written by bench/rlbench (`{results.get('command', '')}`); do not edit by hand, re-run instead. -->",
        "",
        f"Run of {meta.get('date_utc')}, {results.get('mode')} mode, {meta.get('duration_s')} s. "
        f"Raw numbers: `{results.get('results_path', 'results.json')}`. Chart: [{chart_name}]({chart_name}).",
        "",
        "The Go engine's own micro-benchmarks (`testing.B` with allocs/op: hot key, blocked path, 100k keys, "
        "parallel on one shared and on distinct keys, 1 and 3 dimensions) are generated into "
        "[engine.md, Measurements](engine.md#measurements) by `make bench-engine` (`python -m rlbench.engine`); "
        "`make bench-go` runs every package's benchmarks for benchstat.",
        "",
        "## Targets",
        "",
        *_targets_md(results),
        "",
        "Headline ratios (best-round p50 per hook call unless said otherwise; same run, same cells):",
        "",
        *_headline_md(results),
        "",
        *_cluster_headline(results),
        *([""] if results.get("cluster") else []),
        *_ceiling_md(results),
    ]
    if results.get("unavailable"):
        lines += ["Not measured:", ""]
        lines += [f"- {k}: {v}" for k, v in results["unavailable"].items()]
        lines.append("")
    lines += [
        "## Machine, versions, load",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {meta.get('cpu')}, {cores} cores, {meta.get('mem_gib')} GiB, {meta.get('os')} |",
        f"| code | commit {meta.get('git')}{'' if '+changes' in str(meta.get('git')) else ' (clean tree)'} |",
        f"| python | {meta.get('python')} |",
        f"| go | {meta.get('go')} |",
        f"| cpex | {vers.get('cpex')} |",
        f"| peers | cpex-rate-limiter {vers.get('cpex-rate-limiter')}, limits {vers.get('limits')} |",
        f"| redis | server {meta.get('redis')}; redis-py {vers.get('redis')} |",
        *([f"| redis cluster | {meta['cluster']}, same server binary, loopback |"] if meta.get("cluster") else []),
        f"| other | pydantic {vers.get('pydantic')}, matplotlib {vers.get('matplotlib')} |",
        f"| load average (1/5/15 min) | start {ls[0]:.2f} / {ls[1]:.2f} / {ls[2]:.2f}; "
        f"end {le[0]:.2f} / {le[1]:.2f} / {le[2]:.2f} |",
        "",
        (
            f"**Noise:** the 1-minute load average reached {max(ls[0], le[0]):.1f} on {cores} cores: the machine was "
            "shared with other builds during this run. Interleaving spreads that load over every case, so the "
            "ratios are more trustworthy than the absolute times."
            if loaded
            else f"The 1-minute load average stayed at or below {max(ls[0], le[0]):.1f} on {cores} cores."
        ),
        "",
        "## Method",
        "",
        *_readmitted_md(results),
        f"- Command: `{results.get('command', '')}`. Everything runs in one process on one asyncio event loop, "
        "against one private `redis-server` that the harness starts on a free loopback port (no persistence).",
        "- Subjects, each a cpex `Plugin` instance called directly as `await plugin.tool_pre_invoke(payload, "
        "context)` / `prompt_pre_fetch` with real cpex `ToolPreInvokePayload` / `PromptPrehookPayload` and a "
        "`PluginContext` holding a `GlobalContext`: **go** and **python** = our `RateLimiterPlugin` with "
        "`RATE_LIMITER_ENGINE` set to that engine; **cpex-rate-limiter** = "
        "`cpex_rate_limiter.rate_limiter.RateLimiterPlugin` (Rust core) from PyPI with the same `config:` keys; "
        "**limits** = `bench/rlbench/limits_hook.py`, a minimal plugin over the `limits` library (fixed window = "
        "`FixedWindowRateLimiter`, sliding window = `MovingWindowRateLimiter`; no token bucket in limits; memory "
        "= sync `MemoryStorage`, Redis = `limits.aio` over redis-py asyncio; one `hit()` per dimension then "
        "`get_window_stats()` for the headers, so several Redis round trips and not all-or-nothing); **floor** = "
        "`bench/rlbench/floor.py`, no limiting, returns the same result objects (headers dict, and on the blocked "
        "path a `PluginViolation`), so hook minus floor is the limiter's own share. limits' `MemoryStorage` runs an "
        "expiry thread in this process (the only other Python thread); no subject is isolated from it.",
        f"- Matrix: 3 algorithms x memory/redis x 1 dimension (`by_user`) / 3 dimensions (`by_user`, `by_tenant`, "
        f"`by_tool`) x both hooks x admitted path (every limit `{ADMITTED_RATE}`, never reached) / blocked path "
        f"(every limit `{BLOCKED_RATE}`; after the warm-up every request is refused; on Redis our engines then "
        "answer from remembered refusals, docs/semantics.md §12, so their blocked Redis cells measure a refusal "
        "without a Redis command, while the peers still ask Redis every time). Requests cycle through "
        f"{POOL_USERS} prebuilt requests ({POOL_USERS} users, {POOL_TENANTS} tenants, one limited tool).",
        f"- Latency: every case is warmed up (one pass over the pool, then up to {st.get('warmup')} calls or "
        f"{st.get('warmup_max_ms')} ms), then measured in {st.get('rounds')} rounds of one batch per case "
        f"({st.get('batch')} calls, or fewer once {st.get('batch_max_ms')} ms have passed, so that subjects "
        "with several Redis round trips per call do not dominate the run); each round runs all cases in a new "
        "random order (interleaving), so drift in machine load hits every case alike. `time.perf_counter_ns()` "
        "is read around each batch (mean = batch time / calls, so it includes the loop and clock reads) and "
        "around each call (p50 and p99 over all calls of the case). Every result is checked against the path (a "
        "subject failing open would abort the run; on the blocked path a window that ends during the run may "
        "admit one request per key, which is counted and allowed). Garbage collection stays on; the set-up "
        "objects are frozen (`gc.freeze()`) first. Cells: **best-round p50** · mean / p50 / p99 in µs per call. "
        "**Ratios and targets use the best-round p50**, the lowest of a case's per-round medians: on a shared "
        "machine the mean and the pooled p50 also count the time the process was descheduled by other work. "
        "Two back-to-back runs on this machine (load 2-5) reproduced the best-round p50 ratios within 2% "
        "(median over cells, 8% at most) where the ratios of pooled p50s moved 8-29% and of means 14-18%."
        + (f" A hook that does nothing costs {_us(null[RATIO_STAT])} µs per call in this harness." if null
           else ""),  # fmt: skip
        "- Engine only: our engines' `evaluate()` (memory) / `await check()` (Redis) called directly with "
        "normalised identities, in the same rounds; hook minus engine = our plugin layer (identity extraction, "
        "cpex result and headers).",
        f"- Concurrency: fixed window, 3 dimensions, admitted, `tool_pre_invoke`; N coroutines started with "
        f"`asyncio.gather`, each awaiting calls in a row for {st.get('conc_ms')} ms (and at least "
        f"{st.get('conc_min_calls')} calls in all); requests per second = completed calls / wall time; median of "
        f"{st.get('conc_rounds')} interleaved rounds; the target uses the best round. Every result is checked: "
        "our engines answering anything but an admitted result with headers abort the run; a peer doing so "
        "(failing open, e.g. its Redis calls timing out under load) has that round recorded as failed, not "
        "timed, and the level left out of the targets. On the one redis-server, `INFO all` snapshots around each "
        "level's rounds give its Redis CPU per 10,000 checks and read events per check (over the rounds that ran; "
        "target 13.5 sets Go's at 64 in flight beside the one-at-a-time figure of the Redis-cost section).",
        "- Redis baseline (targets 13.4, 13.5): **redis-py no-op** = a bare redis-py asyncio client "
        f"(`redis.asyncio.Redis`, redis-py {vers.get('redis')}, `bench/rlbench/baseline.py`) sending `EVALSHA` of "
        "the script `return 1` (loaded once) to the same private redis-server from the same event loop, awaited "
        "like a hook and its reply checked: in every latency round as one more case (one call at a time; "
        "best-round p50, as for the hooks), and at every level of the concurrency section (with room for one "
        "connection per call in flight). 13.4 sets every admitted Go hook cell on Redis (both hooks, every "
        "algorithm, 1 and 3 dimensions) against its best-round p50; 13.5 Go's best-round throughput at 64 and 256 "
        "in flight against its. It is what one script call per request costs this process at the least; the "
        "Redis-cost table's floor is the same script's Redis CPU.",
        "- Crossing (target 13.2): in every latency round, after the cases, four synchronous calls, each timed "
        f"over {st.get('crossing_calls', '–')} calls per round, as the best of "
        f"{(results.get('crossing') or {}).get('runs_per_round', 1)} runs of calls in a row (shuffled order; CPU "
        "time of the process, `time.process_time`; the best round counts): a no-op crossing into the Go extension "
        "through gopy's wrapper (`_pyext.pyext_Add(1, 2)`, the target's no-op) and one through the hand-written "
        "fast entry (`_pyext.add_fast(1, 2)`), the raw binding call `GoEngine.evaluate` is a partial of, with the "
        "three identities (`_pyext.evaluate_fast(ctx, handle, user, tenant, tool)`), and `GoEngine.evaluate(user, "
        "tenant, tool)`, on the Go engine of the memory, fixed window, 3-dimension cell, one request of the pool "
        "repeated (its limit is never reached; checked after each round). The same functions "
        "(`rlbench.engine.crossing_calls`, `ns_per_call`) give docs/engine.md's per-call figures.",
        "- Go core (target 13.1): judged from the hot-key, 3-dimension lines of the Go benchmarks "
        "(`go test -bench . -benchmem ./core`, then those benchmarks again with `-count`) that `make bench-engine` "
        "wrote to bench/results/engine.json before this run, the lowest ns per request of each benchmark's runs "
        "(other work on the machine only adds time) and the most allocations; they are copied into this run's "
        "results with their date and commit, not measured here.",
        f"- Redis cost: per Redis cell, up to {st.get('redis_checks')} sequential `tool_pre_invoke` calls (at "
        f"least 200; fewer once {st.get('redis_max_ms')} ms have passed) between two "
        "`INFO all` snapshots (the snapshots' own cost is measured and subtracted): calls per command from "
        "commandstats, round trips = `total_reads_processed` (read events; one per request for a client that "
        "waits for each reply), CPU = `used_cpu_sys + used_cpu_user`, scaled to 10,000 checks. The floor row is "
        "a sync redis-py client sending `EVALSHA` of `return 1` one at a time, the Redis CPU of a script that does "
        "nothing: target 13.6 wants Go at most 2x it, and at most cpex-rate-limiter's in every admitted cell.",
        "- Where the time goes: cProfile of our hooks (absolute times inflated by the profiler; the split is what "
        "matters; time inside Go or pydantic-core is charged to the calling builtin).",
        "",
        "## Hook latency, memory backend (µs per call: **best-round p50** · mean / p50 / p99 over all calls)",
        "",
        *_latency_md(results, "memory"),
        "",
        "## Hook latency, Redis backend (µs per call: **best-round p50** · mean / p50 / p99 over all calls)",
        "",
        *_latency_md(results, "redis"),
        "",
        "## Where the time goes: floor, engine, plugin layer (tool hook, best-round p50 µs per call)",
        "",
        *_overheads_md(results),
        "Engine only = our engine's `evaluate()` / `await check()` called directly; plugin layer = hook minus "
        "engine (identity extraction, the cpex result and its headers). The floor builds the same result objects "
        "without limiting.",
        "",
        *_split_md(results),
        "",
        *_profiles_md(results),
        "## Gateway features (fixed window, 3 dimensions, admitted; best-round p50 µs per call)",
        "",
        "What the gateway 1.1.0 integrations cost per request: the tool hook called with a trace id (the plugin "
        "then writes `result.metadata[\"rate_limiter\"]`), and our plugin listing the HTTP hooks so that it keeps "
        "the admitted call's headers, measured as the tool hook plus the `http_post_request` call that takes them "
        "(the gateway's own cost of running a hook is not in it). Extra = minus the plain tool hook of the same cell.",
        "",
        *_features_md(results),
        "## Throughput at N calls in flight (requests per second, one event loop: **best round** (median of rounds))",
        "",
        *_concurrency_md(results),
        "",
        *_concurrency_redis_md(results),
        "## Redis cost per request",
        "",
        *_redis_md(results),
        "",
        "## Redis Cluster beside one Redis",
        "",
        *_cluster_section_md(results),
        "## Chart",
        "",
        f"![mean latency and throughput]({chart_name})",
        "",
    ]
    return "\n".join(lines)


# --- chart ----------------------------------------------------------------


def chart(results: dict[str, Any], path: Path) -> None:
    """Left: best-round p50 µs per call (tool hook, admitted, 3 dimensions). Then req/s by calls in flight, Redis and memory."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subj = _by_subject(results)
    floor = _floor(results).get(("admitted", "tool_pre_invoke"))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(19, 5.8))
    groups = [(b, a) for b in ("memory", "redis") for a in results.get("algorithms", [])]
    names = [c for c in COLUMNS if c == "floor" or c in subj]
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = []
        for backend, algo in groups:
            if name == "floor":
                vals.append(floor[RATIO_STAT] / 1000 if floor else 0)
            else:
                r = subj[name].get((backend, algo, 3, "admitted", "tool_pre_invoke"))
                vals.append(r[RATIO_STAT] / 1000 if r else 0)
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        ax1.bar(xs, vals, width, label=name, color=COLOURS.get(name))
    ax1.set_xticks(range(len(groups)), [f"{b}\n{ALGO_SHORT[a]}" for b, a in groups])
    ax1.set_ylabel("µs per call (best-round p50)")
    if any(p.get_height() > 0 for p in ax1.patches):
        ax1.set_yscale("log")
    ax1.set_title("tool_pre_invoke, admitted, 3 dimensions")
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)

    conc = results.get("concurrency", [])
    style = {"redis": "-", "cluster": "--", "memory": "-", None: ":"}
    for ax, backends, title in ((ax2, ("redis", "cluster"), "Redis (dashed: Cluster)"),
                                (ax3, ("memory", None), "memory backend and floor")):  # fmt: skip
        for name in [*names, baseline.NAME]:
            for backend in backends:
                pts = sorted((r["inflight"], r["rps_best"]) for r in conc
                             if r["subject"] == name and r["backend"] == backend and r["rps_best"] is not None)  # fmt: skip
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style[backend], marker="o",
                            label=name + (" (Cluster)" if backend == "cluster" else ""),
                            color=COLOURS.get(name))  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("calls in flight (one event loop)")
        ax.set_ylabel("requests per second (best round)")
        ax.set_title(f"throughput, {title}\nfixed window, 3 dimensions, admitted")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    meta = results.get("meta", {})
    fig.suptitle(f"rate limiter hook path, {meta.get('date_utc')}, {meta.get('cores')} cores, "
                 f"load {meta.get('load_start', [0])[0]:.1f}")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], doc: Path, chart_path: Path) -> None:
    """Write the Markdown report and its chart (the doc links the chart by relative path)."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    chart(results, chart_path)
    rel = os.path.relpath(chart_path, doc.parent)
    doc.write_text(markdown(results, rel), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlbench.report", description=__doc__)
    ap.add_argument("results", type=Path)
    ap.add_argument("--doc", type=Path, required=True)
    ap.add_argument("--chart", type=Path)
    args = ap.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    results["targets"] = targets.evaluate(results)  # the current rules, on the saved numbers
    write(results, args.doc, args.chart or args.doc.with_suffix(".png"))
    print(summary_text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

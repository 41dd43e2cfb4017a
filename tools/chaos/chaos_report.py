#!/usr/bin/env python3
"""Write the results tables of docs/reliability.md from the JSON files of ``make chaos``.

The JSON files are committed beside the doc (docs/reliability-results/), so
``make chaos-report`` (or ``make docs``) re-renders the tables without measuring.
Each table goes between ``<!-- chaos:NAME:begin -->`` and
``<!-- chaos:NAME:end -->``; nothing outside the markers is touched, and
nothing inside them is typed by hand. A table whose input file is missing is
replaced by a line saying so, never left stale. The provenance lines (commit
measured, clean tree or not, load) come from the files, not from the tree that renders.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "docs" / "reliability-results"
sys.path.insert(0, str(ROOT / "tools"))
from docgen import provenance_text  # noqa: E402

#: Flood goals: RSS allowance per key of memory_max_keys (state, map slot, allocator slack, GC headroom),
#: and the victim's p99 while the store evicts on every new key.
RSS_PER_KEY_BOUND_KIB = 1
RSS_FIXED_SLACK_MIB = 16  # allocator arenas and Go heap growth that do not scale with the key count
VICTIM_P99_BOUND_US = 1000


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def max_bound_ms(r: dict[str, Any]) -> float:
    """The bound on the slowest call during a fault: below budget + one more timeout.

    One call waits for Redis at most connect + command timeout (the budget, §8); what it waits on top
    of that is its turn on the event loop (31 other tasks) and on the shared CPUs, a few ms. A call that
    waited for Redis once more (a retry, a second connect) would take at least budget + timeout, so the
    bound tells scheduling noise from a wait the budget does not allow."""
    return r["budget_ms"] + r["timeout_ms"]


def fault_goals_met(r: dict[str, Any]) -> bool:
    """Nothing blocked or escaped, p99 within connect + command timeout, the maximum below
    max_bound_ms, enforcing again within 2 s."""
    enforce = r["enforce_after_s"]
    return (
        r["blocked_by_fault"] == 0
        and r["escaped"] == 0
        and r["p99_fault_ms"] <= r["budget_ms"]
        and r["max_fault_ms"] < max_bound_ms(r)
        and enforce is not None
        and enforce <= 2.0
    )


def flood_goals_met(f: dict[str, Any], go_store: dict[str, Any] | None) -> bool:
    """Key bound held, RSS within the per-key allowance, the victim not stalled, nothing escaped."""
    keys_max = f["keys_max_sampled"] if f["keys_max_sampled"] is not None else (go_store or {}).get("keys_max")
    return (
        keys_max is not None
        and keys_max <= f["memory_max_keys"]
        and f["rss_end_mib"] - f["rss_start_mib"]
        <= f["memory_max_keys"] * RSS_PER_KEY_BOUND_KIB / 1024 + RSS_FIXED_SLACK_MIB
        and f["victim_p99_during_us"] <= VICTIM_P99_BOUND_US
        and f["escaped"] == 0
    )


def faults_table(data: dict[str, Any]) -> str:
    memory = {m["engine"]: m for m in data["memory"]}
    rows = [
        "| engine | fault | calls (during fault) | blocked by the fault | escaped | p50 / p99 / max during fault (ms) "
        "| budget p99 / max (ms) | memory path p99 (ms) | enforcing again after (s) | goals met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        enforce = r["enforce_after_s"]
        ok = fault_goals_met(r)
        mem = memory.get(r["engine"], {})
        rows.append(
            f"| {r['engine']} | {r['fault']} | {r['calls']} ({r['calls_during_fault']}) | {r['blocked_by_fault']} "
            f"| {r['escaped']} | {_ms(r['p50_fault_ms'])} / {_ms(r['p99_fault_ms'])} / {_ms(r['max_fault_ms'])} "
            f"| ≤ {r['budget_ms']} / < {max_bound_ms(r)} | {_ms(mem.get('p99_ms'))} | {'never' if enforce is None else f'{enforce:.2f}'} "
            f"| {_yes(ok)} |"
        )
    cfg = data.get("config", {})
    rows.append("")
    rows.append(
        f"Load: {cfg.get('concurrency')} tasks in flight, baseline {cfg.get('baseline_s')} s, fault "
        f"{cfg.get('fault_s')} s, recovery {cfg.get('recovery_s')} s; redis_timeout_ms = redis_connect_timeout_ms = "
        f"{cfg.get('timeout_ms')}; slowed replies delayed {cfg.get('slow_ms')} ms. Budget = connect + command "
        "timeout, the longest one call may wait for Redis (§8): p99 within it; the maximum below budget + one "
        "more timeout, which a call that waited for Redis a second time would reach."
    )
    return "\n".join(rows)


def flood_table(files: list[dict[str, Any]], go_store: dict[str, Any] | None) -> str:
    rows = [
        "| engine | identities | memory_max_keys | keys (max seen / end) | RSS start / full / end (MiB) "
        "| growth after full (MiB) | victim p50 / p99 before (µs) | victim p50 / p99 / max during (µs) | calls/s "
        "| goals met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in files:
        ok = flood_goals_met(f, go_store)
        if f["keys_max_sampled"] is not None:
            keys = f"{f['keys_max_sampled']} / {f['keys_end']}"
        elif go_store is not None:
            keys = f"{go_store['keys_max']} / {go_store['keys_end']} (tools/chaos/flood, every request)"
        else:
            keys = "not measured"
        rows.append(
            f"| {f['engine']} | {f['identities']} | {f['memory_max_keys']} | {keys} "
            f"| {f['rss_start_mib']} / {f['rss_at_fill_mib']} / {f['rss_end_mib']} "
            f"| {f['rss_end_mib'] - f['rss_at_fill_mib']:.1f} "
            f"| {_ms(f['victim_p50_before_us'])} / {_ms(f['victim_p99_before_us'])} "
            f"| {_ms(f['victim_p50_during_us'])} / {_ms(f['victim_p99_during_us'])} / {_ms(f['victim_max_during_us'])} "
            f"| {f['calls_per_s']} | {_yes(ok)} |"
        )
    rows.append("")
    rows.append(
        f"Goals: keys never above memory_max_keys; RSS growth over the run at most memory_max_keys x "
        f"{RSS_PER_KEY_BOUND_KIB} KiB + {RSS_FIXED_SLACK_MIB} MiB; victim p99 while evicting at most {VICTIM_P99_BOUND_US} µs; no exception."
    )
    return "\n".join(rows)


def fuzz_table(data: dict[str, Any]) -> str:
    rows = ["| fuzz target | package | time | result |", "|---|---|---|---|"]
    for r in data["targets"]:
        rows.append(f"| {r['target']} | {r['package']} | {r['fuzztime']} | {r['result']} |")
    return "\n".join(rows)


#: The failover goal (docs/semantics.md §11): decisions resume within this long of the promotion.
FAILOVER_RESUME_S = 2.0


_DRIVERS = {"hook": "plugin hook", "limiter": "Go library"}


def failover_goals_met(r: dict[str, Any]) -> bool:
    """A failover run through the hook: nothing escaped, each plugin answered with its own fail_mode
    only, and both decided again within FAILOVER_RESUME_S of the promotion."""
    resumed = r["resumed_after_s"]
    return (r["escaped"] == 0 and r["wrong_fail_mode"] == 0 and resumed is not None
            and resumed <= FAILOVER_RESUME_S)


def failover_table(runs: list[dict[str, Any]]) -> str:
    """The JSON lines of make chaos-failover as a table, one row per scenario, engine and driver:
    tools/chaos/failover_hook.py (the plugin hook, engine python or go) and
    tests_go/redis_failover_chaos_test.go (limiter.Evaluate of the Go library)."""
    rows = [
        "| scenario | engine | driven through | requests | fail_mode applied: open / closed | other answer "
        f"| escaped | max call ms | outage s | resumed after promotion s | within {FAILOVER_RESUME_S:g} s "
        "| net counts lost | commit | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {name: i for i, name in enumerate(dict.fromkeys(r["scenario"] for r in runs))}
    rank = {("hook", "python"): 0, ("hook", "go"): 1, ("limiter", "go"): 2}

    def key(r: dict[str, Any]) -> tuple[int, int]:
        return order[r["scenario"]], rank.get((r.get("driver", "limiter"), r.get("engine", "go")), 3)

    for r in sorted(runs, key=key):
        hook = r.get("driver", "limiter") == "hook"
        resumed = r["resumed_after_s"]
        if hook:
            applied = f"{r['fail_open']:,} / {r['fail_closed']:,}"
            other, escaped, slowest = f"{r['wrong_fail_mode']:,}", f"{r['escaped']:,}", _ms(r["max_call_ms"])
        else:  # limiter.Evaluate errors: the plugin applies fail_mode to each
            applied, other, escaped = f"{r['failed']:,} errors", "–", "–"
            slowest = _ms(r["max_call_ms"]) if "max_call_ms" in r else "–"
        rows.append(
            f"| {r['scenario']} | {r.get('engine', 'go')} | {_DRIVERS[r.get('driver', 'limiter')]} | {r['requests']:,} "
            f"| {applied} | {other} | {escaped} | {slowest} | {r['outage_s']:.2f} "
            f"| {'never' if resumed is None else f'{resumed:.3f}'} "
            f"| {_yes(resumed is not None and resumed <= FAILOVER_RESUME_S)} | {r['net_counts_lost']:,} "
            f"| {r['commit'] or 'unknown'} | {r['load_average']} |"
        )
    return "\n".join(rows)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- chaos:{name}:begin -->\n).*?(<!-- chaos:{name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"chaos_report: docs/reliability.md has no chaos:{name} markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def load(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    text = args.doc.read_text()
    missing = "_(not generated: run `make chaos`)_"

    def section(name: str, build: Callable[[], str | None]) -> None:
        nonlocal text
        body = build()
        text = replace_block(text, name, body if body else missing)

    faults = load(args.dir / "faults.json")
    section("faults", lambda: faults_table(faults) if faults else None)
    floods = [x for x in (load(args.dir / f"flood-{e}.json") for e in ("python", "go")) if x]
    go_store = load(args.dir / "flood-go-store.json")
    section("flood", lambda: flood_table(floods, go_store) if floods else None)
    fuzz = load(args.dir / "fuzz.json")
    section("fuzz", lambda: fuzz_table(fuzz) if fuzz else None)
    failover_path = args.dir / "failover.jsonl"
    failovers = [json.loads(line) for line in failover_path.read_text().splitlines() if line.strip()] if (
        failover_path.exists()) else []
    section("failover", lambda: failover_table(failovers) if failovers else None)
    def meta() -> str:
        lines = []
        for label, data in (("faults", faults), *((f"flood {f['engine']}", f) for f in floods), ("fuzz", fuzz)):
            if data and data.get("provenance"):
                lines.append(f"- {label}: {provenance_text(data['provenance'])}")
        return "\n".join(lines) if lines else ""

    section("meta", meta)
    args.doc.write_text(text)
    print(f"chaos_report: wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

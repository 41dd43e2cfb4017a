"""Load tests on the real gateway rig: correctness, capacity A/B, scale. Each prints a verdict with
numbers, writes its section of docs/loadtest.md and exits non-zero on failure.

    python rig/loadtest/run.py correctness --algorithm fixed_window --backend redis
    python rig/loadtest/run.py correctness --backend memory          # the N-fold leak, measured
    python rig/loadtest/run.py capacity-ab                           # RATE_LIMITER_ENGINE go vs python
    python rig/loadtest/run.py scale --users 100
    python rig/loadtest/run.py correctness --redis-mode cluster      # on a local Redis Cluster
    python rig/loadtest/run.py render        # rewrite every section from docs/loadtest-results/, runs nothing

Each section is rendered from its raw results alone (inputs and events, saved beside the doc), the
same code at measurement time and for `render`, so `make docs` reproduces it byte for byte.

Each test brings up its own rig (fresh Redis, fresh gateways: the checks rely on fresh limiter
state), runs locust headless for a bounded time, and always takes the rig down again.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RIG_DIR = HERE.parent
sys.path.insert(0, str(RIG_DIR))
sys.path.insert(0, str(HERE))

import rigctl  # noqa: E402
from analyze import KeyReport, analyse, window_totals  # noqa: E402
from classify import ADMITTED, INFRA, RATE_LIMITED, TOOL_ERROR  # noqa: E402
from cost import render_cost  # noqa: E402
from procstat import CpuSampler, maps_contain  # noqa: E402
from report import DOC, REPO, environment_line, percentile, table, update_section  # noqa: E402

RAW_DIR = REPO / "docs" / "loadtest-results"  # raw results beside docs/loadtest.md: <section>.json, events
LOCUST = Path(os.environ.get("RIG_LOCUST", RIG_DIR / ".venv-rig" / "bin" / "locust"))
GO_EXTENSION_FILE = "_pyext"  # rate_limiter_go/_goext/_pyext.<abi>.so, mapped once the Go engine loads
UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hr": 3600, "hour": 3600}


class TestFailed(Exception):
    """A load test could not be carried out (the rig did not come up, locust wrote nothing)."""


def parse_rate(text: str) -> tuple[int, int]:
    """'100/m' -> (100, 60): limit and window in seconds (docs/semantics.md §1 syntax)."""
    count, sep, unit = text.strip().partition("/")
    if not sep or not count.strip().isdigit() or unit.strip().lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"rate must look like 100/m, got {text!r}")
    return int(count), UNITS[unit.strip().lower()]


# --------------------------------------------------------------------------- running


def run_locust(
    rig: dict[str, Any], out: Path, duration_s: int, clients: int, tool_error_every: int, rotate: bool = False
) -> list[dict]:
    """Run locust headless against nginx for duration_s and return its per-request events."""
    if not LOCUST.exists():
        raise TestFailed(f"{LOCUST} missing: run `make rig-deps`")
    env = dict(os.environ)
    env.update(
        {
            "RIG_JSON": str(Path(rig["run_dir"]) / "rig.json"),
            "RIG_EVENTS": str(out),
            "RIG_TOOL_ERROR_EVERY": str(tool_error_every),
            "RIG_ROTATE_USERS": "1" if rotate else "0",
        }
    )
    argv = [
        str(LOCUST), "-f", str(HERE / "locustfile.py"), "--headless", "-u", str(clients), "-r", str(clients),
        "-t", f"{duration_s}s", "--host", rig["nginx_url"], "--only-summary", "--stop-timeout", "15",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    with open(Path(rig["run_dir"]) / "locust.log", "wb") as log:
        proc = subprocess.run(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=duration_s + 120, check=False
        )
    if not out.exists():
        raise TestFailed(f"locust wrote no events (exit {proc.returncode}); see {rig['run_dir']}/locust.log")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def engine_check(rig: dict[str, Any]) -> list[str]:
    """Problems with the engines the gateways actually run: the Go extension must be mapped into a
    gateway started with RATE_LIMITER_ENGINE=go and absent from one started with python."""
    problems = []
    for g in rig["gateways"]:
        loaded = maps_contain(g["pid"], GO_EXTENSION_FILE)
        if g["engine"] == "go" and not loaded:
            problems.append(f"{g['name']}: RATE_LIMITER_ENGINE=go but the Go extension is not loaded in pid {g['pid']}")
        if g["engine"] == "python" and loaded:
            problems.append(f"{g['name']}: RATE_LIMITER_ENGINE=python but the Go extension is loaded")
    return problems


def plugin_engine_errors(run_dir: str) -> dict[str, int]:
    """Engine/backend errors the plugin reported in each gateway's log (``gw1`` ...). Each WARNING
    carries the count of errors it suppressed since the previous one; errors after the last WARNING
    of a run are not counted, so these are lower bounds."""
    out: dict[str, int] = {}
    for log in sorted(Path(run_dir).glob("gw*.log")):
        n = 0
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if "rate_limiter_go" in line and "engine error" in line:
                m = re.search(r"\((\d+) more errors suppressed", line)
                n += 1 + (int(m.group(1)) if m else 0)
        out[log.stem] = n
    return out


def infra_line(s: dict[str, Any], events: list[dict], facts: dict[str, Any]) -> str:
    """Which infrastructure errors occurred (the most frequent kinds) and which gateways answered them."""
    if not s["infra"]:
        return "No infrastructure errors."
    kinds = "; ".join(f"{n} x {what}" for what, n in s["infra_details"])
    names = {g["url"].removeprefix("http://"): f"{g['name']} ({g['engine']})" for g in facts["gateways"]}
    where = Counter(names.get(e.get("up") or "", "no gateway") for e in events if e["cat"] in INFRA)
    by = ", ".join(f"{k}: {v}" for k, v in sorted(where.items()))
    return f"Infrastructure errors (not counted as admitted or rate-limited): {kinds}. By gateway: {by}."


def align_to_window(window_s: int, min_left_s: float = 15.0) -> None:
    """Sleep to the next window boundary if less than min_left_s of the current window is left, so
    that a short run still sees the limit reached in each window it covers (fixed window)."""
    left = window_s - (time.time() % window_s)
    if left < min_left_s:
        time.sleep(left + 0.05)


def config_line(facts: dict[str, Any], per_gw: dict[str, int], fail_mode: str) -> str:
    """The plugin configuration of the run (Redis URL left out) and the engine errors it logged
    (``per_gw``: plugin_engine_errors of the run)."""
    cfg = facts.get("plugin_config") or {}
    errs = sum(per_gw.values())
    engines = {g["name"]: g["engine"] for g in facts["gateways"]}
    where = ", ".join(f"{k} ({engines.get(k, '?')}): {v}" for k, v in per_gw.items() if v)
    effect = "each refused with a 503" if fail_mode == "closed" else "each admitted without a check"
    return f"Plugin config: `{json.dumps(cfg, sort_keys=True)}`. Engine/backend errors the plugin logged: {errs}" + (
        f" ({where}; {effect}, fail_mode {fail_mode})." if errs else "."
    )


def summarize(events: list[dict], start: float | None = None, end: float | None = None) -> dict[str, Any]:
    """Counts per category, throughput and latency percentiles of the events sent in [start, end)."""
    ev = [e for e in events if (start is None or e["t0"] >= start) and (end is None or e["t0"] < end)]
    cats = Counter(e["cat"] for e in ev)
    if not ev:
        return {"n": 0, "cats": {}, "infra": 0, "infra_pct": 0.0, "rps": 0.0, "wall_s": 0.0, "p50_ms": 0.0,
                "p90_ms": 0.0, "p99_ms": 0.0, "infra_details": []}  # fmt: skip
    t_first = start if start is not None else min(e["t0"] for e in ev)
    t_last = end if end is not None else max(e["t1"] for e in ev)
    wall = max(t_last - t_first, 1e-9)
    lat = sorted((e["t1"] - e["t0"]) * 1000 for e in ev if e["cat"] not in INFRA)
    infra = sum(cats[c] for c in INFRA)
    return {
        "n": len(ev),
        "cats": dict(cats),
        "infra": infra,
        "infra_pct": 100.0 * infra / len(ev),
        "rps": len(ev) / wall,
        "wall_s": wall,
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "infra_details": Counter(f"{e['cat']}: {e.get('det')}" for e in ev if e["cat"] in INFRA).most_common(5),
    }


def counts_row(s: dict[str, Any]) -> list[object]:
    c = s["cats"]
    return [
        s["n"], c.get(ADMITTED, 0), c.get(TOOL_ERROR, 0), c.get(RATE_LIMITED, 0), f"{s['infra']} ({s['infra_pct']:.2f} %)",
        f"{s['rps']:.1f}", f"{s['p50_ms']:.0f}", f"{s['p90_ms']:.0f}", f"{s['p99_ms']:.0f}",
    ]  # fmt: skip


COUNTS_HEADER = [
    "requests", "admitted", "tool errors", "rate-limited", "infra errors", "req/s", "p50 ms", "p90 ms", "p99 ms",
]  # fmt: skip


def infra_verdict(s: dict[str, Any], max_pct: float) -> list[str]:
    problems = []
    hard = {
        c: s["cats"].get(c, 0)
        for c in ("identity_leak", "proxy_response", "gateway_limiter_429", "bad_rate_limit_headers")
    }
    for c, n in hard.items():
        if n:
            problems.append(f"{n} responses classified {c}")
    if s["infra_pct"] > max_pct:
        problems.append(f"infrastructure errors {s['infra_pct']:.2f} % > {max_pct} % ({s['infra_details']})")
    return problems


def key_rows(reports: list[KeyReport], fail_open: bool = False) -> list[list[object]]:
    """One row per key; ``fail_open``: over-admissions are the fail mode's (fail_open_allowance)."""
    return [
        [
            r.key,
            r.limit,
            r.window_s,
            r.admitted,
            r.refused,
            r.checks,
            r.exact,
            len(r.over),
            len(r.under),
            "ok" if r.ok else "over: fail_mode open" if fail_open and not r.under else "FAIL",
        ]
        for r in reports
    ]


KEY_HEADER = ["key", "limit", "window s", "admitted", "refused", "checks", "exact", "over", "under", "verdict"]


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {**dataclasses.asdict(x), "ok": getattr(x, "ok", None)}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def save_raw(name: str, raw: dict[str, Any], events: dict[str, list[dict]]) -> list[Path]:
    """Write the raw result of a section beside docs/loadtest.md: ``<name>.json`` (everything the
    section was computed from except the events) and ``<name>[-<run>].events.jsonl.gz`` (every request:
    send/receive time, user index, class, answering gateway, status, rate-limit headers; no tokens or
    identities). Files of an earlier run of the same section are replaced."""
    RAW_DIR.mkdir(parents=True, exist_ok=True)
    for old in RAW_DIR.glob(f"{name}.*"):
        old.unlink()
    for old in RAW_DIR.glob(f"{name}-run*.events.jsonl.gz"):
        old.unlink()
    written = [RAW_DIR / f"{name}.json"]
    written[0].write_text(json.dumps(_jsonable(raw), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for run, evs in events.items():
        path = RAW_DIR / (f"{name}.events.jsonl.gz" if not run else f"{name}-{run}.events.jsonl.gz")
        data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in sorted(evs, key=lambda e: e["t0"]))
        with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(data.encode())
        written.append(path)
    return written


def rig_facts(rig: dict[str, Any]) -> dict[str, Any]:
    """What a raw result records about the rig that ran it: everything rendering its section needs
    (gateways with their loopback URLs, each user's team as an index, the tool name), no tokens, no
    identities, no Redis URL."""
    team_index: dict[str, int] = {}
    for u in rig["users"]:
        if u.get("team") and u["team"] not in team_index:
            team_index[u["team"]] = len(team_index)
    return {
        "versions": rig.get("versions", {}),
        "engines": rig["engines"],
        "gateways": [{k: g.get(k) for k in ("name", "engine", "ready_s", "url")} for g in rig["gateways"]],
        "plugin_config": {k: v for k, v in (rig.get("plugin_config") or {}).items() if k != "redis_url"},
        "redis_mode": rig.get("redis_mode", "standalone"),
        "users": len(rig["users"]),
        "teams": len(rig["teams"]),
        "user_teams": [team_index[u["team"]] if u.get("team") else None for u in rig["users"]],
        "tool": rig["tool"],
    }


def facts_users(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The users as analyse() takes them, from rig_facts (team labels instead of team ids)."""
    return [{"team": None if t is None else f"t{t}"} for t in facts["user_teams"]]


def section_text(title: str, lines: list[str], problems: list[str]) -> str:
    """The markdown of a section: title, lines, verdict."""
    verdict = "PASS" if not problems else "FAIL"
    return "\n\n".join(
        [f"### {title}", *lines, f"**Verdict: {verdict}**" + ("" if not problems else ": " + "; ".join(problems))]
    )


def _finish(inputs: dict[str, Any], events: dict[str, list[dict]], write_doc: bool) -> int:
    """Render a measured section from its inputs and events (exactly as `render` will from the saved
    files), print it, and unless told not to, write it and its raw results."""
    events = {k: sorted(v, key=lambda e: e["t0"]) for k, v in events.items()}  # the order save_raw keeps
    inputs = json.loads(json.dumps(_jsonable(inputs), sort_keys=True))  # exactly what render_saved will read
    lines, problems, derived = RENDERERS[inputs["kind"]](inputs, events)
    body = section_text(inputs["title"], lines, problems)
    print(body)
    if write_doc:
        name = inputs["section"]
        update_section(name, body, doc=DOC)
        print(f"\n(section {name!r} of docs/loadtest.md updated)")
        raw = {**inputs, "verdict": "PASS" if not problems else "FAIL", "problems": problems, "derived": derived}
        raw["event_runs"] = sorted(events)
        paths = save_raw(name, raw, events)
        print("(raw results: " + ", ".join(str(p) for p in paths) + ")")
    return 0 if not problems else 1


def _with_rig(opts: rigctl.RigOptions, keep: bool, fn):
    try:
        run_dir = rigctl.up(opts, link_current=keep)
    except rigctl.RigError as e:
        raise TestFailed(f"rig up failed: {e}") from e
    try:
        return fn(rigctl.load_rig(run_dir))
    finally:
        if keep:
            print(f"rig left running: {run_dir} (stop with rig/down.sh)")
        else:
            for line in rigctl.down(run_dir):
                print(f"rig down: {line}")


# --------------------------------------------------------------------------- re-rendering


def load_events(name: str, runs: list[str], raw_dir: Path | None = None) -> dict[str, list[dict]]:
    """The events files save_raw wrote for section ``name``."""
    raw_dir = raw_dir or RAW_DIR
    out = {}
    for run in runs:
        path = raw_dir / (f"{name}.events.jsonl.gz" if not run else f"{name}-{run}.events.jsonl.gz")
        text = gzip.decompress(path.read_bytes()).decode()
        out[run] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


def render_saved(raw_dir: Path | None = None, stale: list[str] | None = None) -> dict[str, str]:
    """Every section whose raw results are in raw_dir (default docs/loadtest-results/), rendered from
    them alone: section name -> markdown. Raw results without the inputs (an older format) are named in
    ``stale`` when given (their sections stay as measured), else they raise ValueError."""
    raw_dir = raw_dir or RAW_DIR
    out = {}
    for f in sorted(raw_dir.glob("*.json")):
        raw = json.loads(f.read_text(encoding="utf-8"))
        if raw.get("format") != RAW_FORMAT:
            msg = f"{f.name}: raw results without the inputs of format {RAW_FORMAT}: re-measure this section"
            if stale is None:
                raise ValueError(msg)
            stale.append(msg)
            continue
        lines, problems, _ = RENDERERS[raw["kind"]](raw, load_events(raw["section"], raw["event_runs"], raw_dir))
        out[raw["section"]] = section_text(raw["title"], lines, problems)
    return out


def render_command() -> int:
    """`run.py render`: rewrite every generated section of docs/loadtest.md from the raw results."""
    stale: list[str] = []
    sections = render_saved(stale=stale)
    for name, body in sections.items():
        update_section(name, body, doc=DOC)
    print(f"docs/loadtest.md: {len(sections)} section(s) re-rendered from {RAW_DIR.relative_to(REPO)}/")
    for msg in stale:
        print(f"render: NOT re-rendered, left as measured: {msg}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- tests


def _mode_suffix(redis_mode: str) -> tuple[str, str]:
    """Section-name and title parts of a Redis mode ('' for standalone, which keeps the old names)."""
    return ("", "") if redis_mode == "standalone" else (f"-{redis_mode}", f" (Redis {redis_mode.title()})")


def correctness(a: argparse.Namespace) -> int:
    opts = rigctl.RigOptions(
        engines=a.engines.split(), backend=a.backend, algorithm=a.algorithm, by_user=a.limit_text, users=a.users,
        teams=max(1, min(a.users, 2)), gateway_log_level=a.gateway_log_level, fail_mode=a.fail_mode,
        plugin_options=rigctl.parse_plugin_options(a.plugin_option), redis_mode=a.redis_mode,
    )  # fmt: skip
    env_line = environment_line()
    mode_name, mode_title = _mode_suffix(a.redis_mode if a.backend == "redis" else "standalone")
    name = f"correctness-{a.backend}{mode_name}-{a.algorithm}" + ("-fail-open" if a.fail_mode == "open" else "")
    title = f"Correctness: {a.algorithm}, {a.backend} backend{mode_title}" + (
        ", fail_mode open" if a.fail_mode == "open" else ""
    )

    def body(rig: dict[str, Any]) -> tuple[dict[str, Any], list[dict]]:
        if a.algorithm == "fixed_window":
            align_to_window(a.limit[1])
        events = run_locust(rig, Path(rig["run_dir"]) / "events.jsonl", a.duration, a.clients, a.tool_error_every)
        inputs = {
            "format": RAW_FORMAT, "kind": "correctness", "section": name, "title": title, "run": env_line,
            "rig": rig_facts(rig), "duration_s": a.duration, "clients": a.clients,
            "tool_error_every": a.tool_error_every, "algorithm": a.algorithm, "backend": a.backend,
            "limit": a.limit_text, "fail_mode": a.fail_mode, "max_infra_pct": a.max_infra_pct,
            "engine_problems": engine_check(rig), "engine_errors_logged": plugin_engine_errors(rig["run_dir"]),
            "clock_slack_s": CLUSTER_CLOCK_SLACK_S if rig.get("redis_mode") == "cluster" else 0.0,
        }  # fmt: skip
        return inputs, events

    inputs, events = _with_rig(opts, a.keep, body)
    return _finish(inputs, {"": events}, not a.no_doc)


#: How far a Cluster's clock may be from this host's, for the checks (docs/loadtest.md, "Redis Cluster"):
#: the engine estimates it from one primary's TIME within half the sample's round trip (§11.1), and on this
#: loaded 2-core host that round trip includes the gateway's event-loop lag; the project's own Cluster
#: test allows 0.5 s between the cluster clock and a fresh TIME here (tests_py/test_redis_cluster.py).
CLUSTER_CLOCK_SLACK_S = 0.5

CLUSTER_NOTE = (
    "Redis Cluster: each request has one key (by_user only), so one slot group and the one atomic script on the "
    "primary serving that slot. Decisions are made at the cluster clock (docs/semantics.md §11.1: one primary's "
    "`TIME`, sampled at most once a second per gateway process and carried forward on its monotonic clock, off by "
    "at most half the sampled round trip), so the checks take each decision to lie within {slack} s of its "
    "send/receive span on this host's clock."
)


def excess_admissions(reports: list[KeyReport]) -> int:
    """Certain fixed-window admissions beyond the limit, summed over keys and windows."""
    return sum(max(0, w["certain"] - r.limit) for r in reports for w in r.windows)


def fail_open_allowance(raw: dict[str, Any], reports: list[KeyReport]) -> int:
    """The requests a fail_mode open run admitted unchecked (the plugin's logged engine errors, a lower
    bound), when they account for every over-admission of a fixed window run; else 0 (checks stay strict).
    Unchecked requests are admitted and counted by nobody (§8), so they may each push a window over."""
    if raw["fail_mode"] != "open" or raw["algorithm"] != "fixed_window":
        return 0
    unchecked = sum(raw["engine_errors_logged"].values())
    excess = excess_admissions(reports)
    return unchecked if 0 < excess <= unchecked else 0


def render_correctness(raw: dict[str, Any], all_events: dict[str, list[dict]]) -> tuple[list[str], list[str], dict]:
    """Lines, problems and derived figures of a correctness section, from its inputs and events alone."""
    events = all_events[""]
    facts = raw["rig"]
    limit, window_s = parse_rate(raw["limit"])
    per_gateway = raw["backend"] == "memory"
    problems = list(raw["engine_problems"])
    s = summarize(events)
    problems += infra_verdict(s, raw["max_infra_pct"])
    slack = raw.get("clock_slack_s", 0.0)  # absent in sections measured before it existed: 0
    dims, users = {"user": (limit, window_s)}, facts_users(facts)
    reports = analyse(events, raw["algorithm"], dims, users, facts["tool"], set(), per_gateway, slack)
    unchecked = fail_open_allowance(raw, reports)
    bad = [r for r in reports if not r.ok]
    for r in bad:
        problems += [f"{r.key}: {x}" for x in (([] if unchecked else r.over) + r.under)[:3]]
    checked = sum(r.checks for r in reports)
    if checked == 0:
        problems.append("no key ever reached its limit: the demand was too low to check the lower bound")
    lines = [
        f"{len(facts['gateways'])} gateways behind nginx (RATE_LIMITER_ENGINE: {' '.join(facts['engines'])}), "
        f"backend `{raw['backend']}`"
        + (f" on Redis {facts['redis_mode'].title()}" if facts["redis_mode"] != "standalone" else "")
        + f", algorithm `{raw['algorithm']}`, `by_user: {raw['limit']}`; {facts['users']} users, "
        f"{raw['clients']} locust clients (closed loop), {raw['duration_s']} s, every {raw['tool_error_every']}th call "
        f"asks the tool to fail. Run: {raw['run']}; {rigctl.versions_text(facts.get('versions', {}))}.",
        table(COUNTS_HEADER, [counts_row(s)]),
        infra_line(s, events, facts),
        config_line(facts, raw["engine_errors_logged"], raw["fail_mode"]),
        "Per limiter key"
        + (
            " (memory backend: one store per gateway process, so keys are per answering gateway)"
            if per_gateway
            else ""
        )
        + ". `checks`: windows (fixed window) or refusal instants (sliding window) or refusal runs (token bucket) "
        "where the key refused, so its full quota must have been admitted; `exact`: checks where the admitted "
        "count is pinned to the limit (certain = possible = limit, or refill within one token).",
        table(KEY_HEADER, key_rows(reports, fail_open=bool(unchecked))),
    ]
    if raw["algorithm"] == "fixed_window":
        rows = []
        for r in reports:
            for w in r.windows:
                rows.append([r.key, time.strftime("%H:%M:%S", time.gmtime(w["window_start"])), r.limit,
                             w["certain"], w["possible"], w["refused"]])  # fmt: skip
        lines.append("Fixed windows (UTC start): admissions certain / possible inside the window, refusals.")
        lines.append(table(["key", "window", "limit", "certain", "possible", "refused"], rows[:24]))
    if raw["algorithm"] == "token_bucket":
        rows = [[r.key, time.strftime("%H:%M:%S", time.gmtime(w["from"])), f"{w['to'] - w['from']:.1f}",
                 f"{w['refill_lo']:.1f}..{w['refill_hi']:.1f}", w["certain"], w["possible"]]
                for r in reports for w in r.windows]  # fmt: skip
        lines.append(
            "Token bucket, runs of refusals (bucket empty at each): admissions between the first and the last "
            "refusal vs the refill over that time (limit/window per second)."
        )
        lines.append(table(["key", "from (UTC)", "seconds", "refill tokens", "certain", "possible"], rows[:24]))
    derived: dict[str, Any] = {"summary": s, "keys": reports}
    if per_gateway:
        totals = window_totals(events, window_s)
        exhausted = [v["admitted"] for v in totals.values() if v["refused"]]
        worst = max((v["admitted"] for v in totals.values()), default=0)
        n = len(facts["gateways"])
        lines.append(
            f"All gateways together, per user and window: up to **{worst}** admissions for a limit of {limit} "
            f"(factor {worst / limit:.2f}; {n} independent stores allow up to {n}x). Windows with refusals: "
            f"{len(exhausted)}, mean admissions there {sum(exhausted) / max(1, len(exhausted)):.1f}. This is the "
            f"documented N-fold leak of the memory backend behind a load balancer; use the Redis backend."
        )
        if worst <= limit:
            problems.append("memory backend: no window admitted more than the limit, the N-fold leak did not show")
        derived["window_totals"] = [{"key": list(k), **v} for k, v in totals.items()]
    else:
        over = sum(len(r.over) for r in reports)
        under = sum(len(r.under) for r in reports)
        exact = sum(r.exact for r in reports)
        where = "Shared Redis" if facts["redis_mode"] == "standalone" else f"Shared Redis {facts['redis_mode'].title()}"
        lines.append(
            f"{where}: {checked} checks over {len(reports)} keys, {exact} exact, {over} over-admissions, "
            f"{under} under-admissions beyond 1 %."
        )
        if unchecked:
            lines.append(
                f"fail_mode open: {excess_admissions(reports)} certain admission(s) over the limit, no more than the "
                f"{unchecked} request(s) the plugin admitted without a check after a backend error, which that fail "
                "mode allows (docs/semantics.md §8: an unchecked request is counted by nobody, so it may push a "
                "window over). More over-admissions than unchecked requests would fail the run."
            )
        if facts["redis_mode"] == "cluster":
            lines.append(CLUSTER_NOTE.format(slack=slack))
        if slack:
            strict = analyse(events, raw["algorithm"], dims, users, facts["tool"], set(), per_gateway)
            found = [f"{r.key}: {x}" for r in strict for x in r.over + r.under]
            lines.append(
                "The same checks with no clock slack (each decision inside its send/receive span on this host's "
                f"clock): {sum(len(r.over) for r in strict)} over-admissions, {sum(len(r.under) for r in strict)} "
                "under-admissions beyond 1 %" + (": " + "; ".join(found[:6]) if found else "") + "."
            )
    return lines, problems, derived


def capacity_ab(a: argparse.Namespace) -> int:
    arms = a.arms.split()
    rate = "1000000/m"  # never reached: every request is evaluated on three dimensions and admitted
    results: list[dict[str, Any]] = []
    env_line = environment_line()
    events: dict[str, list[dict]] = {}
    for rnd in range(a.repeat):
        # ABBA...: alternate the order so a slow drift of the machine does not favour one arm
        for arm in arms if rnd % 2 == 0 else list(reversed(arms)):
            opts = rigctl.RigOptions(
                engines=[arm] * a.gateways, backend="redis", algorithm=a.algorithm, by_user=rate, by_tenant=rate,
                by_tool={rigctl.TOOL_NAME: rate}, users=a.users, teams=2, gateway_log_level=a.gateway_log_level,
                fail_mode=a.fail_mode, plugin_options=rigctl.parse_plugin_options(a.plugin_option),
            )  # fmt: skip

            def body(rig: dict[str, Any], arm: str = arm) -> tuple[dict[str, Any], list[dict]]:
                pids = {g["name"]: g["pid"] for g in rig["gateways"]}
                pids["redis"] = rig["redis_pid"]
                run = json.loads((Path(rig["run_dir"]) / "pids.json").read_text())
                pids["mcp-server"] = next(p["pid"] for p in run if p["name"] == "mcp-server")
                t_start = time.time()
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                with CpuSampler(pids) as sampler:
                    evs = run_locust(rig, Path(rig["run_dir"]) / "events.jsonl", a.warmup + a.duration, a.clients, 0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)  # locust has been reaped: its CPU
                locust_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                t0 = min(e["t0"] for e in evs) if evs else t_start
                m0, m1 = t0 + a.warmup, t0 + a.warmup + a.duration
                return {
                    "arm": arm, "round": rnd + 1, "cpu": sampler.usage(m0, m1), "locust_cpu_s": locust_cpu,
                    "locust_wall_s": a.warmup + a.duration, "engine_problems": engine_check(rig),
                    "engine_errors_logged": plugin_engine_errors(rig["run_dir"]), "rig": rig_facts(rig),
                    "measured_from_to": [m0, m1],
                }, evs  # fmt: skip

            r, evs = _with_rig(opts, a.keep, body)
            r["events"] = f"run{len(results) + 1}-{r['arm']}-round{r['round']}"
            events[r["events"]] = evs
            results.append(r)
    inputs = {
        "format": RAW_FORMAT, "kind": "capacity-ab", "section": "capacity-ab",
        "title": "Capacity A/B: RATE_LIMITER_ENGINE go vs python", "run": env_line, "gateways": a.gateways,
        "clients": a.clients, "users": a.users, "warmup_s": a.warmup, "duration_s": a.duration, "repeat": a.repeat,
        "arm_order": arms, "rate": rate, "algorithm": a.algorithm, "fail_mode": a.fail_mode,
        "max_infra_pct": a.max_infra_pct, "arms": results,
    }  # fmt: skip
    return _finish(inputs, events, not a.no_doc)


def render_capacity_ab(raw: dict[str, Any], events: dict[str, list[dict]]) -> tuple[list[str], list[str], dict]:
    """Lines, problems and derived figures of the capacity A/B section, from its inputs and events alone."""
    results = []
    problems: list[str] = []
    for arm in raw["arms"]:
        evs = events[arm["events"]]
        m0, m1 = arm["measured_from_to"]
        s = summarize(evs, m0, m1)
        cpu = arm["cpu"]
        gw_cpu = sum(v for k, v in cpu.items() if k.startswith("gw"))
        r = {
            **arm, "summary": s, "gw_cpu_s": gw_cpu, "gw_cpu_ms_per_req": 1000 * gw_cpu / max(1, s["n"]),
            "redis_cpu_ms_per_req": 1000 * cpu.get("redis", 0.0) / max(1, s["n"]),
            "gw_cores": gw_cpu / max(cpu["_wall_s"], 1e-9),
            "admitted": s["cats"].get(ADMITTED, 0) + s["cats"].get(TOOL_ERROR, 0),
            "infra_problems": infra_verdict(s, raw["max_infra_pct"]),
            "config_line": config_line(arm["rig"], arm["engine_errors_logged"], raw["fail_mode"]),
            "infra_line": infra_line(s, [e for e in evs if m0 <= e["t0"] < m1], arm["rig"]),
        }  # fmt: skip
        results.append(r)
        problems += [f"{r['arm']} round {r['round']}: {p}" for p in r["engine_problems"] + r["infra_problems"]]
        if s["cats"].get(RATE_LIMITED, 0):
            problems.append(f"{r['arm']}: {s['cats'][RATE_LIMITED]} requests rate-limited at a limit never reached")
    rows = []
    for r in results:
        s = r["summary"]
        rows.append([
            r["arm"], r["round"], s["n"], f"{s['rps']:.1f}", f"{s['p50_ms']:.0f}", f"{s['p90_ms']:.0f}", f"{s['p99_ms']:.0f}",
            f"{r['gw_cores']:.2f}", f"{r['gw_cpu_ms_per_req']:.1f}", f"{r['redis_cpu_ms_per_req']:.3f}",
            f"{r['locust_cpu_s'] / r['locust_wall_s']:.2f}", f"{s['infra']}",
        ])  # fmt: skip
    by_arm: dict[str, list[dict]] = {}
    for r in results:
        by_arm.setdefault(r["arm"], []).append(r)
    agg = []
    for arm, rs in by_arm.items():
        agg.append([
            arm, f"{sum(r['summary']['rps'] for r in rs) / len(rs):.1f}",
            f"{sum(r['summary']['p50_ms'] for r in rs) / len(rs):.0f}",
            f"{sum(r['summary']['p99_ms'] for r in rs) / len(rs):.0f}",
            f"{sum(r['gw_cpu_ms_per_req'] for r in rs) / len(rs):.2f}",
        ])  # fmt: skip
    lines = [
        f"{raw['gateways']} gateways behind nginx, all with the same RATE_LIMITER_ENGINE per arm; Redis backend, "
        f"`{raw['algorithm']}`, limits by user, tenant and tool of {raw['rate']} (never reached, so every request runs "
        f"all three dimensions and is admitted). {raw['clients']} locust clients (closed loop), {raw['users']} users; "
        f"{raw['warmup_s']} s warm-up then {raw['duration_s']} s measured, {raw['repeat']} round(s), arms in the order "
        f"{' '.join(raw['arm_order'])} then reversed (ABBA), each on a fresh rig. CPU from /proc/<pid>/stat over the "
        f"measured interval; the load generator runs on the same 2 cores (its CPU is shown). Run: {raw['run']}; "
        f"{rigctl.versions_text(results[0]['rig']['versions'] if results else {})}.",
        table(
            ["engine", "round", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "gateway CPU cores",
             "gateway CPU ms/req", "Redis CPU ms/req", "locust CPU cores", "infra errors"],
            rows,
        ),  # fmt: skip
        table(["engine", "mean req/s", "mean p50 ms", "mean p99 ms", "mean gateway CPU ms/req"], agg),
        *[f"{r['arm']} round {r['round']}: {r['config_line']}" for r in results],
        *[f"{r['arm']} round {r['round']}: {r['infra_line']}" for r in results if r["summary"]["infra"]],
        spread_verdict(by_arm),
    ]
    derived = {
        f"{r['arm']}-round{r['round']}": {
            k: r[k] for k in ("summary", "gw_cpu_s", "gw_cpu_ms_per_req", "redis_cpu_ms_per_req", "gw_cores", "admitted")
        }
        for r in results
    }
    return lines, problems, derived


def spread_verdict(by_arm: dict[str, list[dict[str, Any]]]) -> str:
    """Say, from the numbers, whether the arms differ by more than the spread between rounds of one arm."""
    if len(by_arm) != 2:
        return "Only one arm: no comparison."
    (a_name, a_runs), (b_name, b_runs) = by_arm.items()

    def stats(runs: list[dict[str, Any]]) -> tuple[float, float]:
        vals = [r["summary"]["rps"] for r in runs]
        mean = sum(vals) / len(vals)
        return mean, (max(vals) - min(vals)) / mean if mean else 0.0

    (ma, sa), (mb, sb) = stats(a_runs), stats(b_runs)
    if not mb:
        return "No throughput measured."
    diff = (ma - mb) / mb
    rounds = min(len(a_runs), len(b_runs))
    if rounds < 2:
        judged = "with one round per arm the run-to-run spread is unknown, so this difference proves nothing"
    elif abs(diff) > max(sa, sb):
        judged = (
            f"larger than the spread between rounds of one arm ({sa:.0%} for {a_name}, {sb:.0%} for {b_name}) "
            "in this run"
        )
    else:
        judged = f"within the spread between rounds of one arm ({sa:.0%} for {a_name}, {sb:.0%} for {b_name})"
    runs = a_runs + b_runs
    cpu_ms = sum(r["gw_cpu_ms_per_req"] for r in runs) / len(runs)
    return (
        f"Throughput {a_name} vs {b_name}: {diff:+.0%}, {judged}. A request cost a gateway {cpu_ms:.0f} ms of CPU on "
        "average in this run (authentication, database, the upstream MCP call), the engine's own work microseconds. A difference "
        "here can come from how each engine waits for Redis (the Python engine on the gateway's event loop, the Go "
        "engine on its own threads) and from the load other work puts on this shared 2-core machine (see the load "
        "average above); this rig cannot separate the two. The engine's per-call cost is the benchmarks' job."
    )


def scale(a: argparse.Namespace) -> int:
    opts = rigctl.RigOptions(
        engines=a.engines.split(), backend="redis", algorithm=a.algorithm, by_user=a.limit_text, users=a.users,
        teams=max(1, a.users // 10), gateway_log_level=a.gateway_log_level, fail_mode=a.fail_mode,
        plugin_options=rigctl.parse_plugin_options(a.plugin_option),
    )  # fmt: skip
    env_line = environment_line()

    def body(rig: dict[str, Any]) -> tuple[dict[str, Any], list[dict]]:
        if a.algorithm == "fixed_window":
            align_to_window(a.limit[1])
        events = run_locust(rig, Path(rig["run_dir"]) / "events.jsonl", a.duration, a.clients, 0, rotate=True)
        inputs = {
            "format": RAW_FORMAT, "kind": "scale", "section": f"scale-{a.users}",
            "title": f"Scale: {a.users} users, {a.algorithm}", "run": env_line, "rig": rig_facts(rig),
            "duration_s": a.duration, "clients": a.clients, "algorithm": a.algorithm, "limit": a.limit_text,
            "fail_mode": a.fail_mode, "max_infra_pct": a.max_infra_pct, "engine_problems": engine_check(rig),
            "engine_errors_logged": plugin_engine_errors(rig["run_dir"]),
        }  # fmt: skip
        return inputs, events

    inputs, events = _with_rig(opts, a.keep, body)
    return _finish(inputs, {"": events}, not a.no_doc)


def render_scale(raw: dict[str, Any], all_events: dict[str, list[dict]]) -> tuple[list[str], list[str], dict]:
    """Lines, problems and derived figures of a scale section, from its inputs and events alone."""
    events = all_events[""]
    facts = raw["rig"]
    limit, window_s = parse_rate(raw["limit"])
    users = facts["users"]
    problems = list(raw["engine_problems"])
    s = summarize(events)
    problems += infra_verdict(s, raw["max_infra_pct"])
    reports = analyse(events, raw["algorithm"], {"user": (limit, window_s)}, facts_users(facts), facts["tool"], set())
    bad = [r for r in reports if not r.ok]
    for r in bad[:5]:
        problems += [f"{r.key}: {x}" for x in (r.over + r.under)[:2]]
    if len(bad) > 5:
        problems.append(f"... {len(bad)} keys failed in all")
    saturated = [r for r in reports if r.checks]
    if len(saturated) < 0.9 * users:
        problems.append(f"only {len(saturated)} of {users} users reached their limit: demand too low to check")
    checks = sum(r.checks for r in reports)
    exact = sum(r.exact for r in reports)
    admitted = sorted(r.admitted for r in reports)
    lines = [
        f"{len(facts['gateways'])} gateways (RATE_LIMITER_ENGINE: {' '.join(facts['engines'])}), Redis backend, "
        f"`{raw['algorithm']}`, `by_user: {raw['limit']}`; {users} users in {facts['teams']} teams, {raw['clients']} "
        f"locust clients taking the users in turn (each call as the next user), {raw['duration_s']} s. "
        f"Run: {raw['run']}; {rigctl.versions_text(facts.get('versions', {}))}.",
        table(COUNTS_HEADER, [counts_row(s)]),
        infra_line(s, events, facts),
        config_line(facts, raw["engine_errors_logged"], raw["fail_mode"]),
        table(
            ["users seen", "users that reached the limit", "checks", "exact", "keys with over-admission",
             "keys with under-admission", "admitted per user min / median / max"],
            [[
                len(reports), len(saturated), checks, exact, sum(1 for r in reports if r.over),
                sum(1 for r in reports if r.under),
                f"{admitted[0] if admitted else 0} / {admitted[len(admitted) // 2] if admitted else 0} / "
                f"{admitted[-1] if admitted else 0}",
            ]],
        ),  # fmt: skip
    ]
    if bad:
        lines.append(table(KEY_HEADER, key_rows(bad[:20])))
    return lines, problems, {"summary": s, "keys": reports}


#: The raw results' format: 2 holds every input of its section (render_saved needs nothing else).
RAW_FORMAT = 2
RENDERERS = {
    "correctness": render_correctness, "capacity-ab": render_capacity_ab, "scale": render_scale,
    "plugin-cost": render_cost,  # rig/loadtest/cost.py
}  # fmt: skip


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="test", required=True)

    def common(p: argparse.ArgumentParser, duration: int, clients: int) -> None:
        p.add_argument("--duration", type=int, default=int(env("LT_DURATION", duration)), help="seconds of load")
        p.add_argument("--clients", type=int, default=int(env("LT_CLIENTS", clients)), help="locust users")
        p.add_argument("--max-infra-pct", type=float, default=float(env("LT_MAX_INFRA_PCT", "1.0")))
        p.add_argument("--gateway-log-level", default=env("GW_LOG_LEVEL", "WARNING"))
        p.add_argument("--keep", action="store_true", help="leave the rig running afterwards")
        p.add_argument("--no-doc", action="store_true", help="do not update docs/loadtest.md")
        # closed: a decision the backend could not make is a visible 503 (an infrastructure error),
        # never a silent admission that would look like an over-admission
        p.add_argument("--fail-mode", choices=("open", "closed"), default=env("RL_FAIL_MODE", "closed"))
        p.add_argument("--plugin-option", action="append", default=[], metavar="KEY=VALUE",
                       help="more plugin config, e.g. redis_timeout_ms=200")  # fmt: skip
        # On this shared 2-core host a saturated gateway's event loop is often later than the plugin's
        # default 50 ms Redis timeout (docs/loadtest.md); 0 keeps the plugin's default.
        p.add_argument("--redis-timeout-ms", type=int, default=int(env("LT_REDIS_TIMEOUT_MS", "200")),
                       help="the plugin's redis_timeout_ms for the run (0: the plugin's default)")  # fmt: skip

    p = sub.add_parser("correctness", help="admissions per window vs the limit, 3 gateways on one limiter")
    common(p, 70, 6)
    p.add_argument("--algorithm", choices=("fixed_window", "sliding_window", "token_bucket"),
                   default=env("RL_ALGORITHM", "fixed_window"))  # fmt: skip
    p.add_argument("--backend", choices=("redis", "memory"), default=env("RL_BACKEND", "redis"))
    p.add_argument("--limit", default=env("LT_LIMIT", "100/m"), help="by_user rate")
    p.add_argument("--users", type=int, default=int(env("LT_USERS", "2")))
    p.add_argument("--engines", default=env("GW_ENGINES", "go python go"))
    p.add_argument("--tool-error-every", type=int, default=int(env("LT_TOOL_ERROR_EVERY", "20")))
    p.add_argument("--redis-mode", choices=rigctl.REDIS_MODES, default=env("REDIS_MODE") or "standalone",
                   help="standalone: one redis-server; cluster: a local Redis Cluster (3 primaries + 3 replicas)")  # fmt: skip

    p = sub.add_parser("capacity-ab", help="throughput, latency and CPU with RATE_LIMITER_ENGINE=go vs python")
    common(p, 30, 8)
    p.add_argument("--arms", default=env("LT_ARMS", "go python"))
    p.add_argument("--repeat", type=int, default=int(env("LT_REPEAT", "1")))
    p.add_argument("--warmup", type=int, default=int(env("LT_WARMUP", "5")))
    p.add_argument("--gateways", type=int, default=int(env("LT_GATEWAYS", "3")))
    p.add_argument("--users", type=int, default=int(env("LT_USERS", "8")))
    p.add_argument("--algorithm", default=env("RL_ALGORITHM", "sliding_window"))

    p = sub.add_parser("scale", help="many users, accuracy per user per window")
    common(p, 70, 8)
    p.add_argument("--users", type=int, default=int(env("LT_USERS", "100")))
    p.add_argument("--limit", default=env("LT_LIMIT", "3/m"))
    p.add_argument("--algorithm", choices=("fixed_window", "sliding_window", "token_bucket"),
                   default=env("RL_ALGORITHM", "fixed_window"))  # fmt: skip
    p.add_argument("--engines", default=env("GW_ENGINES", "go python go"))

    sub.add_parser("render", help="re-render every section of docs/loadtest.md from docs/loadtest-results/ only")

    a = ap.parse_args(argv)
    if a.test == "render":
        return render_command()
    rigctl.stop_on_sigterm()
    if a.redis_timeout_ms < 0 or a.redis_timeout_ms > 60000:
        ap.error("--redis-timeout-ms must be 0..60000")
    if a.redis_timeout_ms and not any(o.partition("=")[0].strip() == "redis_timeout_ms" for o in a.plugin_option):
        a.plugin_option = [f"redis_timeout_ms={a.redis_timeout_ms}", *a.plugin_option]
    if hasattr(a, "limit"):
        a.limit_text = a.limit
        try:
            a.limit = parse_rate(a.limit)
        except argparse.ArgumentTypeError as e:
            ap.error(str(e))
    if a.duration <= 0 or a.duration > 3600:
        ap.error("--duration must be 1..3600 s")
    try:
        return {"correctness": correctness, "capacity-ab": capacity_ab, "scale": scale}[a.test](a)
    except TestFailed as e:
        print(f"Verdict: FAIL: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

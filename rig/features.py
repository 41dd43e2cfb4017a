"""Show, on the real gateway, what a client and an operator see of the plugin's gateway features:
X-RateLimit-* headers on admitted calls (the plugin's HTTP hooks listed or not), the gateway's
observability records of the plugin's decisions, and whether ``by_tenant`` applies on a virtual
server's MCP endpoint.

Three phases, each on its own one-gateway rig in its own run directory (always stopped), Go engine,
memory backend, fixed window, two users of one team, the MCP test server not team-owned:

1. ``hooks``: the plugin lists ``http_pre_request``/``http_post_request``, ``by_user: 6/m``, the
   gateway's observability on (``OBSERVABILITY_ENABLED``, ``CPEX_CONTROL_TELEMETRY_ENABLED``);
   calls on ``/rpc`` and ``/servers/<id>/mcp`` by two users until the first is refused (two of them
   with the same client ``X-Correlation-ID``), then the observability rows read back from the
   gateway's database (spans ``plugin.metrics.*`` and ``cpex.control.*``, metric rows ``plugin.*``);
2. ``tenant``: HTTP hooks not listed, ``by_user: 20/m``, ``by_tenant: 4/m``: the team's quota used up
   on ``/rpc``, then a call on ``/servers/<id>/mcp`` (refused there only if the hook got a tenant);
3. ``gateway_limiter``: HTTP hooks listed and the gateway's own limiter on (``RATE_LIMITING_ENABLED``).

    python rig/features.py run      # measure GATEWAY_VERSION (default 1.1.0) -> docs/gateway-results/features-<v>.json
    python rig/features.py render   # docs/gateway.md's features section from every features-*.json

No identities are written: callers are "A" and "B", ids are replaced by placeholders.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "loadtest"))
import rigctl  # noqa: E402
from discover import mcp_session, rpc, virtual_server  # noqa: E402
from report import REPO, environment_line, table  # noqa: E402

DOC = REPO / "docs" / "gateway.md"
RAW_DIR = REPO / "docs" / "gateway-results"
START, END = "<!-- features:start -->", "<!-- features:end -->"
LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")
WINDOW_S = 60
SHARED_CORRELATION_ID = "rig-features-shared-correlation-id"


def _window_start(need_s: float) -> None:
    """Fixed window: start with at least need_s seconds of the minute left, so a phase's calls share one window."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < need_s:
        time.sleep(left + 0.2)


def _body(doc: Any) -> Any:
    """The JSON-RPC message of a response (MCP streamable HTTP may answer as an SSE stream)."""
    if isinstance(doc, str):
        for line in doc.splitlines():
            if line.startswith("data:"):
                try:
                    return json.loads(line[5:].strip())
                except json.JSONDecodeError:
                    pass
    return doc


def outcome(status: int, doc: Any) -> tuple[str, str]:
    """(class, message) of a tools/call response: admitted, refused (429), refused (MCP tool error), other."""
    doc = _body(doc)
    if status == 429:
        msg = doc.get("error", {}).get("message", "") if isinstance(doc, dict) else ""
        return "refused (HTTP 429)", msg
    if status == 200 and isinstance(doc, dict) and isinstance(doc.get("result"), dict):
        res = doc["result"]
        if res.get("isError"):
            text = " ".join(c.get("text", "") for c in res.get("content", []) if isinstance(c, dict))
            return ("refused (MCP tool error)" if "blocked by plugin" in text else "tool error"), text
        return "admitted", ""
    return f"HTTP {status}", json.dumps(doc)[:160] if not isinstance(doc, str) else doc[:160]


def _dimension(message: str) -> str:
    m = re.search(r"per-(user|tenant|tool|user_per_server)\b", message) or re.search(
        r"\b(user|tenant|tool)\b limit", message
    )
    return m.group(1) if m else ""


class Caller:
    def __init__(self, rig: dict, base: str, vs: str | None) -> None:
        self.rig, self.base, self.vs = rig, base, vs
        self.sessions: dict[str, dict[str, str]] = {}
        self.calls: list[dict[str, Any]] = []

    def call(self, who: str, endpoint: str, correlation_id: str | None = None) -> dict[str, Any]:
        user = self.rig["users"][0 if who == "A" else 1]
        headers: dict[str, str] = {}
        path = "/rpc"
        if endpoint == "mcp":
            path = f"/servers/{self.vs}/mcp"
            if who not in self.sessions:
                self.sessions[who] = mcp_session(self.base, user["token"], self.vs)
            headers.update(self.sessions[who])
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        t = time.time()
        st, doc, hdr = rpc(self.base, user["token"], "tools/call", {"name": self.rig["tool"], "arguments": {"text": "x"}},
                           path=path, headers=headers)  # fmt: skip
        cls, msg = outcome(st, doc)
        reset = hdr.get("x-ratelimit-reset")
        rec = {
            "n": len(self.calls) + 1,
            "caller": who,
            "endpoint": "/rpc" if endpoint == "rpc" else "/servers/<id>/mcp",
            "client_correlation_id": bool(correlation_id),
            "status": st,
            "outcome": cls,
            "dimension": _dimension(msg),
            "headers": {k: hdr[k] for k in LIMIT_HEADERS if k in hdr},
            "reset_in_s": round(int(reset) - t) if reset and reset.isdigit() else None,
        }
        self.calls.append(rec)
        return rec


def _with_rig(opts: rigctl.RigOptions, run_root: Path, name: str, fn) -> Any:
    opts.run_dir = run_root / name
    run_dir = rigctl.up(opts)
    try:
        rig = rigctl.load_rig(run_dir)
        base = rig["gateways"][0]["url"]
        vs = virtual_server(base, rig["admin_token"], rig["tool"])
        return fn(rig, run_dir, Caller(rig, base, vs))
    finally:
        rigctl.down(run_dir)


def _observability_rows(db: Path) -> dict[str, Any]:
    """What the gateway recorded: per traced request its path and status, the plugin's and cpex's spans with
    their attributes (cpex.control.* and plugin metrics only, no identities), and plugin metric rows."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        if "observability_traces" not in tables:
            return {"tables": False}
        traces = {}
        for tid, method, url, code, start in con.execute(
            "select trace_id, http_method, http_url, http_status_code, start_time from observability_traces order by start_time"
        ):
            path = re.sub(r"^https?://[^/]+", "", url or "")
            path = re.sub(r"/servers/[^/]+/", "/servers/<id>/", path)
            traces[tid] = {"request": f"{method} {path}", "status": code, "spans": [], "metrics": []}
        for tid, name, attrs in con.execute(
            "select trace_id, name, attributes from observability_spans "
            "where name like 'plugin.metrics.%' or name like 'cpex.control.%' order by start_time"
        ):
            a = json.loads(attrs) if isinstance(attrs, str) else (attrs or {})
            keep = {k: v for k, v in a.items() if not k.startswith("cpex.control.agent") and (
                name.startswith("plugin.metrics.") or k.startswith("cpex.control."))}  # fmt: skip
            keep.pop("cpex.control.duration_ns", None)
            keep.pop("cpex.control.binding.name", None)
            if tid in traces:
                traces[tid]["spans"].append({"name": name, "attributes": keep})
        for tid, name, value in con.execute(
            "select trace_id, name, value from observability_metrics where name like 'plugin.%' order by id"
        ):
            if tid in traces:
                traces[tid]["metrics"].append({"name": name, "value": value})
        span_names = sorted({r[0] for r in con.execute("select distinct name from observability_spans")})
        return {"tables": True, "traces": [t for t in traces.values() if "/rpc" in t["request"] or "/mcp" in t["request"]],
                "span_names": span_names}  # fmt: skip
    finally:
        con.close()


def phase_hooks(run_root: Path) -> dict[str, Any]:
    def body(rig: dict, run_dir: Path, c: Caller) -> dict[str, Any]:
        _window_start(40)
        c.call("A", "rpc", SHARED_CORRELATION_ID)
        c.call("B", "rpc", SHARED_CORRELATION_ID)
        c.call("A", "rpc")
        c.call("A", "rpc")
        for _ in range(4):  # A's 4th..7th: the 7th is over 6/m
            if c.call("A", "mcp")["outcome"] != "admitted":
                break
        c.call("A", "rpc")
        c.call("B", "mcp")
        time.sleep(2)  # the gateway writes its observability rows at the end of each request
        return {"calls": c.calls, "mcp_initialize_requests": len(c.sessions),
                "observability": _observability_rows(run_dir / "gateway.db")}  # fmt: skip

    opts = rigctl.RigOptions(engines=["go"], backend="memory", algorithm="fixed_window", by_user="6/m", users=2,
                             teams=1, http_hooks=True, observability=True, control_telemetry=True)  # fmt: skip
    return {"config": opts.plugin_config(""), "http_hooks": True, "observability": True,
            **_with_rig(opts, run_root, "hooks", body)}  # fmt: skip


def phase_tenant(run_root: Path) -> dict[str, Any]:
    def body(rig: dict, run_dir: Path, c: Caller) -> dict[str, Any]:
        _window_start(30)
        for _ in range(5):  # the team's 4/m used up on /rpc, the 5th refused
            if c.call("A", "rpc")["outcome"] != "admitted":
                break
        c.call("A", "mcp")  # refused only if the hook got the team as tenant_id
        c.call("B", "mcp")
        c.call("B", "rpc")
        return {"calls": c.calls}

    opts = rigctl.RigOptions(engines=["go"], backend="memory", algorithm="fixed_window", by_user="20/m",
                             by_tenant="4/m", users=2, teams=1)  # fmt: skip
    return {"config": opts.plugin_config(""), "http_hooks": False, **_with_rig(opts, run_root, "tenant", body)}


def phase_gateway_limiter(run_root: Path) -> dict[str, Any]:
    def body(rig: dict, run_dir: Path, c: Caller) -> dict[str, Any]:
        _window_start(20)
        c.call("A", "rpc")
        c.call("A", "rpc")
        c.call("A", "mcp")
        return {"calls": c.calls}

    opts = rigctl.RigOptions(engines=["go"], backend="memory", algorithm="fixed_window", by_user="6/m", users=2,
                             teams=1, http_hooks=True, gateway_rate_limiting=True)  # fmt: skip
    return {"config": opts.plugin_config(""), "http_hooks": True, "gateway_rate_limiting": True,
            **_with_rig(opts, run_root, "gateway_limiter", body)}  # fmt: skip


def phase_observability_default(run_root: Path) -> dict[str, Any]:
    """Observability on with the gateway's default CPEX_CONTROL_TELEMETRY_ENABLED=false: what a refusal leaves."""

    def body(rig: dict, run_dir: Path, c: Caller) -> dict[str, Any]:
        _window_start(20)
        for _ in range(3):  # the 3rd is over 2/m
            c.call("A", "rpc")
        time.sleep(2)
        return {"calls": c.calls, "mcp_initialize_requests": 0,
                "observability": _observability_rows(run_dir / "gateway.db")}  # fmt: skip

    opts = rigctl.RigOptions(engines=["go"], backend="memory", algorithm="fixed_window", by_user="2/m", users=2,
                             teams=1, observability=True)  # fmt: skip
    return {"config": opts.plugin_config(""), "http_hooks": False, "observability": True,
            **_with_rig(opts, run_root, "observability_default", body)}  # fmt: skip


PHASES = {"hooks": phase_hooks, "tenant": phase_tenant, "gateway_limiter": phase_gateway_limiter,
          "observability_default": phase_observability_default}  # fmt: skip


# --------------------------------------------------------------------------- findings and rendering


def findings(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Yes/no answers computed from the raw calls (never typed by hand)."""
    out: list[tuple[str, str]] = []
    hooks = raw.get("hooks", {}).get("calls", [])
    limit = 6
    for ep in ("/rpc", "/servers/<id>/mcp"):
        adm = [c for c in hooks if c["endpoint"] == ep and c["outcome"] == "admitted"]
        with_h = [c for c in adm if "x-ratelimit-remaining" in c["headers"]]
        out.append((f"HTTP hooks listed, {ep}: admitted responses carrying X-RateLimit-Limit/-Remaining/-Reset",
                    f"{len(with_h)} of {len(adm)}"))  # fmt: skip
    for who in ("A", "B"):
        adm = [c for c in hooks if c["caller"] == who and c["outcome"] == "admitted"]
        want = [limit - i for i in range(1, len(adm) + 1)]
        got = [c["headers"].get("x-ratelimit-remaining", "-") for c in adm]
        shown = [(g, w) for g, w in zip(got, want) if g != "-"]
        verdict = "no headers" if not shown else ("right" if all(int(g) == w for g, w in shown) else "NOT its own count")
        if shown and len(shown) < len(adm):
            verdict += f" on the {len(shown)} call(s) that carried it"
        out.append((f"caller {who}: X-RateLimit-Remaining on its admitted calls, in order (its own count: {want})",
                    f"[{', '.join(got)}]: {verdict}"))  # fmt: skip
    limits = sorted({c["headers"].get("x-ratelimit-limit") for c in hooks if c["headers"].get("x-ratelimit-limit")})
    out.append(("X-RateLimit-Limit values seen (by_user 6/m)", ", ".join(limits) or "none"))
    resets = [c["reset_in_s"] for c in hooks if c["reset_in_s"] is not None]
    if resets:
        out.append(("X-RateLimit-Reset, seconds after the call (fixed 60 s window)", f"{min(resets)} to {max(resets)}"))
    ref = [c for c in hooks if c["outcome"] != "admitted"]
    out.append(("A's call over the limit", "; ".join(f"call {c['n']} on {c['endpoint']}: {c['outcome']}, headers: "
                                                    f"{', '.join(c['headers']) or 'none'}" for c in ref) or "none"))  # fmt: skip
    shared = [c for c in hooks if c["client_correlation_id"]]
    if len(shared) == 2:
        a, b = shared
        out.append(("A and B sent the same X-Correlation-ID: each got its own Remaining",
                    f"A {a['headers'].get('x-ratelimit-remaining', '-')}, B {b['headers'].get('x-ratelimit-remaining', '-')}"))  # fmt: skip
    ten = raw.get("tenant", {}).get("calls", [])
    if ten:
        adm = [c for c in ten if c["outcome"] == "admitted"]
        out.append(("HTTP hooks not listed: admitted responses carrying X-RateLimit-*",
                    f"{sum(1 for c in adm if c['headers'])} of {len(adm)}"))  # fmt: skip
        rpc_ref = next((c for c in ten if c["endpoint"] == "/rpc" and c["outcome"] != "admitted"), None)
        mcp_a = next((c for c in ten if c["endpoint"] != "/rpc" and c["caller"] == "A"), None)
        if rpc_ref:
            out.append(("by_tenant 4/m on /rpc: team's call refused",
                        f"call {rpc_ref['n']} ({rpc_ref['outcome']}, {rpc_ref['dimension'] or '?'} limit)"))  # fmt: skip
        if mcp_a:
            applies = mcp_a["outcome"] != "admitted"
            out.append(("by_tenant on /servers/<id>/mcp after the team's quota is used up (applies only if the hook "
                        "got a tenant_id)", f"{mcp_a['outcome']}: by_tenant {'applies' if applies else 'does NOT apply'}"))  # fmt: skip
    gl = raw.get("gateway_limiter", {}).get("calls", [])
    if gl:
        out.append(("the gateway's own limiter on, HTTP hooks listed: X-RateLimit-Limit/-Remaining per call",
                    "; ".join(f"{c['endpoint']} {c['headers'].get('x-ratelimit-limit', '-')}/"
                              f"{c['headers'].get('x-ratelimit-remaining', '-')}" for c in gl)))  # fmt: skip
    obs = raw.get("hooks", {}).get("observability", {})
    traces = obs.get("traces", [])
    with_pm = [t for t in traces if any(s["name"].startswith("plugin.metrics.") for s in t["spans"])]
    out.append(("observability on: traced /rpc and /servers/<id>/mcp requests / with a plugin.metrics span of the plugin",
                f"{len(traces)} / {len(with_pm)}"))  # fmt: skip

    def refusal_spans(o: dict) -> str:
        refused = [t for t in o.get("traces", []) if t["status"] == 429 or any(
                   s["attributes"].get("cpex.control.result.allowed") is False for s in t["spans"])]  # fmt: skip
        if not refused:
            return "no refused request traced"
        names = sorted({s["name"] for t in refused for s in t["spans"]})
        fields = sorted({k.removeprefix("cpex.control.result.") for t in refused for s in t["spans"]
                         for k in s["attributes"] if "rate_limiter" in k})  # fmt: skip
        return (f"{len(refused)} refused request(s); spans: {', '.join(names) or 'none'}; plugin fields: "
                f"{', '.join(fields) or 'none'}")

    out.append(("refusals, control telemetry on (CPEX_CONTROL_TELEMETRY_ENABLED=true)", refusal_spans(obs)))
    od = raw.get("observability_default", {})
    if od:
        out.append(("refusals, control telemetry at its default (off)", refusal_spans(od.get("observability", {}))))
    return out


def _call_rows(calls: list[dict]) -> list[list[Any]]:
    return [[c["n"], c["caller"], c["endpoint"] + (" (client X-Correlation-ID)" if c["client_correlation_id"] else ""),
             c["status"], c["outcome"] + (f", {c['dimension']} limit" if c["dimension"] else "")]
            + [c["headers"].get(k, "-") for k in LIMIT_HEADERS[:2]]
            + [f"+{c['reset_in_s']} s" if c["reset_in_s"] is not None else "-", c["headers"].get("retry-after", "-")]
            for c in calls]  # fmt: skip


CALL_COLS = ["call", "caller", "endpoint", "status", "outcome", "Limit", "Remaining", "Reset", "Retry-After"]


def _obs_rows(obs: dict) -> list[list[Any]]:
    rows = []
    for t in obs.get("traces", []):
        spans = "<br>".join(
            f"`{s['name']}` " + ", ".join(f"{k.removeprefix('cpex.control.')}={v}" for k, v in sorted(s["attributes"].items())
                                          if not k.startswith("cpex.control.") or any(x in k for x in (
                                              "result.", "name", "status", "enforcement_point", "denied")))
            for s in t["spans"]
        ) or "-"  # fmt: skip
        metrics = ", ".join(f"{m['name']}={m['value']:g}" for m in t["metrics"]) or "-"
        rows.append([t["request"], t["status"], spans, metrics])
    return rows


def render_version(raw: dict[str, Any]) -> str:
    v = raw["versions"]
    parts = [
        f"#### Gateway {v.get('gateway', '?')}",
        f"Run: {raw['run']}. {rigctl.versions_text(v)}; Go engine, memory backend, fixed window, one gateway per "
        "phase, two users (A, B) of one team, the MCP test server not team-owned.",
        "**Findings** (computed from the calls below):",
        table(["question", "measured"], [list(f) for f in findings(raw)]),
    ]
    if "hooks" in raw:
        h = raw["hooks"]
        parts += [
            f"**HTTP hooks listed, observability on** (`{json.dumps(h['config'])}`, hooks tool_pre_invoke, "
            "prompt_pre_fetch, http_pre_request, http_post_request; OBSERVABILITY_ENABLED=true, "
            "CPEX_CONTROL_TELEMETRY_ENABLED=true):",
            table(CALL_COLS, _call_rows(h["calls"])),
            "**What the gateway's observability recorded** for those requests (its database: each traced request, "
            "the spans named `plugin.metrics.*` and `cpex.control.*` under its trace with their attributes, and "
            "metric rows named `plugin.*`; span names in the database: "
            f"{', '.join(h['observability'].get('span_names', [])) or 'none'}):",
            table(["traced request", "HTTP status", "spans (attributes)", "metric rows"], _obs_rows(h["observability"])),
            f"({h.get('mcp_initialize_requests', 0)} of the traced `/servers/<id>/mcp` requests are the MCP `initialize` "
            "requests of the callers' sessions: no tool call, no plugin hook, hence no spans.)",
        ]
    if "tenant" in raw:
        t = raw["tenant"]
        parts += [f"**HTTP hooks not listed; by_tenant** (`{json.dumps(t['config'])}`):",
                  table(CALL_COLS, _call_rows(t["calls"]))]  # fmt: skip
    if "observability_default" in raw:
        o = raw["observability_default"]
        parts += [
            "**Observability on, control telemetry left at the gateway's default (off)** "
            f"(OBSERVABILITY_ENABLED=true only, `{json.dumps(o['config'])}`, HTTP hooks not listed):",
            table(CALL_COLS, _call_rows(o["calls"])),
            table(["traced request", "HTTP status", "spans (attributes)", "metric rows"], _obs_rows(o["observability"])),
        ]
    if "gateway_limiter" in raw:
        g = raw["gateway_limiter"]
        parts += [f"**HTTP hooks listed, the gateway's own limiter on** (`RATE_LIMITING_ENABLED=true`, "
                  f"`{json.dumps(g['config'])}`):", table(CALL_COLS, _call_rows(g["calls"]))]  # fmt: skip
    return "\n\n".join(parts)


def render() -> None:
    sections = []
    for f in sorted(RAW_DIR.glob("features-*.json"), key=lambda p: [int(x) for x in p.stem.split("-")[1].split(".")],
                    reverse=True):  # fmt: skip
        sections.append(render_version(json.loads(f.read_text())))
    body = "\n\n".join(
        ["## Measured by rig/features.py",
         "Generated by `rig/features.py render` from `docs/gateway-results/features-<version>.json` "
         "(`rig/features.py run` per gateway version); do not edit by hand.", *sections]  # fmt: skip
    )
    text = DOC.read_text()
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=("run", "render"))
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--run-root", default=None, help="directory for the phases' run directories (default: a new one)")
    a = ap.parse_args()
    if a.cmd == "render":
        render()
        return 0
    rigctl.stop_on_sigterm()
    run_root = Path(a.run_root) if a.run_root else rigctl.RUN_ROOT / f"features-{time.strftime('%Y%m%d-%H%M%S')}"
    run_root.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {"run": environment_line(), "versions": rigctl.installed_versions()}
    try:
        for p in a.phases.split(","):
            raw[p] = PHASES[p](run_root)
            print(f"features: phase {p} done", flush=True)
    except rigctl.RigError as e:
        print(f"features: {e}", file=sys.stderr)
        return 1
    gw = raw["versions"].get("gateway", rigctl.GATEWAY_VERSION)
    out = RAW_DIR / f"features-{gw}.json"
    out.write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
    print(render_version(raw))
    print(f"\n(raw results in {out.relative_to(REPO)}; `rig/features.py render` updates docs/gateway.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

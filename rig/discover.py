"""Find out, inside the real gateway, what it hands a plugin, what a refusal becomes, and what a
request costs; write the findings into the generated section of docs/gateway.md.

Phases, each on its own one-gateway rig (about 5 minutes in all):

1. contexts: the diagnostic probe plugin (rig/probe/rig_probe.py) records the GlobalContext
   ``user`` / ``tenant_id`` of tool and prompt hooks, compared with the known identities by hash
   only, and how many plugin instances the gateway builds over its 30 s manager lifetime;
2. refusals: the probe refuses every call; the HTTP status, headers and body on ``/rpc``
   (tools/call, prompts/get) and on a virtual server's MCP endpoint;
3. the gateway's own rate limiter left on, with this plugin at by_user 3/m: whose
   X-RateLimit-* headers reach the client;
4. cost: gateway and MCP server CPU per tools/call from /proc, admitted and refused, with and
   without SSL_CERT_DIR.

Usage: python rig/discover.py [--no-doc] [--cost-seconds 15]
       python rig/discover.py render     # rewrite the sections from docs/gateway-results/discover-*.json only

Each section is rendered from its raw results alone (the same code at measurement time and for
`render`, which `make docs` runs), so the committed doc text can be checked against them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "loadtest"))
import rigctl  # noqa: E402
from procstat import cpu_seconds, maps_contain  # noqa: E402
from report import REPO, environment_line, table, update_section  # noqa: E402

DOC = REPO / "docs" / "gateway.md"
HEADING = "## Measured by rig/discover.py"
RAW_DIR = REPO / "docs" / "gateway-results"  # raw results beside docs/gateway.md: discover-<version>.json
RAW: dict[str, Any] = {}  # what each phase measured, written to RAW_DIR with the doc section


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


def rpc(base: str, token: str, method: str, params: dict, path: str = "/rpc", headers: dict | None = None):
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    if path != "/rpc":
        headers = {**MCP_ACCEPT, **(headers or {})}
    return rigctl.http_json("POST", base + path, payload, token, headers=headers)


def with_rig(opts: rigctl.RigOptions, fn):
    run_dir = rigctl.up(opts)
    try:
        return fn(rigctl.load_rig(run_dir), run_dir)
    finally:
        rigctl.down(run_dir)


def probe_records(run_dir: Path) -> list[dict]:
    f = run_dir / "probe.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def virtual_server(base: str, admin: str, tool_name: str) -> str | None:
    """Create a public virtual server exposing the tool; its id, or None if the gateway refused."""
    st, tools, _ = rigctl.http_json("GET", base + "/tools", None, admin)
    tool_id = next(t["id"] for t in tools if t["name"] == tool_name)
    doc = {"server": {"name": "rigvs", "associated_tools": [tool_id]}, "visibility": "public"}
    st, server, _ = rigctl.http_json("POST", base + "/servers", doc, admin)
    return server["id"] if st in (200, 201) and isinstance(server, dict) else None


def mcp_session(base: str, token: str, server_id: str) -> dict[str, str]:
    """initialize on /servers/<id>/mcp; the headers later calls need (session id if the gateway gave one)."""
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rig", "version": "0"}}
    _, _, hdr = rpc(base, token, "initialize", init, path=f"/servers/{server_id}/mcp")
    return {"Mcp-Session-Id": hdr["mcp-session-id"]} if "mcp-session-id" in hdr else {}


def contexts(rebuild_wait_s: int) -> list[str]:
    def body(rig: dict[str, Any], run_dir: Path) -> list[str]:
        base, admin, user = rig["gateways"][0]["url"], rig["admin_token"], rig["users"][0]
        t_up = time.time()
        at_start = [r for r in probe_records(run_dir) if r["event"] == "init"]
        vs = virtual_server(base, admin, rig["tool"])
        st, gws, _ = rigctl.http_json("GET", base + "/gateways", None, admin)
        upstream_id = next((g["id"] for g in gws if g.get("name") == rigctl.TOOL_SERVER_NAME), "") if st == 200 else ""
        st, tools, _ = rigctl.http_json("GET", base + "/tools", None, admin)
        tool = next(t for t in tools if t["name"] == rig["tool"])
        tool_team = tool.get("teamId") or tool.get("team_id")  # the REST API answers in camelCase
        sent: dict[str, str] = {}  # hash of each X-Request-ID sent -> what the call was

        labels: dict[str, str] = {}  # probe-call-<n> -> what the call was
        response_ids: dict[str, str] = {}  # hash of a request/correlation id header of a response -> call

        def call(what: str, token: str, method: str, path: str = "/rpc", extra: dict | None = None) -> None:
            label = f"probe-call-{len(labels) + 1}"
            labels[label] = what
            rid = f"rig-{label}-{int(time.time() * 1000)}"
            sent[h(rid)] = what
            params = (
                {"name": rig["tool"], "arguments": {"text": label}}
                if method == "tools/call"
                else {"name": rig["prompt"], "arguments": {"name": label}}
            )
            _, _, hdr = rpc(base, token, method, params, path=path, headers={"X-Request-ID": rid, **(extra or {})})
            for k in ("x-request-id", "x-correlation-id"):
                if k in hdr:
                    response_ids[h(hdr[k])] = f"the response's {k} header"

        call("/rpc tools/call, user token", user["token"], "tools/call")
        call("/rpc tools/call, user token", user["token"], "tools/call")
        call("/rpc prompts/get, user token", user["token"], "prompts/get")
        call("/rpc tools/call, admin JWT", admin, "tools/call")
        if vs:
            path = f"/servers/{vs}/mcp"
            sess = mcp_session(base, user["token"], vs)
            call("/servers/<id>/mcp tools/call, user token", user["token"], "tools/call", path, sess)
        n_before_wait = len(probe_records(run_dir))
        time.sleep(rebuild_wait_s)
        call(f"/rpc tools/call, user token, {rebuild_wait_s} s later", user["token"], "tools/call")
        # a per-tool binding stored in the gateway's database, for the tool's team
        binding = "tool has no team: no binding possible"
        if tool_team:
            req = {"teams": {tool_team: {"policies": [{
                "tool_names": [rig["tool"]], "plugin_id": "rig_probe", "mode": "enforce", "priority": 10,
                "config": {"out": str(run_dir / "probe.jsonl"), "tag": "db-binding"}}]}}}  # fmt: skip
            st, doc, _ = rigctl.http_json("POST", base + "/v1/tools/plugin_bindings/", req, admin)
            binding = f"POST /v1/tools/plugin_bindings/: HTTP {st}"
            if st != 200:
                binding += f" {str(doc)[:160]}"
            call("/rpc tools/call, user token, after the binding", user["token"], "tools/call")
        recs = probe_records(run_dir)
        team_label = "team id (the caller's and the tool's)" if tool_team == user["team"] else "caller's team id"
        known = {h(user["email"]): "caller's email", h(user["team"]): team_label,
                 h(rigctl.ADMIN_EMAIL): "admin's email", h(upstream_id): "upstream gateway id",
                 h(tool["id"]): "tool id"}  # fmt: skip
        if vs:
            known[h(vs)] = "virtual server id"
        if tool_team:
            known.setdefault(h(tool_team), "tool's team id")
        RAW["contexts"] = {"calls": labels, "probe_records": recs, "binding": binding, "known_hashes": known,
                           "sent_hashes": sent, "response_id_hashes": response_ids, "inits_at_start": len(at_start),
                           "records_before_wait": n_before_wait, "rebuild_wait_s": rebuild_wait_s,
                           "t_up": t_up}  # fmt: skip
        return render_contexts(RAW["contexts"])

    return with_rig(rigctl.RigOptions(engines=["python"], plugin="probe", users=1, teams=1, tool_team=True), body)


def render_contexts(raw: dict[str, Any]) -> list[str]:
    """The contexts phase's lines, from its raw results alone."""
    recs, known, labels = raw["probe_records"], raw["known_hashes"], raw["calls"]
    sent, response_ids, rebuild_wait_s = raw["sent_hashes"], raw["response_id_hashes"], raw["rebuild_wait_s"]

    def shape(v: dict) -> str:
        if v["type"] == "None":
            return "None"
        if v["type"] == "dict":
            return "dict: " + ", ".join(f"{k}={known.get(x, '(other)')}" for k, x in v["hashed"].items())
        return f"{v['type']}: {known.get(v.get('hash', ''), '(other)')}"

    hooks = [r for r in recs if r["event"] in ("tool_pre_invoke", "prompt_pre_fetch")]
    rows = []
    rids = Counter(r["request_id"].get("hash") for r in hooks)
    for r in hooks:
        rid = r["request_id"]
        if rid.get("hash") in sent:
            rid_text = "the X-Request-ID the client sent"
        elif rid.get("hash") in response_ids:
            rid_text = f"{rid['type']}: {response_ids[rid['hash']]}, not the X-Request-ID sent"
        else:
            rid_text = f"{rid['type']}, not the X-Request-ID sent"
        rid_text += ", unique" if rids[rid.get("hash")] == 1 else ", shared with another call"
        rows.append([labels.get(r.get("label") or "", "?"), r["event"], f"{r['instance']} ({r['tag']})",
                     shape(r["user"]), shape(r["tenant_id"]), shape(r["server_id"]), rid_text])  # fmt: skip
    inits = [r for r in recs if r["event"] == "init"]
    shutdowns = [r for r in recs if r["event"] == "shutdown"]
    per_instance = Counter(f"{r['instance']} ({r['tag']})" for r in hooks)
    t0 = min((r["t"] for r in recs), default=raw["t_up"])
    life = ", ".join(f"{r['instance']} ({r['tag']}) at +{r['t'] - t0:.0f} s" for r in inits)
    ended = ", ".join(f"{r['instance']} at +{r['t'] - t0:.0f} s" for r in shutdowns) or "none"
    return [
        "**What a plugin receives** (probe plugin; each row one hook call, in order; identities compared by "
        "SHA-256, never stored; every call sent its own `X-Request-ID`; the MCP test server is registered in "
        "the user's team, so its tool is team-owned):",
        table(["call", "hook", "plugin instance (tag)", "user", "tenant_id", "server_id", "request_id"], rows),
        f"Plugin instances built: {len(inits)} ({raw['inits_at_start']} already at start-up, before any call): {life}. "
        f"Shut down: {ended}. Hook calls per instance: {dict(per_instance)}. Probe lines before the "
        f"{rebuild_wait_s} s wait: {raw['records_before_wait']}. Per-tool binding: {raw['binding']}; instances tagged "
        "`db-binding` were built from it (config from the database, not from the YAML).",
    ]


def refusals() -> list[str]:
    def body(rig: dict[str, Any], run_dir: Path) -> list[str]:
        base, admin, user = rig["gateways"][0]["url"], rig["admin_token"], rig["users"][0]
        rows = []

        def add(where: str, st: int, hdr: dict, doc: Any) -> None:
            shown = ", ".join(
                f"{k}: {v}" for k, v in sorted(hdr.items()) if k.startswith("x-probe") or k in ("retry-after",)
                or k.startswith("x-ratelimit")
            )
            rows.append([where, st, shown or "-", f"`{json.dumps(doc)[:220]}`"])

        vs = virtual_server(base, admin, rig["tool"])
        tool_args = {"name": rig["tool"], "arguments": {}}
        prompt_args = {"name": rig["prompt"], "arguments": {"name": "x"}}
        mcp = f"/servers/{vs}/mcp" if vs else None
        sess = mcp_session(base, user["token"], vs) if vs else {}
        # the probe admits the first two tool calls / prompt fetches of the process, then refuses
        st, doc, hdr = rpc(base, user["token"], "tools/call", tool_args)
        add("/rpc tools/call (admitted)", st, hdr, doc)
        if mcp:
            st, doc, hdr = rpc(base, user["token"], "tools/call", tool_args, path=mcp, headers=sess)
            add("/servers/<id>/mcp tools/call (admitted)", st, hdr, doc)
        else:
            st, doc, hdr = rpc(base, user["token"], "prompts/get", prompt_args)
            add("/rpc prompts/get (admitted)", st, hdr, doc)
        st, doc, hdr = rpc(base, user["token"], "tools/call", tool_args)
        add("/rpc tools/call (refused)", st, hdr, doc)
        st, doc, hdr = rpc(base, user["token"], "prompts/get", prompt_args)
        add("/rpc prompts/get (refused)", st, hdr, doc)
        if mcp:
            st, doc, hdr = rpc(base, user["token"], "tools/call", tool_args, path=mcp, headers=sess)
            add("/servers/<id>/mcp tools/call (refused)", st, hdr, doc)
        else:
            rows.append(["/servers (create)", "refused", "-", "-"])
        RAW["refusals"] = {"table": rows}
        return render_refusals(RAW["refusals"])

    return with_rig(rigctl.RigOptions(engines=["python"], plugin="probe", users=1, teams=1, probe_block_after=3), body)


def render_refusals(raw: dict[str, Any]) -> list[str]:
    """The refusals phase's lines, from its raw results alone."""
    rows = raw["table"]
    return [
        "**Headers and status over HTTP** (probe admitting with `X-Probe-Admitted: <n>` on its result, then "
        "refusing every call with HTTP 429, `Retry-After: 1`, `X-Probe-Call`):",
        table(["request", "status", "plugin headers in the response", "body"], rows),
    ]


LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")


def forks(rig: dict[str, Any], run_dir: Path) -> str:
    """Child processes of the gateway and whether the Go extension is mapped in them: the Go runtime must
    never cross a fork (the plugin loads in each serving process)."""
    gw = rig["gateways"][0]
    kids = [int(x) for x in Path(f"/proc/{gw['pid']}/task/{gw['pid']}/children").read_text().split()]
    with_go = [k for k in kids if maps_contain(k, "_pyext")]
    gw_go = maps_contain(gw["pid"], "_pyext")
    RAW["forks"] = {"children": len(kids), "children_with_go": len(with_go), "gateway_with_go": gw_go,
                    "children_cmd": sorted({rigctl._cmdline(k)[:120] for k in kids})}  # fmt: skip
    return render_forks(RAW["forks"])


def render_forks(raw: dict[str, Any]) -> str:
    return (
        f"Processes: the gateway process has {raw['children']} child process(es) of its own after these calls; the "
        f"Go extension is {'mapped' if raw['gateway_with_go'] else 'NOT mapped'} in the gateway and mapped in "
        f"{raw['children_with_go']} of its children (a child forked after the Go runtime started would have it mapped)."
    )


def gateway_limiter_clash() -> list[str]:
    def body(rig: dict[str, Any], run_dir: Path) -> list[str]:
        base, user = rig["gateways"][0]["url"], rig["users"][0]
        rows = []
        for n in range(1, 5):
            st, doc, hdr = rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
            msg = doc.get("error", {}).get("message", "") if isinstance(doc, dict) else ""
            rows.append([n, st] + [hdr.get(k, "-") for k in LIMIT_HEADERS] + [msg[:90] or "-"])
        RAW["limiter"] = {"table": rows}
        forks(rig, run_dir)
        return render_limiter(RAW["limiter"], RAW["forks"])

    opts = rigctl.RigOptions(
        engines=["go"], backend="memory", by_user="3/m", users=1, teams=1, gateway_rate_limiting=True
    )
    return with_rig(opts, body)


def render_limiter(raw: dict[str, Any], forks_raw: dict[str, Any]) -> list[str]:
    """The limiter phase's lines (with the fork check made on its rig), from its raw results alone."""
    rows = raw["table"]
    return [
        "**The gateway's own limiter left on** (`RATE_LIMITING_ENABLED=true`), this plugin (Go engine) at "
        "`by_user: 3/m`, memory backend, four calls by one user on `/rpc`:",
        table(["call", "status", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After",
               "message"], rows),  # fmt: skip
        render_forks(forks_raw),
    ]


def load_cpu(rig: dict[str, Any], run_dir: Path, seconds: float, threads: int) -> dict[str, float]:
    """Closed-loop tools/call load straight at the gateway; CPU ms per request of gateway and MCP server."""
    pids = {p["name"]: p["pid"] for p in json.loads((run_dir / "pids.json").read_text())}
    base, users = rig["gateways"][0]["url"], rig["users"]
    rpc(base, users[0]["token"], "tools/call", {"name": rig["tool"], "arguments": {}})  # builds the plugin manager
    before = {k: cpu_seconds(pids[k]) for k in ("gw1", "mcp-server")}
    count = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            rpc(base, users[i % len(users)]["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
            count[i] += 1

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    n = sum(count)
    after = {k: cpu_seconds(pids[k]) for k in ("gw1", "mcp-server")}
    return {
        "n": n,
        "rps": n / wall,
        "gw_ms": 1000 * (after["gw1"] - before["gw1"]) / max(1, n),
        "mcp_ms": 1000 * (after["mcp-server"] - before["mcp-server"]) / max(1, n),
        "ready_s": rig["gateways"][0].get("ready_s", 0.0),
    }


def cost(seconds: float) -> list[str]:
    cases = [
        ("admitted, SSL_CERT_DIR=/etc/ssl/certs (rig default)", dict(probe_block_after=None, no_ssl_cert_dir=False)),
        ("admitted, gateway default CA loading", dict(probe_block_after=None, no_ssl_cert_dir=True)),
        ("refused by the plugin, SSL_CERT_DIR set", dict(probe_block_after=1, no_ssl_cert_dir=False)),
    ]
    measured = []
    for label, kw in cases:
        opts = rigctl.RigOptions(engines=["python"], plugin="probe", users=2, teams=1, **kw)
        m = with_rig(opts, lambda rig, run_dir: load_cpu(rig, run_dir, seconds, threads=4))
        measured.append({"case": label, **m})
    RAW["cost"] = {"seconds": seconds, "cases": measured, "threads": 4}
    return render_cost(RAW["cost"])


def render_cost(raw: dict[str, Any]) -> list[str]:
    """The cost phase's lines, from its raw results alone."""
    seconds = raw["seconds"]
    rows = [[m["case"], m["n"], f"{m['rps']:.1f}", f"{m['gw_ms']:.1f}", f"{m['mcp_ms']:.1f}", f"{m['ready_s']:.1f}"]
            for m in raw["cases"]]  # fmt: skip
    return [
        f"**Cost of a tools/call** on `/rpc`, one gateway with the probe plugin, 4 client threads for {seconds:.0f} s "
        "each (client on the same machine), CPU from /proc/<pid>/stat:",
        table(["case", "requests", "req/s", "gateway CPU ms/req", "MCP server CPU ms/req", "gateway start-up s"], rows),
    ]


def install_times() -> list[str]:
    rows = []
    v = rigctl.GATEWAY_VERSION
    for what in (f"gateway-{v}", f"wheel-build-{v}", f"package-{v}"):
        f = rigctl.RUN_ROOT / f"install-{what}.json"
        if f.exists():
            d = json.loads(f.read_text())
            rows.append([d["detail"], d["seconds"], d["when"]])
    RAW["install"] = {"table": rows}
    return render_install(RAW["install"])


def render_install(raw: dict[str, Any]) -> list[str]:
    """The install-times lines, from the raw results alone."""
    rows = raw["table"]
    if not rows:
        return ["Install times: none recorded yet (rig/install.sh records them when it installs)."]
    return ["**Install times** recorded by rig/install.sh:", table(["step", "seconds", "when (UTC)"], rows)]


PHASES = ("install", "contexts", "refusals", "limiter", "cost")


#: The raw results' format: 2 holds every input of the section (render_section needs nothing else).
RAW_FORMAT = 2
RENDER = {
    "install": lambda raw: render_install(raw["install"]),
    "contexts": lambda raw: render_contexts(raw["contexts"]),
    "refusals": lambda raw: render_refusals(raw["refusals"]),
    "limiter": lambda raw: render_limiter(raw["limiter"], raw["forks"]),
    "cost": lambda raw: render_cost(raw["cost"]),
}


def render_section(raw: dict[str, Any]) -> tuple[str, str]:
    """(section name, markdown) of a discover run, from its raw results alone."""
    if raw.get("format") != RAW_FORMAT:
        raise ValueError(f"raw results of gateway {raw.get('versions', {}).get('gateway', '?')} without the inputs of "
                         f"format {RAW_FORMAT}: re-measure with rig/discover.py")  # fmt: skip
    versions = rigctl.versions_text(raw["versions"])
    parts = [line for p in PHASES if p in raw["phases"] for line in RENDER[p](raw)]
    text = "\n\n".join(
        [f"#### Gateway {raw['gateway']}", f"Run: {raw['run']}. {versions[0].upper()}{versions[1:]}, one gateway per phase.",
         *parts]
    )  # fmt: skip
    return f"discover-{raw['gateway']}", text


def render_saved(raw_dir: Path | None = None, stale: list[str] | None = None) -> dict[str, str]:
    """Every discover section whose raw results are in raw_dir (default docs/gateway-results/): name -> markdown.
    Raw results without the inputs (an older format) are named in ``stale`` when given, else raise ValueError."""
    out = {}
    for f in sorted((raw_dir or RAW_DIR).glob("discover-*.json")):
        try:
            name, text = render_section(json.loads(f.read_text(encoding="utf-8")))
        except ValueError as e:
            if stale is None:
                raise ValueError(f"{f.name}: {e}") from None
            stale.append(f"{f.name}: {e}")
            continue
        out[name] = text
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", nargs="?", choices=("run", "render"), default="run",
                    help="run: measure (default); render: rewrite the sections from docs/gateway-results/, run nothing")  # fmt: skip
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/gateway.md")
    ap.add_argument("--cost-seconds", type=float, default=15.0)
    ap.add_argument("--rebuild-wait-s", type=int, default=32)
    ap.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated subset (implies --no-doc unless all are run)"
    )
    a = ap.parse_args()
    if a.cmd == "render":
        stale: list[str] = []
        sections = render_saved(stale=stale)
        for name, text in sections.items():
            update_section(name, text, doc=DOC, heading=HEADING)
        print(f"docs/gateway.md: {len(sections)} discover section(s) re-rendered from {RAW_DIR.relative_to(REPO)}/")
        for msg in stale:
            print(f"discover render: NOT re-rendered, left as measured: {msg}", file=sys.stderr)
        return 0
    phases = [p.strip() for p in a.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        ap.error(f"unknown phase(s) {unknown}; known: {', '.join(PHASES)}")
    if set(phases) != set(PHASES):
        a.no_doc = True
    rigctl.stop_on_sigterm()
    env_line = environment_line()
    run = {
        "install": install_times,
        "contexts": lambda: contexts(a.rebuild_wait_s),
        "refusals": refusals,
        "limiter": gateway_limiter_clash,
        "cost": lambda: cost(a.cost_seconds),
    }
    try:
        for p in PHASES:
            if p in phases:
                run[p]()
    except rigctl.RigError as e:
        print(f"discover: {e}", file=sys.stderr)
        return 1
    versions = rigctl.installed_versions()
    raw = {"format": RAW_FORMAT, "run": env_line, "versions": versions, "phases": phases,
           "gateway": versions.get("gateway", rigctl.GATEWAY_VERSION), **RAW}  # fmt: skip
    data = json.dumps(raw, indent=1, sort_keys=True) + "\n"
    name, text = render_section(json.loads(data))  # rendered from exactly what is saved, as `render` will
    print(text)
    if not a.no_doc:
        update_section(name, text, doc=DOC, heading=HEADING)
        RAW_DIR.mkdir(parents=True, exist_ok=True)
        raw_file = RAW_DIR / f"{name}.json"
        raw_file.write_text(data, encoding="utf-8")
        print(f"\n(section {name!r} of docs/gateway.md updated; raw results in {raw_file.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from procstat import cpu_seconds  # noqa: E402
from report import REPO, environment_line, table, update_section  # noqa: E402

DOC = REPO / "docs" / "gateway.md"
HEADING = "## Measured by rig/discover.py"


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def rpc(base: str, token: str, method: str, params: dict, path: str = "/rpc"):
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return rigctl.http_json("POST", base + path, payload, token)


def with_rig(opts: rigctl.RigOptions, fn):
    run_dir = rigctl.up(opts)
    try:
        return fn(rigctl.load_rig(run_dir), run_dir)
    finally:
        rigctl.down(run_dir)


def probe_records(run_dir: Path) -> list[dict]:
    f = run_dir / "probe.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def contexts(rebuild_wait_s: int) -> list[str]:
    def body(rig: dict[str, Any], run_dir: Path) -> list[str]:
        base, admin, user = rig["gateways"][0]["url"], rig["admin_token"], rig["users"][0]
        for _ in range(3):
            rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
        rpc(base, user["token"], "prompts/get", {"name": rig["prompt"], "arguments": {"name": "x"}})
        rpc(base, admin, "tools/call", {"name": rig["tool"], "arguments": {}})
        time.sleep(rebuild_wait_s)
        rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
        recs = probe_records(run_dir)
        known = {h(user["email"]): "caller's email", h(user["team"]): "caller's team id",
                 h(rigctl.ADMIN_EMAIL): "admin's email"}  # fmt: skip
        rows = []
        for r in recs:
            if r["event"] not in ("tool_pre_invoke", "prompt_pre_fetch"):
                continue
            u, t = r["user"], r["tenant_id"]
            if u["type"] == "dict":
                ushape = "dict: " + ", ".join(f"{k}={known.get(v, '(other)')}" for k, v in u["hashed"].items())
            else:
                ushape = f"{u['type']}: {known.get(u.get('hash', ''), '(other)')}"
            tshape = "None" if t["type"] == "None" else f"{t['type']}: {known.get(t['hash'], '(other)')}"
            caller = "admin JWT, no team" if "admin's email" in ushape else "user API token, team-scoped"
            rows.append([r["event"], r["name"], caller, r["instance"], ushape, tshape])
        inits = sum(1 for r in recs if r["event"] == "init")
        shutdowns = sum(1 for r in recs if r["event"] == "shutdown")
        per_instance = Counter(r["instance"] for r in recs if r["event"] in ("tool_pre_invoke", "prompt_pre_fetch"))
        return [
            "**What a plugin receives** (probe plugin; identities compared by SHA-256, never stored):",
            table(["hook", "name", "caller", "plugin instance", "user", "tenant_id"], rows),
            f"Plugin instances created: {inits}, shut down: {shutdowns}; hook calls per instance: "
            f"{dict(per_instance)}. The last call came {rebuild_wait_s} s after the others.",
        ]

    return with_rig(rigctl.RigOptions(engines=["python"], plugin="probe", users=1, teams=1), body)


def refusals() -> list[str]:
    def body(rig: dict[str, Any], run_dir: Path) -> list[str]:
        base, admin, user = rig["gateways"][0]["url"], rig["admin_token"], rig["users"][0]
        rows = []

        def add(where: str, st: int, hdr: dict, doc: Any) -> None:
            shown = ", ".join(
                f"{k}: {v}" for k, v in sorted(hdr.items()) if k.startswith("x-probe") or k == "retry-after"
            )
            rows.append([where, st, shown or "-", f"`{json.dumps(doc)[:220]}`"])

        for method, params in (
            ("tools/call", {"name": rig["tool"], "arguments": {}}),
            ("prompts/get", {"name": rig["prompt"], "arguments": {"name": "x"}}),
        ):
            st, doc, hdr = rpc(base, user["token"], method, params)
            add(f"/rpc {method}", st, hdr, doc)
        st, tools, _ = rigctl.http_json("GET", base + "/tools", None, admin)
        tool_id = next(t["id"] for t in tools if t["name"] == rig["tool"])
        doc = {"server": {"name": "rigvs", "associated_tools": [tool_id]}, "visibility": "public"}
        st, server, _ = rigctl.http_json("POST", base + "/servers", doc, admin)
        if st in (200, 201):
            mcp = f"/servers/{server['id']}/mcp"
            init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rig", "version": "0"}}
            rpc(base, user["token"], "initialize", init, path=mcp)
            st, doc, hdr = rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}}, path=mcp)
            add("/servers/<id>/mcp tools/call", st, hdr, doc)
        else:
            rows.append(["/servers (create)", st, "-", str(server)[:200]])
        return [
            "**A refusal over HTTP** (probe refusing every call with HTTP 429, `Retry-After: 1`, `X-Probe-Call`):",
            table(["request", "status", "headers", "body"], rows),
        ]

    return with_rig(rigctl.RigOptions(engines=["python"], plugin="probe", users=1, teams=1, probe_block_after=1), body)


def gateway_limiter_clash() -> list[str]:
    def body(rig: dict[str, Any], run_dir: Path) -> list[str]:
        base, user = rig["gateways"][0]["url"], rig["users"][0]
        rows = []
        for n in range(1, 5):
            st, doc, hdr = rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
            msg = doc.get("error", {}).get("message", "") if isinstance(doc, dict) else ""
            rows.append([n, st] + [hdr.get(k, "-") for k in ("x-ratelimit-limit", "x-ratelimit-remaining", "retry-after")]
                        + [msg[:90] or "-"])  # fmt: skip
        return [
            "**The gateway's own limiter left on** (`RATE_LIMITING_ENABLED=true`), plugin `by_user: 3/m`, memory "
            "backend, four calls by one user:",
            table(["call", "status", "X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After", "message"], rows),
        ]

    opts = rigctl.RigOptions(
        engines=["python"], backend="memory", by_user="3/m", users=1, teams=1, gateway_rate_limiting=True
    )
    return with_rig(opts, body)


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
    rows = []
    for label, kw in cases:
        opts = rigctl.RigOptions(engines=["python"], plugin="probe", users=2, teams=1, **kw)
        m = with_rig(opts, lambda rig, run_dir: load_cpu(rig, run_dir, seconds, threads=4))
        rows.append(
            [label, m["n"], f"{m['rps']:.1f}", f"{m['gw_ms']:.1f}", f"{m['mcp_ms']:.1f}", f"{m['ready_s']:.1f}"]
        )
    return [
        f"**Cost of a tools/call** on `/rpc`, one gateway with the probe plugin, 4 client threads for {seconds:.0f} s "
        "each (client on the same machine), CPU from /proc/<pid>/stat:",
        table(["case", "requests", "req/s", "gateway CPU ms/req", "MCP server CPU ms/req", "gateway start-up s"], rows),
    ]


def install_times() -> list[str]:
    rows = []
    for what in ("gateway", "package"):
        f = rigctl.RUN_ROOT / f"install-{what}.json"
        if f.exists():
            d = json.loads(f.read_text())
            rows.append([d["detail"], d["seconds"], d["when"]])
    if not rows:
        return ["Install times: none recorded yet (rig/install.sh records them when it installs)."]
    return ["**Install times** recorded by rig/install.sh:", table(["step", "seconds", "when (UTC)"], rows)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/gateway.md")
    ap.add_argument("--cost-seconds", type=float, default=15.0)
    ap.add_argument("--rebuild-wait-s", type=int, default=32)
    a = ap.parse_args()
    env_line = environment_line()
    try:
        parts = [
            *install_times(),
            *contexts(a.rebuild_wait_s),
            *refusals(),
            *gateway_limiter_clash(),
            *cost(a.cost_seconds),
        ]
    except rigctl.RigError as e:
        print(f"discover: {e}", file=sys.stderr)
        return 1
    text = "\n\n".join([f"Run: {env_line}. Gateway 1.0.7, one gateway per phase.", *parts])
    print(text)
    if not a.no_doc:
        update_section("discover", text, doc=DOC, heading=HEADING)
        print("\n(section 'discover' of docs/gateway.md updated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

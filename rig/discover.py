"""Find out, inside the real gateway, what it hands a plugin and what a violation becomes.

Runs a one-gateway rig with the diagnostic probe plugin (rig/probe/rig_probe.py) and prints facts
that docs/gateway.md relies on: the shape of GlobalContext.user / tenant_id per hook, how many
plugin instances the gateway builds (per tool, per 30 s), and the HTTP response of a 429
violation on /rpc (tools/call and prompts/get) and on a virtual server's MCP endpoint.
Identities are compared by hash only. Takes about 90 s. Usage: python rig/discover.py
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rigctl  # noqa: E402


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def rpc(base: str, token: str, method: str, params: dict, path: str = "/rpc"):
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return rigctl.http_json("POST", base + path, payload, token)


def probe_records(run_dir: Path) -> list[dict]:
    f = run_dir / "probe.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def contexts_and_rebuilds(rebuild_wait_s: int) -> None:
    opts = rigctl.RigOptions(engines=["python"], plugin="probe", users=1, teams=1)
    run_dir = rigctl.up(opts)
    try:
        rig = rigctl.load_rig(run_dir)
        base, admin, user = rig["gateways"][0]["url"], rig["admin_token"], rig["users"][0]
        for _ in range(3):
            rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
        rpc(base, user["token"], "prompts/get", {"name": rig["prompt"], "arguments": {"name": "x"}})
        rpc(base, admin, "tools/call", {"name": rig["tool"], "arguments": {}})
        print(f"waiting {rebuild_wait_s} s for the gateway's plugin-manager cache lifetime to pass ...")
        time.sleep(rebuild_wait_s)
        rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}})
        recs = probe_records(run_dir)
        inits = [r for r in recs if r["event"] == "init"]
        shutdowns = [r for r in recs if r["event"] == "shutdown"]
        print(f"plugin instances created: {len(inits)}, shut down: {len(shutdowns)}")
        expect = {h(user["email"]): "the caller's email", h(user["team"]): "the caller's team id",
                  h(rigctl.ADMIN_EMAIL): "the admin's email"}  # fmt: skip
        for r in recs:
            if r["event"] in ("tool_pre_invoke", "prompt_pre_fetch"):
                u = r["user"]
                if u["type"] == "dict":
                    ushape = "dict " + ", ".join(f"{k}={expect.get(v, 'other')}" for k, v in u["hashed"].items())
                else:
                    ushape = f"{u['type']} = {expect.get(u.get('hash', ''), 'other')}"
                t = r["tenant_id"]
                tshape = "None" if t["type"] == "None" else f"{t['type']} = {expect.get(t['hash'], 'other')}"
                print(
                    f"  {r['event']:<16} name={r['name']:<18} instance={r['instance']} user: {ushape}; tenant_id: {tshape}"
                )
        per_instance = Counter(r["instance"] for r in recs if r["event"] == "tool_pre_invoke")
        print(f"tool calls per plugin instance: {dict(per_instance)}")
    finally:
        rigctl.down(run_dir)


def violation_shapes() -> None:
    opts = rigctl.RigOptions(engines=["python"], plugin="probe", users=1, teams=1, probe_block_after=1)
    run_dir = rigctl.up(opts)
    try:
        rig = rigctl.load_rig(run_dir)
        base, admin, user = rig["gateways"][0]["url"], rig["admin_token"], rig["users"][0]
        for method, params in (
            ("tools/call", {"name": rig["tool"], "arguments": {}}),
            ("prompts/get", {"name": rig["prompt"], "arguments": {"name": "x"}}),
        ):
            st, body, hdr = rpc(base, user["token"], method, params)
            shown = {k: v for k, v in hdr.items() if k.startswith("x-probe") or k in ("retry-after", "content-type")}
            print(f"/rpc {method}: HTTP {st} headers {shown}\n  body {json.dumps(body)[:300]}")
        # the MCP endpoint of a virtual server holding the tool
        st, tools, _ = rigctl.http_json("GET", base + "/tools", None, admin)
        tool_id = next(t["id"] for t in tools if t["name"] == rig["tool"])
        doc = {"server": {"name": "rigvs", "associated_tools": [tool_id]}, "visibility": "public"}
        st, server, _ = rigctl.http_json("POST", base + "/servers", doc, admin)
        if st not in (200, 201):
            print(f"virtual server creation: HTTP {st} {str(server)[:200]}")
            return
        mcp = f"/servers/{server['id']}/mcp"
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rig", "version": "0"}}
        st, body, hdr = rpc(base, user["token"], "initialize", init, path=mcp)
        print(f"{mcp} initialize: HTTP {st}, mcp-session-id {'present' if 'mcp-session-id' in hdr else 'absent'}")
        st, body, hdr = rpc(base, user["token"], "tools/call", {"name": rig["tool"], "arguments": {}}, path=mcp)
        shown = {k: v for k, v in hdr.items() if k.startswith("x-probe") or k == "retry-after"}
        print(f"{mcp} tools/call: HTTP {st} headers {shown}\n  body {json.dumps(body)[:300]}")
    finally:
        rigctl.down(run_dir)


def main() -> int:
    try:
        contexts_and_rebuilds(rebuild_wait_s=32)
        violation_shapes()
    except rigctl.RigError as e:
        print(f"discover: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

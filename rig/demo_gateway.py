"""Demo: the plugin inside one real ContextForge gateway, memory backend, over plain HTTP.

Starts a one-gateway rig (by_user 5/m, fixed window), calls the test tool as one user until the
plugin refuses, shows one more call as another user (its own counter), prints the status and the
rate-limit headers of every response, then stops everything. Bounded: at most 12 calls.

    python rig/demo_gateway.py            # RATE_LIMITER_ENGINE from the environment (default auto)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rigctl  # noqa: E402

LIMIT = "5/m"
MAX_CALLS = 12
HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")


def call(rig: dict, user: dict, n: int) -> tuple[int, dict, object]:
    payload = {
        "jsonrpc": "2.0",
        "id": n,
        "method": "tools/call",
        "params": {"name": rig["tool"], "arguments": {"text": "hi"}},
    }
    return rigctl.http_json("POST", rig["gateways"][0]["url"] + "/rpc", payload, user["token"])


def show(n: int, who: str, status: int, headers: dict, body: object) -> None:
    shown = "  ".join(f"{h}: {headers[h]}" for h in HEADERS if h in headers)
    if status == 200 and isinstance(body, dict) and "result" in body:
        what = "admitted (the gateway drops plugin headers on admitted calls)" if not shown else "admitted"
    else:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)[:120]
        what = f"refused: {message}"
    print(f"call {n:2d}  {who}  HTTP {status}  {shown or '-'}")
    print(f"          {what}")
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        print(f"          X-RateLimit-Reset is {int(reset) - time.time():.0f} s from now")


def main() -> int:
    engine = os.environ.get("RATE_LIMITER_ENGINE", "auto") or "auto"
    opts = rigctl.RigOptions(
        engines=[engine], backend="memory", algorithm="fixed_window", by_user=LIMIT, users=2, teams=1,
        fail_mode="open",
    )  # fmt: skip
    print(f"demo: starting one gateway (RATE_LIMITER_ENGINE={engine}) with the plugin, memory backend, by_user {LIMIT}")
    t0 = time.monotonic()
    try:
        run_dir = rigctl.up(opts)
    except rigctl.RigError as e:
        print(f"demo: rig up failed: {e}", file=sys.stderr)
        return 1
    try:
        rig = rigctl.load_rig(run_dir)
        print(f"demo: gateway up in {time.monotonic() - t0:.0f} s at {rig['gateways'][0]['url']}; plugin config:")
        print("      " + json.dumps(rig["plugin_config"]))
        alice, bob = rig["users"][0], rig["users"][1]
        refused = False
        n = 0
        while n < MAX_CALLS - 1 and not refused:
            n += 1
            status, body, headers = call(rig, alice, n)
            show(n, "user A", status, headers, body)
            refused = status == 429
        n += 1
        status, body, headers = call(rig, bob, n)
        show(n, "user B", status, headers, body)
        ok = refused and status == 200
        pid = rig["gateways"][0]["pid"]
        try:
            go = any("_pyext" in line for line in open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace"))
        except OSError:
            go = False
        print(f"demo: engine in the gateway process: {'go (the Go extension is loaded)' if go else 'python'}")
        print(
            "demo: "
            + ("user A was limited after its quota, user B still admitted: per-user limits work in the real gateway"
               if ok else "unexpected: user A was never limited or user B was refused")
        )  # fmt: skip
        return 0 if ok else 1
    finally:
        for line in rigctl.down(run_dir):
            print(f"demo: stopped {line}")


if __name__ == "__main__":
    sys.exit(main())

"""Demo: the plugin inside one real ContextForge gateway, memory backend, over plain HTTP.

Starts a one-gateway rig (by_user 5/m, fixed window; gateway GATEWAY_VERSION, default 1.1.0), calls
the test tool as one user until the plugin refuses, shows one more call as another user (its own
counter), prints the status and the rate-limit headers of every response, then stops everything.
Bounded: at most 12 calls. The plugin lists its HTTP hooks too (http_pre_request, http_post_request),
so admitted responses carry X-RateLimit-Limit/-Remaining/-Reset as well (README, "Headers on admitted
calls").

It passes only if user A is refused right after its 5 calls (HTTP 429 from the plugin), user B is
still admitted, every admitted response carries its caller's own X-RateLimit-Remaining (A: 4, 3, 2,
1, 0; B: 4), and the engine that served the calls is the one expected: Go, unless
RATE_LIMITER_ENGINE=python. The evidence for the engine: the plugin's start-up line in the gateway's
log ("rate limiter <name>: engine=go ..."), one per plugin instance the gateway built, and the Go
extension mapped into the gateway process (/proc/<pid>/maps).

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
LIMIT_COUNT, WINDOW_S = 5, 60
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
        what = "admitted (no plugin headers on this admitted call)" if not shown else "admitted"
    else:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)[:120]
        what = f"refused: {message}"
    print(f"call {n:2d}  {who}  HTTP {status}  {shown or '-'}")
    print(f"          {what}")
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        print(f"          X-RateLimit-Reset is {int(reset) - time.time():.0f} s from now")


def engine_evidence(rig: dict, run_dir: Path) -> tuple[list[str], bool]:
    """The engines the gateway's plugin instances logged, and whether the Go extension is mapped."""
    gw = rig["gateways"][0]
    log = (run_dir / f"{gw['name']}.log").read_text(encoding="utf-8", errors="replace")
    engines = [d["engine"] for d in rigctl.plugin_engine_lines(log)]
    try:
        with open(f"/proc/{gw['pid']}/maps", encoding="utf-8", errors="replace") as f:
            mapped = any("_pyext" in line for line in f)
    except OSError:
        mapped = False
    return engines, mapped


def main() -> int:
    rigctl.stop_on_sigterm()
    engine = os.environ.get("RATE_LIMITER_ENGINE", "auto") or "auto"
    expected = "python" if engine == "python" else "go"
    opts = rigctl.RigOptions(
        engines=[engine], backend="memory", algorithm="fixed_window", by_user=LIMIT, users=2, teams=1,
        fail_mode="open", gateway_log_level="INFO",  # INFO: the plugin's start-up line names its engine
        http_hooks=True,  # admitted calls' X-RateLimit-* through the plugin's http_post_request hook
    )  # fmt: skip
    print(
        f"demo: starting one gateway ({rigctl.versions_text(rigctl.installed_versions())}, "
        f"RATE_LIMITER_ENGINE={engine}) with the plugin, memory backend, by_user {LIMIT}"
    )
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
        # A fixed window: start with enough of the minute left that user A's calls share one window.
        left = WINDOW_S - time.time() % WINDOW_S
        if left < 15:
            print(f"demo: waiting {left:.0f} s for the next {WINDOW_S} s window")
            time.sleep(left + 0.1)
        refused = False
        admitted = 0
        remaining: list[str] = []  # X-RateLimit-Remaining of user A's admitted calls
        n = 0
        while n < MAX_CALLS - 1 and not refused:
            n += 1
            status, body, headers = call(rig, alice, n)
            show(n, "user A", status, headers, body)
            refused = status == 429
            admitted += status == 200
            if status == 200:
                remaining.append(headers.get("x-ratelimit-remaining", "-"))
        n += 1
        status, body, headers = call(rig, bob, n)
        show(n, "user B", status, headers, body)
        engines, mapped = engine_evidence(rig, run_dir)
        print(
            f"demo: plugin instances the gateway built: {len(engines)}, their engines (start-up log lines): "
            f"{', '.join(engines) or 'none logged'}; Go extension mapped in pid {rig['gateways'][0]['pid']}: "
            f"{'yes' if mapped else 'no'}"
        )
        problems = []
        if not refused:
            problems.append(f"user A was never refused in {n - 1} calls")
        elif admitted != LIMIT_COUNT:
            problems.append(f"user A was admitted {admitted} times before the 429, the limit is {LIMIT_COUNT}")
        if status != 200:
            problems.append(f"user B got HTTP {status}, not 200")
        want = [str(LIMIT_COUNT - i) for i in range(1, admitted + 1)]
        if remaining != want:
            problems.append(f"user A's admitted calls carried X-RateLimit-Remaining {remaining}, expected {want}")
        if status == 200 and headers.get("x-ratelimit-remaining") != str(LIMIT_COUNT - 1):
            problems.append(
                f"user B's admitted call carried X-RateLimit-Remaining {headers.get('x-ratelimit-remaining', '-')}, "
                f"expected its own {LIMIT_COUNT - 1}"
            )
        if not engines:
            problems.append("the gateway log has no start-up line of the plugin: which engine ran is unknown")
        elif any(e != expected for e in engines):
            problems.append(f"expected every plugin instance on the {expected} engine, the log says {engines}")
        if mapped != (expected == "go"):
            problems.append(f"Go extension {'not ' if not mapped else ''}mapped in the gateway, expected {expected}")
        if problems:
            print("demo: FAILED: " + "; ".join(problems))
            return 1
        print(
            f"demo: user A was refused after its {LIMIT_COUNT} calls, user B still admitted, every admitted response "
            f"carried its caller's own X-RateLimit-Remaining, and the {expected} engine "
            f"served every call: per-user limits work in the real gateway "
            f"{rig.get('versions', {}).get('gateway', '?')}"
        )
        return 0
    finally:
        for line in rigctl.down(run_dir):
            print(f"demo: stopped {line}")


if __name__ == "__main__":
    sys.exit(main())

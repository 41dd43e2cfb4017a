"""`make demo`: a scripted burst of tool calls through the rate limiter in the real cpex PluginManager.

The plugin is loaded from examples/demo_plugins.yaml exactly as the gateway
loads it (memory backend, by_user 5/s, by_tool search 3/s, sliding window).
Each call goes through ``PluginManager.invoke_hook`` like a gateway request.

About headers: cpex keeps the headers of a violation (a blocked call's 429
carries them to the client) but drops ``http_headers`` of admitted calls from
the merged result. So blocked calls print the headers the client would get,
admitted calls print that cpex dropped them, and a last step calls the hook
on the plugin instance the manager loaded, to show the X-RateLimit-* headers
the plugin does produce for admitted calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from cpex.framework import GlobalContext, PluginContext, PluginManager, ToolHookType, ToolPreInvokePayload

CONFIG = Path(__file__).with_name("demo_plugins.yaml")
PLUGIN_NAME = "rate_limiter"

# (user, tool, why this call is in the script)
BURST = [
    ("alice@example.com", "search", "search allows 3/s for everyone"),
    ("alice@example.com", "search", ""),
    ("alice@example.com", "search", ""),
    ("alice@example.com", "search", "4th search in the second: the tool limit refuses it"),
    ("alice@example.com", "fetch", "fetch has no tool limit; alice's own 5/s applies"),
    ("alice@example.com", "fetch", "alice's 5th admitted call (the refused one did not count)"),
    ("alice@example.com", "fetch", "6th: alice's user limit refuses it"),
    ("bob@example.com", "search", "bob shares the search limit with alice"),
    ("bob@example.com", "fetch", "bob has his own user counter"),
]


def _headers(headers: dict[str, str] | None) -> str:
    if not headers:
        return "-"
    return " ".join(f"{k}={v}" for k, v in headers.items())


async def _call(pm: PluginManager, n: int, user: str, tool: str) -> tuple[str, str]:
    payload = ToolPreInvokePayload(name=tool, args={"q": "demo"})
    context = GlobalContext(request_id=f"demo-{n}", user=user, tenant_id="team-demo")
    result, _ = await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, payload, global_context=context)
    violation = result.violation
    if result.continue_processing:
        return "admitted", "(success-path headers dropped by cpex)"
    if violation is None:
        raise RuntimeError("cpex stopped the call without a violation")
    dimension = (violation.details or {}).get("dimension", "?")
    outcome = f"BLOCKED {violation.http_status_code} {violation.code} ({dimension})"
    return outcome, _headers(violation.http_headers)


async def main() -> int:
    # cpex reports its own loading at INFO; keep the demo output to the calls.
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cpex").setLevel(logging.ERROR)

    PluginManager.reset()
    pm = PluginManager(str(CONFIG))
    await pm.initialize()
    if pm.plugin_count != 1:
        print(f"demo: the plugin did not load (plugin_count={pm.plugin_count}); see the log above", file=sys.stderr)
        return 1
    plugin = pm.get_plugin(PLUGIN_NAME)
    engine = getattr(plugin, "engine", None)
    print(f"config: {CONFIG.relative_to(Path.cwd()) if CONFIG.is_relative_to(Path.cwd()) else CONFIG}")
    print(
        f"engine: {getattr(engine, 'name', '?')} "
        f"(RATE_LIMITER_ENGINE={os.environ.get('RATE_LIMITER_ENGINE', '') or 'auto (unset)'})"
    )
    print("limits: by_user 5/s, by_tool search 3/s, sliding_window, memory backend")
    print(
        "headers: a blocked call shows the 429 violation's headers (what the client receives); cpex drops the\n"
        "         headers of admitted calls, so the last step calls the loaded plugin's hook directly to show them\n"
    )

    try:
        print(f"{'#':>2}  {'user':<18} {'tool':<7} {'outcome':<34} headers")
        for n, (user, tool, why) in enumerate(BURST, start=1):
            outcome, headers = await _call(pm, n, user, tool)
            print(f"{n:>2}  {user:<18} {tool:<7} {outcome:<34} {headers}")
            if why:
                print(f"    {'':<18} {'':<7} ^ {why}")

        print("\nwaiting 1.1 s: the sliding window lets the oldest calls expire ...")
        await asyncio.sleep(1.1)
        n = len(BURST) + 1
        outcome, headers = await _call(pm, n, "alice@example.com", "search")
        print(f"{n:>2}  {'alice@example.com':<18} {'search':<7} {outcome:<34} {headers}")

        # The same hook on the instance the manager loaded: this is what a
        # direct caller sees for an admitted call (and what cpex drops).
        print("\ndirect call of the loaded plugin's tool_pre_invoke (shows admitted-call headers):")
        context = PluginContext(global_context=GlobalContext(request_id="demo-direct", user="carol@example.com"))
        result = await plugin.tool_pre_invoke(ToolPreInvokePayload(name="fetch", args={}), context)
        print(f"    carol@example.com fetch: continue_processing={result.continue_processing}")
        print(f"    http_headers: {_headers(result.http_headers)}")
    finally:
        await pm.shutdown()
        PluginManager.reset()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

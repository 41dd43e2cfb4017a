"""A tiny WSGI app that serves the rate limiter plugin, for the gunicorn --preload fork tests.

The plugin is built at import time, so with ``gunicorn --preload`` it is
created in the master and inherited by every forked worker: the situation of
a gateway that loads plugins before forking. Each HTTP request is one
``tool_pre_invoke`` call, answered 200 (admitted) / 429 (RATE_LIMIT) / 503
(BACKEND_UNAVAILABLE) with a JSON body naming the worker pid and engine.

Environment: ``RL_CONFIG`` (the plugin's config, JSON); ``RL_WARMUP=1`` makes
one hook call in the master before the fork (which starts the Go runtime
there when the Go engine serves, so workers inherit a started runtime);
``RL_SERVE_DELAY_MS`` holds each request that long after the hook, so that a
sync worker stays busy and concurrent requests spread over the workers (a
fast reply lets one worker win every accept()).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Callable, Iterable

from cpex.framework import GlobalContext, PluginConfig, PluginContext, ToolPreInvokePayload
from rate_limiter_go.plugin import RateLimiterPlugin

PLUGIN = RateLimiterPlugin(
    PluginConfig(
        name="gunicorn-fork-test",
        kind="rate_limiter_go.plugin.RateLimiterPlugin",
        hooks=["tool_pre_invoke"],
        config=json.loads(os.environ["RL_CONFIG"]),
    )
)
SERVE_DELAY_S = int(os.environ.get("RL_SERVE_DELAY_MS", "0")) / 1000
_loops: dict[int, asyncio.AbstractEventLoop] = {}


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop per process: the Redis clients of the engines belong to the loop that first used them."""
    pid = os.getpid()
    loop = _loops.get(pid)
    if loop is None:
        loop = _loops[pid] = asyncio.new_event_loop()
    return loop


def _call(user: str) -> Any:
    ctx = PluginContext(global_context=GlobalContext(request_id="r", user=user))
    return _loop().run_until_complete(
        asyncio.wait_for(PLUGIN.tool_pre_invoke(ToolPreInvokePayload(name="work", args={}), ctx), 10)
    )


if os.environ.get("RL_WARMUP") == "1":
    _call("warmup@example.com")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    result = _call(environ.get("QUERY_STRING") or "fork-user@example.com")
    if result.continue_processing:
        status, code = "200 OK", "admitted" if result.http_headers else "fail_open"
    elif result.violation.code == "RATE_LIMIT":
        status, code = "429 Too Many Requests", "RATE_LIMIT"
    else:
        status, code = "503 Service Unavailable", result.violation.code
    if SERVE_DELAY_S:
        time.sleep(SERVE_DELAY_S)
    body = json.dumps({"pid": os.getpid(), "engine": PLUGIN.engine.name, "outcome": code}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

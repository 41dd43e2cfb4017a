"""Throwaway (kept as the method of this directory's figures): per-call CPU time of the hook, the floor and the engine calls (issue 13, targets 2-3).

Calls each coroutine with ``coro.send(None)`` (the hooks never suspend on the memory
backend), so the figures are the hook's own CPU time without an event loop. timeit with
time.process_time, best of REPEAT x NUMBER. Run: PYTHONPATH=python:bench .venv/bin/python hook_ab.py
"""

import os
import sys
import time
import timeit

from cpex.framework import GlobalContext, PluginConfig, PluginContext, ToolPreInvokePayload
from rate_limiter_go import _native
from rate_limiter_go.plugin import RateLimiterPlugin
from rlbench.floor import FloorPlugin

NUMBER = int(os.environ.get("NUMBER", "100000"))
REPEAT = int(os.environ.get("REPEAT", "5"))
CFG3 = {"by_user": "1000000/s", "by_tenant": "1000000/s", "by_tool": {"search": "1000000/s"}}
BLK = {"by_user": "1/h"}


def plugin(engine, raw, name):
    os.environ["RATE_LIMITER_ENGINE"] = engine
    return RateLimiterPlugin(PluginConfig(name=name, kind="x", hooks=["tool_pre_invoke"], config=raw))


gctx = GlobalContext(request_id="r1", user="alice@example.com", tenant_id="team-a", server_id="server-1")
ctx = PluginContext(global_context=gctx)
payload = ToolPreInvokePayload(name="search", args={"q": "x"})


def run(coro):
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise RuntimeError("suspended")


go3, py3 = plugin("go", CFG3, "h-go3"), plugin("python", CFG3, "h-py3")
gob, pyb = plugin("go", BLK, "h-gob"), plugin("python", BLK, "h-pyb")
fa = FloorPlugin(PluginConfig(name="fa", kind="x", config={"path": "admitted"}))
fb = FloorPlugin(PluginConfig(name="fb", kind="x", config={"path": "blocked"}))
for p in (go3, py3, gob, pyb):
    run(p.tool_pre_invoke(payload, ctx))
    r = run(p.tool_pre_invoke(payload, ctx))
assert r.violation is not None
mod = _native.load_native()
raw = mod._pyext
h = go3.engine._handle
ge = go3.engine
cases = {
    "noop_crossing": lambda: raw.pyext_Add(1, 2),
    "raw_evaluate_3dim": lambda: raw.pyext_Evaluate(h, "alice@example.com", "", "team-a", "search", 0),
    "goengine_evaluate_3dim": lambda: ge.evaluate("alice@example.com", "team-a", "search"),
    "floor_admitted": lambda: run(fa.tool_pre_invoke(payload, ctx)),
    "go_hook_admitted_3dim": lambda: run(go3.tool_pre_invoke(payload, ctx)),
    "py_hook_admitted_3dim": lambda: run(py3.tool_pre_invoke(payload, ctx)),
    "floor_blocked": lambda: run(fb.tool_pre_invoke(payload, ctx)),
    "go_hook_blocked": lambda: run(gob.tool_pre_invoke(payload, ctx)),
    "py_hook_blocked": lambda: run(pyb.tool_pre_invoke(payload, ctx)),
}
only = sys.argv[1:]
print("load", os.getloadavg())
for name, fn in cases.items():
    if only and name not in only:
        continue
    fn()
    best = min(timeit.repeat(fn, number=NUMBER, repeat=REPEAT, timer=time.process_time))
    print(f"{name}\t{best / NUMBER * 1e9:.0f}")
print("load", os.getloadavg())

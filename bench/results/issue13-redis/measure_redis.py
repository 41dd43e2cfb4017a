"""Issue 13 targets 4 and 5: the Go engine on Redis against a bare redis-py asyncio EVALSHA of a no-op script.

Run from the repository root after `make build`:
    PYTHONPATH=python:tests_py .venv/bin/python bench/results/issue13-redis/measure_redis.py [label]

One private redis-server, one process, one event loop per measurement. Subjects, alternated in rounds:
- bare: ``redis.asyncio.Redis.evalsha(sha_of("return 1"), 0)``, pool as large as the concurrency;
- go: ``GoEngine.check("userN", None, None)``, fixed window, one dimension, limit never reached;
- bridge (sequential only): Submit on a memory-backend limiter, awaited through the eventfd bridge.
Warm-up before each timing (the concurrent one opens the pool's connections). Sequential: median over rounds of the mean µs per awaited call. Concurrent: ``inflight`` workers, each
awaiting calls in a row for a fixed time; checks per second, median over rounds. Prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any, Awaitable, Callable

import redis.asyncio as aredis
from rate_limiter_go import _native
from rate_limiter_go.completion import completions
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine_go import GoEngine
from support.redis_server import RedisServer

ROUNDS = int(os.environ.get("ROUNDS", "5"))
SEQ_N = int(os.environ.get("SEQ_N", "3000"))
CONC_S = float(os.environ.get("CONC_S", "1.5"))
WIDTHS = (64, 256)


async def sequential(call: Callable[[int], Awaitable[Any]]) -> float:
    for i in range(200):
        await call(i)
    t0 = time.perf_counter()
    for i in range(SEQ_N):
        await call(i)
    return (time.perf_counter() - t0) / SEQ_N * 1e6


async def concurrent(call: Callable[[int], Awaitable[Any]], width: int) -> float:
    for _ in range(3):  # warm up: redis-py opens one connection per call in flight
        await asyncio.gather(*(call(i) for i in range(width)))
    stop = time.perf_counter() + CONC_S
    counts = [0] * width

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            await call(i)
            i += width
            counts[w] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(width)))
    return sum(counts) / (time.perf_counter() - t0)


async def bare_subject(url: str) -> tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    client = aredis.Redis.from_url(url, max_connections=max(WIDTHS) + 8)
    sha = await client.script_load("return 1")

    async def call(i: int) -> Any:
        return await client.evalsha(sha, 0)

    return call, client.aclose


async def go_subject(url: str) -> tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    cfg = parse_config(
        {
            "by_user": "1000000/s",
            "backend": "redis",
            "redis_url": url,
            "redis_timeout_ms": 5000,
            "redis_connect_timeout_ms": 5000,
        }
    )
    engine = GoEngine(cfg, "issue13-redis")

    async def call(i: int) -> Any:
        return await engine.check(f"user{i % 1000}", None, None)

    return call, engine.close


async def bridge_subject(url: str) -> tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    """The Python-Go bridge alone: Submit on a memory-backend limiter (a goroutine that does no I/O),
    then the eventfd completion awaited like check() awaits it."""
    engine = GoEngine(parse_config({"by_user": "1000000/s"}), "issue13-bridge")
    engine.evaluate("warm", None, None)  # binds
    mod = _native.load_native()
    submit, handle, bridge = mod._pyext.pyext_Submit, engine._handle, completions(mod)

    async def call(i: int) -> Any:
        return await bridge.wait(submit(handle, f"user{i % 1000}", "", "", "", 0))

    return call, engine.close


SUBJECTS = {"bare": bare_subject, "go": go_subject, "bridge": bridge_subject}


async def one(subject: str, url: str, what: str) -> float:
    make = SUBJECTS[subject]
    call, close = await make(url)
    try:
        if what == "seq":
            return await sequential(call)
        return await concurrent(call, int(what))
    finally:
        await close()


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    server = RedisServer().start()
    try:
        results: dict[str, dict[str, list[float]]] = {s: {} for s in SUBJECTS}
        for _ in range(ROUNDS):
            for what in ("seq", *map(str, WIDTHS)):
                for subject in SUBJECTS if what == "seq" else ("bare", "go"):
                    v = asyncio.run(one(subject, server.url, what))
                    results[subject].setdefault(what, []).append(v)
    finally:
        server.close()
    med = {s: {w: statistics.median(v) for w, v in r.items()} for s, r in results.items()}
    summary = {
        "label": label,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": ROUNDS,
        "seq_us": {s: round(med[s]["seq"], 1) for s in med},
        "seq_ratio_go_over_bare": round(med["go"]["seq"] / med["bare"]["seq"], 2),
        "throughput": {w: {s: round(med[s][str(w)]) for s in ("bare", "go")} for w in WIDTHS},
        "throughput_ratio_go_over_bare": {w: round(med["go"][str(w)] / med["bare"][str(w)], 2) for w in WIDTHS},
        "raw": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

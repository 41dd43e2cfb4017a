"""cProfile of the Go engine at 64 checks in flight on Redis (measure_redis.py's go subject), sorted by own time.

PYTHONPATH=python:tests_py .venv/bin/python bench/results/issue13-redis/profile_go64.py > profile-go-64.txt
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import measure_redis as m  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402


async def profile(url: str) -> None:
    call, close = await m.go_subject(url)
    try:
        await m.concurrent(call, 64)  # warm up
        prof = cProfile.Profile()
        prof.enable()
        rate = await m.concurrent(call, 64)
        prof.disable()
    finally:
        await close()
    print(f"checks per second under the profiler: {rate:.0f}")
    pstats.Stats(prof).sort_stats("tottime").print_stats(16)


def main() -> None:
    server = RedisServer().start()
    try:
        asyncio.run(profile(server.url))
    finally:
        server.close()


if __name__ == "__main__":
    main()

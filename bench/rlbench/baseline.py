"""The Redis latency and throughput baseline: a bare redis-py asyncio ``EVALSHA`` of a script that does nothing.

Issue 13 targets 4 and 5 set our Go hook on Redis against it: the cheapest thing
any limiter that makes one script call per request could do from this process,
on the same event loop and the same private redis-server, measured in the same
run. It is called like a hook (``await call(payload, context)``, both ignored)
so the latency rounds and the throughput levels time it exactly as they time
the subjects. Its connection pool is redis-py's own, with room for one
connection per call in flight (``max_connections``; redis-py's default of
100 would raise at 256 in flight): one connection while calls come one at a
time.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

#: The subject name of the baseline in the results (latency rows and concurrency rows).
NAME = "redis-py no-op"
#: The script: one round trip, one script call, no key touched.
SCRIPT = "return 1"


class RedisNoop:
    """A redis-py asyncio client with the no-op script loaded; ``call`` is one ``EVALSHA`` of it."""

    def __init__(self, url: str, max_connections: int) -> None:
        self._client = redis.asyncio.Redis.from_url(url, max_connections=max_connections)
        self._sha = ""

    async def start(self) -> RedisNoop:
        """Load the script (one ``SCRIPT LOAD``); the calls then send ``EVALSHA`` only."""
        self._sha = await self._client.script_load(SCRIPT)
        return self

    async def call(self, payload: Any, context: Any) -> Any:
        """One ``EVALSHA`` of the no-op script; its reply is 1."""
        return await self._client.evalsha(self._sha, 0)

    async def close(self) -> None:
        await self._client.aclose()


def reply_ok(reply: Any) -> bool:
    """True for the script's reply (the integer 1): anything else means the call did not run the script."""
    return reply == 1

"""The Redis side of the Python engine: one EVALSHA per request, timeouts, a circuit breaker.

docs/semantics.md §8 (failures, breaker) and §9 (scripts, calling convention).
Every failure leaves here as rate_limiter_go.engine.EngineError; the plugin
applies fail_mode. Messages never contain keys, so never an identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from rate_limiter_go.config import LimiterConfig
from rate_limiter_go.engine import EngineError
from rate_limiter_go.scripts import script_text

__all__ = ["MAX_CONNECTIONS", "CircuitBreaker", "RedisBackend"]

#: Connections per backend (per plugin instance); more concurrent requests queue for one.
MAX_CONNECTIONS = 100


class CircuitBreaker:
    """Consecutive-failure breaker (§8): closed -> open for a cooldown -> one probe -> closed or open again.

    ``clock`` returns seconds (monotonic); injectable for tests.
    """

    __slots__ = ("threshold", "cooldown_s", "_clock", "_failures", "_open_until", "_probing")

    def __init__(self, failures: int, cooldown_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown_ms < 0:
            raise ValueError(f"breaker needs failures >= 1 and cooldown_ms >= 0, got {failures}, {cooldown_ms}")
        self.threshold = failures
        self.cooldown_s = cooldown_ms / 1000
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self._probing = False

    @property
    def is_open(self) -> bool:
        """True while requests are refused without touching Redis (cooling down, or a probe in flight)."""
        if self._open_until is None:
            return False
        return self._probing or self._clock() < self._open_until

    def allow(self) -> bool:
        """Whether a request may go to Redis now. After the cooldown the first caller becomes the probe."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._open_until = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._open_until = self._clock() + self.cooldown_s
            self._probing = False


class RedisBackend:
    """Runs the configured algorithm's script for a request's keys on ``config.redis_url``.

    The script is loaded (SCRIPT LOAD) before the first call and called by
    SHA afterwards; after a NOSCRIPT (Redis restarted or SCRIPT FLUSH) it is
    loaded again and the call retried once. redis-py's own retries are off:
    the breaker decides about retrying, and a retry would blow the time budget.
    """

    def __init__(self, config: LimiterConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not config.redis_url:
            raise ValueError("the redis backend needs redis_url")
        self._script = script_text(config.algorithm)
        # EVALSHA names a script by its SHA-1 (the Redis protocol), not a security use.
        self._sha = hashlib.sha1(self._script.encode("utf-8"), usedforsecurity=False).hexdigest()
        self._loaded = False
        self._closed = False
        # Whole call, connect included: a Redis that accepts TCP but never answers cannot hang a request.
        self._budget_s = (config.redis_connect_timeout_ms + config.redis_timeout_ms) / 1000
        self.breaker = CircuitBreaker(config.redis_breaker_failures, config.redis_breaker_cooldown_ms, clock)
        # A blocking pool: a burst beyond MAX_CONNECTIONS waits for a free connection (within the
        # budget) instead of failing at once with "Too many connections" as the default pool does.
        # rediss:// TLS material: a CA file instead of the system trust store, a client certificate (mTLS).
        tls = {
            name: value
            for name, value in (
                ("ssl_ca_certs", config.redis_tls_ca_file),
                ("ssl_certfile", config.redis_tls_cert_file),
                ("ssl_keyfile", config.redis_tls_key_file),
            )
            if value is not None
        }
        if not config.redis_tls_check_hostname and config.redis_url.startswith("rediss://"):
            # Verify the chain, not the name (redis_ssl_check_hostname: false).
            tls.update(ssl_check_hostname=False, ssl_cert_reqs="required")
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            config.redis_url,
            **tls,
            max_connections=MAX_CONNECTIONS,
            timeout=self._budget_s,
            socket_connect_timeout=config.redis_connect_timeout_ms / 1000,
            socket_timeout=config.redis_timeout_ms / 1000,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both

    @property
    def script_sha(self) -> str:
        """SHA-1 of the script, as EVALSHA uses it."""
        return self._sha

    async def run(self, keys: Sequence[str], limits_windows: Sequence[tuple[str, str]], now_us: int = 0) -> list:
        """One script call for a request (§9): KEYS = ``keys``, ARGV = now override, then L and W per key.

        ``now_us`` = 0 lets the script read Redis TIME. Returns the raw reply;
        raises EngineError on any failure, or at once while the breaker is open.
        """
        if self._closed:
            raise EngineError("redis backend is closed")
        if not self.breaker.allow():
            raise EngineError("redis circuit breaker is open: failing fast without calling redis")
        args = [str(now_us) if now_us else ""]
        for pair in limits_windows:
            args.extend(pair)
        try:
            reply = await asyncio.wait_for(self._call(keys, args), self._budget_s)
        except (RedisError, OSError, EngineError) as exc:  # OSError covers TimeoutError (asyncio's too)
            self.breaker.record_failure()
            if isinstance(exc, EngineError):
                raise
            raise EngineError(f"redis call failed: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.breaker.record_failure()  # cancelled from outside: the probe slot must not stay taken
            raise
        self.breaker.record_success()
        return reply

    async def _call(self, keys: Sequence[str], args: list[str]) -> list:
        if not self._loaded:
            await self._load()
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._load()
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)

    async def _load(self) -> None:
        sha = await self._client.script_load(self._script)
        if isinstance(sha, bytes):
            sha = sha.decode("ascii")
        if sha != self._sha:
            raise EngineError(f"redis SCRIPT LOAD returned sha {sha}, expected {self._sha}")
        self._loaded = True

    async def close(self) -> None:
        """Close the client and its connection pool; later calls raise EngineError."""
        self._closed = True
        await self._client.aclose()

"""The Redis side of the Python engine: one EVALSHA per request, timeouts, a circuit breaker.

docs/semantics.md §8 (failures, breaker), §9 (scripts, calling convention)
and §11 (standalone, Sentinel and Cluster; Cluster requests go through
``redis_cluster``'s slot groups).
Every failure leaves here as rate_limiter_go.engine.EngineError; the plugin
applies fail_mode. Messages never contain keys, so never an identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence

import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from rate_limiter_go.config import LimiterConfig
from rate_limiter_go.engine import EngineError
from rate_limiter_go.engine_python.blocked import BlockedCache
from rate_limiter_go.engine_python.redis_cluster import ClusterClock, GroupRunner, call_script
from rate_limiter_go.scripts import give_back_text, script_text

__all__ = ["MAX_CONNECTIONS", "SENTINEL_CHECK_S", "CircuitBreaker", "RedisBackend"]

#: Connections per backend (per plugin instance); more concurrent requests queue for one.
MAX_CONNECTIONS = 100
#: Sentinel mode: how often the sentinels are asked which node is the primary (§11).
SENTINEL_CHECK_S = 0.25


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
        # No retries anywhere: a script that may have run is never sent again (§11.1, "At most once").
        common = dict(
            socket_connect_timeout=config.redis_connect_timeout_ms / 1000,
            socket_timeout=config.redis_timeout_ms / 1000,
            retry=Retry(NoBackoff(), 0),
        )
        self._mode = config.redis_mode
        blocked_max_keys = blocked_max_keys_of(config)
        self.blocked = BlockedCache(blocked_max_keys) if blocked_max_keys else None
        self._cluster: GroupRunner | None = None
        if config.redis_mode == "cluster":
            self._client = redis.asyncio.cluster.RedisCluster.from_url(
                config.redis_url, **tls, **common, max_connections=MAX_CONNECTIONS
            )
            self._shas: dict[str, str] = {}
            # The cluster client has no blocking pool: beyond max_connections per node it fails at
            # once. Calls beyond that many wait here instead, within the call's budget.
            self._in_flight = asyncio.Semaphore(MAX_CONNECTIONS)
            self._give_back = give_back_text(config.algorithm)
            self._cluster = GroupRunner(self._cluster_call)
            self._clock = ClusterClock(self._clock_sample)
            self._clock_key = f"{config.redis_key_prefix}:clock"
        elif config.redis_mode == "sentinel":
            self._client = _sentinel_client(config, tls, common, self._budget_s)
            self._primary_checked_at = time.monotonic()
            self._primary_check: asyncio.Task[object] | None = None
        else:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                config.redis_url, **tls, **common, max_connections=MAX_CONNECTIONS, timeout=self._budget_s
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
        blocked = self.blocked
        if blocked is not None:
            # A remembered refusal stays true while Redis is unreachable: before the breaker (§12).
            local = blocked.answer(keys, limits_windows, now_us)
            if local is not None:
                return local
            sent_ns = blocked.clock_ns()
        if not self.breaker.allow():
            raise EngineError("redis circuit breaker is open: failing fast without calling redis")
        if self._mode == "sentinel":
            self._watch_primary()
        try:
            if self._cluster is not None:
                reply = await asyncio.wait_for(self._run_cluster(keys, limits_windows, now_us), self._budget_s)
            else:
                args = [str(now_us) if now_us else ""]
                for pair in limits_windows:
                    args.extend(pair)
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
        if blocked is not None and type(reply) is list and reply and reply[0] == 0:  # refused: remember (§12)
            blocked.record(keys, reply, sent_ns, blocked.clock_ns())
        return reply

    async def _run_cluster(self, keys: Sequence[str], pairs: Sequence[tuple[str, str]], now_us: int) -> list:
        """§11.1: the cluster clock (unless a test gave a time), then the slot groups."""
        assert self._cluster is not None  # nosec B101 # only called in cluster mode
        if not now_us:
            now_us = await self._clock.now_us()
        return await self._cluster.run(self._script, self._give_back, keys, pairs, now_us)

    async def _cluster_call(self, text: str, keys: Sequence[str], args: list[str]) -> list:
        async with self._in_flight:
            return await call_script(self._client, self._shas, text, keys, args)

    async def _clock_sample(self) -> int:
        """TIME of the primary serving the clock key's slot, in Unix µs (§11.1)."""
        client = self._client
        await client.initialize()
        seconds, micros = await client.time(target_nodes=client.get_node_from_key(self._clock_key))
        return int(seconds) * 1_000_000 + int(micros)

    def _watch_primary(self) -> None:
        """Ask the sentinels for the primary at most every SENTINEL_CHECK_S, in the background.

        redis-py asks them only when it opens a connection, so pooled connections would keep
        writing to a demoted primary until the sentinels reconfigure it (their INFO period,
        up to 10 s), and those writes are lost. A changed answer drops the idle connections,
        and in-use ones are dropped when released (the pool owns only the primary's).
        """
        now = time.monotonic()
        if self._primary_check is not None or now - self._primary_checked_at < SENTINEL_CHECK_S:
            return
        self._primary_checked_at = now
        pool = self._client.connection_pool
        self._primary_check = asyncio.ensure_future(pool.get_master_address())
        self._primary_check.add_done_callback(self._primary_checked)

    def _primary_checked(self, task: asyncio.Task[object]) -> None:
        # A failed check keeps the current primary: data calls report their own failures.
        if not task.cancelled():
            task.exception()
        self._primary_check = None

    @property
    def give_backs_lost(self) -> int:
        """Cluster give-backs that failed (§11.1, Bounds); 0 outside cluster mode."""
        return 0 if self._cluster is None else self._cluster.give_backs_lost

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
        check = getattr(self, "_primary_check", None)
        if check is not None:
            check.cancel()
        await self._client.aclose()


def blocked_max_keys_of(config: LimiterConfig) -> int:
    """The bound on remembered refusals (§12): ``redis_blocked_max_keys``, but 0 on a Cluster
    unless every request has at most one key (give-backs between slot groups free keys early)."""
    if config.redis_mode != "cluster":
        return config.redis_blocked_max_keys
    dimensions = sum(
        (config.by_user is not None, config.by_user_per_server is not None, config.by_tenant is not None, bool(config.by_tool))
    )
    return config.redis_blocked_max_keys if dimensions <= 1 else 0


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's primary-tracking pool with the blocking pool's wait for a free connection.

    SentinelConnectionPool alone fails at once with "Too many connections"
    beyond its size, as the default pool does; a burst should wait within the
    call's budget instead, as on a standalone Redis.
    """

    async def get_master_address(self) -> tuple[str, int]:
        """The primary as ``SENTINEL GET-MASTER-ADDR-BY-NAME`` names it.

        redis-py reads ``SENTINEL MASTERS``, which keeps naming the old primary
        until the whole failover has ended (replicas reconfigured): seconds
        during which the new primary already serves and the old one still takes
        writes that will be lost. This answer names the promoted replica as
        soon as it is promoted. A change drops the idle connections; in-use
        ones are dropped when released (the pool owns only the primary's).
        """
        address = None
        for sentinel in self.sentinel_manager.sentinels:
            try:
                found = await sentinel.sentinel_get_master_addr_by_name(self.service_name)
            except (ConnectionError, TimeoutError, RedisError):
                continue
            if found:
                host = found[0].decode("ascii") if isinstance(found[0], bytes) else str(found[0])
                address = (host, int(found[1]))
                break
        if address is None:
            return await super().get_master_address()  # raises MasterNotFoundError with every sentinel's error
        if self.master_address != address:
            self.master_address = address
            await self.disconnect(inuse_connections=False)
        return address

    async def get_connection(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A pooled connection, reconnected first if it still points at a former primary.

        Connections in use when the primary changed are not dropped on release by the blocking
        pool; this catches them before their next command instead of at the old node's READONLY.
        """
        connection = await super().get_connection(*args, **kwargs)
        primary = self.master_address
        if primary is not None and connection.is_connected and (connection.host, connection.port) != primary:
            try:
                await connection.disconnect()
                await connection.connect()
            except BaseException:
                await self.release(connection)
                raise
        return connection


def _sentinel_client(config: LimiterConfig, tls: dict, common: dict, budget_s: float) -> redis.asyncio.Redis:
    """A client of the primary named ``redis_sentinel_master`` (§11): found through the sentinels,
    found again after a failover; a demoted primary's READONLY drops the connection."""
    url = parse_url(config.redis_url)
    sentinels = []
    for address in config.redis_sentinels:
        host, _, port = address.rpartition(":")
        sentinels.append((host.strip("[]"), int(port)))
    # The sentinels get the same time bounds and, with rediss://, the same TLS (as go-redis does);
    # the data nodes' user, password and database are not theirs.
    secure = dict(ssl=True, **tls) if config.redis_url.startswith("rediss://") else {}
    manager = Sentinel(sentinels, sentinel_kwargs={**common, **secure}, **common)
    data: dict = {key: url[key] for key in ("username", "password", "db") if url.get(key) is not None}
    data.update(secure)
    return manager.master_for(
        config.redis_sentinel_master,
        redis_class=redis.asyncio.Redis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=MAX_CONNECTIONS,
        timeout=budget_s,
        **data,
    )

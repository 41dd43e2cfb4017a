"""A local Redis Cluster and a local Sentinel deployment, from Debian's one redis-server binary, no Docker.

    with RedisCluster() as cluster:        # 3 primaries + 3 replicas on loopback
        use(cluster.url)                   # redis://127.0.0.1:<a node's port>/0 (a seed node)
    with RedisSentinel() as deployment:    # 1 primary, 2 replicas, 3 sentinels (quorum 2)
        use(deployment.sentinel_addrs, SENTINEL_MASTER)

Every node is a support.redis_server.RedisServer (the one place that starts a
redis-server); sentinels are ``redis-server <conf> --sentinel`` processes
(Debian has no redis-sentinel binary) with a writable file each. ``close()``
stops everything, also after a failed start. The Go tests have the same
deployments in tests_go/redistest (cluster.go, sentinel.go).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess  # nosec B404 # redis-cli and sentinels: test fixtures
import tempfile
import time
from pathlib import Path
from typing import Any

from .redis_server import RedisServer, RedisUnavailableError, _kill, find_redis_server, free_port, wait_ready

__all__ = ["CLUSTER_NODE_TIMEOUT_MS", "SENTINEL_MASTER", "RedisCluster", "RedisSentinel"]

#: cluster-node-timeout of the Cluster's nodes: an unanswering primary is failed over after this long.
CLUSTER_NODE_TIMEOUT_MS = 2000
#: The name the sentinels monitor.
SENTINEL_MASTER = "rlmaster"
#: How long the sentinels wait for an unanswering primary before they fail over.
SENTINEL_DOWN_AFTER_MS = 1000
_READY_TIMEOUT_S = 30.0


def _redis_cli() -> str:
    beside = Path(find_redis_server()).with_name("redis-cli")
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if found is None:
        raise RedisUnavailableError("redis-cli is not installed (it comes with redis-server)")
    return found


def free_cluster_port() -> int:
    """A port P with P and P+10000 (the node's cluster bus) both free a moment ago.

    Redis refuses a cluster port above 55535; below 22768 both stay under
    Linux's default ephemeral range, where client sockets would take them.
    """
    for _ in range(200):
        port = random.randrange(12000, 22000)  # nosec B311 # a test port, not a secret
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RedisUnavailableError("no free port pair for a cluster node")


def _wait(what: str, probe: Any, timeout_s: float = _READY_TIMEOUT_S) -> None:
    """Poll ``probe()`` (returns '' when ready, else what is missing) until ready or timeout."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as e:  # redis-py's ConnectionError is an OSError too
            last = repr(e)
        if not last:
            return
        time.sleep(0.05)
    raise RedisUnavailableError(f"{what} not ready within {timeout_s} s: {last}")


class RedisCluster:
    """Six cluster-enabled servers joined by ``redis-cli --cluster create --cluster-replicas 1``.

    ``nodes`` are RedisServer objects (stop(), pause() and start() work on
    them for failover tests; DEBUG is allowed from loopback); ``url`` is a
    seed node's URL. ``workdir``: keep the nodes' files there (the rig's run directory);
    ``detach()`` leaves the nodes running for a caller that stops them by pid.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self.nodes: list[RedisServer] = []
        self.url = ""
        self.workdir = workdir  # node i's files in workdir/node<i>; None: a temporary directory each

    def start(self) -> RedisCluster:
        try:
            for i in range(6):
                node_dir = self.workdir / f"node{i + 1}" if self.workdir is not None else None
                node = RedisServer(workdir=node_dir, port=free_cluster_port(), args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                         "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                                         "--enable-debug-command", "local",
                                         # Sync replicas at once (Redis 7 waits 5 s for more replicas before
                                         # a diskless sync): a replica that never synced does not take over.
                                         "--repl-diskless-sync-delay", "0"])
                self.nodes.append(node.start())
            addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run([_redis_cli(), "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes"],  # nosec B603 # redis-cli at a resolved path, loopback addresses
                           check=True, capture_output=True, timeout=60)
            self.url = self.nodes[0].url
            self.wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def health(self) -> str:
        """'' when every running node sees all slots served by 3 primaries, each with a replica; else what is not."""
        for node in self.nodes:
            if not node.running or node.paused:
                continue
            with node.client() as c:
                info = c.execute_command("CLUSTER", "INFO")
                nodes = c.execute_command("CLUSTER", "NODES")
            info = info.decode() if isinstance(info, bytes) else str(info)
            nodes = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
            if "cluster_state:ok" not in info:
                return f"node {node.port}: cluster_state not ok"
            primaries = replicas = 0
            for line in nodes.strip().splitlines():
                f = line.split()
                if len(f) < 8 or "fail" in f[2] or f[7] != "connected":
                    continue
                if "master" in f[2] and len(f) > 8:
                    primaries += 1
                elif "slave" in f[2] and f[3] != "-":
                    replicas += 1
            if (primaries, replicas) != (3, 3):
                return f"node {node.port} sees {primaries} serving primaries and {replicas} attached replicas"
            if _replica_not_synced(node):
                return f"replica {node.port} has not synced yet"
        return ""

    def wait_healthy(self, timeout_s: float = _READY_TIMEOUT_S) -> None:
        _wait("redis cluster", self.health, timeout_s)

    def primary_for(self, key: str) -> RedisServer:
        """The running node that serves ``key``'s slot as primary."""
        for node in self.nodes:
            if not node.running or node.paused:
                continue
            with node.client() as c:
                slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RedisUnavailableError("no running node answers CLUSTER SLOTS")

    def detach(self) -> list[tuple[int, int]]:
        """Leave every node running beyond this object (RedisServer.detach); (port, pid) of each."""
        out = [(node.port, node.detach()) for node in self.nodes]
        self.nodes = []
        return out

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replica_not_synced(node: RedisServer) -> bool:
    """Whether ``node`` is a replica whose replication link is not up yet."""
    with node.client() as c:
        info = c.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") != "up"


class RedisSentinel:
    """One primary with two replicas, watched by three sentinels (quorum 2).

    ``primary`` and ``replicas`` are the data nodes as started (a failover
    changes roles: ``current_primary_port()`` asks the sentinels);
    ``sentinel_addrs`` are ``host:port`` strings as the ``redis_sentinels``
    setting takes them.
    """

    def __init__(self) -> None:
        self.primary: RedisServer | None = None
        self.replicas: list[RedisServer] = []
        self.sentinel_ports: list[int] = []
        self._sentinels: list[subprocess.Popen[bytes]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def sentinel_addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.sentinel_ports]

    def start(self) -> RedisSentinel:
        try:
            self.primary = RedisServer(args=["--enable-debug-command", "local", "--repl-diskless-sync-delay", "0"]).start()
            for _ in range(2):
                replica = RedisServer(args=["--enable-debug-command", "local",
                                            "--replicaof", "127.0.0.1", str(self.primary.port)])
                self.replicas.append(replica.start())
            for replica in self.replicas:
                _wait("replica sync", lambda r=replica: "not synced" if _replica_not_synced(r) else "")
            self._tmp = tempfile.TemporaryDirectory(prefix="rl-sentinel-")
            for i in range(3):
                self._start_sentinel(Path(self._tmp.name) / f"s{i}", self.primary.port)
            _wait("sentinels", self.health)
        except BaseException:
            self.close()
            raise
        return self

    def _start_sentinel(self, workdir: Path, primary_port: int) -> None:
        workdir.mkdir()
        port = free_port()
        conf = workdir / "sentinel.conf"  # sentinel rewrites its file: one writable file each
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\nlogfile {workdir / 'sentinel.log'}\n"
            f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER} {SENTINEL_DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SENTINEL_MASTER} 3000\n"
        )
        proc = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"],  # nosec B603 # redis-server at a resolved path, no shell
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
        self._sentinels.append(proc)
        self.sentinel_ports.append(port)
        wait_ready(port, proc=proc)

    def _sentinel_client(self, port: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def health(self) -> str:
        """'' when every sentinel sees both replicas and the two other sentinels; else what is missing."""
        for port in self.sentinel_ports:
            with self._sentinel_client(port) as c:
                replicas = c.execute_command("SENTINEL", "REPLICAS", SENTINEL_MASTER)
                peers = c.execute_command("SENTINEL", "SENTINELS", SENTINEL_MASTER)
            if len(replicas) != 2 or len(peers) != 2:
                return f"sentinel {port} sees {len(replicas)} replicas and {len(peers)} other sentinels"
        return ""

    def current_primary_port(self) -> int:
        """The primary's port as a running sentinel names it."""
        for port, proc in zip(self.sentinel_ports, self._sentinels):
            if proc.poll() is not None:
                continue
            with self._sentinel_client(port) as c:
                host, primary_port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)
            return int(primary_port)
        raise RedisUnavailableError("no sentinel is running")

    def node(self, port: int) -> RedisServer:
        """The data node listening on ``port``."""
        assert self.primary is not None  # nosec B101 # a usage error in test code
        return next(n for n in (self.primary, *self.replicas) if n.port == port)

    def failover(self, timeout_s: float = 20.0) -> int:
        """SENTINEL FAILOVER, then wait until a new primary answers ROLE as master; returns its port."""
        before = self.current_primary_port()
        with self._sentinel_client(self.sentinel_ports[0]) as c:
            c.execute_command("SENTINEL", "FAILOVER", SENTINEL_MASTER)
        return self.wait_primary_change(before, timeout_s)

    def wait_primary_change(self, before: int, timeout_s: float = 20.0) -> int:
        """Wait until the sentinels name a primary other than port ``before`` and it answers as master."""
        new_port = before

        def changed() -> str:
            nonlocal new_port
            new_port = self.current_primary_port()
            if new_port == before:
                return "the sentinels still name the old primary"
            with self.node(new_port).client() as c:
                role = c.execute_command("ROLE")
            return "" if role[0] in (b"master", "master") else f"node {new_port} is not master yet"

        _wait("sentinel failover", changed, timeout_s)
        return new_port

    def close(self) -> None:
        for proc in self._sentinels:
            _kill(proc)
        self._sentinels = []
        for node in (*self.replicas, *([self.primary] if self.primary else [])):
            node.close()
        self.replicas, self.primary = [], None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A private redis-server for tests, benchmarks, chaos runs and the rig: the one place that starts one.

The server listens on 127.0.0.1 at a free port (or the port given), keeps
nothing on disk (no RDB, no AOF) and writes its log into its working
directory, a temporary directory unless one is given. Standard library only
(the rig runs on any python3); ``client()`` imports redis-py when called.

    with RedisServer() as server:              # plain TCP
        use(server.url)                        # redis://127.0.0.1:<port>/0
    with RedisServer(tls=make_certs(d)) as s:  # TLS only: rediss://, no plain port
        ...
    RedisServer(args=["--user", "default", "off", ...], username="u", password="p")  # ACL
    RedisServer(unixsocket=True).unix_path     # also a unix socket in the working directory

``start()`` waits until the server answers PING (over TLS, with AUTH when
asked) and raises ``RedisUnavailableError`` with the tail of the server log
if it does not; a server that failed to come up is stopped before the error
is raised. ``stop()`` (SIGTERM, then SIGKILL) can be followed by ``start()``
on the same port; ``close()`` also removes a temporary working directory;
the context manager calls ``start()`` and ``close()``. A server still running
when its object is collected or the interpreter exits is killed then.

For a process you manage yourself (the rig keeps Redis running after it
exits): ``server_argv(...)`` is the command line and ``wait_ready(...)`` the
readiness check this class uses.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess  # nosec B404 # starts redis-server, a test and benchmark fixture
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .tls_certs import TlsFiles

__all__ = [
    "RedisServer",
    "RedisUnavailableError",
    "find_redis_server",
    "free_port",
    "server_argv",
    "wait_ready",
]

#: The settings of every private server: loopback only, nothing on disk, in the foreground.
BASE_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")


class RedisUnavailableError(RuntimeError):
    """redis-server is not installed, or it did not start and answer PING."""


def find_redis_server() -> str:
    """The redis-server binary (PATH, else /usr/bin/redis-server); RedisUnavailableError if there is none."""
    binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if binary is None:
        raise RedisUnavailableError("redis-server is not installed (apt-get install redis-server, or `make deps-system`)")
    return binary


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_argv(
    binary: str,
    port: int,
    workdir: Path,
    *,
    tls: TlsFiles | None = None,
    tls_server_cert: tuple[Path, Path] | None = None,
    tls_auth_clients: bool = False,
    unix_path: Path | None = None,
    args: Sequence[str] = (),
) -> list[str]:
    """The command line of a private server on 127.0.0.1:``port`` with its files in ``workdir``.

    With ``tls`` the port is TLS only (``--port 0 --tls-port port``), the
    server presents ``tls_server_cert`` (cert, key; default the server
    certificate of ``tls``) and, with ``tls_auth_clients``, requires a client
    certificate signed by the test CA. ``unix_path``: also listen there
    (mode 700). ``args`` come last, so they override anything before them.
    """
    argv = [binary, *BASE_ARGS, "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
    if tls is None:
        argv += ["--port", str(port)]
    else:
        cert, key = tls_server_cert or (tls.server_cert, tls.server_key)
        argv += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                 "--tls-ca-cert-file", str(tls.ca_cert), "--tls-auth-clients", "yes" if tls_auth_clients else "no"]
    if unix_path is not None:
        argv += ["--unixsocket", str(unix_path), "--unixsocketperm", "700"]
    return [*argv, *args]


def _resp(*words: str) -> bytes:
    """One command in RESP (length-prefixed, so a password may hold any character)."""
    out = [f"*{len(words)}\r\n".encode()]
    for w in words:
        data = w.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _ping(port: int, tls_context: ssl.SSLContext | None, username: str | None, password: str | None) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
        sock: socket.socket = tls_context.wrap_socket(raw, server_hostname="127.0.0.1") if tls_context else raw
        request = b""
        if password is not None:
            request += _resp("AUTH", username or "default", password)
        request += _resp("PING")
        sock.sendall(request)
        reply = b""
        while b"PONG" not in reply and not reply.startswith(b"-") and len(reply) < 512:
            chunk = sock.recv(512)
            if not chunk:
                break
            reply += chunk
        return b"+PONG" in reply and b"-" not in reply.split(b"\r\n", 1)[0]


def _tls_context(tls: TlsFiles, check_hostname: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    ctx.check_hostname = check_hostname
    ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    return ctx


def wait_ready(
    port: int,
    timeout_s: float = 10.0,
    *,
    proc: subprocess.Popen[Any] | None = None,
    tls: TlsFiles | None = None,
    check_hostname: bool = True,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Return once 127.0.0.1:``port`` answers PING (over TLS with the test CA and client
    certificate when ``tls`` is given; after AUTH when ``password`` is); else raise
    RedisUnavailableError, at once if ``proc`` has exited."""
    ctx = _tls_context(tls, check_hostname) if tls is not None else None
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise RedisUnavailableError(f"redis-server exited with {proc.returncode}")
        try:
            if _ping(port, ctx, username, password):
                return
        except (OSError, ssl.SSLError) as e:
            last = e
        if time.monotonic() > deadline:
            raise RedisUnavailableError(f"redis-server on port {port} did not answer PING within {timeout_s} s"
                                        + (f" ({last!r})" if last else ""))
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` now: SIGCONT (it may be paused), SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)
    except OSError:
        pass
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class RedisServer:
    """A private redis-server process (see the module docstring).

    ``url`` is ``redis://`` or, with ``tls``, ``rediss://127.0.0.1:<port>/0``;
    ``port``, ``pid``, ``workdir``, ``unix_path`` (None without ``unixsocket``)
    and ``log_path`` say where it is. ``username``/``password`` are used by the
    readiness check and ``client()``, not configured on the server (use
    ``args`` for ``--user``/``--requirepass``). ``tls_check_hostname=False``
    for a server certificate that is not issued for 127.0.0.1.
    """

    def __init__(
        self,
        *,
        workdir: Path | str | None = None,
        port: int | None = None,
        binary: str | None = None,
        tls: TlsFiles | None = None,
        tls_server_cert: tuple[Path, Path] | None = None,
        tls_auth_clients: bool = False,
        tls_check_hostname: bool = True,
        unixsocket: bool = False,
        args: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.binary = binary or find_redis_server()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rl-redis-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.tls_check_hostname = tls_check_hostname
        self.username = username
        self.password = password
        self.unix_path: Path | None = self.workdir / "redis.sock" if unixsocket else None
        self.log_path = self.workdir / "redis.log"
        self.start_timeout_s = start_timeout_s
        self.argv = server_argv(self.binary, self.port, self.workdir, tls=tls, tls_server_cert=tls_server_cert,
                                tls_auth_clients=tls_auth_clients, unix_path=self.unix_path, args=args)
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self._finalizer: weakref.finalize | None = None

    @property
    def pid(self) -> int:
        """The server's process id; AssertionError when it is not running."""
        assert self.proc is not None, "redis-server is not running"  # nosec B101 # a usage error in test code
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        """Start (or restart after stop(), on the same port) and wait until it answers PING; returns self."""
        if self.running:
            return self
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,  # nosec B603 # redis-server at a resolved path, argv built here, no shell
                                     cwd=self.workdir)
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        self.paused = False
        try:
            wait_ready(self.port, self.start_timeout_s, proc=self.proc, tls=self.tls,
                       check_hostname=self.tls_check_hostname, username=self.username, password=self.password)
        except RedisUnavailableError as e:
            stderr = self._stderr_tail()
            self.stop()
            raise RedisUnavailableError(f"{e}\n{stderr}{self.log_tail()}") from None
        return self

    def _stderr_tail(self) -> str:
        proc = self.proc
        if proc is None or proc.stderr is None or proc.poll() is None:
            return ""
        return proc.stderr.read().decode(errors="replace")[-1000:]

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's log file ('' if there is none yet)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL; a paused one is resumed first). Its data is lost."""
        proc, self.proc = self.proc, None
        self.paused = False
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            _kill(proc)
            if proc.stderr is not None:
                proc.stderr.close()

    def detach(self) -> int:
        """Leave the running server to the caller, who stops it by the returned pid: it outlives this
        object and the interpreter (the rig keeps a Cluster running after `rig-up` exits)."""
        pid = self.pid
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()  # redis-server logs to its file and ignores SIGPIPE
        return pid

    def close(self) -> None:
        """stop(), and remove the working directory if this object created it."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def pause(self) -> None:
        """SIGSTOP: the port keeps accepting TCP (kernel backlog) but nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def ensure_running(self) -> None:
        """Undo a stop() or pause()."""
        if self.paused and self.running:
            self.resume()
        if not self.running:
            self.start()

    def client(self, **kwargs: Any) -> Any:
        """A synchronous redis-py client (5 s timeouts; TLS, user and password as configured).

        ``kwargs`` are passed to ``redis.Redis`` and win over the defaults."""
        import redis

        options: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "socket_timeout": 5,
                                   "socket_connect_timeout": 5, "username": self.username, "password": self.password}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca_cert), ssl_certfile=str(self.tls.client_cert),
                           ssl_keyfile=str(self.tls.client_key), ssl_check_hostname=self.tls_check_hostname)
        options.update(kwargs)
        return redis.Redis(**options)

    def flush(self) -> None:
        """FLUSHALL and SCRIPT FLUSH, and reset INFO commandstats (CONFIG RESETSTAT)."""
        with self.client() as c:
            c.flushall()
            c.script_flush()
            c.config_resetstat()

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

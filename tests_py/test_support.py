"""The shared support code (tests_py/support/): the private redis-server helper itself.

Benchmarks, chaos runs and the rig start their Redis through it too, so its
promises are checked here: it answers where it says (TCP, unix socket), a
server that cannot start leaves no process behind and says why, stop() and
start() keep the port, close() removes its temporary directory, and a server
nobody stopped is killed when its object goes away.
"""

from __future__ import annotations

import gc
import os
import socket
from pathlib import Path

import pytest
from conftest import require_command
from support.redis_server import RedisServer, RedisUnavailableError, server_argv


@pytest.fixture(autouse=True)
def _redis_server_binary() -> None:
    require_command("redis-server")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); its /proc status says Z
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return False


def test_tcp_and_unix_socket_answer_and_close_cleans_up() -> None:
    server = RedisServer(unixsocket=True)
    workdir = server.workdir
    with server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with server.client() as c:
            assert c.ping() and c.config_get("save")["save"] == "" and c.config_get("appendonly")["appendonly"] == "no"
        assert server.unix_path is not None
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(server.unix_path))
            s.sendall(b"PING\r\n")
            assert s.recv(16).startswith(b"+PONG")
        pid = server.pid
    assert not _alive(pid)
    assert not workdir.exists()


def test_stop_and_start_keep_the_port(tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path) as server:
        port, url = server.port, server.url
        with server.client() as c:
            c.set("k", "v")
        server.stop()
        assert not server.running
        server.start()
        assert (server.port, server.url) == (port, url)
        with server.client() as c:
            assert c.get("k") is None  # nothing persisted
    assert tmp_path.exists()  # a given working directory is left alone


def test_a_server_that_cannot_start_says_why_and_leaves_nothing_running() -> None:
    server = RedisServer(args=["--no-such-directive", "1"], start_timeout_s=5)
    with pytest.raises(RedisUnavailableError, match="no-such-directive"):
        with server:
            pass
    assert server.proc is None and not server.running


def test_a_server_nobody_stopped_is_killed_with_its_object() -> None:
    server = RedisServer().start()
    pid = server.pid
    del server
    gc.collect()
    assert not _alive(pid)


def test_the_command_line_is_private_and_last_arguments_win(tmp_path: Path) -> None:
    argv = server_argv("redis-server", 7000, tmp_path, args=["--save", "60 1"])
    assert argv[:9] == ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
    assert argv[argv.index("--port") + 1] == "7000" and argv[-2:] == ["--save", "60 1"]

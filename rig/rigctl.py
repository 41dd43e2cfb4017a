"""Start, provision and stop the rig: Redis, the MCP test server, N ContextForge gateways, nginx.

Usage (normally through rig/up.sh and rig/down.sh)::

    python rig/rigctl.py up [options]     # prints the run directory; the rig keeps running
    python rig/rigctl.py down [RUN_DIR]   # stops what `up` started (default: every run still running)
    python rig/rigctl.py status [RUN_DIR]

Everything listens on 127.0.0.1, on ports picked free at start. A run directory
rig/run/<timestamp>/ holds generated configs, logs, pids, the shared SQLite database and
rig.json (URLs, tool name, users and their API tokens) for the load tests. Only processes recorded
in its pids.json are ever signalled, and only after checking their command line.

rig/run/current points at the rig `up` left running; drivers that start and stop their own rig
(load tests, probes, the demo) never move it. `down` without a run directory stops every run under
rig/run/ that still has a recorded process alive, so no rig started here is left without a way to stop it.

Standard library only, so any python3 can run it, except `--redis-mode cluster` (REDIS_MODE=cluster):
the local Redis Cluster comes from tests_py/support/redis_cluster.py, whose health checks use redis-py,
so that needs rig/.venv-rig/bin/python (`make rig-up` uses it). The gateway runs from
rig/.venv-gateway-<GATEWAY_VERSION> (default 1.1.0; `GATEWAY_VERSION=1.0.7` for the older one), or
from the venv named by RIG_GATEWAY_VENV.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RIG_DIR = Path(__file__).resolve().parent
REPO_DIR = RIG_DIR.parent
# The one private redis-server helper (standard library only) lives with the tests.
sys.path.insert(0, str(REPO_DIR / "tests_py"))
from support.redis_server import RedisUnavailableError, find_redis_server, server_argv, wait_ready  # noqa: E402

RUN_ROOT = RIG_DIR / "run"
DEFAULT_GATEWAY_VERSION = "1.1.0"
GATEWAY_VERSION = os.environ.get("GATEWAY_VERSION") or DEFAULT_GATEWAY_VERSION
GATEWAY_VENV = Path(os.environ.get("RIG_GATEWAY_VENV") or RIG_DIR / f".venv-gateway-{GATEWAY_VERSION}")
GATEWAY_PY = GATEWAY_VENV / "bin" / "python"

ADMIN_EMAIL = "admin@rig.example"
TOOL_SERVER_NAME = "rig"  # gateway slug "rig" + separator "-" + tool slug -> "rig-rig-echo"
TOOL_NAME = "rig-rig-echo"
PROMPT_NAME = "rig-rig-greeting"
PLUGIN_KIND = "rate_limiter_go.plugin.RateLimiterPlugin"
PROBE_KIND = "rig_probe.ProbePlugin"
#: The plugin's redis_mode values the rig can run: one redis-server, or a local Redis Cluster of 3 primaries
#: and 3 replicas (tests_py/support/redis_cluster.py, the project's one launcher).
REDIS_MODES = ("standalone", "cluster")
#: An engine name for a gateway started with PLUGINS_ENABLED=false (the same rig, the plugin not loaded).
ENGINE_OFF = "off"


class RigError(RuntimeError):
    """The rig could not be brought up or provisioned; the message says which step failed."""


# --------------------------------------------------------------------------- configuration


@dataclass
class RigOptions:
    """What to start. Rates use the plugin's own syntax ("20/s", "100/m")."""

    engines: list[str] = field(default_factory=lambda: ["go", "python", "go"])
    plugin: str = "rate_limiter"  # rate_limiter | probe | none
    backend: str = "redis"
    redis_mode: str = "standalone"  # REDIS_MODES; cluster: the plugin gets redis_mode cluster and a seed node
    algorithm: str = "fixed_window"
    by_user: str | None = "20/s"
    by_tenant: str | None = None
    by_tool: dict[str, str] = field(default_factory=dict)
    fail_mode: str = "open"
    mode: str = "enforce"
    users: int = 4
    teams: int = 2
    gateway_cache: str = "memory"  # memory | redis (the gateway's own cache, Redis DB 1)
    gateway_log_level: str = "WARNING"
    probe_block_after: int | None = None
    run_dir: Path | None = None
    plugin_options: dict[str, Any] = field(default_factory=dict)  # more plugin config keys, e.g. redis_timeout_ms
    gateway_rate_limiting: bool = False  # the gateway's own RateLimitMiddleware (see _gateway_env)
    tool_team: bool = False  # register the MCP test server (hence its tools) in the first team
    # list the plugin's HTTP hooks too (http_pre_request, http_post_request): admitted calls' X-RateLimit-*
    # reach the response through http_post_request (README "Headers on admitted calls")
    http_hooks: bool = False
    # the gateway's observability (OBSERVABILITY_ENABLED=true): traces HTTP requests into its database,
    # hooks get extensions.request.trace_id, plugin result.metadata become spans and metric rows
    observability: bool = False
    # CPEX control-execution telemetry (CPEX_CONTROL_TELEMETRY_ENABLED=true): a summary span
    # and per-control spans per tool call, refusals included; needs observability for its DB spans
    control_telemetry: bool = False
    # keep the gateway's default CA loading (see _gateway_env)
    no_ssl_cert_dir: bool = field(default_factory=lambda: bool(os.environ.get("RIG_NO_SSL_CERT_DIR")))

    def plugin_config(self, redis_url: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {"algorithm": self.algorithm, "backend": self.backend, "fail_mode": self.fail_mode}
        if self.by_user:
            cfg["by_user"] = self.by_user
        if self.by_tenant:
            cfg["by_tenant"] = self.by_tenant
        if self.by_tool:
            cfg["by_tool"] = dict(self.by_tool)
        if self.backend == "redis":
            cfg["redis_url"] = redis_url
            if self.redis_mode != "standalone":
                cfg["redis_mode"] = self.redis_mode
        cfg.update(self.plugin_options)
        return cfg


def parse_plugin_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as JSON when it parses (50 -> int), else kept as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--plugin-option expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _parse_by_tool(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, rate = item.partition("=")
        if not sep or not name.strip() or not rate.strip():
            raise SystemExit(f"--by-tool expects NAME=RATE, got {item!r}")
        out[name.strip()] = rate.strip()
    return out


# --------------------------------------------------------------------------- small helpers


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_json(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    timeout_s: float = 30.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP call; returns (status, parsed JSON or raw text, lower-cased headers)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    text = raw.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    return status, parsed, {k.lower(): v for k, v in headers.items()}


def wait_http_ok(url: str, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Poll url until it answers 200, the process dies, or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RigError(f"{what} exited with code {proc.returncode} before becoming healthy (see its log)")
        try:
            status, _, _ = http_json("GET", url, timeout_s=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    raise RigError(f"{what} not healthy at {url} after {timeout_s:.0f} s ({last})")


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RigError(f"{what} exited with code {proc.returncode} (see its log)")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RigError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def _has_run_of_three(text: str) -> bool:
    """Three ascending or descending letters or digits in a row ("abc", "CBA", "123")."""
    t = text.lower()
    for a, b, c in zip(t, t[1:], t[2:]):
        same_kind = (a + b + c).isdigit() or (a + b + c).isalpha()
        if same_kind and (ord(b) - ord(a) == ord(c) - ord(b) == 1 or ord(a) - ord(b) == ord(b) - ord(c) == 1):
            return True
    return False


def rig_password() -> str:
    """A random password the gateway's policy accepts (classes of characters, no "abc"/"123" runs);
    random passwords hit the run rule now and then, so draw again until it passes."""
    while True:
        pw = "Rig-" + secrets.token_urlsafe(18) + "-9x"
        if not _has_run_of_three(pw) and any(ch.islower() for ch in pw) and any(ch.isupper() for ch in pw):
            return pw


def installed_versions(venv: Path | None = None) -> dict[str, str]:
    """What the gateway venv really has: CPython and the versions of the gateway, mcp, cpex and this
    package, read from its dist-info directories (so a result names what ran, not what was meant)."""
    venv = venv or GATEWAY_VENV
    out: dict[str, str] = {}
    wanted = {"mcp_contextforge_gateway": "gateway", "mcp": "mcp", "cpex": "cpex", "rate_limiter_go": "rate_limiter_go"}
    for site in sorted(venv.glob("lib/python3.*/site-packages")):
        out["python"] = site.parent.name.removeprefix("python")
        for d in site.glob("*.dist-info"):
            name, _, version = d.name.removesuffix(".dist-info").rpartition("-")
            key = wanted.get(name.lower().replace("-", "_"))
            if key:
                out[key] = version
    # how the package got there, as rig/install.sh recorded it: "wheel of commit abc1234" / "source of ..."
    rec = RUN_ROOT / f"install-package-{out.get('gateway', GATEWAY_VERSION)}.json"
    if rec.exists():
        try:
            detail = json.loads(rec.read_text()).get("detail", "")
        except (OSError, json.JSONDecodeError):
            detail = ""
        build = RUN_ROOT / f"install-wheel-build-{out.get('gateway', GATEWAY_VERSION)}.json"
        if "wheel" in detail and build.exists():
            detail = json.loads(build.read_text()).get("detail", "")
        m = re.search(r"commit ([0-9a-f]{7,40})", detail)
        if m:
            out["rate_limiter_go_from"] = ("wheel" if "wheel" in detail else "source") + f" of commit {m.group(1)}"
    cfg = venv / "pyvenv.cfg"
    if cfg.exists():
        for line in cfg.read_text().splitlines():
            k, _, v = line.partition("=")
            if k.strip() in ("version", "version_info"):
                out["python"] = v.strip()
    return out


def versions_text(v: dict[str, str]) -> str:
    """'gateway 1.1.0 on CPython 3.12.1 (mcp 2.3.0, cpex 0.1.4)'."""
    return (
        f"gateway {v.get('gateway', '?')} on CPython {v.get('python', '?')} "
        f"(mcp {v.get('mcp', '?')}, cpex {v.get('cpex', '?')}, rate_limiter_go {v.get('rate_limiter_go', '?')}"
        + (f", {v['rate_limiter_go_from']}" if v.get("rate_limiter_go_from") else "")
        + ")"
    )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- the run


class Run:
    """One run directory and the processes started for it."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.pids_file = run_dir / "pids.json"
        self.procs: list[dict[str, Any]] = json.loads(self.pids_file.read_text()) if self.pids_file.exists() else []

    def _save(self) -> None:
        self.pids_file.write_text(json.dumps(self.procs, indent=1))

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, match: str) -> subprocess.Popen:
        """Start a process in its own session with output to <run>/<name>.log and record its pid.

        ``match`` is a substring of its command line that `down` checks before signalling the pid.
        """
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.adopt(name, proc.pid, match)
        return proc

    def adopt(self, name: str, pid: int, match: str) -> None:
        """Record a process started elsewhere (a Cluster node) so that stop_all stops it too."""
        self.procs.append({"name": name, "pid": pid, "match": match})
        self._save()

    def stop_all(self, timeout_s: float = 15.0) -> list[str]:
        """SIGTERM every recorded process still running (newest first), SIGKILL after timeout_s."""
        report = []
        alive = []
        for p in reversed(self.procs):
            pid = p["pid"]
            if p["match"] not in _cmdline(pid):
                report.append(f"{p['name']} (pid {pid}) already gone")
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                alive.append(p)
            except ProcessLookupError:
                report.append(f"{p['name']} (pid {pid}) already gone")
        deadline = time.monotonic() + timeout_s
        for p in alive:
            pid = p["pid"]
            while time.monotonic() < deadline and p["match"] in _cmdline(pid) and not _is_zombie(pid):
                time.sleep(0.1)
            if p["match"] in _cmdline(pid) and not _is_zombie(pid):
                os.kill(pid, signal.SIGKILL)
                report.append(f"{p['name']} (pid {pid}) killed after {timeout_s:.0f} s")
            else:
                report.append(f"{p['name']} (pid {pid}) stopped")
        # Children a process left behind (each was started as the leader of its own session and process
        # group, so its group id is its pid): stop them too, so a run never leaves anything running.
        for p in reversed(self.procs):
            left = [m for m in _group_members(p["pid"]) if not _is_zombie(m)]
            for m in left:
                try:
                    os.kill(m, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            if left:
                report.append(f"{p['name']}: killed {len(left)} leftover process(es) of its group {p['pid']}")
        return report


def _group_members(pgid: int) -> list[int]:
    """Pids of processes in process group and session pgid (from /proc/<pid>/stat)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp session ...; a rig process leads its own session and group
        if len(fields) > 3 and fields[2] == str(pgid) and fields[3] == str(pgid):
            out.append(int(d.name))
    return out


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _new_run_dir(opts: RigOptions, link_current: bool) -> Path:
    if opts.run_dir is not None:
        d = opts.run_dir
        d.mkdir(parents=True, exist_ok=False)
    else:
        RUN_ROOT.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        d = RUN_ROOT / stamp
        n = 1
        while d.exists():
            n += 1
            d = RUN_ROOT / f"{stamp}-{n}"
        d.mkdir()
    os.chmod(d, 0o700)  # holds secrets and tokens of this run
    current = RUN_ROOT / "current"
    if link_current and d.parent == RUN_ROOT:
        if current.is_symlink() or current.exists():
            current.unlink()
        current.symlink_to(d.name)
    return d


def _write_plugins_yaml(path: Path, opts: RigOptions, redis_url: str, run_dir: Path) -> None:
    # JSON is valid YAML: no YAML library needed here, and quoting is exact.
    if opts.plugin == "rate_limiter":
        plugins = [
            {
                "name": "RateLimiter",
                "kind": PLUGIN_KIND,
                "hooks": ["tool_pre_invoke", "prompt_pre_fetch"]
                + (["http_pre_request", "http_post_request"] if opts.http_hooks else []),
                "mode": opts.mode,
                "priority": 10,
                "config": opts.plugin_config(redis_url),
            }
        ]
    elif opts.plugin == "probe":
        cfg: dict[str, Any] = {"out": str(run_dir / "probe.jsonl")}
        if opts.probe_block_after:
            cfg["block_after"] = opts.probe_block_after
        plugins = [
            {
                "name": "rig_probe",
                "kind": PROBE_KIND,
                "hooks": ["tool_pre_invoke", "prompt_pre_fetch"],
                "mode": "enforce",
                "priority": 10,
                "config": cfg,
            }
        ]
    else:
        plugins = []
    doc = {
        "plugins": plugins,
        "plugin_dirs": [],
        "plugin_settings": {"plugin_timeout": 30, "fail_on_plugin_error": True, "enable_plugin_api": False},
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _nginx_conf(run_dir: Path, listen_port: int, upstream_ports: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in upstream_ports)
    tmp = run_dir / "nginx-tmp"
    return f"""# Generated by rig/rigctl.py. Round-robin over the gateways, loopback only.
# Deliberately no limit_req / limit_conn: the only rate limiter under test is the plugin.
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream gateways {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            # A tools/call is not idempotent: never replay it on another gateway.
            proxy_next_upstream off;
            proxy_read_timeout 60s;
            # Which gateway answered. Absent on responses nginx makes itself (e.g. 502, or a 429
            # if someone added limit_req), which is how the load tests tell those apart.
            add_header X-Rig-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def _secret_env(sec: dict[str, str]) -> dict[str, str]:
    """The secrets and passwords of a run, for the gateways and for create_jwt_token (which loads the
    same settings). Gateway 1.1.0 refuses, at start and in every tool that loads its settings, any
    password shorter than 12 characters or known-weak (its default DEFAULT_USER_PASSWORD included),
    and secrets that are short or low in entropy; 1.0.7 refuses weak secrets. All are random here."""
    return {
        "JWT_SECRET_KEY": sec["jwt"],
        "AUTH_ENCRYPTION_SECRET": sec["enc"],
        "BASIC_AUTH_USER": "admin",
        "BASIC_AUTH_PASSWORD": sec["admin_password"],
        "PLATFORM_ADMIN_EMAIL": ADMIN_EMAIL,
        "PLATFORM_ADMIN_PASSWORD": sec["admin_password"],
        "DEFAULT_USER_PASSWORD": sec["default_user_password"],
    }


def _gateway_env(
    opts: RigOptions, i: int, port: int, engine: str, secrets_: dict[str, str], paths: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "MCG_HOST": "127.0.0.1",
            "MCG_PORT": str(port),
            "DATABASE_URL": f"sqlite:///{paths['db']}",
            **_secret_env(secrets_),
            # engine "off": this gateway runs with plugins disabled (the baseline of loadtest/cost.py)
            "PLUGINS_ENABLED": "true" if opts.plugin != "none" and engine != ENGINE_OFF else "false",
            "PLUGINS_CONFIG_FILE": paths["plugins_yaml"],
            "PLUGINS_FAIL_ON_PLUGIN_ERROR": "true",
            # The gateway's own per-IP/user limiter (500/min on /rpc) would throttle every rig
            # request (all come from nginx's 127.0.0.1) and overwrite X-RateLimit-* headers.
            "RATE_LIMITING_ENABLED": "true" if opts.gateway_rate_limiting else "false",
            "SSRF_ALLOW_LOCALHOST": "true",  # the MCP test server is on 127.0.0.1
            "MCPGATEWAY_UI_ENABLED": "false",
            "MCPGATEWAY_ADMIN_API_ENABLED": "true",
            "LOG_LEVEL": opts.gateway_log_level,
            "RATE_LIMITER_ENGINE": engine,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if Path("/etc/ssl/certs").is_dir() and not opts.no_ssl_cert_dir:
        # The gateway builds a new httpx client, hence a new SSL context, for every upstream MCP
        # call, even to http:// URLs; with the default certifi bundle that load was about 40 % of
        # its CPU per tool call here. A CA *directory* is read lazily: same verification, no bulk load.
        env["SSL_CERT_DIR"] = "/etc/ssl/certs"
    if opts.observability:
        env["OBSERVABILITY_ENABLED"] = "true"  # traces /rpc and /servers/<id>/mcp (its default include paths)
    if opts.control_telemetry:
        env["CPEX_CONTROL_TELEMETRY_ENABLED"] = "true"  # cpex control-execution spans (1.1.0 and 1.0.7)
    if opts.gateway_cache == "redis":
        env.update({"CACHE_TYPE": "redis", "REDIS_URL": paths["gateway_redis_url"]})
    else:
        env["CACHE_TYPE"] = "memory"
    if opts.plugin == "probe":
        env["PYTHONPATH"] = str(RIG_DIR / "probe")
    return env


def _admin_token(sec: dict[str, str], cwd: Path) -> str:
    # The tool loads the gateway's settings, which refuse placeholder secrets: give it the run's.
    # `--secret=VALUE`, one argument: a random secret may start with "-", which argparse would take
    # for an option with a separate `--secret VALUE`.
    env = {"PATH": os.environ.get("PATH", ""), **_secret_env(sec)}
    out = subprocess.run(
        [str(GATEWAY_PY), "-m", "mcpgateway.utils.create_jwt_token", "--username", ADMIN_EMAIL, "--exp", "600",
         "--admin", f"--secret={sec['jwt']}"],
        capture_output=True, text=True, check=False, cwd=str(cwd), env=env,
    )  # fmt: skip
    token = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or token.count(".") != 2:
        raise RigError(f"create_jwt_token failed (rc {out.returncode}): {out.stderr.strip()[-400:]}")
    return token


def _expect(status: int, body: Any, ok: tuple[int, ...], step: str) -> Any:
    if status not in ok:
        raise RigError(f"{step}: HTTP {status}: {str(body)[:400]}")
    return body


def provision(base: str, admin_token: str, opts: RigOptions, mcp_url: str, user_password: str) -> dict[str, Any]:
    """Create teams, users and their API tokens the gateway's own way, and register the MCP server."""
    teams = []
    for t in range(opts.teams):
        st, body, _ = http_json(
            "POST", f"{base}/v1/teams/", {"name": f"Rig Team {t}", "visibility": "private"}, admin_token
        )
        teams.append(_expect(st, body, (200, 201), f"create team {t}")["id"])
    users = []
    for u in range(opts.users):
        email = f"user{u:03d}@rig.example"
        st, body, _ = http_json(
            "POST", f"{base}/auth/email/admin/users",
            {"email": email, "password": user_password, "full_name": f"Rig User {u}", "is_admin": False}, admin_token,
        )  # fmt: skip
        _expect(st, body, (200, 201), f"create user {u}")
        team = teams[u % len(teams)] if teams else None
        if team:
            st, body, _ = http_json(
                "POST", f"{base}/v1/teams/{team}/members", {"email": email, "role": "member"}, admin_token
            )
            _expect(st, body, (200, 201), f"add user {u} to a team")
        req = {"name": f"rig-{u:03d}", "expires_in_days": 1, "user_email": email}
        if team:
            req["team_id"] = team
        st, body, _ = http_json("POST", f"{base}/v1/tokens", req, admin_token)
        token = _expect(st, body, (200, 201), f"create API token for user {u}")["access_token"]
        users.append({"email": email, "team": team, "token": token})
    reg: dict[str, Any] = {"name": TOOL_SERVER_NAME, "url": mcp_url, "transport": "STREAMABLEHTTP"}
    if opts.tool_team and teams:
        # owned by the first team: the gateway then keys the tool's plugin context "<team>::<tool>", where
        # per-tool plugin bindings stored in its database apply (rig/discover.py uses this)
        reg.update({"team_id": teams[0], "visibility": "public"})
    st, body, _ = http_json("POST", f"{base}/gateways", reg, admin_token, timeout_s=60.0)
    _expect(st, body, (200, 201), "register the MCP test server")
    st, body, _ = http_json("GET", f"{base}/tools", None, admin_token)
    names = [t.get("name") for t in _expect(st, body, (200,), "list tools")]
    if TOOL_NAME not in names:
        raise RigError(f"tool {TOOL_NAME} not registered; gateway lists {names}")
    return {"teams": teams, "users": users}


def up(opts: RigOptions, link_current: bool = False) -> Path:
    """Bring the rig up and return its run directory. On failure, stops what was started.

    link_current: point rig/run/current at it (a rig left running for people; a driver that stops its
    own rig leaves the link alone, so it never hides another rig from `down`)."""
    if not GATEWAY_PY.exists():
        raise RigError(f"{GATEWAY_PY} missing: run `make rig-deps` first")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        raise RigError(f"{nginx} not found: run `make rig-deps` (apt nginx)")
    try:
        redis_server = find_redis_server()
    except RedisUnavailableError as e:
        raise RigError(str(e)) from e
    n = len(opts.engines)
    run_dir = _new_run_dir(opts, link_current)
    run = Run(run_dir)
    try:
        _up(opts, run, nginx, redis_server, n)
    except BaseException:
        for line in run.stop_all():
            print(f"rig: {line}", file=sys.stderr)
        raise
    return run_dir


def _up(opts: RigOptions, run: Run, nginx: str, redis_server: str, n: int) -> None:
    d = run.dir
    redis_port, mcp_port, nginx_port, *gw_ports = free_ports(3 + n)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    if opts.redis_mode not in REDIS_MODES:
        raise RigError(f"redis_mode {opts.redis_mode!r}: the rig runs {' or '.join(REDIS_MODES)}")
    if opts.redis_mode == "cluster" and opts.gateway_cache == "redis":
        raise RigError("the gateway's Redis cache uses database 1, which a Cluster does not have: use GW_CACHE=memory")
    sec = {
        "jwt": secrets.token_urlsafe(48),
        "enc": secrets.token_urlsafe(48),
        "admin_password": rig_password(),
        "default_user_password": rig_password(),
    }
    user_password = rig_password()
    base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}

    # Redis: the shared private-server command line (no persistence, loopback only), but started and
    # recorded here, since it outlives this process. DB 0 is the rate limiter's, DB 1 the gateway's cache.
    if opts.redis_mode == "cluster":
        redis_url = start_cluster(run)
        redis_pids = [p["pid"] for p in run.procs if p["name"].startswith("redis-")]
    else:
        (d / "redis").mkdir()
        argv = server_argv(redis_server, redis_port, d / "redis", args=["--protected-mode", "yes"])
        p = run.start("redis", argv, base_env, d, f"127.0.0.1:{redis_port}")
        try:
            wait_ready(redis_port, 10, proc=p)
        except RedisUnavailableError as e:
            raise RigError(f"{e} (see {d / 'redis' / 'redis.log'})") from e
        redis_pids = [p.pid]

    p = run.start(
        "mcp-server",
        [str(GATEWAY_PY), str(RIG_DIR / "mcp_server.py"), "--port", str(mcp_port)],
        base_env,
        d,
        "mcp_server.py",
    )
    wait_port(mcp_port, 30, p, "MCP test server")

    plugins_yaml = d / "plugins.yaml"
    _write_plugins_yaml(plugins_yaml, opts, redis_url, d)
    paths = {
        "db": str(d / "gateway.db"),
        "plugins_yaml": str(plugins_yaml),
        "gateway_redis_url": f"redis://127.0.0.1:{redis_port}/1",
    }
    gateways = []
    procs = []
    started = []
    for i, (port, engine) in enumerate(zip(gw_ports, opts.engines)):
        gdir = d / f"gw{i + 1}"
        gdir.mkdir()  # its cwd: the gateway reads ./.env from there (none), so nothing stray leaks in
        env = _gateway_env(opts, i, port, engine, sec, paths)
        argv = [str(GATEWAY_VENV / "bin" / "mcpgateway"), "--host", "127.0.0.1", "--port", str(port)]
        started.append(time.monotonic())
        proc = run.start(f"gw{i + 1}", argv, env, gdir, "mcpgateway")
        procs.append(proc)
        gateways.append({"name": f"gw{i + 1}", "url": f"http://127.0.0.1:{port}", "engine": engine, "pid": proc.pid})
        if i == 0:
            # The first gateway creates the shared database (migrations); the others start after it.
            wait_http_ok(f"http://127.0.0.1:{port}/health", 120, proc, "gateway gw1")
            gateways[0]["ready_s"] = round(time.monotonic() - started[0], 1)
    for g, proc, t in zip(gateways[1:], procs[1:], started[1:]):
        wait_http_ok(f"{g['url']}/health", 120, proc, f"gateway {g['name']}")
        g["ready_s"] = round(time.monotonic() - t, 1)

    (d / "nginx-tmp").mkdir()
    conf = d / "nginx.conf"
    conf.write_text(_nginx_conf(d, nginx_port, gw_ports))
    p = run.start("nginx", [nginx, "-c", str(conf), "-p", str(d), "-g", "daemon off;"], base_env, d, str(conf))
    wait_port(nginx_port, 10, p, "nginx")

    admin_token = _admin_token(sec, d)
    prov = provision(gateways[0]["url"], admin_token, opts, f"http://127.0.0.1:{mcp_port}/mcp", user_password)

    rig = {
        "run_dir": str(d),
        "nginx_url": f"http://127.0.0.1:{nginx_port}",
        "gateways": gateways,
        "redis_url": redis_url,
        "redis_mode": opts.redis_mode,
        "redis_port": int(redis_url.rsplit(":", 1)[1].split("/")[0]),
        "redis_pid": redis_pids[0],  # the seed node on a Cluster
        "redis_pids": redis_pids,
        "mcp_url": f"http://127.0.0.1:{mcp_port}/mcp",
        "tool": TOOL_NAME,
        "prompt": PROMPT_NAME,
        "plugin": opts.plugin,
        "plugin_config": opts.plugin_config(redis_url) if opts.plugin == "rate_limiter" else None,
        "engines": opts.engines,
        "http_hooks": opts.http_hooks,
        "observability": opts.observability,
        "control_telemetry": opts.control_telemetry,
        "gateway_rate_limiting": opts.gateway_rate_limiting,
        "admin_token": admin_token,
        "versions": installed_versions(),
        **prov,
    }
    rig_json = d / "rig.json"
    rig_json.write_text(json.dumps(rig, indent=1))
    os.chmod(rig_json, 0o600)


def start_cluster(run: Run) -> str:
    """Start a local Redis Cluster (3 primaries + 3 replicas, loopback) with the project's launcher, files in
    <run>/redis-cluster/, its nodes recorded as redis-1..redis-6 so that `down` stops them; the seed node's URL."""
    try:
        import redis  # noqa: F401
        from support.redis_cluster import RedisCluster  # its health checks need redis-py (rig/.venv-rig has it)
    except ImportError as e:
        raise RigError(f"REDIS_MODE=cluster needs redis-py ({e}): run with rig/.venv-rig/bin/python (make rig-up does)") from e
    cluster = RedisCluster(workdir=run.dir / "redis-cluster")
    try:
        cluster.start()
    except (RedisUnavailableError, subprocess.SubprocessError, OSError) as e:
        raise RigError(f"local Redis Cluster did not start: {e}") from e
    url = cluster.url
    for i, node in enumerate(cluster.nodes):
        run.adopt(f"redis-{i + 1}", node.pid, f"127.0.0.1:{node.port}")
    cluster.detach()
    return url


ENGINE_LINE = re.compile(r"rate limiter (?P<plugin>\S+): engine=(?P<engine>\w+) backend=(?P<backend>\w+)")


def plugin_engine_lines(log_text: str) -> list[dict[str, str]]:
    """The plugin's start-up INFO lines in a gateway log ("rate limiter <name>: engine=go backend=...",
    python/rate_limiter_go/plugin.py, initialize): one per plugin instance the gateway initialised."""
    return [m.groupdict() for m in ENGINE_LINE.finditer(log_text)]


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally: down(...)` runs when make or a CI timeout stops a driver
    (the rig's processes run in their own sessions and would outlive it otherwise)."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def load_rig(run_dir: Path | None = None) -> dict[str, Any]:
    """rig.json of a run (default: rig/run/current)."""
    d = run_dir or (RUN_ROOT / "current")
    return json.loads((d / "rig.json").read_text())


def running_runs(root: Path | None = None) -> list[Path]:
    """Run directories under root (default rig/run/, nested ones such as features-*/hooks/ included)
    with a recorded process still running."""
    root = root or RUN_ROOT
    out = []
    for pids in sorted(root.rglob("pids.json")) if root.is_dir() else []:
        run = Run(pids.parent)
        if any(p["match"] in _cmdline(p["pid"]) and not _is_zombie(p["pid"]) for p in run.procs):
            out.append(pids.parent.resolve())
    return out


def down(run_dir: Path | None = None) -> list[str]:
    """Stop the processes of run_dir; without one, of every run still running (see running_runs)."""
    current = RUN_ROOT / "current"
    if run_dir is None:
        dirs = running_runs()
        if not dirs:
            if current.is_symlink():
                current.unlink()
            return [f"no rig running under {RUN_ROOT}"]
    else:
        dirs = [run_dir.resolve()]
    report = []
    for d in dirs:
        if not (d / "pids.json").exists():
            report.append(f"no pids.json in {d}: nothing to stop")
            continue
        report.append(f"run {d}:")
        report += ["  " + line for line in Run(d).stop_all()]
        if current.is_symlink() and current.resolve() == d:
            current.unlink()
    return report


def status(run_dir: Path | None = None) -> list[str]:
    """The recorded processes of run_dir; without one, of every run still running."""
    dirs = [run_dir.resolve()] if run_dir is not None else running_runs()
    if not dirs:
        return [f"no rig running under {RUN_ROOT}"]
    out = []
    for d in dirs:
        out.append(f"run dir: {d}")
        for p in Run(d).procs:
            alive = p["match"] in _cmdline(p["pid"]) and not _is_zombie(p["pid"])
            out.append(f"  {p['name']:<11} pid {p['pid']:<8} {'running' if alive else 'stopped'}")
    return out


def _options_from_args(a: argparse.Namespace) -> RigOptions:
    engines = a.engines.split()
    if not engines or any(e not in ("go", "python", "auto", ENGINE_OFF) for e in engines):
        raise SystemExit(f"--engines: space-separated list of go|python|auto|off, got {a.engines!r}")
    return RigOptions(
        engines=engines,
        plugin=a.plugin,
        backend=a.backend,
        redis_mode=a.redis_mode,
        algorithm=a.algorithm,
        by_user=a.by_user or None,
        by_tenant=a.by_tenant or None,
        by_tool=_parse_by_tool(a.by_tool),
        fail_mode=a.fail_mode,
        mode=a.mode,
        users=a.users,
        teams=a.teams,
        gateway_cache=a.gateway_cache,
        gateway_log_level=a.gateway_log_level,
        probe_block_after=a.probe_block_after,
        plugin_options=parse_plugin_options(a.plugin_option),
        gateway_rate_limiting=a.gateway_rate_limiting,
        http_hooks=a.http_hooks,
        observability=a.observability,
        control_telemetry=a.control_telemetry,
        run_dir=Path(a.run_dir).resolve() if a.run_dir else None,
    )


def add_rig_arguments(ap: argparse.ArgumentParser) -> None:
    """The `up` options, shared with the load-test and demo drivers. Defaults come from the environment."""
    env = os.environ.get
    ap.add_argument("--engines", default=env("GW_ENGINES", "go python go"), help="one RATE_LIMITER_ENGINE per gateway")
    ap.add_argument("--plugin", choices=("rate_limiter", "probe", "none"), default=env("RIG_PLUGIN", "rate_limiter"))
    ap.add_argument("--backend", choices=("redis", "memory"), default=env("RL_BACKEND", "redis"))
    ap.add_argument(
        "--redis-mode",
        choices=REDIS_MODES,
        default=env("REDIS_MODE") or "standalone",
        help="cluster: a local Redis Cluster (3 primaries + 3 replicas) instead of one redis-server",
    )
    ap.add_argument(
        "--algorithm",
        choices=("fixed_window", "sliding_window", "token_bucket"),
        default=env("RL_ALGORITHM", "fixed_window"),
    )
    ap.add_argument("--by-user", default=env("RL_BY_USER", "20/s"), help='e.g. "20/s"; empty: off')
    ap.add_argument("--by-tenant", default=env("RL_BY_TENANT", ""), help="empty: off")
    ap.add_argument("--by-tool", action="append", default=[], metavar="NAME=RATE")
    ap.add_argument("--fail-mode", choices=("open", "closed"), default=env("RL_FAIL_MODE", "open"))
    ap.add_argument("--mode", choices=("enforce", "permissive"), default="enforce")
    ap.add_argument("--users", type=int, default=int(env("RIG_USERS", "4")))
    ap.add_argument("--teams", type=int, default=int(env("RIG_TEAMS", "2")))
    ap.add_argument("--gateway-cache", choices=("memory", "redis"), default=env("GW_CACHE", "memory"))
    ap.add_argument("--gateway-log-level", default=env("GW_LOG_LEVEL", "WARNING"))
    ap.add_argument("--probe-block-after", type=int, default=None)
    ap.add_argument(
        "--gateway-rate-limiting",
        action="store_true",
        help="leave the gateway's own RateLimitMiddleware on (default off)",
    )
    ap.add_argument(
        "--http-hooks",
        action="store_true",
        default=bool(env("RIG_HTTP_HOOKS")),
        help="list the plugin's http_pre_request/http_post_request hooks too (headers on admitted calls)",
    )
    ap.add_argument(
        "--observability",
        action="store_true",
        default=bool(env("RIG_OBSERVABILITY")),
        help="OBSERVABILITY_ENABLED=true: the gateway traces requests and records plugin metadata",
    )
    ap.add_argument(
        "--control-telemetry",
        action="store_true",
        help="CPEX_CONTROL_TELEMETRY_ENABLED=true: cpex control-execution spans, refusals included",
    )
    ap.add_argument(
        "--plugin-option", action="append", default=[], metavar="KEY=VALUE", help="e.g. redis_timeout_ms=200"
    )
    ap.add_argument("--run-dir", default=None, help="default: rig/run/<timestamp>")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ContextForge rate limiter rig")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_rig_arguments(sub.add_parser("up", help="start and provision the rig"))
    for name in ("down", "status"):
        sp = sub.add_parser(name)
        sp.add_argument("run_dir", nargs="?", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "up":
        t0 = time.monotonic()
        try:
            d = up(_options_from_args(a), link_current=True)
        except RigError as e:
            print(f"rig up failed: {e}", file=sys.stderr)
            return 1
        rig = load_rig(d)
        print(f"rig up in {time.monotonic() - t0:.1f} s: {d}")
        print(f"  {versions_text(rig.get('versions', {}))}")
        print(f"  nginx  {rig['nginx_url']}   (POST /rpc, tool {rig['tool']})")
        for g in rig["gateways"]:
            print(f"  {g['name']}    {g['url']}   RATE_LIMITER_ENGINE={g['engine']}")
        print(f"  redis  {rig['redis_url']}" + (f" (Redis Cluster seed node, {len(rig['redis_pids'])} nodes)"
                                                if rig.get("redis_mode") == "cluster" else ""))
        print(f"  users  {len(rig['users'])} (tokens in {d}/rig.json)")
        return 0
    run_dir = Path(a.run_dir) if a.run_dir else None
    for line in (down if a.cmd == "down" else status)(run_dir):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

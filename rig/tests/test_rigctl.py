"""Generated rig configuration: loopback only, nginx never limits or retries, plugin YAML as asked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rigctl  # noqa: E402


def test_nginx_is_loopback_only_never_limits_and_never_replays(tmp_path):
    conf = rigctl._nginx_conf(tmp_path, 8080, [9001, 9002, 9003])
    assert "listen 127.0.0.1:8080;" in conf
    assert all(f"server 127.0.0.1:{p}" in conf for p in (9001, 9002, 9003))
    directives = [line.split("#")[0] for line in conf.splitlines()]
    assert not any("limit_req" in d or "limit_conn" in d for d in directives)
    assert any("proxy_next_upstream off;" in d for d in directives)
    assert any("add_header X-Rig-Upstream $upstream_addr always;" in d for d in directives)


def test_plugin_yaml_carries_the_rate_limiter_config(tmp_path):
    opts = rigctl.RigOptions(
        backend="redis", algorithm="token_bucket", by_user="7/s", by_tenant="9/m", by_tool={"rig-rig-echo": "3/s"},
        fail_mode="closed", plugin_options=rigctl.parse_plugin_options(["redis_timeout_ms=200"]),
    )  # fmt: skip
    path = tmp_path / "plugins.yaml"
    rigctl._write_plugins_yaml(path, opts, "redis://127.0.0.1:1/0", tmp_path)
    doc = json.loads(path.read_text())  # JSON is YAML
    [plugin] = doc["plugins"]
    assert plugin["kind"] == "rate_limiter_go.plugin.RateLimiterPlugin"
    assert plugin["hooks"] == ["tool_pre_invoke", "prompt_pre_fetch"]
    assert plugin["config"] == {
        "algorithm": "token_bucket", "backend": "redis", "fail_mode": "closed", "by_user": "7/s",
        "by_tenant": "9/m", "by_tool": {"rig-rig-echo": "3/s"}, "redis_url": "redis://127.0.0.1:1/0",
        "redis_timeout_ms": 200,
    }  # fmt: skip
    assert doc["plugin_settings"]["fail_on_plugin_error"] is True


def test_memory_backend_gets_no_redis_url():
    cfg = rigctl.RigOptions(backend="memory", by_user="5/m").plugin_config("redis://127.0.0.1:1/0")
    assert "redis_url" not in cfg and cfg["backend"] == "memory"


def test_gateway_env_disables_the_gateways_own_limiter_and_sets_the_engine():
    opts = rigctl.RigOptions()
    sec = {"jwt": "j" * 48, "enc": "e" * 48, "admin_password": "p", "default_user_password": "d"}
    paths = {"db": "/x/gateway.db", "plugins_yaml": "/x/plugins.yaml", "gateway_redis_url": "redis://127.0.0.1:1/1"}
    env = rigctl._gateway_env(opts, 0, 4444, "python", sec, paths)
    assert env["RATE_LIMITING_ENABLED"] == "false"
    assert env["RATE_LIMITER_ENGINE"] == "python"
    assert env["HOST"] == "127.0.0.1" and env["PLUGINS_ENABLED"] == "true"
    assert env["CACHE_TYPE"] == "memory" and "REDIS_URL" not in env


def test_free_ports_are_distinct():
    ports = rigctl.free_ports(6)
    assert len(set(ports)) == 6


def test_passwords_avoid_the_gateways_sequence_rule():
    assert rigctl._has_run_of_three("xxABCxx") and rigctl._has_run_of_three("q321q") and rigctl._has_run_of_three("zyx")
    assert not rigctl._has_run_of_three("a1b2c3") and not rigctl._has_run_of_three("ace-135")
    for _ in range(200):
        pw = rigctl.rig_password()
        assert not rigctl._has_run_of_three(pw)
        assert any(c.isupper() for c in pw) and any(c.islower() for c in pw) and any(c.isdigit() for c in pw)


def test_every_password_and_secret_passes_gateway_1_1_0_rules():
    # 1.1.0: passwords >= 12 characters (password_min_length_user), DEFAULT_USER_PASSWORD included
    sec = {"jwt": "j" * 64, "enc": "e" * 64, "admin_password": rigctl.rig_password(),
           "default_user_password": rigctl.rig_password()}  # fmt: skip
    env = rigctl._secret_env(sec)
    for key in ("BASIC_AUTH_PASSWORD", "PLATFORM_ADMIN_PASSWORD", "DEFAULT_USER_PASSWORD"):
        assert len(env[key]) >= 12, key
    for _ in range(50):
        pw = rigctl.rig_password()
        assert len(pw) >= 12 and not rigctl._has_run_of_three(pw)


def test_plugin_engine_lines_are_read_from_a_json_gateway_log():
    log = (
        '{"name": "rate_limiter_go.plugin", "levelname": "INFO", "message": "rate limiter RateLimiter: engine=go '
        'backend=memory algorithm=fixed_window dimensions=user fail_mode=open"}\n'
        '{"message": "something else"}\n'
        "INFO rate limiter RL2: engine=python backend=redis algorithm=token_bucket dimensions=user fail_mode=closed\n"
    )
    assert rigctl.plugin_engine_lines(log) == [
        {"plugin": "RateLimiter", "engine": "go", "backend": "memory"},
        {"plugin": "RL2", "engine": "python", "backend": "redis"},
    ]


def test_installed_versions_reads_dist_info(tmp_path, monkeypatch):
    monkeypatch.setattr(rigctl, "RUN_ROOT", tmp_path / "run")
    site = tmp_path / "lib" / "python3.12" / "site-packages"
    for d in ("mcp_contextforge_gateway-1.1.0", "mcp-2.3.0", "cpex-0.1.4", "rate_limiter_go-0.1.0", "other-1"):
        (site / f"{d}.dist-info").mkdir(parents=True)
    (tmp_path / "pyvenv.cfg").write_text("home = /x\nversion = 3.12.1\n")
    v = rigctl.installed_versions(tmp_path)
    assert v == {"python": "3.12.1", "gateway": "1.1.0", "mcp": "2.3.0", "cpex": "0.1.4", "rate_limiter_go": "0.1.0"}
    # with rig/install.sh's records, the wheel's source commit too
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "install-package-1.1.0.json").write_text(json.dumps({"detail": "pip install of the wheel x.whl"}))
    (tmp_path / "run" / "install-wheel-build-1.1.0.json").write_text(
        json.dumps({"detail": "make wheels PYTHONS=3.12 in a clean export of commit abc1234 (its build venv included)"})
    )
    v = rigctl.installed_versions(tmp_path)
    assert v["rate_limiter_go_from"] == "wheel of commit abc1234"
    assert rigctl.versions_text(v).endswith("rate_limiter_go 0.1.0, wheel of commit abc1234)")


def test_stop_all_also_stops_what_a_process_left_in_its_group(tmp_path):
    run = rigctl.Run(tmp_path)
    # a "server" that starts a child in its session and exits at once, leaving the child behind
    script = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    proc = run.start("leaver", [sys.executable, "-c", script], {}, tmp_path, "import subprocess")
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while not rigctl._group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = rigctl._group_members(proc.pid)
    assert children, "the child should still run in the leader's group"
    report = run.stop_all(timeout_s=2)
    assert any("leftover" in line for line in report), report
    time.sleep(0.2)
    assert not [c for c in rigctl._group_members(proc.pid) if not rigctl._is_zombie(c)]


def test_http_hooks_are_listed_only_when_asked(tmp_path):
    path = tmp_path / "plugins.yaml"
    rigctl._write_plugins_yaml(path, rigctl.RigOptions(http_hooks=True), "redis://127.0.0.1:1/0", tmp_path)
    [plugin] = json.loads(path.read_text())["plugins"]
    assert plugin["hooks"] == ["tool_pre_invoke", "prompt_pre_fetch", "http_pre_request", "http_post_request"]


def test_observability_and_control_telemetry_env():
    sec = {"jwt": "j" * 48, "enc": "e" * 48, "admin_password": "p", "default_user_password": "d"}
    paths = {"db": "/x/gateway.db", "plugins_yaml": "/x/plugins.yaml", "gateway_redis_url": "redis://127.0.0.1:1/1"}
    env = rigctl._gateway_env(rigctl.RigOptions(), 0, 4444, "go", sec, paths)
    assert "OBSERVABILITY_ENABLED" not in env and "CPEX_CONTROL_TELEMETRY_ENABLED" not in env
    opts = rigctl.RigOptions(observability=True, control_telemetry=True)
    env = rigctl._gateway_env(opts, 0, 4444, "go", sec, paths)
    assert env["OBSERVABILITY_ENABLED"] == "true" and env["CPEX_CONTROL_TELEMETRY_ENABLED"] == "true"


def test_cli_options_reach_the_rig_options():
    import argparse

    ap = argparse.ArgumentParser()
    rigctl.add_rig_arguments(ap)
    a = ap.parse_args(["--http-hooks", "--observability", "--control-telemetry"])
    opts = rigctl._options_from_args(a)
    assert opts.http_hooks and opts.observability and opts.control_telemetry


def _sleeper(run: rigctl.Run, name: str) -> int:
    marker = f"rig-test-{name}-{time.monotonic_ns()}"
    run.start(name, [sys.executable, "-c", "import time, sys; time.sleep(60)", marker], {}, run.dir, marker)
    return run.procs[-1]["pid"]


def _alive(pid: int) -> bool:
    return bool(rigctl._cmdline(pid)) and not rigctl._is_zombie(pid)


def test_a_driver_run_does_not_move_current(tmp_path, monkeypatch):
    # `make rig-up` points current at its run; a load test's own rig must not take the link over,
    # or `make rig-down` would stop only the load test's (already stopped) run
    monkeypatch.setattr(rigctl, "RUN_ROOT", tmp_path / "run")
    kept = rigctl._new_run_dir(rigctl.RigOptions(), link_current=True)
    driver = rigctl._new_run_dir(rigctl.RigOptions(), link_current=False)
    assert driver != kept
    assert (tmp_path / "run" / "current").resolve() == kept.resolve()


def test_down_without_a_run_dir_stops_every_running_rig(tmp_path, monkeypatch):
    root = tmp_path / "run"
    monkeypatch.setattr(rigctl, "RUN_ROOT", root)
    kept = rigctl._new_run_dir(rigctl.RigOptions(), link_current=True)
    other = rigctl._new_run_dir(rigctl.RigOptions(), link_current=False)
    nested = root / "features-x" / "hooks"
    nested.mkdir(parents=True)
    stopped = rigctl._new_run_dir(rigctl.RigOptions(), link_current=False)
    runs = {d: rigctl.Run(d) for d in (kept, other, nested, stopped)}
    pids = {d: [_sleeper(r, "a"), _sleeper(r, "b")] for d, r in runs.items()}
    try:
        runs[stopped].stop_all(timeout_s=2)
        assert set(rigctl.running_runs()) == {kept.resolve(), other.resolve(), nested.resolve()}
        assert any("run dir" in line for line in rigctl.status())
        report = rigctl.down()
        time.sleep(0.2)
        assert not [p for ps in pids.values() for p in ps if _alive(p)], report
        assert not (root / "current").is_symlink()
        assert rigctl.running_runs() == []
        assert rigctl.down() == [f"no rig running under {root}"]
    finally:
        for r in runs.values():
            r.stop_all(timeout_s=1)


def test_down_of_one_run_leaves_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(rigctl, "RUN_ROOT", tmp_path / "run")
    a = rigctl._new_run_dir(rigctl.RigOptions(), link_current=True)
    b = rigctl._new_run_dir(rigctl.RigOptions(), link_current=False)
    ra, rb = rigctl.Run(a), rigctl.Run(b)
    pa, pb = _sleeper(ra, "a"), _sleeper(rb, "b")
    try:
        rigctl.down(b)
        time.sleep(0.2)
        assert _alive(pa) and not _alive(pb)
        assert (tmp_path / "run" / "current").resolve() == a.resolve()
    finally:
        ra.stop_all(timeout_s=1)
        rb.stop_all(timeout_s=1)


def test_cluster_mode_gives_the_plugin_redis_mode_cluster_and_a_seed_node():
    cfg = rigctl.RigOptions(backend="redis", redis_mode="cluster").plugin_config("redis://127.0.0.1:12001/0")
    assert cfg["redis_mode"] == "cluster" and cfg["redis_url"] == "redis://127.0.0.1:12001/0"
    assert "redis_mode" not in rigctl.RigOptions(backend="redis").plugin_config("redis://127.0.0.1:1/0")
    ap = __import__("argparse").ArgumentParser()
    rigctl.add_rig_arguments(ap)
    assert rigctl._options_from_args(ap.parse_args(["--redis-mode", "cluster"])).redis_mode == "cluster"


def test_cluster_mode_refuses_the_gateways_redis_cache_before_starting_anything(tmp_path):
    run = rigctl.Run(tmp_path)
    opts = rigctl.RigOptions(redis_mode="cluster", gateway_cache="redis")
    try:
        rigctl._up(opts, run, "/nonexistent/nginx", "/nonexistent/redis-server", 3)
    except rigctl.RigError as e:
        assert "database 1" in str(e)
    else:
        raise AssertionError("no error")
    assert run.procs == []


def test_a_cluster_started_by_an_exited_process_is_recorded_and_stopped_by_down(tmp_path, monkeypatch):
    # `make rig-up REDIS_MODE=cluster`: the process that starts the Cluster exits, the 6 nodes keep running,
    # and `make rig-down` (down() without a run directory) stops them like every other rig process
    root = tmp_path / "run"
    monkeypatch.setattr(rigctl, "RUN_ROOT", root)
    d = rigctl._new_run_dir(rigctl.RigOptions(), link_current=True)
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import rigctl; "
        "print(rigctl.start_cluster(rigctl.Run(Path(sys.argv[2]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(Path(rigctl.__file__).parent), str(d)],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    nodes = [p for p in rigctl.Run(d).procs if p["name"].startswith("redis-")]
    try:
        assert out.returncode == 0, out.stderr
        assert [p["name"] for p in nodes] == [f"redis-{i}" for i in range(1, 7)]
        ports = [int(p["match"].rsplit(":", 1)[1]) for p in nodes]
        assert out.stdout.strip() == f"redis://127.0.0.1:{ports[0]}/0"
        assert all(port <= 55535 for port in ports)  # a cluster bus port is port + 10000
        assert all(_alive(p["pid"]) for p in nodes), "the nodes died with the process that started them"
        import redis

        with redis.Redis(host="127.0.0.1", port=ports[0], socket_timeout=5) as c:
            assert "cluster_state:ok" in c.execute_command("CLUSTER", "INFO").decode()
        assert rigctl.running_runs() == [d.resolve()]
        report = rigctl.down()
        time.sleep(0.2)
        assert not [p for p in nodes if _alive(p["pid"])], report
        assert rigctl.running_runs() == []
    finally:
        rigctl.Run(d).stop_all(timeout_s=2)

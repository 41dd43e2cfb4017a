#!/usr/bin/env python3
"""Redis Cluster and Sentinel failovers under load, through the real plugin hook (``make chaos-failover``).

One engine per run (``--engine python`` or ``go``, set as RATE_LIMITER_ENGINE
before the plugins are built), so both engines' rows come from this one
harness. For each scenario a fresh local deployment is started with the
shared launchers of tests_py/support/redis_cluster.py (Cluster: 3 primaries +
3 replicas; Sentinel: 1 primary, 2 replicas, 3 sentinels), and two real
RateLimiterPlugin instances on it, one with ``fail_mode: open`` and one with
``fail_mode: closed``, count the same user (limit never reached,
``redis_timeout_ms`` 100, breaker 5 failures / 200 ms). Eight asyncio tasks,
four per plugin, call ``tool_pre_invoke`` without pause (2 ms after a
fail_mode answer, as the Go library's runs do after an error); after 2 s the
fault hits the primary serving the user (or its slot moves to another
primary: ``redis-cli --cluster reshard``), and the run goes on until both
plugins decided again after the promotion (at most 10 s), then 1 s more.

Each call is classified: ``decided`` (admitted with X-RateLimit-* headers,
or a RATE_LIMIT refusal), ``fail_open`` (admitted without headers),
``fail_closed`` (refused with BACKEND_UNAVAILABLE), ``escaped`` (an exception
left the hook, or it ran longer than the 5 s watchdog). One JSON line per
scenario is appended to ``--out`` (the same file as the Go library's rows of
tests_go/redis_failover_chaos_test.go); tools/chaos/chaos_report.py renders
them into docs/reliability.md. Goals (the exit status is 1 if one is missed):
no call escaped, each plugin applied its own fail_mode and never the other,
and both decided again within 2 s of the promotion. With RL_CHAOS_CALLS=FILE
every call is also appended there (plugin, start, end, outcome; seconds from
the fault), for a closer look at a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess  # nosec B404 # redis-cli --cluster reshard, a test fixture
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "chaos"))
sys.path.insert(0, str(ROOT / "tests_py"))  # the one launcher of local deployments lives with the tests

from chaos_report import FAILOVER_RESUME_S, failover_goals_met  # noqa: E402
from cpex.framework import GlobalContext, PluginConfig, PluginContext, ToolPreInvokePayload  # noqa: E402
from rate_limiter_go.config import parse_config  # noqa: E402
from rate_limiter_go.engine_python.redis_cluster import key_slot  # noqa: E402
from rate_limiter_go.keys import state_key  # noqa: E402
from rate_limiter_go.plugin import RateLimiterPlugin  # noqa: E402
from support.redis_cluster import SENTINEL_MASTER, RedisCluster, RedisSentinel  # noqa: E402
from support.redis_cluster import _redis_cli as redis_cli  # noqa: E402  # the launcher's own lookup
from support.redis_server import RedisServer  # noqa: E402

KIND = "rate_limiter_go.plugin.RateLimiterPlugin"
USER = "chaos"  # one user, one hash tag: one primary serves every call
TASKS_PER_PLUGIN = 4
BASELINE_S = 2.0
RESUME_WAIT_S = 10.0  # give up waiting for decisions after the promotion
TAIL_S = 1.0
FAILED_PAUSE_S = 0.002
WATCHDOG_S = 5.0  # a hook call longer than this counts as escaped (hung)
OUTPUTS = ("docs/reliability-results/", "docs/reliability.md")  # rewritten by the run: not "uncommitted changes"

#: scenario name (as the Go library's rows name it) -> deployment kind
SCENARIOS = {
    "cluster: kill -9 of the primary": "cluster",
    "cluster: CLUSTER FAILOVER on the replica": "cluster",
    "cluster: DEBUG SLEEP 1 on the primary": "cluster",
    "cluster: slot migration (redis-cli --cluster reshard)": "cluster",
    "sentinel: kill -9 of the primary": "sentinel",
    "sentinel: SENTINEL FAILOVER": "sentinel",
}


@dataclass
class Call:
    """One hook call: which plugin (its fail_mode), when (perf_counter s), and what came back."""

    mode: str
    start: float
    end: float
    outcome: str


@dataclass
class Row:
    """One scenario's figures: the Go library rows' columns plus the hook-level ones."""

    engine: str
    scenario: str
    commit: str = ""
    load_average: str = ""
    driver: str = "hook"  # tool_pre_invoke of the plugin (the Go library rows say "limiter")
    requests: int = 0
    failed: int = 0  # calls the plugin answered with its fail_mode
    fail_open: int = 0  # of those, by the fail_mode: open plugin (admitted without headers)
    fail_closed: int = 0  # of those, by the fail_mode: closed plugin (BACKEND_UNAVAILABLE)
    wrong_fail_mode: int = 0  # a plugin answered with the other fail_mode (goal 0)
    escaped: int = 0  # exception out of the hook, or longer than the watchdog (goal 0)
    max_call_ms: float = 0.0
    outage_s: float = 0.0  # from the fault to the new primary's promotion (DEBUG SLEEP: the stall)
    resumed_after_s: float | None = None  # promotion to the later of the two plugins' first decision
    resumed_by_mode: dict[str, float | None] = field(default_factory=dict)
    admitted_before_fault: int = 0
    counted_after: int = 0  # what the new primary holds of the admissions before the fault
    net_counts_lost: int = 0  # admitted_before_fault - counted_after (negative: writes whose reply was lost)


def classify(result: Any) -> str:
    if result.continue_processing:
        return "decided" if result.http_headers else "fail_open"
    code = result.violation.code if result.violation is not None else None
    return {"RATE_LIMIT": "decided", "BACKEND_UNAVAILABLE": "fail_closed"}.get(code, "other")


def make_plugin(config: dict[str, Any], engine: str) -> RateLimiterPlugin:
    plugin = RateLimiterPlugin(
        PluginConfig(name=f"failover-{uuid.uuid4().hex[:8]}", kind=KIND, hooks=["tool_pre_invoke"], config=config)
    )
    if plugin.engine.name != engine:
        raise RuntimeError(f"asked for engine {engine}, got {plugin.engine.name}")
    return plugin


class Deployment:
    """A started Cluster or Sentinel deployment: its settings, the fault, and the user's count afterwards."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.cluster = RedisCluster() if kind == "cluster" else None
        self.sentinel = RedisSentinel() if kind == "sentinel" else None

    def __enter__(self) -> Deployment:
        (self.cluster or self.sentinel).start()  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        (self.cluster or self.sentinel).close()  # type: ignore[union-attr]

    def settings(self) -> dict[str, Any]:
        if self.cluster is not None:
            return {"redis_mode": "cluster", "redis_url": self.cluster.url}
        assert self.sentinel is not None  # nosec B101 # one of the two is set in __init__
        return {"redis_mode": "sentinel", "redis_url": "redis://ignored.invalid:1/0",
                "redis_sentinels": self.sentinel.sentinel_addrs, "redis_sentinel_master": SENTINEL_MASTER}

    def primary(self, key: str) -> RedisServer:
        if self.cluster is not None:
            return self.cluster.primary_for(key)
        assert self.sentinel is not None  # nosec B101
        return self.sentinel.node(self.sentinel.current_primary_port())

    def count(self, key: str) -> int:
        with self.primary(key).client() as c:
            return int(c.hget(key, "c") or 0)

    def fault(self, scenario: str, key: str) -> float:
        """Break the primary serving ``key`` (or move its slot) as ``scenario`` says; return (perf_counter)
        when the new primary was promoted, or when the stall or the reshard ended. Blocking: run in a thread."""
        victim = self.primary(key)
        if scenario.endswith("kill -9 of the primary"):
            before = victim.port
            assert victim.proc is not None  # nosec B101 # a running node
            victim.proc.kill()
            victim.proc.wait()
            victim.stop()  # only forgets the dead process
            if self.sentinel is not None:
                self.sentinel.wait_primary_change(before)
                return time.perf_counter()
            return self._wait_cluster_primary(key, lambda port: port != before)
        if scenario.endswith("CLUSTER FAILOVER on the replica"):
            with victim.client() as c:
                replica_port = int(c.info("replication")["slave0"]["port"])
            with self._node(replica_port).client() as c:
                c.execute_command("CLUSTER", "FAILOVER")
            return self._wait_cluster_primary(key, lambda port: port == replica_port)
        if scenario.endswith("DEBUG SLEEP 1 on the primary"):
            with victim.client() as c:
                c.execute_command("DEBUG", "SLEEP", "1")
            return time.perf_counter()  # the stall is over when DEBUG SLEEP replies
        if scenario.endswith("(redis-cli --cluster reshard)"):
            return self._reshard_first_slot(victim, key)
        if scenario.endswith("SENTINEL FAILOVER"):
            assert self.sentinel is not None  # nosec B101
            self.sentinel.failover()
            return time.perf_counter()
        raise ValueError(f"unknown scenario {scenario!r}")

    def _reshard_first_slot(self, source: RedisServer, key: str) -> float:
        """Move ``source``'s lowest slot (the user's, see user_for) to another primary with redis-cli, which
        sets the slot MIGRATING / IMPORTING, MIGRATEs its keys (ASK meanwhile) and then assigns it (MOVED)."""
        assert self.cluster is not None  # nosec B101

        def ask(node: RedisServer, *command: str) -> Any:
            with node.client(decode_responses=True) as c:
                return c.execute_command(*command)

        target = next(n for n in self.cluster.nodes if n.running and n is not source and ask(n, "ROLE")[0] == "master")
        ids = {node.port: ask(node, "CLUSTER", "MYID") for node in (source, target)}
        subprocess.run([redis_cli(), "--cluster", "reshard", f"127.0.0.1:{source.port}",  # nosec B603 # redis-cli at a resolved path, loopback
                        "--cluster-from", ids[source.port], "--cluster-to", ids[target.port],
                        "--cluster-slots", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        done = time.perf_counter()
        if self.primary(key) is not target:
            raise RuntimeError("redis-cli --cluster reshard did not move the user's slot")
        return done

    def user_for(self, scenario: str, key_of: Callable[[str], str]) -> str:
        """The user the load runs as: "chaos", or for the slot migration a user whose key's slot is the
        lowest of its primary's (redis-cli moves a node's slots lowest first)."""
        if not scenario.endswith("(redis-cli --cluster reshard)"):
            return USER
        assert self.cluster is not None  # nosec B101
        with self.primary(key_of(USER)).client() as c:
            lowest = {int(start) for start, *_ in c.execute_command("CLUSTER", "SLOTS")}
        return next(u for u in (f"{USER}{i}" for i in range(1_000_000)) if key_slot(key_of(u)) in lowest)

    def _node(self, port: int) -> RedisServer:
        assert self.cluster is not None  # nosec B101
        return next(n for n in self.cluster.nodes if n.port == port)

    def _wait_cluster_primary(self, key: str, promoted: Callable[[int], bool], timeout_s: float = 30.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if promoted(self.primary(key).port):
                    return time.perf_counter()
            except OSError:  # a node restarting its links; ask again
                pass
            time.sleep(0.02)
        raise RuntimeError(f"no new primary for the user's slot within {timeout_s} s")


async def drive(plugins: dict[str, RateLimiterPlugin], user: str, stop: asyncio.Event, calls: list[Call]) -> None:
    payload = ToolPreInvokePayload(name="work", args={})

    async def worker(mode: str, plugin: RateLimiterPlugin, i: int) -> None:
        ctx = PluginContext(global_context=GlobalContext(request_id=f"r{mode}{i}", user=user))
        while not stop.is_set():
            start = time.perf_counter()
            try:
                outcome = classify(await asyncio.wait_for(plugin.tool_pre_invoke(payload, ctx), WATCHDOG_S))
            except Exception:  # noqa: BLE001 - counting what escapes is the point
                outcome = "escaped"
            calls.append(Call(mode, start, time.perf_counter(), outcome))
            # As the Go library's runs do: a caller refused by an outage waits 2 ms before the next
            # request, the others go on at once (letting the other tasks in).
            await asyncio.sleep(FAILED_PAUSE_S if outcome.startswith("fail_") else 0)

    await asyncio.gather(*(worker(m, p, i) for m, p in plugins.items() for i in range(TASKS_PER_PLUGIN)))


def first_decision_after(calls: list[Call], mode: str, at: float) -> float | None:
    """Seconds from ``at`` to the end of ``mode``'s first decided call that started at or after ``at``."""
    ends = [c.end for c in calls if c.mode == mode and c.outcome == "decided" and c.start >= at]
    return min(ends) - at if ends else None


async def run_scenario(engine: str, scenario: str, commit: str) -> Row:
    with Deployment(SCENARIOS[scenario]) as deployment:
        prefix = f"fo{uuid.uuid4().hex[:8]}"
        base = {"backend": "redis", "redis_key_prefix": prefix, "by_user": "1000000/h",
                "redis_timeout_ms": 100, "redis_connect_timeout_ms": 100, "redis_breaker_failures": 5,
                "redis_breaker_cooldown_ms": 200, **deployment.settings()}
        rate = parse_config(base).by_user

        def key_of(user: str) -> str:
            return state_key(prefix, "fixed_window", "user", rate, user)  # type: ignore[arg-type]

        user = deployment.user_for(scenario, key_of)
        key = key_of(user)
        plugins = {mode: make_plugin({**base, "fail_mode": mode}, engine) for mode in ("open", "closed")}
        calls: list[Call] = []
        stop = asyncio.Event()
        load = asyncio.create_task(drive(plugins, user, stop, calls))
        await asyncio.sleep(BASELINE_S)
        fault_at = time.perf_counter()
        promoted_at = await asyncio.to_thread(deployment.fault, scenario, key)
        deadline = promoted_at + RESUME_WAIT_S
        while time.perf_counter() < deadline and any(first_decision_after(calls, m, promoted_at) is None for m in plugins):
            await asyncio.sleep(0.05)
        await asyncio.sleep(TAIL_S)
        stop.set()
        await load
        for plugin in plugins.values():
            await plugin.shutdown()
        count = await asyncio.to_thread(deployment.count, key)
    if os.environ.get("RL_CHAOS_CALLS"):  # a timeline for a closer look: one line per call, times from the fault
        with open(os.environ["RL_CHAOS_CALLS"], "a") as f:
            f.write(json.dumps({"scenario": scenario, "engine": engine, "promoted": promoted_at - fault_at,
                                "calls": [(c.mode, round(c.start - fault_at, 4), round(c.end - fault_at, 4), c.outcome)
                                          for c in calls]}) + "\n")

    row = Row(engine=engine, scenario=scenario, commit=commit, load_average=" ".join(f"{x:.2f}" for x in os.getloadavg()))
    row.requests = len(calls)
    row.fail_open = sum(c.outcome == "fail_open" for c in calls if c.mode == "open")
    row.fail_closed = sum(c.outcome == "fail_closed" for c in calls if c.mode == "closed")
    row.failed = row.fail_open + row.fail_closed
    row.escaped = sum(c.outcome == "escaped" for c in calls)
    row.wrong_fail_mode = sum(c.outcome not in ("decided", "escaped", f"fail_{c.mode}") for c in calls)
    row.max_call_ms = round(max((c.end - c.start) * 1000 for c in calls), 1)
    row.outage_s = round(promoted_at - fault_at, 3)
    row.resumed_by_mode = {m: first_decision_after(calls, m, promoted_at) for m in plugins}
    waits = list(row.resumed_by_mode.values())
    row.resumed_after_s = None if None in waits else max(w for w in waits if w is not None)
    admitted = [c for c in calls if c.outcome == "decided"]  # the limit is never reached: decided = admitted
    row.admitted_before_fault = sum(c.end < fault_at for c in admitted)
    # Admissions after the fault went to the new primary; the rest of its count is what survived of those before.
    row.counted_after = count - (len(admitted) - row.admitted_before_fault)
    row.net_counts_lost = row.admitted_before_fault - row.counted_after
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", required=True, choices=["python", "go"])
    parser.add_argument("--out", type=Path, help="append one JSON line per scenario here")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="default: all")
    args = parser.parse_args(argv)
    os.environ["RATE_LIMITER_ENGINE"] = args.engine  # read at plugin init
    commit = os.environ.get("RL_CHAOS_COMMIT", "")
    if not commit:
        from docgen import git_state

        rev, clean = git_state(OUTPUTS)
        commit = rev + ("" if clean else "+dirty")
    missed = []
    for scenario in args.scenario or list(SCENARIOS):
        row = asyncio.run(run_scenario(args.engine, scenario, commit))
        line = json.dumps(asdict(row))
        print(f"failover-hook: {line}", flush=True)
        if args.out is not None:
            with args.out.open("a") as f:
                f.write(line + "\n")
        if not failover_goals_met(asdict(row)):
            missed.append(scenario)
    if missed:
        print(f"failover-hook: {args.engine}: goals missed in {', '.join(missed)} (escaped 0, own fail_mode only, "
              f"decisions within {FAILOVER_RESUME_S:g} s of the promotion)", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

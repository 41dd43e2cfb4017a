"""Tests of the benchmark harness itself: statistics, outcome checks, targets, peers' wrappers, Redis counters, report.

Run with ``make bench-test`` (the bench venv: limits, cpex-rate-limiter and
matplotlib are installed only there). Redis tests start a private
redis-server; without one they are skipped, unless CI=true, where that is a
failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cpex.framework import PluginConfig, ToolPreInvokeResult
from rlbench import report, targets
from rlbench.floor import FloorPlugin
from rlbench.limits_hook import LimitsPlugin
from rlbench.measure import Case, WrongOutcomeError, latency_stats, outcome_ok, percentile, throughput, timed_batch
from rlbench.subjects import build, supports
from rlbench.workload import TOOL, Scenario, request_pool

POOL = request_pool(8)


def _plugin_config(kind: str, raw: dict[str, Any]) -> PluginConfig:
    return PluginConfig(name="t", kind=kind, hooks=["tool_pre_invoke", "prompt_pre_fetch"], config=raw)


def _call_all(plugin: Any, n: int, request_index: int = 0) -> list[Any]:
    req = POOL[request_index]

    async def go() -> list[Any]:
        return [await plugin.tool_pre_invoke(req.tool_payload, req.context) for _ in range(n)]

    return asyncio.run(go())


# --- statistics -------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [
        ([5], 50, 5),
        ([5], 99, 5),
        ([1, 2, 3, 4], 50, 2),  # nearest rank: ceil(4 * 0.5) = 2nd value
        ([1, 2, 3, 4], 99, 4),
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 1001)), 99, 990),
        ([7, 8, 9], 0, 7),
    ],
)
def test_percentile_is_nearest_rank(values: list[int], q: float, want: int) -> None:
    assert percentile(values, q) == want


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_stats_mean_comes_from_batches_and_percentiles_from_calls() -> None:
    case = Case(key=("t",), call=None, args=[(1, 2)], admitted=True, expect=None)  # type: ignore[arg-type]
    case.samples.extend([100, 200, 300, 400])
    case.batch_ns += [1200, 600]  # includes loop overhead, unlike the samples
    case.batch_calls += [2, 2]
    stats = latency_stats(case)
    assert stats.calls == 4
    assert stats.mean == 450.0
    assert (stats.p50, stats.p99) == (200.0, 400.0)
    assert stats.round_means == (600.0, 300.0)
    assert stats.round_p50s == (100.0, 300.0) and stats.best_p50 == 100.0


# --- outcome checks ---------------------------------------------------------


def test_floor_returns_the_result_shapes_the_checks_expect() -> None:
    admitted = _call_all(FloorPlugin(_plugin_config("floor", {"path": "admitted"})), 1)[0]
    blocked = _call_all(FloorPlugin(_plugin_config("floor", {"path": "blocked"})), 1)[0]
    assert outcome_ok(admitted, True) and not outcome_ok(admitted, False)
    assert outcome_ok(blocked, False) and not outcome_ok(blocked, True)
    assert blocked.violation.http_headers["Retry-After"] == "1"
    with pytest.raises(ValueError, match="path"):
        FloorPlugin(_plugin_config("floor", {"path": "sideways"}))


def test_a_fail_open_answer_on_the_blocked_path_aborts_the_batch() -> None:
    async def fail_open(payload: Any, context: Any) -> ToolPreInvokeResult:
        return ToolPreInvokeResult()  # admitted, no headers: what fail_mode open returns

    case = Case(key=("t",), call=fail_open, args=[(None, None)], admitted=False,
                expect=lambda r: outcome_ok(r, False), readmitted_ok=lambda r: outcome_ok(r, True),
                max_readmitted=5)  # fmt: skip
    with pytest.raises(WrongOutcomeError):
        asyncio.run(timed_batch(case, 10, 10**9))
    assert case.readmitted == 0 and case.batch_ns == []


def test_window_roll_over_on_the_blocked_path_is_counted_up_to_the_allowance() -> None:
    plugin = FloorPlugin(_plugin_config("floor", {"path": "admitted"}))
    case = Case(key=("t",), call=plugin.tool_pre_invoke, args=[(p.tool_payload, p.context) for p in POOL],
                admitted=False, expect=lambda r: outcome_ok(r, False), readmitted_ok=lambda r: outcome_ok(r, True),
                max_readmitted=3)  # fmt: skip
    asyncio.run(timed_batch(case, 3, 10**9))
    assert case.readmitted == 3 and case.batch_calls == [3]
    with pytest.raises(WrongOutcomeError):
        asyncio.run(timed_batch(case, 1, 10**9))


def test_timed_batch_stops_at_its_time_cap_with_at_least_one_call() -> None:
    async def slow(payload: Any, context: Any) -> None:
        await asyncio.sleep(0.01)

    case = Case(key=("t",), call=slow, args=[(None, None)], admitted=True, expect=None)
    asyncio.run(timed_batch(case, 1000, 25_000_000))
    assert 1 <= case.batch_calls[0] < 10
    assert len(case.samples) == case.batch_calls[0]


def test_throughput_counts_every_completed_call() -> None:
    plugin = FloorPlugin(_plugin_config("floor", {"path": "admitted"}))
    args = [(p.tool_payload, p.context) for p in POOL]
    rps, calls = asyncio.run(throughput(plugin.tool_pre_invoke, args, True, 16, 0, 160))
    assert calls == 160 and rps > 0


# --- the limits wrapper -------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_limits_wrapper_admits_up_to_the_limit_then_blocks_with_headers(algorithm: str) -> None:
    plugin = LimitsPlugin(_plugin_config("limits", {"by_user": "2/m", "algorithm": algorithm}))
    first, second, third = _call_all(plugin, 3)
    assert first.http_headers["X-RateLimit-Remaining"] == "1"
    assert second.http_headers["X-RateLimit-Remaining"] == "0"
    assert first.http_headers["X-RateLimit-Limit"] == "2"
    assert not third.continue_processing
    assert third.violation.code == "RATE_LIMIT" and third.violation.http_status_code == 429
    assert 1 <= int(third.violation.http_headers["Retry-After"]) <= 60
    assert "user-000" not in third.violation.description  # no identity in the description


def test_limits_wrapper_reports_the_smallest_remaining_and_the_refusing_dimension() -> None:
    raw = {"by_user": "10/m", "by_tenant": "10/m", "by_tool": {TOOL.upper(): "2/m"}}
    plugin = LimitsPlugin(_plugin_config("limits", raw))
    first, _, third = _call_all(plugin, 3)
    assert first.http_headers["X-RateLimit-Limit"] == "2"  # the tool's limit has the least left
    assert third.violation.details["dimension"] == "tool"


def test_limits_wrapper_has_no_token_bucket() -> None:
    with pytest.raises(ValueError, match="token_bucket"):
        LimitsPlugin(_plugin_config("limits", {"by_user": "1/s", "algorithm": "token_bucket"}))
    assert not supports("limits", Scenario("memory", "token_bucket", 1, "admitted"))


# --- subjects as built by the harness ------------------------------------------


@pytest.mark.parametrize("subject", ["python", "cpex-rate-limiter", "limits"])
@pytest.mark.parametrize("path", ["admitted", "blocked"])
def test_subjects_answer_on_the_path_of_the_scenario(subject: str, path: str) -> None:
    plugin = build(subject, Scenario("memory", "fixed_window", 3, path), None)
    results = _call_all(plugin, 3, request_index=5)
    assert all(outcome_ok(r, path == "admitted") for r in results[1:])


def test_our_plugin_with_an_unbuildable_engine_is_reported_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    from rate_limiter_go import _native
    from rlbench.subjects import SubjectUnavailableError

    monkeypatch.setattr(_native, "native_available", lambda: False)
    monkeypatch.setattr(_native, "native_unavailable_reason", lambda: "not built (test)")
    with pytest.raises(SubjectUnavailableError, match="not built"):
        build("go", Scenario("memory", "fixed_window", 1, "admitted"), None)
    assert os.environ.get("RATE_LIMITER_ENGINE") != "go"  # the switch is restored


# --- targets ----------------------------------------------------------------


def _lat(subject: str, backend: str, dims: int, p50: float, mean: float | None = None) -> dict[str, Any]:
    return {"kind": "hook", "subject": subject, "backend": backend, "algorithm": "fixed_window", "dims": dims,
            "path": "admitted", "hook": "tool_pre_invoke", "p50": p50 * 1.5, "best_p50": p50, "mean": mean or p50,
            "p99": p50 * 2}  # fmt: skip


def _results(go_p50: float, py_p50: float, rs_p50: float, evalsha: float, reads: float, go_rps: float) -> dict:
    return {
        "latency": [_lat("go", "memory", 3, go_p50), _lat("python", "memory", 3, py_p50),
                    _lat("cpex-rate-limiter", "memory", 3, rs_p50)],  # fmt: skip
        "redis_cost": [{"subject": "go", "commands_per_request": {"evalsha": evalsha, "hmget": 3.0},
                        "round_trips_per_request": reads}],  # fmt: skip
        "concurrency": [{"subject": "go", "backend": "redis", "inflight": 64, "rps_best": go_rps, "rps_median": 1.0},
                        {"subject": "cpex-rate-limiter", "backend": "redis", "inflight": 64, "rps_best": 1000.0,
                         "rps_median": 1.0}],
        "unavailable": {},
    }


def test_targets_pass_when_every_ratio_meets_the_goal() -> None:
    got = targets.evaluate(_results(go_p50=2.0, py_p50=10.0, rs_p50=2.0, evalsha=1.0, reads=1.0, go_rps=1000.0))
    assert [t["status"] for t in got] == ["PASS"] * 4


def test_targets_miss_on_each_shortfall() -> None:
    got = targets.evaluate(_results(go_p50=2.0, py_p50=9.9, rs_p50=1.9, evalsha=2.0, reads=1.0, go_rps=999.0))
    assert [t["status"] for t in got] == ["MISS"] * 4
    assert "4.95x" in got[0]["detail"]
    got = targets.evaluate(_results(go_p50=2.0, py_p50=10.0, rs_p50=2.0, evalsha=1.0, reads=1.5, go_rps=1000.0))
    assert got[2]["status"] == "MISS"  # one EVALSHA but more than one read event per request


def test_targets_not_run_without_the_go_engine() -> None:
    res = {"latency": [], "unavailable": {"go": "extension not built"}}
    got = targets.evaluate(res)
    assert {t["status"] for t in got} == {"NOT RUN"}
    assert all("not built" in t["detail"] for t in got)


# --- report -------------------------------------------------------------------


def test_report_writes_the_doc_and_a_png(tmp_path: Path) -> None:
    res = _results(go_p50=2000.0, py_p50=10000.0, rs_p50=3000.0, evalsha=1.0, reads=1.0, go_rps=1500.0)
    res["redis_cost"][0].update({"algorithm": "fixed_window", "dims": 3, "path": "admitted", "cpu_ms_per_10k": 120.0})
    res["latency"].append({"kind": "floor", "subject": "floor", "backend": None, "algorithm": None, "dims": None,
                           "path": "admitted", "hook": "tool_pre_invoke", "p50": 900.0, "best_p50": 800.0, "mean": 950.0,
                           "p99": 2e3})
    res.update({"algorithms": ["fixed_window"], "targets": targets.evaluate(res), "mode": "quick",
                "meta": {"cores": 2, "load_start": [0.1, 0.2, 0.3], "load_end": [3.0, 1.0, 1.0], "versions": {}},
                "settings": {}, "command": "make bench-ab-quick"})  # fmt: skip
    doc, png = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "benchmarks.png"
    report.write(res, doc, png)
    text = doc.read_text(encoding="utf-8")
    assert "| Go hook path >= 5x faster than the Python engine (memory, 3 dimensions) | **PASS** |" in text
    assert "Go lower at 0 of 1 (backend, in-flight) levels" in text
    assert "**2.00** · 2.00 / 3.00 / 4.00" in text  # go: best-round p50 · mean / p50 / p99 in µs
    assert "load average reached 3.0 on 2 cores" in text
    assert "](benchmarks.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- Redis counters ---------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Any:
    import rlbench  # noqa: F401 - puts tests_py/ on the path for support.redis_server
    from support.redis_server import RedisServer

    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed and CI=true: the Redis tests must run")
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


def test_snapshots_count_commands_inside_scripts_but_one_read_per_round_trip(redis_server: Any) -> None:
    from rlbench.redis_counters import command_delta, snapshot

    with redis_server.client() as c:
        before = snapshot(c)
        for _ in range(5):
            c.eval("redis.call('incr', KEYS[1]); return redis.call('incr', KEYS[1])", 1, "k")
        after = snapshot(c)
    cmds = command_delta(before, after)
    assert cmds["eval"] == 5 and cmds["incr"] == 10
    assert after.reads - before.reads == 6  # five EVALs and the second INFO
    assert after.cpu_s >= before.cpu_s

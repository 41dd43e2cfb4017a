"""Tests of the benchmark harness itself: statistics, outcome checks, targets, peers' wrappers, Redis counters, report.

Run with ``make bench-test`` (the bench venv: limits, cpex-rate-limiter and
matplotlib are installed only there). Redis tests start a private
redis-server; without one they are skipped, unless CI=true, where that is a
failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cpex.framework import PluginConfig, ToolPreInvokeResult
from rlbench import report, targets
from rlbench.baseline import NAME as REDIS_NOOP
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


def _results(go_p50: float, py_p50: float, rs_p50: float, evalsha: float, reads: float, go_rps: float,
             blocked_evalsha: float = 0.001) -> dict:  # fmt: skip
    def blocked(subject: str) -> dict[str, Any]:
        return {"subject": subject, "path": "blocked", "algorithm": "fixed_window", "dims": 3,
                "commands_per_request": {"evalsha": blocked_evalsha, "hmget": 3 * blocked_evalsha},
                "round_trips_per_request": blocked_evalsha, "cpu_ms_per_10k": 1.0}  # fmt: skip

    return {
        "latency": [_lat("go", "memory", 3, go_p50), _lat("python", "memory", 3, py_p50),
                    _lat("cpex-rate-limiter", "memory", 3, rs_p50)],  # fmt: skip
        "redis_cost": [{"subject": "go", "path": "admitted", "algorithm": "fixed_window", "dims": 3,
                        "commands_per_request": {"evalsha": evalsha, "hmget": 3.0}, "round_trips_per_request": reads,
                        "cpu_ms_per_10k": 100.0}, blocked("go"), blocked("python")],  # fmt: skip
        "concurrency": [{"subject": "go", "backend": "redis", "inflight": 64, "rps_best": go_rps, "rps_median": 1.0},
                        {"subject": "cpex-rate-limiter", "backend": "redis", "inflight": 64, "rps_best": 1000.0,
                         "rps_median": 1.0}],
        "unavailable": {},
    }


def _by_id(got: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {t["id"]: t for t in got}


EARLIER = ("4.1", "4.2", "4.3", "4.4", "13.7")  # what _results() holds the numbers of


def test_targets_pass_when_every_ratio_meets_the_goal() -> None:
    got = _by_id(targets.evaluate(_results(go_p50=2.0, py_p50=10.0, rs_p50=2.0, evalsha=1.0, reads=1.0, go_rps=1000.0)))
    assert [got[i]["status"] for i in EARLIER] == ["PASS"] * 5


def test_targets_miss_on_each_shortfall() -> None:
    got = _by_id(targets.evaluate(
        _results(go_p50=2.0, py_p50=9.9, rs_p50=1.9, evalsha=2.0, reads=1.0, go_rps=999.0, blocked_evalsha=0.02)
    ))  # fmt: skip
    assert [got[i]["status"] for i in EARLIER] == ["MISS"] * 5  # blocked: 0.02 script calls + 0.06 inside = 0.08 > 0.05
    assert "over: go/fixed_window/3d, python/fixed_window/3d" in got["13.7"]["detail"]
    assert "4.95x" in got["4.1"]["detail"]
    got = _by_id(targets.evaluate(_results(go_p50=2.0, py_p50=10.0, rs_p50=2.0, evalsha=1.0, reads=1.5, go_rps=1000.0)))
    assert got["4.3"]["status"] == "MISS"  # one EVALSHA but more than one read event per request


def test_targets_are_issue_13s_in_order_then_issue_4s() -> None:
    got = targets.evaluate({"latency": [], "unavailable": {}})
    assert [t["id"] for t in got] == [*(f"13.{i}" for i in range(1, 9)), "4.1", "4.2", "4.3", "4.4"]


def test_targets_not_run_without_the_go_engine() -> None:
    res = {"latency": [], "unavailable": {"go": "extension not built"}}
    got = targets.evaluate(res)
    assert {t["status"] for t in got} == {"NOT RUN"}
    # 13.1 is judged from bench-engine's Go benchmarks, 13.8 on the rig: neither needs the extension here.
    assert all("not built" in t["detail"] for t in got if t["id"] not in ("13.1", "13.8"))


# --- issue 13's targets, each on both sides (numbers in ns, req/s, ms per 10,000 checks) ---------


def _hook_row(subject: str, backend: str, algorithm: str, dims: int, best_p50: float, path: str = "admitted",
              hook: str = "tool_pre_invoke") -> dict[str, Any]:  # fmt: skip
    return {"kind": "hook", "subject": subject, "backend": backend, "algorithm": algorithm, "dims": dims,
            "path": path, "hook": hook, "p50": best_p50, "best_p50": best_p50, "mean": best_p50, "p99": best_p50}  # fmt: skip


def _core_lines(ns: dict[str, float], allocs: int = 0) -> list[str]:
    return ["goos: linux", *(f"BenchmarkHotKey/{a}/1dim-2   \t 5000000\t   90.0 ns/op\t  0 B/op\t  0 allocs/op"
                              for a in ns),
            *(f"BenchmarkHotKey/{a}/3dim-2   \t 2000000\t   {v} ns/op\t  0 B/op\t  {allocs} allocs/op"
              for a, v in ns.items())]  # fmt: skip


ALGOS = ["fixed_window", "sliding_window", "token_bucket"]


@pytest.mark.parametrize(
    ("core", "want", "says"),
    [
        ({"lines": _core_lines({a: 199.0 for a in ALGOS}), "date_utc": "d", "git": "abc", "source": "e.json"},
         "PASS", "fixed_window 199 ns / 0 allocs"),
        ({"lines": _core_lines({"fixed_window": 150.0, "sliding_window": 201.0, "token_bucket": 150.0}),
          "date_utc": "d", "git": "abc", "source": "e.json"}, "MISS", "sliding_window 201 ns"),
        ({"lines": _core_lines({a: 150.0 for a in ALGOS}, allocs=1), "date_utc": "d", "git": "abc", "source": "e.json"},
         "MISS", "1 allocs"),
        ({"lines": _core_lines({"fixed_window": 150.0}), "date_utc": "d", "git": "abc", "source": "e.json"},
         "NOT RUN", "no hot-key 3-dimension benchmark for sliding_window, token_bucket"),
        # several runs (-count): the best of each benchmark's runs, the most allocations of them
        ({"lines": _core_lines({a: 260.0 for a in ALGOS}) + _core_lines({a: 190.0 for a in ALGOS})[4:],
          "date_utc": "d", "git": "abc", "source": "e.json"}, "PASS", "token_bucket 190 ns / 0 allocs (best of 2 runs)"),
        ({"lines": _core_lines({a: 190.0 for a in ALGOS}) + _core_lines({a: 150.0 for a in ALGOS}, allocs=2)[4:],
          "date_utc": "d", "git": "abc", "source": "e.json"}, "MISS", "fixed_window 150 ns / 2 allocs"),
        (None, "NOT RUN", "make bench-engine"),
    ],
)  # fmt: skip
def test_target_13_1_go_core_from_the_bench_engine_benchmarks(core: dict[str, Any] | None, want: str, says: str) -> None:
    res: dict[str, Any] = {"algorithms": ALGOS, **({"go_core": core} if core else {})}
    got = targets.go_core(res)
    assert (got["id"], got["status"]) == ("13.1", want)
    assert says in got["detail"]
    if core:
        assert "commit abc" in got["detail"] and "not this run" in got["detail"]


def _crossing(noop: float, raw: float, evaluate: float, noop_fast: float | None = None, **extra: Any) -> dict[str, Any]:
    calls = {k: {"label": k, "round_ns": [v * 1.1, v], "best_ns": v} for k, v in
             (("noop", noop), ("raw", raw), ("evaluate", evaluate), ("noop_fast", noop_fast)) if v is not None}  # fmt: skip
    return {"calls": calls, **extra}


@pytest.mark.parametrize(
    ("crossing", "want", "says"),
    [
        (_crossing(400.0, 800.0, 1000.0), "PASS", "raw call 800 ns (2.00x the same entry's no-op), GoEngine.evaluate 1000 ns (raw + 200 ns)"),
        # through the fast entry: judged against its own no-op, gopy's shown beside
        (_crossing(400.0, 800.0, 1000.0, 200.0), "MISS", "raw call 800 ns (4.00x the same entry's no-op)"),
        (_crossing(400.0, 390.0, 400.0, 200.0), "PASS", "gopy's no-op (`pyext_Add`) 400 ns: raw = 0.97x it"),
        (_crossing(400.0, 801.0, 900.0), "MISS", "(2.00x the same"),  # 2.0025x: just over
        (_crossing(400.0, 700.0, 901.0), "MISS", "raw + 201 ns"),
        (_crossing(400.0, 700.0, 800.0, refused=True), "NOT RUN", "reached its limit"),
        ({"error": "the crossing calls failed: TypeError: x"}, "NOT RUN", "TypeError"),
        (None, "NOT RUN", "not measured"),
    ],
)  # fmt: skip
def test_target_13_2_crossing(crossing: dict[str, Any] | None, want: str, says: str) -> None:
    got = targets.crossing({"unavailable": {}, **({"crossing": crossing} if crossing else {})})
    assert (got["id"], got["status"]) == ("13.2", want)
    assert says in got["detail"]


def _floor_row(best_p50: float, path: str = "admitted") -> dict[str, Any]:
    return {"kind": "floor", "subject": "floor", "backend": None, "algorithm": None, "dims": None, "path": path,
            "hook": "tool_pre_invoke", "best_p50": best_p50, "p50": best_p50, "mean": best_p50, "p99": best_p50}  # fmt: skip


@pytest.mark.parametrize(
    ("go", "python", "floor", "want", "says"),
    [
        ((5600.0, 5000.0), (11200.0, 10000.0), 3500.0, "PASS", "go/floor 1.43x..1.60x"),
        ((5700.0, 5000.0), (20000.0, 20000.0), 3500.0, "MISS", "1 above 1.6x, worst memory/fixed_window/3d"),
        ((5000.0, 5000.0), (10000.0, 9990.0), 3500.0, "MISS", "1 below 2x, worst memory/sliding_window/3d"),
        ((5000.0, 5000.0), (10000.0, 10000.0), None, "NOT RUN", "the floor"),
    ],
)  # fmt: skip
def test_target_13_3_hook_against_floor_and_python(go: tuple[float, float], python: tuple[float, float],
                                                    floor: float | None, want: str, says: str) -> None:  # fmt: skip
    rows = [_hook_row("go", "memory", a, 3, v) for a, v in zip(ALGOS, go)]
    rows += [_hook_row("python", "memory", a, 3, v) for a, v in zip(ALGOS, python)]
    rows += [_hook_row("go", "memory", "fixed_window", 1, 99e3)]  # 1 dimension: not judged
    rows += [_floor_row(floor)] if floor else []
    got = targets.hook({"latency": rows, "unavailable": {}})
    assert (got["id"], got["status"]) == ("13.3", want)
    assert says in got["detail"]


def _noop_row(best_p50: float) -> dict[str, Any]:
    return {"kind": "baseline", "subject": REDIS_NOOP, "backend": "redis", "algorithm": None, "dims": None,
            "path": "admitted", "hook": "evalsha no-op", "best_p50": best_p50, "p50": best_p50, "mean": best_p50,
            "p99": best_p50}  # fmt: skip


@pytest.mark.parametrize(
    ("go", "noop", "want", "says"),
    [
        ({("fixed_window", 1): 130e3, ("fixed_window", 3): 125e3}, 100e3, "PASS", "go/no-op 1.25x..1.30x over 2 cells"),
        ({("fixed_window", 1): 120e3, ("token_bucket", 3): 131e3}, 100e3, "MISS", "worst redis/token_bucket/3d"),
        ({("fixed_window", 1): 120e3}, None, "NOT RUN", "baseline was not measured"),
    ],
)  # fmt: skip
def test_target_13_4_redis_one_at_a_time_against_the_no_op_evalsha(go: dict[tuple[str, int], float],
                                                                     noop: float | None, want: str, says: str) -> None:  # fmt: skip
    rows = [_hook_row("go", "redis", a, d, v) for (a, d), v in go.items()]
    rows.append(_hook_row("go", "redis", "fixed_window", 3, 999e3, path="blocked"))  # blocked: not judged
    rows.append(_hook_row("go", "memory", "fixed_window", 3, 999e3))
    rows += [_noop_row(noop)] if noop else []
    got = targets.redis_sequential({"latency": rows, "unavailable": {}})
    assert (got["id"], got["status"]) == ("13.4", want)
    assert says in got["detail"]


def _conc(subject: str, n: int, rps: float, cpu: float | None = None) -> dict[str, Any]:
    row = {"subject": subject, "backend": "redis", "inflight": n, "rps_best": rps, "rps_median": rps}
    return row | ({"redis_cpu_ms_per_10k": cpu, "redis_reads_per_check": 0.2} if cpu is not None else {})


@pytest.mark.parametrize(
    ("go64", "go256", "want", "says"),
    [
        (20_000.0, 24_000.0, "PASS", "64 in flight: go 20,000 req/s vs no-op 10,000 (2.00x)"),
        (20_000.0, 23_999.0, "MISS", "256 in flight: go 23,999 req/s vs no-op 12,000 (2.00x)"),
        (19_000.0, None, "NOT RUN", "64 and 256 in flight"),
    ],
)  # fmt: skip
def test_target_13_5_redis_under_concurrency(go64: float, go256: float | None, want: str, says: str) -> None:
    conc = [_conc("go", 64, go64, cpu=300.0), _conc(REDIS_NOOP, 64, 10_000.0, cpu=250.0),
            _conc(REDIS_NOOP, 256, 12_000.0), _conc("go", 16, 1.0)]  # fmt: skip
    conc += [_conc("go", 256, go256)] if go256 else []
    cost = [{"subject": "go", "algorithm": "fixed_window", "dims": 3, "path": "admitted", "cpu_ms_per_10k": 600.0}]
    got = targets.redis_concurrent({"concurrency": conc, "redis_cost": cost, "unavailable": {}})
    assert (got["id"], got["status"]) == ("13.5", want)
    assert says in got["detail"]
    if want != "NOT RUN":
        assert "go at 64 in flight 300 ms and 0.20 read events per check (no-op 250 ms), one at a time 600 ms" in got["detail"]


def _cost(subject: str, algorithm: str | None, dims: int, cpu: float, path: str = "admitted") -> dict[str, Any]:
    return {"subject": subject, "algorithm": algorithm, "dims": dims, "path": path, "cpu_ms_per_10k": cpu}


@pytest.mark.parametrize(
    ("go", "rs", "floor", "want", "says"),
    [
        ((500.0, 554.0), (530.0, 560.0), 277.0, "PASS", "above cpex-rate-limiter in 0 of 2; no-op script floor 277 ms"),
        ((531.0, 500.0), (530.0, 560.0), 277.0, "MISS", "fixed_window/3d 531 vs 530"),
        ((500.0, 555.0), (530.0, 600.0), 277.0, "MISS", "1 above 2x"),
        ((500.0, 500.0), (530.0,), 277.0, "NOT RUN", "cpex-rate-limiter cell for every Go cell"),
        ((500.0, 500.0), (530.0, 560.0), None, "NOT RUN", "no-op script floor"),
    ],
)  # fmt: skip
def test_target_13_6_redis_cpu_per_check(go: tuple[float, ...], rs: tuple[float, ...], floor: float | None, want: str,
                                         says: str) -> None:  # fmt: skip
    cells = [("fixed_window", 3), ("sliding_window", 1)]
    cost = [_cost("go", a, d, v) for (a, d), v in zip(cells, go)]
    cost += [_cost("cpex-rate-limiter", a, d, v) for (a, d), v in zip(cells, rs)]
    cost += [_cost("go", "fixed_window", 3, 9999.0, path="blocked")]  # refusals: not judged here
    cost += [_cost("floor", None, 0, floor)] if floor else []
    got = targets.redis_cpu({"redis_cost": cost, "unavailable": {}})
    assert (got["id"], got["status"]) == ("13.6", want)
    assert says in got["detail"]


def test_an_old_results_file_without_the_new_fields_re_renders_with_not_run(tmp_path: Path) -> None:
    res = _results(go_p50=2000.0, py_p50=10000.0, rs_p50=3000.0, evalsha=1.0, reads=1.0, go_rps=1500.0)
    for t in ("13.1", "13.2", "13.4", "13.5", "13.6"):
        assert _by_id(targets.evaluate(res))[t]["status"] == "NOT RUN"
    res.update({"algorithms": ["fixed_window"], "mode": "full", "settings": {}, "command": "make bench-ab",
                "meta": {"cores": 2, "load_start": [0.1, 0.2, 0.3], "load_end": [0.3, 0.2, 0.1], "versions": {}}})  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res), encoding="utf-8")
    assert report.main([str(path), "--doc", str(tmp_path / "b.md")]) == 0
    text = (tmp_path / "b.md").read_text(encoding="utf-8")
    assert "| 13.2 | Crossing" in text and "Crossing calls (target 13.2): not measured in this run" in text
    assert "Redis CPU under concurrency: not measured in this run." in text


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
    assert "| 4.1 | Go hook path >= 5x faster than the Python engine (memory, 3 dimensions) | **PASS** |" in text
    assert "Go lower at 0 of 1 (backend, in-flight) levels" in text
    assert "**2.00** · 2.00 / 3.00 / 4.00" in text  # go: best-round p50 · mean / p50 / p99 in µs
    assert "load average reached 3.0 on 2 cores" in text
    assert "](benchmarks.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- Redis counters ---------------------------------------------------------------


def _require_redis_server() -> None:
    """Skip without redis-server, except under CI=true, where its absence fails the run."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed and CI=true: the Redis tests must run")
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="module")
def redis_server() -> Any:
    import rlbench  # noqa: F401 - puts tests_py/ on the path for support.redis_server
    from support.redis_server import RedisServer

    _require_redis_server()
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


# --- Redis cost across several servers (the Cluster cells) ----------------------------


def _counters(commands: dict[str, int], reads: int, cpu_s: float) -> Any:
    from rlbench.redis_counters import ServerCounters

    return ServerCounters(commands=commands, reads=reads, cpu_s=cpu_s)


def test_counters_of_several_servers_add_up_per_command() -> None:
    from rlbench.redis_counters import total

    got = total([_counters({"evalsha": 3, "info": 1}, 10, 0.5), _counters({"evalsha": 2, "time": 1}, 7, 0.25),
                 _counters({}, 0, 0.0)])  # fmt: skip
    assert got.commands == {"evalsha": 5, "info": 1, "time": 1}
    assert (got.reads, got.cpu_s) == (17, 0.75)
    assert total([]).reads == 0 and total([]).commands == {}


def test_cost_figures_subtract_the_snapshot_once_and_divide_by_checks() -> None:
    from rlbench.redis_counters import cost_figures

    before = _counters({"evalsha": 100, "info": 9, "hmget": 40}, 1000, 2.0)
    # 3 primaries: 300 script calls, 6 TIME samples, 3 replicas' REPLCONF ACKs (3 reads, not requests),
    # and the after snapshot's 3 INFOs (3 reads).
    after = _counters({"evalsha": 400, "info": 12, "hmget": 640, "time": 6, "replconf": 3}, 1000 + 300 + 3 + 3, 2.5)
    got = cost_figures(before, after, base_reads=3, base_cmds={"info": 3}, checks=100)
    assert got.commands_per_request == {"evalsha": 3.0, "hmget": 6.0, "replconf": 0.03, "time": 0.06}  # info: gone
    assert got.commands_total == pytest.approx(9.09)
    assert got.round_trips_per_request == 3.0
    assert got.cpu_ms_per_10k == pytest.approx(50_000.0)  # 0.5 s over 100 checks = 5 ms per check
    assert got.error_replies == {}
    with pytest.raises(ValueError):
        cost_figures(before, after, 3, {}, 0)


def test_error_replies_are_read_by_code_and_differenced() -> None:
    from rlbench.redis_counters import error_counts, error_delta

    before = error_counts({"errorstat_ERR": {"count": 9}, "errorstat_MOVED": {"count": 2}, "used_cpu_sys": 1.0})
    after = error_counts({"errorstat_ERR": {"count": 9}, "errorstat_MOVED": {"count": 46},
                          "errorstat_CROSSSLOT": {"count": 64}})  # fmt: skip
    assert before == {"ERR": 9, "MOVED": 2}
    assert error_delta(before, after) == {"CROSSSLOT": 64, "MOVED": 44}


def test_latency_summary_is_p50_and_mean_of_the_calls() -> None:
    from array import array

    from rlbench.redis_cost import latency_summary

    assert latency_summary(array("q", [400, 100, 300, 200])) == {"latency_p50_ns": 200.0, "latency_mean_ns": 250.0}
    with pytest.raises(ValueError):
        latency_summary(array("q"))


def test_partial_path_spends_only_the_user_limit() -> None:
    from rlbench.workload import ADMITTED_RATE, BLOCKED_RATE, PARTIAL, limiter_config, partial_scenarios

    s = Scenario("redis", "token_bucket", 3, PARTIAL)
    cfg = limiter_config(s, "redis://127.0.0.1:1/0", "p")
    assert cfg["by_user"] == BLOCKED_RATE
    assert cfg["by_tenant"] == ADMITTED_RATE and cfg["by_tool"] == {TOOL: ADMITTED_RATE}
    assert not s.admitted and Scenario("redis", "token_bucket", 3, "admitted").admitted
    assert [p.algorithm for p in partial_scenarios()] == ["fixed_window", "sliding_window", "token_bucket"]
    with pytest.raises(ValueError, match="3 dimensions"):
        limiter_config(Scenario("redis", "fixed_window", 1, PARTIAL), "redis://127.0.0.1:1/0", "p")


def test_partial_path_is_refused_on_the_third_call_of_a_user_with_the_python_engine() -> None:
    from rlbench.workload import PARTIAL

    plugin = build("python", Scenario("memory", "fixed_window", 3, PARTIAL), None)
    first, second = _call_all(plugin, 2, request_index=3)
    assert outcome_ok(first, True) and outcome_ok(second, False)
    assert second.violation.details["dimension"] == "user"


def test_cluster_errors_fold_slots_and_nodes_and_are_cut() -> None:
    from rlbench.cluster import MAX_ERROR_CHARS, normalise_error

    assert normalise_error("MOVED 1234 127.0.0.1:17001") == "MOVED <slot> <node>"
    assert normalise_error("a\n  b\tASK 9 h:1 c") == "a b ASK <slot> <node> c"
    assert normalise_error("MovedError: 9078 127.0.0.1:14042") == "MovedError: <slot> <node>"
    long = normalise_error("x" * 500)
    assert len(long) == MAX_ERROR_CHARS and long.endswith("…")


def test_peer_outcome_counts_shapes_errors_and_keys() -> None:
    from rlbench.cluster import summarise

    admitted = _call_all(FloorPlugin(_plugin_config("floor", {"path": "admitted"})), 1)[0]
    fail_open = ToolPreInvokeResult()  # admitted without headers
    got = summarise(4, [admitted, fail_open, fail_open], [RuntimeError("boom")],
                    ["CROSSSLOT Keys in request don't hash to the same slot"] * 2, True, 0)  # fmt: skip
    assert (got.calls, got.expected, got.other, got.raised, got.errors_logged) == (4, 1, 2, 1, 2)
    assert got.errors == ["CROSSSLOT Keys in request don't hash to the same slot", "RuntimeError: boom"]
    assert got.verdict() == "fails"
    clean = summarise(2, [admitted, admitted], [], [], True, 2)
    assert clean.verdict() == "runs" and clean.keys_written == 2
    quiet_but_refused = summarise(2, [admitted, admitted], [], [], True, 2, {"MOVED": 1})
    assert quiet_but_refused.verdict() == "fails" and quiet_but_refused.server_errors == {"MOVED": 1}
    assert summarise(1, [admitted], [], [], False, 0).verdict() == "fails"  # admitted on the blocked path


def _cost_row(subject: str, path: str, deployment: str, rt: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "backend": "redis", "algorithm": "fixed_window", "dims": 3, "path": path,
            "deployment": deployment, "checks": 100, "commands_per_request": {"evalsha": rt},
            "commands_total": rt, "round_trips_per_request": rt, "cpu_ms_per_10k": cpu,
            "latency_p50_ns": 200_000.0 * rt, "latency_mean_ns": 250_000.0 * rt, "error_replies": {}, **extra}  # fmt: skip


def test_report_sets_cluster_cells_beside_standalone_and_peers_as_outcomes(tmp_path: Path) -> None:
    from rlbench.workload import PARTIAL

    res = _results(go_p50=2000.0, py_p50=10000.0, rs_p50=3000.0, evalsha=1.0, reads=1.0, go_rps=1500.0)
    res["redis_cost"] = [_cost_row("go", "admitted", "standalone", 1.0, 800.0)]
    res["cluster"] = {
        "cost": [_cost_row("go", "admitted", "cluster", 3.0, 2000.0, replica_cpu_ms_per_10k=300.0),
                 _cost_row("go", PARTIAL, "cluster", 5.0, 3000.0, replica_cpu_ms_per_10k=400.0)],
        "standalone_partial": [_cost_row("go", PARTIAL, "standalone", 0.01, 10.0)],  # remembered refusals (§12)
        "standalone_no_memory": [_cost_row("go", PARTIAL, "standalone", 1.0, 1500.0)],  # §12 off
        "peers": [{"subject": "cpex-rate-limiter", "backend": "redis", "algorithm": "fixed_window", "dims": 3,
                   "path": "admitted", "verdict": "fails", "calls": 64, "expected": 0, "errors_logged": 64,
                   "raised": 0, "keys_written": 0, "errors": ["tool_pre_invoke error; allowing request"],
                   "server_errors": {"CROSSSLOT": 64}}],
        "idle_cpu_ms_per_s": {"cluster": {"counted": 3.0, "replicas": 2.0}, "standalone": {"counted": 1.0}},
    }  # fmt: skip
    res.update({"algorithms": ["fixed_window"], "targets": targets.evaluate(res), "mode": "quick",
                "meta": {"cores": 2, "load_start": [0.1, 0.2, 0.3], "load_end": [0.1, 0.1, 0.1], "versions": {},
                         "cluster": "3 primaries + 3 replicas"}, "settings": {}, "command": "x"})  # fmt: skip
    pairs = report.cluster_pairs(res)
    assert [(a["path"] if a else None, b["path"]) for a, b in pairs] == [("admitted", "admitted"), (PARTIAL, PARTIAL)]
    doc = tmp_path / "benchmarks.md"
    report.write(res, doc, tmp_path / "benchmarks.png")
    text = doc.read_text(encoding="utf-8")
    assert "| go | fixed | 3 | admitted | 1.00 / **3.00** | evalsha 3.00 | none | 800 / **2000** | 2.50x | – | 300 |" in text
    assert "| go | fixed | 3 | partial | 0.01 / **5.00** |" in text
    assert "| 10 / **3000** | 2.00x of §12 off | 1.00, 1500 | 400 |" in text
    assert ("- Redis Cluster, go, 3 dimensions, admitted (3 algorithms): round trips per request 3.00..3.00 "
            "(standalone 1.00..1.00); Redis CPU per 10,000 checks, primaries summed, 2000..2000 ms (standalone "
            "800..800 ms), 2.50x..2.50x") in text
    assert ("partial (3 algorithms): round trips per request 5.00..5.00 (standalone 0.01..0.01); Redis CPU per "
            "10,000 checks, primaries summed, 3000..3000 ms (standalone 10..10 ms); standalone answers these from "
            "remembered refusals (§12), the Cluster cannot with 3 dimensions; standalone with §12 off: 1.00..1.00 "
            "round trips, 1500..1500 ms, Cluster 2.00x..2.00x that") in text
    assert "cpex-rate-limiter on the Cluster: fails in 1 of 1 scenarios; the Cluster's error replies: CROSSSLOT 64" in text
    assert ("| cpex-rate-limiter | fixed | 3 | admitted | **fails** | 0 of 64 | CROSSSLOT 64 | 64: "
            "`tool_pre_invoke error; allowing request` | 0 |") in text
    assert "primaries used 3.0 ms of CPU per second and the replicas 2.0" in text
    assert "during our plugin's Cluster cells above: no error reply" in text


def test_report_of_a_run_without_cluster_says_so(tmp_path: Path) -> None:
    res = _results(go_p50=2000.0, py_p50=10000.0, rs_p50=3000.0, evalsha=1.0, reads=1.0, go_rps=1500.0)
    res["redis_cost"] = []
    res.update({"algorithms": ["fixed_window"], "targets": [], "meta": {"cores": 2}, "settings": {}})
    text = report.markdown(res, "x.png")
    assert "Not measured in this run (section `cluster`)." in text
    assert "Peers on the Cluster" not in text and "Redis Cluster, go" not in text


# --- a real local Cluster ------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_cluster() -> Any:
    import rlbench  # noqa: F401 - puts tests_py/ on the path for support.redis_cluster
    from support.redis_cluster import RedisCluster

    _require_redis_server()
    with RedisCluster() as cluster:
        yield cluster


def test_cluster_cells_count_every_primary_and_give_backs(redis_cluster: Any) -> None:
    from rlbench.cluster import deployment
    from rlbench.redis_cost import cost_cell
    from rlbench.workload import PARTIAL

    dep = deployment(redis_cluster)
    try:
        assert (len(dep.counted), len(dep.replicas)) == (3, 3) and dep.base_reads == 3
        args = [(r.tool_payload, r.context) for r in request_pool(64)]

        async def cell(s: Scenario) -> dict[str, Any]:
            plugin = build("python", s, redis_cluster.url, redis_mode="cluster")
            await plugin.initialize()
            try:
                return await cost_cell(plugin.tool_pre_invoke, args, s.admitted, dep, 200, 10_000, s.label())
            finally:
                await plugin.shutdown()

        one = asyncio.run(cell(Scenario("redis", "fixed_window", 1, "admitted")))
        partial = asyncio.run(cell(Scenario("redis", "fixed_window", 3, PARTIAL)))
    finally:
        dep.close()
    # One slot group per request; the clock's TIME samples (at most one a second) are the only extra.
    assert one["commands_per_request"]["evalsha"] == 1.0
    assert 1.0 <= one["round_trips_per_request"] <= 1.05
    # Three groups (the pool's users, tenants and the tool hash to distinct slots), two of them given back.
    assert partial["commands_per_request"]["evalsha"] == 5.0
    assert 5.0 <= partial["round_trips_per_request"] <= 5.05
    assert partial["cpu_ms_per_10k"] > one["cpu_ms_per_10k"] > 0 and partial["replica_cpu_ms_per_10k"] > 0
    assert one["error_replies"] == {} and partial["error_replies"] == {}


def test_a_peer_without_cluster_mode_is_reported_with_the_clusters_error_replies(redis_cluster: Any) -> None:
    from rlbench.cluster import deployment, peer_trial
    from rlbench.subjects import key_prefix

    dep = deployment(redis_cluster)
    s = Scenario("redis", "fixed_window", 3, "admitted")
    plugin = build("cpex-rate-limiter", s, redis_cluster.url)
    args = [(r.tool_payload, r.context) for r in request_pool(16)]

    async def trial() -> dict[str, Any]:
        await plugin.initialize()
        try:
            return await peer_trial(plugin, args, True, dep, key_prefix("cpex-rate-limiter", s))
        finally:
            await plugin.shutdown()

    try:
        got = asyncio.run(trial())
    finally:
        dep.close()
    assert got["verdict"] == "fails" and got["calls"] == 16
    assert got["server_errors"].get("CROSSSLOT", 0) + got["server_errors"].get("MOVED", 0) == 16
    assert got["keys_written"] == 0 and got["expected"] == 0


def test_concurrency_rows_keep_failed_rounds_apart_and_targets_skip_those_levels() -> None:
    from rlbench.runner import concurrency_rows

    rows = concurrency_rows(
        {("go", "redis", 64): [(900.0, 10), (1100.0, 12), (1000.0, 11)], ("cpex-rate-limiter", "redis", 64): [(2000.0, 9)],
         ("go", "redis", 256): [(800.0, 5)]},
        {("cpex-rate-limiter", "redis", 64): ["got fail-open", "again"], ("cpex-rate-limiter", "redis", 256): ["x"] * 3},
    )  # fmt: skip
    by = {(r["subject"], r["inflight"]): r for r in rows}
    assert (by[("go", 64)]["rps_best"], by[("go", 64)]["rps_median"], by[("go", 64)]["calls"]) == (1100.0, 1000.0, 33)
    assert "failed_rounds" not in by[("go", 64)]
    assert by[("cpex-rate-limiter", 64)]["rps_best"] == 2000.0 and by[("cpex-rate-limiter", 64)]["failed_rounds"] == 2
    assert by[("cpex-rate-limiter", 256)]["rps_best"] is None and by[("cpex-rate-limiter", 256)]["failed_rounds"] == 3
    res = _results(go_p50=2.0, py_p50=10.0, rs_p50=2.0, evalsha=1.0, reads=1.0, go_rps=1000.0)
    res["concurrency"] = rows
    got = _by_id(targets.evaluate(res))
    assert got["4.2"]["status"] == "PASS" and "Go lower at 0 of 0" in got["4.2"]["detail"]
    assert "failed open (answered without limiting) in some rounds at redis/64 (2 rounds), redis/256 (3 rounds)" in (
        got["4.2"]["detail"]
    )
    assert got["4.4"]["status"] == "NOT RUN" and got["4.4"]["detail"].startswith("cpex-rate-limiter; cpex-rate-limiter failed")
    text = "\n".join(report._concurrency_md(res))
    assert "| cpex-rate-limiter | redis | **2,000** (2,000), failed open in 2 more rounds | failed open in 3 of 3 rounds |" in text


@pytest.mark.parametrize(("remember", "want_scripts"), [(True, 1), (False, 5)])
def test_refusals_cost_a_script_each_only_with_remembered_refusals_off(redis_server: Any, remember: bool,
                                                                        want_scripts: int) -> None:  # fmt: skip
    from rlbench.redis_counters import command_delta, snapshot

    s = Scenario("redis", "fixed_window", 3, "blocked")
    plugin = build("python", s, redis_server.url, remember_refusals=remember)
    req = POOL[(1 if remember else 2)]

    async def go() -> dict[str, int]:
        await plugin.initialize()
        try:
            assert outcome_ok(await plugin.tool_pre_invoke(req.tool_payload, req.context), True)
            with redis_server.client() as c:
                before = snapshot(c)
                results = [await plugin.tool_pre_invoke(req.tool_payload, req.context) for _ in range(5)]
                after = snapshot(c)
            assert all(outcome_ok(r, False) for r in results)
            return command_delta(before, after)
        finally:
            await plugin.shutdown()

    assert asyncio.run(go()).get("evalsha", 0) == want_scripts


def test_the_redis_no_op_baseline_is_one_evalsha_and_one_read_per_call(redis_server: Any) -> None:
    from rlbench.baseline import RedisNoop, reply_ok
    from rlbench.redis_counters import command_delta, snapshot
    from rlbench.runner import RedisUse, concurrency_rows

    async def go() -> tuple[Any, dict[str, int], int, tuple[float, int]]:
        noop = await RedisNoop(redis_server.url, 16).start()
        try:
            first = await noop.call(None, None)
            with redis_server.client() as c:
                before = snapshot(c)
                for _ in range(50):
                    await noop.call(None, None)
                after = snapshot(c)
            rate = await throughput(noop.call, [(None, None)], True, 16, 0, 160, reply_ok)
        finally:
            await noop.close()
        use = RedisUse()
        use.add(before, after, 1, 50)
        return first, command_delta(before, after), use.reads, rate

    first, cmds, reads, (rps, calls) = asyncio.run(go())
    assert reply_ok(first) and not reply_ok(None) and not reply_ok(0)
    assert cmds.get("evalsha") == 50 and reads == 50  # the after-snapshot's own read subtracted
    assert calls == 160 and rps > 0
    use = RedisUse(cpu_s=0.02, reads=300, checks=1000)
    rows = concurrency_rows({(REDIS_NOOP, "redis", 64): [(5000.0, 1000)]}, {}, {(REDIS_NOOP, "redis", 64): use})
    assert rows[0]["redis_cpu_ms_per_10k"] == pytest.approx(200.0) and rows[0]["redis_reads_per_check"] == 0.3


def test_a_wrong_baseline_reply_fails_the_throughput_level() -> None:
    from rlbench.baseline import reply_ok

    async def not_the_script(payload: Any, context: Any) -> Any:
        return b"OK"

    with pytest.raises(WrongOutcomeError):
        asyncio.run(throughput(not_the_script, [(None, None)], True, 4, 0, 8, reply_ok))


def test_go_core_is_copied_from_the_bench_engine_results(tmp_path: Path) -> None:
    from rlbench.runner import go_core

    assert go_core(tmp_path / "none.json") is None
    path = tmp_path / "bench" / "results" / "engine.json"
    path.parent.mkdir(parents=True)
    lines = _core_lines({a: 180.0 for a in ALGOS})
    path.write_text(json.dumps({"mode": "full", "machine": {"date_utc": "2026-11-29", "git": "abc1234"},
                                "go_benchmarks": {"lines": lines}}), encoding="utf-8")  # fmt: skip
    core = go_core(path)
    assert core == {"source": "bench/results/engine.json", "mode": "full", "date_utc": "2026-11-29", "git": "abc1234",
                    "lines": lines}  # fmt: skip
    assert targets.go_core({"algorithms": ALGOS, "go_core": core})["status"] == "PASS"


@pytest.mark.parametrize(("ns", "want"), [(200.0, "**PASS**"), (200.5, "**MISS**")])
def test_engine_md_states_target_13_1_on_its_own_benchmarks(ns: float, want: str) -> None:
    from rlbench import engine

    text = "\n".join(engine._core_target(_core_lines({a: ns for a in ALGOS})))
    assert f"Issue 13 target 1 (hot key, 3 dimensions, every algorithm, at most 200 ns and 0 allocs per request): {want}" in text


def _go_plugin(s: Scenario) -> Any:
    """Our plugin on the Go engine; skipped without the extension, except under CI=true, where that fails."""
    from rate_limiter_go import _native

    if not _native.native_available():
        if os.environ.get("CI") == "true":
            pytest.fail("the Go extension is not built and CI=true: make build")
        pytest.skip("the Go extension is not built (make build)")
    return build("go", s, None)


def test_the_crossing_rounds_time_the_three_calls_and_keep_the_best_round() -> None:
    import dataclasses

    from rlbench.runner import Run, Settings

    run = Run(dataclasses.replace(Settings.quick(), crossing_calls=500), ("go",), ("latency",), None)  # type: ignore[arg-type]
    s = Scenario("memory", "fixed_window", 3, "admitted")
    run.plugins[("go", s)] = _go_plugin(s)
    calls = run._crossing_calls()
    for _ in range(3):
        run._crossing_round(calls)
    rounds = {k: c["round_ns"] for k, c in run.crossing["calls"].items()}
    assert set(rounds) == {"noop", "noop_fast", "raw", "evaluate"} and all(len(v) == 3 and min(v) > 0 for v in rounds.values())
    assert not run.crossing.get("refused")  # the repeated request stays admitted


def test_a_changed_binding_leaves_the_crossing_not_run_and_the_run_going() -> None:
    from rlbench.runner import Run, Settings

    class Engine:
        _handle = 1

        def evaluate(self, user: str, tenant: str | None, tool: str | None) -> Any:
            raise TypeError("pyext_Evaluate() takes 3 arguments")

    class Plugin:
        engine = Engine()

    run = Run(Settings.quick(), ("go",), ("latency",), None)  # type: ignore[arg-type]
    run.plugins[("go", Scenario("memory", "fixed_window", 3, "admitted"))] = Plugin()
    assert run._crossing_calls() == {}
    got = targets.crossing({"crossing": run.crossing, "unavailable": {}})
    assert got["status"] == "NOT RUN" and "TypeError: pyext_Evaluate() takes 3 arguments" in got["detail"]
    run = Run(Settings.quick(), ("python",), ("latency",), None)  # type: ignore[arg-type]
    assert run._crossing_calls() == {} and "not among the subjects" in run.crossing["error"]

"""One A/B run: every section on one event loop, against one private redis-server.

Sections (each can be switched off with --sections):

* ``latency``: every subject x scenario x hook, plus the floor, a null hook
  (the harness's own cost per call) and our two engines called directly
  (``engine.evaluate``/``engine.check``, without the plugin layer). Gateway
  features (fixed window, 3 dimensions, admitted, tool hook, both backends):
  the hook called with a trace id (observability metadata), and ours with
  admitted headers handed to ``http_post_request`` (tool hook + post hook). All cases
  are warmed up, then measured in ``rounds`` rounds; each round runs one batch
  of every case in a freshly shuffled order, so drift in machine load hits
  every case alike. Also in every round: the Redis baseline (a bare redis-py
  asyncio EVALSHA of a no-op script, baseline.py) as one more case, and the
  Go binding's crossing calls (engine.crossing_calls: no-ops, raw call,
  GoEngine.evaluate; memory, 3 dimensions), each timed as the best of a few
  runs of calls in a row (engine.ns_per_call), in shuffled order after the cases.
* ``concurrency``: requests per second at 1, 16, 64, 256 calls in flight,
  per subject and backend (fixed window, 3 dimensions, admitted, tool hook),
  and the redis-py no-op baseline, interleaved the same way; on the one
  redis-server each level's Redis CPU and read events are taken from INFO
  snapshots around its rounds.
* ``redis``: per Redis scenario, ``redis_checks`` sequential calls between two
  INFO snapshots: commands and read events (round trips) per request and
  Redis CPU per 10,000 checks.
* ``profile``: cProfile of our plugin's hook for each engine (see profiling.py).
* ``cluster``: a local Redis Cluster (3 primaries + 3 replicas, the shared
  launcher of tests_py/support/redis_cluster.py) beside the standalone server:
  our engines with ``redis_mode: cluster`` per Redis scenario and on the
  partial path (refused by one of three dimensions: give-backs on a Cluster;
  also measured on standalone), plus the 3-dimension refusals on standalone
  with remembered refusals (§12) off, measured as the ``redis`` section measures
  (counters summed over the primaries, replicas' CPU apart, latency per call);
  their throughput joins the ``concurrency`` section as backend ``cluster``;
  each peer is called once per pool request on the Cluster and its outcome
  recorded (see cluster.py).

The results are a JSON-able dict (written by __main__), from which report.py
writes the doc and the chart.
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from support.redis_cluster import CLUSTER_NODE_TIMEOUT_MS, RedisCluster
from support.redis_server import RedisServer

from rlbench import baseline, engine, env_info, profiling, targets
from rlbench import cluster as cluster_cells
from rlbench.measure import (
    Case,
    WrongOutcomeError,
    latency_stats,
    outcome_ok,
    throughput,
    timed_batch,
    warm_up,
)
from rlbench.redis_cost import Deployment, cost_cell
from rlbench.redis_counters import ServerCounters, command_delta, snapshot
from rlbench.subjects import OURS, PEERS, SUBJECTS, SubjectUnavailableError, build, key_prefix, supports, versions
from rlbench.workload import (
    ALGORITHMS,
    BACKENDS,
    HOOKS,
    TOOL,
    Request,
    Scenario,
    partial_scenarios,
    request_pool,
    scenarios,
)

# Gateway features are measured on these cells, against the plain hook of the same cell.
FEATURE_SCENARIOS = tuple(Scenario(b, "fixed_window", 3, "admitted") for b in BACKENDS)
HTTP_HOOKS = (*HOOKS, "http_pre_request", "http_post_request")
TRACED_SUBJECTS = (*OURS, "cpex-rate-limiter")  # the ones that write the gateway's observability metadata

SECTIONS = ("latency", "concurrency", "redis", "profile", "cluster")
#: The Go benchmarks of ``make bench-engine``, whose hot-key figures judge issue 13 target 1.
ENGINE_RESULTS = Path(__file__).resolve().parents[1] / "results" / "engine.json"
INFLIGHT = (1, 16, 64, 256)
MIN_REDIS_CHECKS = 200
#: Runs per crossing call and round (each of ``crossing_calls / CROSSING_REPEAT`` calls); the round keeps the best.
CROSSING_REPEAT = 5
CONCURRENCY_SCENARIO = dict(algorithm="fixed_window", dims=3, path="admitted")


@dataclass(frozen=True, slots=True)
class Settings:
    """How much to measure. Times are caps per batch / case; ``quick()`` is the smoke-run preset."""

    rounds: int = 5
    batch: int = 1000
    batch_max_ms: int = 250
    warmup: int = 300
    warmup_max_ms: int = 300
    conc_rounds: int = 3
    conc_ms: int = 500
    conc_min_calls: int = 256
    redis_checks: int = 5000
    redis_max_ms: int = 2500
    cluster_checks: int = 3000
    cluster_max_ms: int = 1500
    profile_calls: int = 20_000
    crossing_calls: int = 100_000
    seed: int = 20260101

    @staticmethod
    def quick() -> Settings:
        return Settings(rounds=3, batch=200, batch_max_ms=60, warmup=100, warmup_max_ms=100, conc_rounds=2,
                        conc_ms=150, conc_min_calls=256, redis_checks=1000, redis_max_ms=400,
                        cluster_checks=500, cluster_max_ms=300, profile_calls=3000,
                        crossing_calls=20_000)  # fmt: skip


def log(msg: str) -> None:
    print(f"[rlbench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Run:
    """State of one run: the subjects that could be built, the request pool, the Redis server."""

    def __init__(self, settings: Settings, subjects: tuple[str, ...], sections: tuple[str, ...], redis: RedisServer,
                 cluster: RedisCluster | None = None):  # fmt: skip
        self.settings = settings
        self.subjects = subjects
        self.sections = sections
        self.redis = redis
        self.cluster = cluster
        # Our engines on the Cluster, and on the standalone server for the partial path (cluster section only).
        self.cluster_plugins: dict[tuple[str, Scenario], Any] = {}
        self.partial_plugins: dict[tuple[str, Scenario], Any] = {}
        # Our engines on the standalone server with remembered refusals (§12) off, 3-dimension refusals only:
        # the script cost the Cluster's refused cells compare with.
        self.no_memory_plugins: dict[tuple[str, Scenario], Any] = {}
        self.pool: list[Request] = request_pool()
        self.plugins: dict[tuple[str, Scenario], Any] = {}
        self.floors: dict[str, Any] = {}
        self.with_http_hooks: dict[tuple[str, Scenario], Any] = {}  # ours, listing the HTTP hooks
        self.unavailable: dict[str, str] = {}
        self.noop: baseline.RedisNoop | None = None  # the redis-py no-op EVALSHA (targets 13.4, 13.5)
        self.crossing: dict[str, Any] = {}  # results["crossing"], filled by the latency rounds
        self.rng = random.Random(settings.seed)

    # --- building ---------------------------------------------------------

    async def build_all(self) -> None:
        for subject in self.subjects:
            if subject == "floor":
                for path in ("admitted", "blocked"):
                    plugin = build("floor", Scenario("memory", "fixed_window", 1, path), None)
                    await plugin.initialize()
                    self.floors[path] = plugin
                continue
            for s in scenarios():
                if not supports(subject, s):
                    continue
                try:
                    plugin = build(subject, s, self.redis.url)
                    await plugin.initialize()
                except SubjectUnavailableError as e:
                    self.unavailable[subject] = str(e)
                    log(f"{subject}: NOT AVAILABLE: {e}")
                    break
                self.plugins[(subject, s)] = plugin
                if subject in OURS and s in FEATURE_SCENARIOS:
                    plugin = build(subject, s, self.redis.url, HTTP_HOOKS)
                    await plugin.initialize()
                    self.with_http_hooks[(subject, s)] = plugin
        if self.cluster is not None:
            await self._build_cluster()
        self.noop = await baseline.RedisNoop(self.redis.url, max(INFLIGHT)).start()
        built = sorted({k[0] for k in self.plugins} | ({"floor"} if self.floors else set()))
        log(f"built {len(self.plugins) + len(self.floors)} plugin instances for {', '.join(built)}"
            + (f"; {len(self.cluster_plugins)} on the Cluster" if self.cluster_plugins else ""))  # fmt: skip

    async def _build_cluster(self) -> None:
        assert self.cluster is not None  # nosec B101 # only called with a Cluster
        for subject in OURS:
            if subject not in self.subjects or subject in self.unavailable:
                continue
            for s in [*scenarios(("redis",)), *partial_scenarios()]:
                plugin = build(subject, s, self.cluster.url, redis_mode="cluster")
                await plugin.initialize()
                self.cluster_plugins[(subject, s)] = plugin
            for s in partial_scenarios():
                plugin = build(subject, s, self.redis.url)
                await plugin.initialize()
                self.partial_plugins[(subject, s)] = plugin
            for s in [*(s for s in scenarios(("redis",)) if s.dims == 3 and s.path == "blocked"), *partial_scenarios()]:
                plugin = build(subject, s, self.redis.url, remember_refusals=False)
                await plugin.initialize()
                self.no_memory_plugins[(subject, s)] = plugin

    async def close_all(self) -> None:
        for plugin in [*self.plugins.values(), *self.floors.values(), *self.with_http_hooks.values(),
                       *self.cluster_plugins.values(), *self.partial_plugins.values(),
                       *self.no_memory_plugins.values()]:  # fmt: skip
            try:
                await plugin.shutdown()
            except Exception as e:  # a failing shutdown must not lose the results
                log(f"shutdown of {type(plugin).__name__} failed: {type(e).__name__}: {e}")
        if self.noop is not None:
            await self.noop.close()

    def _hook_args(self, hook: str) -> list[tuple[Any, Any]]:
        if hook == "tool_pre_invoke":
            return [(r.tool_payload, r.context) for r in self.pool]
        return [(r.prompt_payload, r.context) for r in self.pool]

    # --- latency ----------------------------------------------------------

    def latency_cases(self) -> list[Case]:
        cases: list[Case] = []
        admitted_fn = {True: (lambda r: outcome_ok(r, True)), False: (lambda r: outcome_ok(r, False))}
        readmit = len(self.pool) * 3  # one per key and window end
        for (subject, s), plugin in self.plugins.items():
            for hook in HOOKS:
                admitted = s.path == "admitted"
                cases.append(
                    Case(key=("hook", subject, s, hook), call=getattr(plugin, hook), args=self._hook_args(hook),
                         admitted=admitted, expect=admitted_fn[admitted],
                         readmitted_ok=None if admitted else admitted_fn[True], max_readmitted=readmit)  # fmt: skip
                )
            if subject in OURS:
                cases.append(self._engine_case(subject, s, plugin))
            if s in FEATURE_SCENARIOS and subject in TRACED_SUBJECTS:
                cases.append(self._traced_case(subject, s, plugin))
        for (subject, s), plugin in self.with_http_hooks.items():
            cases.append(self._admitted_headers_case(subject, s, plugin))
        for path, plugin in self.floors.items():
            for hook in HOOKS:
                admitted = path == "admitted"
                cases.append(
                    Case(key=("floor", "floor", path, hook), call=getattr(plugin, hook), args=self._hook_args(hook),
                         admitted=admitted, expect=admitted_fn[admitted])  # fmt: skip
                )
        cases.append(Case(key=("null", "null", "admitted", "tool_pre_invoke"), call=_null_hook,
                          args=self._hook_args("tool_pre_invoke"), admitted=True, expect=None))  # fmt: skip
        if self.noop is not None:
            cases.append(Case(key=("baseline", baseline.NAME, "admitted", "evalsha no-op"), call=self.noop.call,
                              args=self._hook_args("tool_pre_invoke"), admitted=True, expect=baseline.reply_ok))  # fmt: skip
        boundary = self._gopy_noop()
        if boundary is not None:
            cases.append(Case(key=("boundary", "go", "admitted", "gopy no-op"), call=boundary,
                              args=self._hook_args("tool_pre_invoke"), admitted=True, expect=None))  # fmt: skip
        return cases

    def _traced_case(self, subject: str, s: Scenario, plugin: Any) -> Case:
        """The tool hook with a trace id in its extensions, as gateway 1.1.0 passes it when tracing."""
        from cpex.framework.extensions import Extensions
        from cpex.framework.extensions.request import RequestExtension

        traced = Extensions(request=RequestExtension(trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))
        hook = plugin.tool_pre_invoke

        async def call(payload: Any, context: Any) -> Any:
            return await hook(payload, context, traced)

        def expect(result: Any) -> bool:
            meta = (result.metadata or {}).get("rate_limiter") or {}
            return outcome_ok(result, True) and meta.get("allowed") == 1

        return Case(key=("feature", subject, s, "traced"), call=call, args=self._hook_args("tool_pre_invoke"),
                    admitted=True, expect=expect)  # fmt: skip

    def _admitted_headers_case(self, subject: str, s: Scenario, plugin: Any) -> Case:
        """Our tool hook keeping the admitted headers, then the post-request hook that takes them."""
        import warnings

        from cpex.framework.hooks.http import HttpHeaderPayload, HttpPostRequestPayload

        with warnings.catch_warnings():  # the gateway still fills the deprecated headers field
            warnings.simplefilter("ignore", DeprecationWarning)
            post_payload = HttpPostRequestPayload(path="/rpc", method="POST", headers=HttpHeaderPayload(root={}),
                                                  response_headers=HttpHeaderPayload(root={}), status_code=200)
        tool_hook, post_hook = plugin.tool_pre_invoke, plugin.http_post_request

        async def call(payload: Any, context: Any) -> Any:
            await tool_hook(payload, context)
            return await post_hook(post_payload, context)

        def expect(result: Any) -> bool:
            return result.modified_payload is not None and "X-RateLimit-Remaining" in result.modified_payload.root

        return Case(key=("feature", subject, s, "admitted headers"), call=call,
                    args=self._hook_args("tool_pre_invoke"), admitted=True, expect=expect)  # fmt: skip

    def _gopy_noop(self) -> Any:
        """A coroutine making one call into the Go extension that does no work (ABIVersion), or None.

        Its time minus the null hook's is the cost of crossing the gopy boundary
        (argument conversion, GIL release and re-acquisition, cgo call).
        """
        if not any(k[0] == "go" for k in self.plugins):
            return None
        from rate_limiter_go import _native

        mod = _native.load_native()
        noop = getattr(getattr(mod, "_pyext", None), "pyext_ABIVersion", None) or mod.ABIVersion

        async def call(payload: Any, context: Any) -> Any:
            return noop()

        return call

    def _crossing_calls(self) -> dict[str, Any]:
        """Target 13.2's calls on the Go engine of memory, fixed window, 3 dimensions, or {} (reason in
        ``self.crossing["error"]``)."""
        plugin = self.plugins.get(("go", Scenario("memory", "fixed_window", 3, "admitted")))
        if plugin is None:
            self.crossing = {"error": self.unavailable.get("go", "the Go engine is not among the subjects")}
            return {}
        r = self.pool[0]
        try:
            calls = engine.crossing_calls(plugin.engine, r.user, r.tenant, TOOL)
            for fn in calls.values():
                fn()
        except Exception as e:  # a changed binding: the target is not run, the rest of the run goes on
            self.crossing = {"error": f"the crossing calls failed: {type(e).__name__}: {e}"}
            log(f"crossing: {self.crossing['error']}")
            return {}
        self.crossing = {"calls": {k: {"label": engine.CROSSING_LABELS[k], "round_ns": []} for k in calls},
                         "calls_per_round": self.settings.crossing_calls, "runs_per_round": CROSSING_REPEAT,
                         "user": "pool request 0", "timer": "time.process_time"}  # fmt: skip
        return calls

    def _crossing_round(self, calls: dict[str, Any]) -> None:
        """One figure per crossing call, in a shuffled order (``crossing_calls`` calls in a row each)."""
        order = list(calls)
        self.rng.shuffle(order)
        n = max(1, self.settings.crossing_calls // CROSSING_REPEAT)
        for k in order:
            # Several short runs, the best kept: a short run is likelier to pass undisturbed on a busy machine.
            self.crossing["calls"][k]["round_ns"].append(engine.ns_per_call(calls[k], n, CROSSING_REPEAT))
        # The calls repeat one request (hot key, limit ADMITTED_RATE): they must still be admitted at the end.
        if not calls["evaluate"]().admitted:
            self.crossing["refused"] = True

    def _engine_case(self, subject: str, s: Scenario, plugin: Any) -> Case:
        """Our engine without the plugin layer: the identities are already normalised, as the plugin passes them."""
        engine = plugin.engine
        three = s.dims == 3
        args = [(r.user, r.tenant if three else None) for r in self.pool]
        tool = TOOL if three else None
        if engine.sync:
            evaluate = engine.evaluate

            async def call(user: str, tenant: str | None) -> Any:
                return evaluate(user, tenant, tool)
        else:
            check = engine.check

            async def call(user: str, tenant: str | None) -> Any:
                return await check(user, tenant, tool)

        admitted = s.path == "admitted"
        return Case(key=("engine", subject, s, "direct"), call=call, args=args, admitted=admitted,
                    expect=lambda d: d.admitted is admitted and d.dimension is not None,
                    readmitted_ok=None if admitted else (lambda d: d.admitted and d.dimension is not None),
                    max_readmitted=len(self.pool) * 3)  # fmt: skip

    async def latency(self) -> list[dict[str, Any]]:
        st = self.settings
        cases = self.latency_cases()
        log(f"latency: {len(cases)} cases, warm-up {st.warmup} calls each")
        t0 = time.monotonic()
        for case in cases:
            # The blocked path admits each user's first request(s): check strictly only after that.
            await warm_up(case, len(self.pool), strict=case.admitted)
            await warm_up(case, st.warmup, strict=True, max_ns=st.warmup_max_ms * 1_000_000)
        log(f"latency: warm-up took {time.monotonic() - t0:.1f} s")
        crossing = self._crossing_calls()
        gc.collect()
        gc.freeze()  # set-up objects out of the collector's way: collections then scan only new garbage
        order = list(cases)
        for r in range(st.rounds):
            t0 = time.monotonic()
            self.rng.shuffle(order)
            for case in order:
                await timed_batch(case, st.batch, st.batch_max_ms * 1_000_000)
            if crossing:
                self._crossing_round(crossing)
            log(f"latency: round {r + 1}/{st.rounds} took {time.monotonic() - t0:.1f} s")
        for c in self.crossing.get("calls", {}).values():
            c["best_ns"] = min(c["round_ns"])
        rows = []
        for case in cases:
            kind, subject, where, hook = case.key
            stats = latency_stats(case)
            row: dict[str, Any] = {"kind": kind, "subject": subject, "hook": hook, **asdict(stats),
                                   "readmitted": case.readmitted}  # fmt: skip
            if isinstance(where, Scenario):
                row.update(asdict(where))
            else:
                backend = "redis" if kind == "baseline" else None
                row.update({"backend": backend, "algorithm": None, "dims": None, "path": where})
            rows.append(row)
        return rows

    # --- concurrency -------------------------------------------------------

    async def concurrency(self) -> list[dict[str, Any]]:
        st = self.settings
        # (subject, backend, call, result check or None for the admitted hook result)
        targets_: list[tuple[str, str | None, Any, Any]] = []
        for subject in self.subjects:
            if subject == "floor":
                if "admitted" in self.floors:
                    targets_.append(("floor", None, self.floors["admitted"].tool_pre_invoke, None))
                continue
            for backend in BACKENDS:
                plugin = self.plugins.get((subject, Scenario(backend, **CONCURRENCY_SCENARIO)))
                if plugin is not None:
                    targets_.append((subject, backend, plugin.tool_pre_invoke, None))
            plugin = self.cluster_plugins.get((subject, Scenario("redis", **CONCURRENCY_SCENARIO)))
            if plugin is not None:
                targets_.append((subject, "cluster", plugin.tool_pre_invoke, None))
        if self.noop is not None:
            targets_.append((baseline.NAME, "redis", self.noop.call, baseline.reply_ok))
        args = self._hook_args("tool_pre_invoke")
        results: dict[tuple[str, str | None, int], list[tuple[float, int]]] = {}
        failed: dict[tuple[str, str | None, int], list[str]] = {}
        redis_use: dict[tuple[str, str | None, int], RedisUse] = {}
        jobs = [(t, n) for t in targets_ for n in INFLIGHT]
        log(f"concurrency: {len(jobs)} cases x {st.conc_rounds} rounds, {st.conc_ms} ms each")
        for subject, backend, call, ok in targets_:  # warm-up: open the connections the highest level needs
            try:
                await throughput(call, args, True, INFLIGHT[-1], 0, INFLIGHT[-1] * 2, ok)
            except WrongOutcomeError as e:
                if subject in OURS or subject == baseline.NAME:
                    raise
                log(f"concurrency warm-up: {subject} {backend}: {e}")
        with self.redis.client() as admin:
            base_reads = self.standalone(admin).base_reads
            for _ in range(st.conc_rounds):
                self.rng.shuffle(jobs)
                for (subject, backend, call, ok), n in jobs:
                    before = snapshot(admin) if backend == "redis" else None
                    try:
                        got = await throughput(call, args, True, n, st.conc_ms * 1_000_000,
                                               max(st.conc_min_calls, n * 4), ok)  # fmt: skip
                    except WrongOutcomeError as e:
                        # Ours failing is a broken run; a peer failing open under load is a finding.
                        if subject in OURS or subject == baseline.NAME:
                            raise
                        failed.setdefault((subject, backend, n), []).append(str(e))
                        log(f"concurrency: {subject} {backend} at {n} in flight: {e}")
                        continue
                    results.setdefault((subject, backend, n), []).append(got)
                    if before is not None:
                        redis_use.setdefault((subject, backend, n), RedisUse()).add(before, snapshot(admin),
                                                                                     base_reads, got[1])  # fmt: skip
        return concurrency_rows(results, failed, redis_use)

    # --- Redis cost ---------------------------------------------------------

    def standalone(self, admin: Any) -> Deployment:
        dep = Deployment("standalone", self.redis.url, [admin])
        dep.calibrate()
        return dep

    async def redis_cost(self) -> list[dict[str, Any]]:
        st = self.settings
        rows = []
        args = self._hook_args("tool_pre_invoke")
        with self.redis.client() as admin:
            dep = self.standalone(admin)
            rows.append(self._redis_floor(admin, dep.base_reads))
            for (subject, s), plugin in self.plugins.items():
                if s.backend != "redis":
                    continue
                row = await cost_cell(plugin.tool_pre_invoke, args, s.admitted, dep, st.redis_checks, st.redis_max_ms,
                                      f"{subject} {s.label()}")  # fmt: skip
                rows.append({"subject": subject, **asdict(s), **row})
        log(f"redis: {len(rows)} scenarios, up to {st.redis_checks} checks or {st.redis_max_ms} ms each")
        return rows

    # --- Redis Cluster ------------------------------------------------------------

    async def cluster_section(self) -> dict[str, Any]:
        """Our engines on the Cluster (and the partial path on standalone), then the peers' outcomes there."""
        assert self.cluster is not None  # nosec B101 # only called with a Cluster
        st = self.settings
        args = self._hook_args("tool_pre_invoke")
        dep = cluster_cells.deployment(self.cluster)
        out: dict[str, Any] = {"cost": [], "standalone_partial": [], "standalone_no_memory": [], "peers": []}
        try:
            with self.redis.client() as admin:
                single = self.standalone(admin)
                out["idle_cpu_ms_per_s"] = {"cluster": dep.idle_cpu_ms_per_s(), "standalone": single.idle_cpu_ms_per_s()}
                for (subject, s), plugin in self.partial_plugins.items():
                    row = await cost_cell(plugin.tool_pre_invoke, args, s.admitted, single, st.redis_checks,
                                          st.redis_max_ms, f"{subject} standalone {s.label()}")  # fmt: skip
                    out["standalone_partial"].append({"subject": subject, **asdict(s), **row})
                for (subject, s), plugin in self.no_memory_plugins.items():
                    row = await cost_cell(plugin.tool_pre_invoke, args, s.admitted, single, st.redis_checks,
                                          st.redis_max_ms, f"{subject} standalone §12 off {s.label()}")  # fmt: skip
                    out["standalone_no_memory"].append({"subject": subject, **asdict(s), **row})
            for (subject, s), plugin in self.cluster_plugins.items():
                row = await cost_cell(plugin.tool_pre_invoke, args, s.admitted, dep, st.cluster_checks,
                                      st.cluster_max_ms, f"{subject} cluster {s.label()}")  # fmt: skip
                out["cost"].append({"subject": subject, **asdict(s), **row})
            log(f"cluster: {len(out['cost'])} cells, up to {st.cluster_checks} checks or {st.cluster_max_ms} ms each")
            for subject in PEERS:
                if subject not in self.subjects or subject in self.unavailable:
                    continue
                for s in scenarios(("redis",)):
                    if supports(subject, s):
                        out["peers"].append(await self._peer_on_cluster(subject, s, args, dep))
            log(f"cluster: {len(out['peers'])} peer trials")
        finally:
            dep.close()
        return out

    async def _peer_on_cluster(self, subject: str, s: Scenario, args: list[tuple[Any, Any]],
                               dep: Deployment) -> dict[str, Any]:  # fmt: skip
        assert self.cluster is not None  # nosec B101 # only called with a Cluster
        row: dict[str, Any] = {"subject": subject, **asdict(s)}
        try:
            plugin = build(subject, s, self.cluster.url)
            await plugin.initialize()
        except Exception as e:  # the outcome being measured: it could not even start
            return row | {"verdict": "fails", "calls": 0, "errors": [cluster_cells.normalise_error(f"init: {e!r}")]}
        try:
            return row | await cluster_cells.peer_trial(plugin, args, s.admitted, dep, key_prefix(subject, s))
        finally:
            await plugin.shutdown()

    def _redis_floor(self, admin: Any, base_reads: int) -> dict[str, Any]:
        """Redis CPU of a script that does nothing (``return 1``), one EVALSHA per round trip: the
        per-request floor of any one-round-trip limiter on this machine (socket I/O, script call)."""
        n = max(MIN_REDIS_CHECKS, self.settings.redis_checks // 2)
        sha = admin.script_load("return 1")
        before = snapshot(admin)
        for _ in range(n):
            admin.evalsha(sha, 0)
        after = snapshot(admin)
        return {"subject": "floor", "backend": "redis", "algorithm": None, "dims": 0, "path": "admitted", "checks": n,
                "commands_per_request": {k: v / n for k, v in command_delta(before, after).items() if k != "info"},
                "commands_total": 1.0, "round_trips_per_request": (after.reads - before.reads - base_reads) / n,
                "cpu_ms_per_10k": (after.cpu_s - before.cpu_s) * 1000 * 10_000 / n}  # fmt: skip

    # --- profile --------------------------------------------------------------

    async def profiles(self) -> list[dict[str, Any]]:
        out = []
        args = self._hook_args("tool_pre_invoke")
        for subject in OURS:
            for backend, path in (("memory", "admitted"), ("memory", "blocked"), ("redis", "admitted")):
                plugin = self.plugins.get((subject, Scenario(backend, "fixed_window", 3, path)))
                if plugin is None:
                    continue
                n = self.settings.profile_calls if backend == "memory" else self.settings.profile_calls // 4
                text = await profiling.profile_hook(plugin.tool_pre_invoke, args, n)
                out.append({"subject": subject, "backend": backend, "algorithm": "fixed_window", "dims": 3,
                            "path": path, "calls": n, "text": text})  # fmt: skip
        log(f"profile: {len(out)} profiles")
        return out


@dataclass(slots=True)
class RedisUse:
    """What the one redis-server spent on a concurrency level over its rounds: CPU, read events, checks."""

    cpu_s: float = 0.0
    reads: int = 0
    checks: int = 0

    def add(self, before: ServerCounters, after: ServerCounters, base_reads: int, checks: int) -> None:
        """One round between two snapshots (``base_reads``: the ``after`` snapshot's own read event)."""
        self.cpu_s += after.cpu_s - before.cpu_s
        self.reads += after.reads - before.reads - base_reads
        self.checks += checks


def concurrency_rows(results: dict[tuple[str, str | None, int], list[tuple[float, int]]],
                     failed: dict[tuple[str, str | None, int], list[str]],
                     redis_use: dict[tuple[str, str | None, int], RedisUse] | None = None,
                     ) -> list[dict[str, Any]]:  # fmt: skip
    """One row per (subject, backend, in flight): best and median of the rounds that ran; ``failed_rounds``
    counts rounds with a wrong result (a peer that failed open), whose rates are not used (None if all failed).
    With ``redis_use`` (the one redis-server's levels): Redis CPU per 10,000 checks and read events per check
    over the rounds that ran."""
    rows = []
    for subject, backend, n in sorted({*results, *failed}, key=lambda k: (k[0], k[1] or "", k[2])):
        values = results.get((subject, backend, n), [])
        rates = sorted(v[0] for v in values)
        row: dict[str, Any] = {"subject": subject, "backend": backend, "inflight": n,
                               "rps_best": rates[-1] if rates else None,
                               "rps_median": rates[len(rates) // 2] if rates else None,
                               "rps_rounds": [v[0] for v in values], "calls": sum(v[1] for v in values)}  # fmt: skip
        use = (redis_use or {}).get((subject, backend, n))
        if use is not None and use.checks:
            row["redis_cpu_ms_per_10k"] = use.cpu_s * 1000 * 10_000 / use.checks
            row["redis_reads_per_check"] = use.reads / use.checks
        if (subject, backend, n) in failed:
            row["failed_rounds"] = len(failed[(subject, backend, n)])
            row["failure"] = failed[(subject, backend, n)][0]
        rows.append(row)
    return rows


async def _null_hook(payload: Any, context: Any) -> Any:
    """Does nothing: its time per call is the harness's own (coroutine, await, clock reads)."""
    return None


async def run(settings: Settings, subjects: tuple[str, ...] = SUBJECTS, sections: tuple[str, ...] = SECTIONS,
              ) -> dict[str, Any]:  # fmt: skip
    """Run the selected sections and return the results dict (see module docstring)."""
    started = time.monotonic()
    meta = env_info.machine()
    meta["versions"] = versions()
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        meta["redis"] = _redis_version(redis)
        cluster = None
        if "cluster" in sections:
            cluster = stack.enter_context(RedisCluster())
            meta["cluster"] = f"3 primaries + 3 replicas, cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS} ms"
            log(f"cluster: up, seed {cluster.url}")
        r = Run(settings, subjects, sections, redis, cluster)
        await r.build_all()
        results: dict[str, Any] = {"meta": meta, "settings": asdict(settings), "subjects": list(subjects),
                                   "unavailable": r.unavailable, "algorithms": list(ALGORITHMS),
                                   "peers": list(PEERS)}  # fmt: skip
        try:
            if "latency" in sections:
                results["latency"] = await r.latency()
            if "concurrency" in sections:
                results["concurrency"] = await r.concurrency()
            if "redis" in sections:
                results["redis_cost"] = await r.redis_cost()
            if "profile" in sections:
                results["profiles"] = await r.profiles()
            if cluster is not None:
                results["cluster"] = await r.cluster_section()
        finally:
            await r.close_all()
    meta["load_end"] = env_info.load_average()
    meta["duration_s"] = round(time.monotonic() - started, 1)
    if r.crossing:
        results["crossing"] = r.crossing
    core = go_core(ENGINE_RESULTS)
    if core is not None:
        results["go_core"] = core
    results["targets"] = targets.evaluate(results)
    return results


def go_core(path: Path) -> dict[str, Any] | None:
    """The Go benchmark lines of the last ``make bench-engine`` (target 13.1), with where and when, or None."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    m = raw.get("machine", {})
    return {"source": str(path.relative_to(path.parents[2])) if len(path.parents) > 2 else str(path),
            "mode": raw.get("mode"), "date_utc": m.get("date_utc"), "git": m.get("git"),
            "lines": raw.get("go_benchmarks", {}).get("lines", [])}  # fmt: skip


def _redis_version(redis: RedisServer) -> str:
    with redis.client() as c:
        info = c.info("server")
    return f"{info.get('redis_version')} ({info.get('redis_mode', 'standalone')}, {redis.binary})"


"""The plugin-cost section (rig/loadtest/cost.py): its arithmetic on small synthetic batches, and a measured
section is exactly what `run.py render` makes of its saved raw results."""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cost  # noqa: E402
import run  # noqa: E402
from test_rerender import _rig, sections  # noqa: E402


def batch(rnd: int, cfg: str, cpu_s: float, requests: int = 100, **kw) -> dict:
    return {"round": rnd, "config": cfg, "requests": requests, "cpu_s": cpu_s, "events": f"run-{cfg}-round{rnd}",
            "gateway": "gw", "wall_s": 20.0, "load1": 1.5, "redis_commands": 0, **kw}  # fmt: skip


@pytest.mark.parametrize(
    "batches, want",
    [
        # one round: 100 requests; off 1.0 s -> 10000 µs/req, go 1.01 s -> 10100, python 1.03 s -> 10300
        (
            [batch(1, "off", 1.0), batch(1, "go", 1.01), batch(1, "python", 1.03)],
            {"off": 10000, "go": 10100, "python": 10300, "go_us": 100, "py_us": 300, "go_share": 100 / 10100,
             "py_share": 300 / 10300, "py_minus_go": 200, "ci_nan": True},
        ),
        # two rounds, differences go 100 and 300 (mean 200, stdev 141.42, t(1) 12.706 -> ± 1270.6),
        # python 300 and 500 (mean 400): pooled µs/req over 200 requests each
        (
            [batch(1, "off", 1.0), batch(1, "go", 1.01), batch(1, "python", 1.03),
             batch(2, "python", 1.25), batch(2, "off", 1.2), batch(2, "go", 1.23)],
            {"off": 11000, "go": 11200, "python": 11400, "go_us": 200, "py_us": 400, "go_share": 200 / 11200,
             "py_share": 400 / 11400, "py_minus_go": 200, "go_ci": 12.706 * math.sqrt(2 * 100**2) / math.sqrt(2)},
        ),
    ],
)  # fmt: skip
def test_analysis_arithmetic(batches, want):
    a = cost.analyse_cost(batches)
    for cfg in cost.CONFIGS:
        assert a["configs"][cfg]["us_per_req"] == pytest.approx(want[cfg])
    p = a["plugin"]
    assert p["go"]["us"] == pytest.approx(want["go_us"])
    assert p["python"]["us"] == pytest.approx(want["py_us"])
    assert p["go"]["share"] == pytest.approx(want["go_share"])
    assert p["python"]["share"] == pytest.approx(want["py_share"])
    assert p["python_minus_go"]["us"] == pytest.approx(want["py_minus_go"])
    if want.get("ci_nan"):
        assert math.isnan(p["go"]["ci_us"])
    if "go_ci" in want:
        assert p["go"]["ci_us"] == pytest.approx(want["go_ci"])


def test_rounds_missing_a_configuration_are_not_paired():
    a = cost.analyse_cost([batch(1, "off", 1.0), batch(1, "go", 1.1), batch(1, "python", 1.2), batch(2, "off", 5.0)])
    assert a["plugin"]["go"]["rounds"] == 1 and a["plugin"]["go"]["us"] == pytest.approx(1000)
    assert a["configs"]["off"]["us_per_req"] == pytest.approx(30000)  # pooled: 6 s over 200 requests
    assert (a["configs"]["off"]["min_us"], a["configs"]["off"]["max_us"]) == (pytest.approx(10000), pytest.approx(50000))


@pytest.mark.parametrize(
    "p, want",
    [
        ({"us": 100.0, "ci_us": math.nan, "share": 0.01, "ci_share": math.nan}, "go: one round, so no interval"),
        ({"us": 100.0, "ci_us": 300.0, "share": 0.01, "ci_share": 0.03}, "below 4.0 % of the gateway's CPU"),
        ({"us": 100.0, "ci_us": 50.0, "share": 0.01, "ci_share": 0.005}, "go: resolved: the plugin's share is 0.5 .. 1.5 %"),
        ({"us": -100.0, "ci_us": 50.0, "share": -0.01, "ci_share": 0.005}, "resolved: the plugin's share is -1.5 .. -0.5 %"),
    ],
)  # fmt: skip
def test_resolution_line(p, want):
    assert want in cost.resolution_line("go", p)


def test_mean_ci():
    m, h = cost.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / math.sqrt(3))


def _inputs(batches: list[dict]) -> dict:
    return {
        "format": run.RAW_FORMAT, "kind": "plugin-cost", "section": "plugin-cost-memory",
        "title": "The plugin's share of a gateway request: memory backend", "run": "now, commit x (clean tree)",
        "rig": run.rig_facts(_rig()), "backend": "memory", "algorithm": "fixed_window", "rate_limit": "1000000/m",
        "requests": 2, "rate": 5.0, "concurrency": 1, "users": 1, "rounds": 1, "orders": [["off", "go", "python"]],
        "warmup": 1, "idle_s": 1.0, "idle": {"off": 0.01, "go": 0.01, "python": 0.01}, "engine_problems": [],
        "batches": batches,
    }  # fmt: skip


def test_a_measured_section_is_what_render_makes_of_its_saved_files(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RAW_DIR", tmp_path / "raw")
    monkeypatch.setattr(run, "DOC", tmp_path / "loadtest.md")
    t = 1_800_000_000.0
    batches, events = [], {}
    for k, (cfg, cpu) in enumerate((("off", 0.02), ("go", 0.0204), ("python", 0.021))):
        b = batch(1, cfg, cpu, requests=2, events=f"run{k + 1}-{cfg}-round1")
        batches.append(b)
        events[b["events"]] = [{"t0": t + k * 10 + i, "t1": t + k * 10 + i + 0.05, "user": 0, "cat": "admitted",
                                "up": "127.0.0.1:9001", "st": 200} for i in range(2)]  # fmt: skip
    assert run._finish(_inputs(batches), events, write_doc=True) == 0
    assert sections(tmp_path / "loadtest.md") == run.render_saved(tmp_path / "raw")
    body = sections(tmp_path / "loadtest.md")["plugin-cost-memory"]
    assert "| off | 2 | 0.1 | 10000 | 10000 .. 10000 | 50.0 | - |" in body  # 2 requests in 20 s
    assert "| go | 200 | 1.96 |" in body and "| python | 500 | 4.76 |" in body  # 200/10200, 500/10500
    assert "go: one round, so no interval" in body and "did not keep the asked 5.0/s" in body  # 0.1/s achieved
    assert "**Verdict: PASS**" in body
    text = "".join(p.read_text() for p in (tmp_path / "raw").glob("*.json"))
    assert "eyJ" not in text and "@rig.example" not in text
    # a request that was not admitted fails the section: the comparison above is not vacuous
    path = tmp_path / "raw" / "plugin-cost-memory-run2-go-round1.events.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    changed = json.loads(lines[0])
    changed["cat"] = "rate_limited"
    lines[0] = json.dumps(changed, sort_keys=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    again = run.render_saved(tmp_path / "raw")["plugin-cost-memory"]
    assert again != body and "**Verdict: FAIL**: round 1 go: 1 rate_limited" in again


@pytest.mark.parametrize(
    "cat, budget, verdict",
    [
        ("backend_unavailable", None, "FAIL"),  # raw results without a budget: none allowed
        ("backend_unavailable", 10.0, "FAIL"),  # 1 in 6 = 16.7 % > 10 %
        ("backend_unavailable", 20.0, "PASS"),
        ("http_5xx", 20.0, "PASS"),
        ("identity_leak", 20.0, "FAIL"),  # whatever the budget
        ("rate_limited", 20.0, "FAIL"),  # limits never reached: a refusal is wrong
    ],
)  # fmt: skip
def test_answers_other_than_admitted(cat, budget, verdict):
    batches, events = [], {}
    for k, cfg in enumerate(cost.CONFIGS):
        b = batch(1, cfg, 0.02, requests=2, events=f"e{k}")
        batches.append(b)
        events[b["events"]] = [{"t0": i, "t1": i + 0.1, "user": 0, "cat": "admitted"} for i in range(2)]
    events["e1"][1]["cat"] = cat
    raw = _inputs(batches)
    if budget is not None:
        raw["max_infra_pct"] = budget
    lines, problems, _ = cost.render_cost(raw, events)
    assert ("FAIL" if problems else "PASS") == verdict
    assert "Not admitted (counted in the CPU per call" in "\n".join(lines) and f"round 1 go: 1 {cat}" in "\n".join(lines)


def test_engine_problems_need_the_go_extension_in_the_go_gateway_only(monkeypatch):
    rig = {"gateways": [{"name": "gw1", "engine": "off", "pid": 1}, {"name": "gw2", "engine": "go", "pid": 2},
                        {"name": "gw3", "engine": "python", "pid": 3}]}  # fmt: skip
    monkeypatch.setattr(cost, "maps_contain", lambda pid, _needle: pid == 2)
    assert cost.engine_problems(rig) == []
    monkeypatch.setattr(cost, "maps_contain", lambda pid, _needle: pid == 3)
    assert cost.engine_problems(rig) == ["gw2 (go): Go extension not loaded", "gw3 (python): Go extension loaded"]

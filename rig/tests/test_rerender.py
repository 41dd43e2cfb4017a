"""Generated sections re-render from their committed raw results alone, byte for byte.

docs/loadtest.md's sections come from docs/loadtest-results/ (rig/loadtest/run.py render), docs/gateway.md's
discover sections from docs/gateway-results/discover-*.json (rig/discover.py render); `make docs` runs both.
The first two tests fail when a committed section and its raw results disagree (a hand edit, a section
measured by older code, raw results of another run)."""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import discover  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402

SECTION = re.compile(r"<!-- result:(?P<name>[^:]+):begin -->\n(?P<body>.*?)\n<!-- result:(?P=name):end -->", re.S)


def sections(path: Path) -> dict[str, str]:
    return {m["name"]: m["body"] for m in SECTION.finditer(path.read_text(encoding="utf-8"))}


def test_every_loadtest_section_rerenders_from_its_raw_results():
    in_doc = sections(report.DOC)
    rendered = run.render_saved()
    assert sorted(in_doc) == sorted(rendered), "sections without raw results, or raw results without a section"
    for name, body in in_doc.items():
        assert body == rendered[name], f"docs/loadtest.md section {name!r} differs from its raw results"


def test_every_discover_section_of_gateway_md_rerenders_from_its_raw_results():
    in_doc = {k: v for k, v in sections(discover.DOC).items() if k.startswith("discover-")}
    rendered = discover.render_saved()
    assert sorted(in_doc) == sorted(rendered)
    for name, body in in_doc.items():
        assert body == rendered[name], f"docs/gateway.md section {name!r} differs from its raw results"


def _rig() -> dict:
    return {
        "versions": {"gateway": "1.1.0", "python": "3.12.1"}, "engines": ["go", "python"], "teams": ["T1"],
        "gateways": [{"name": "gw1", "engine": "go", "ready_s": 3.0, "url": "http://127.0.0.1:9001", "pid": 1},
                     {"name": "gw2", "engine": "python", "ready_s": 4.0, "url": "http://127.0.0.1:9002", "pid": 2}],
        "plugin_config": {"by_user": "3/m", "algorithm": "fixed_window", "redis_url": "redis://127.0.0.1:1/0"},
        "users": [{"email": "a@rig.example", "team": "T1", "token": "eyJ.x"}], "tool": "rig-rig-echo",
        "redis_mode": "standalone",
    }  # fmt: skip


def test_a_measured_section_is_what_render_makes_of_its_saved_files(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RAW_DIR", tmp_path / "raw")
    monkeypatch.setattr(run, "DOC", tmp_path / "loadtest.md")
    t = 1_800_000_000.0  # a window start (divisible by 60)
    events = [{"t0": t + 1 + i, "t1": t + 1.2 + i, "user": 0, "up": "127.0.0.1:9001", "cat": "admitted"} for i in range(3)]
    events += [{"t0": t + 5, "t1": t + 5.1, "user": 0, "up": "127.0.0.1:9002", "cat": "rate_limited", "dim": "user"},
               {"t0": t + 6, "t1": t + 6.1, "user": 0, "up": "", "cat": "connection_error", "det": "refused"}]  # fmt: skip
    inputs = {
        "format": run.RAW_FORMAT, "kind": "correctness", "section": "correctness-redis-fixed_window",
        "title": "Correctness: fixed_window, redis backend", "run": "now, commit x (clean tree)",
        "rig": run.rig_facts(_rig()), "duration_s": 10, "clients": 2, "tool_error_every": 20,
        "algorithm": "fixed_window", "backend": "redis", "limit": "3/m", "fail_mode": "closed",
        "max_infra_pct": 50.0, "engine_problems": [], "engine_errors_logged": {"gw1": 0, "gw2": 2},
    }  # fmt: skip
    assert run._finish(inputs, {"": list(reversed(events))}, write_doc=True) == 0
    assert sections(tmp_path / "loadtest.md") == run.render_saved(tmp_path / "raw")
    body = sections(tmp_path / "loadtest.md")["correctness-redis-fixed_window"]
    assert "| user:u0 | 3 | 60 | 3 | 1 | 1 | 0 | 0 | 0 | ok |" in body  # the lost request might have counted
    assert "gw2 (python): 2" in body and "**Verdict: PASS**" in body
    # a changed event changes the section: the comparison above is not vacuous
    path = tmp_path / "raw" / "correctness-redis-fixed_window.events.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    changed = json.loads(lines[3])
    changed["cat"] = "admitted"
    lines[3] = json.dumps(changed, sort_keys=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert run.render_saved(tmp_path / "raw")["correctness-redis-fixed_window"] != body


def test_raw_results_without_the_inputs_are_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"section": "old", "run": "x"}))
    try:
        run.render_saved(tmp_path)
    except ValueError as e:
        assert "re-measure" in str(e)
    else:
        raise AssertionError("old raw results rendered")


def test_rig_facts_hold_what_rendering_needs_and_no_identities():
    facts = run.rig_facts(_rig())
    assert facts["user_teams"] == [0] and facts["tool"] == "rig-rig-echo"
    assert facts["gateways"][1]["url"] == "http://127.0.0.1:9002"
    assert run.facts_users(facts) == [{"team": "t0"}]
    text = json.dumps(facts)
    assert "eyJ" not in text and "@rig.example" not in text and "redis://" not in text and "T1" not in text

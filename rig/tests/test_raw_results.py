"""Raw results beside the docs: complete, reproducible bytes, no secrets, old files of a section replaced."""

from __future__ import annotations

import gzip
import json

import run
from analyze import KeyReport


def test_save_raw_writes_the_section_json_and_its_events(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RAW_DIR", tmp_path)
    (tmp_path / "correctness-x-run9.events.jsonl.gz").write_bytes(b"stale")
    events = [{"t0": 2.0, "t1": 2.1, "user": 1, "cat": "admitted"}, {"t0": 1.0, "t1": 1.2, "user": 0, "cat": "rate_limited"}]
    raw = {"summary": {"n": 2, "infra_details": [("x", 1)]}, "keys": [KeyReport("user:u0", 5, 60, admitted=5)]}
    paths = run.save_raw("correctness-x", raw, {"": events})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["correctness-x.events.jsonl.gz", "correctness-x.json"]
    assert [p.name for p in paths] == ["correctness-x.json", "correctness-x.events.jsonl.gz"]
    doc = json.loads((tmp_path / "correctness-x.json").read_text())
    assert doc["keys"][0]["key"] == "user:u0" and doc["keys"][0]["ok"] is True
    assert doc["summary"]["infra_details"] == [["x", 1]]
    lines = gzip.decompress((tmp_path / "correctness-x.events.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(x)["t0"] for x in lines] == [1.0, 2.0]  # sorted by send time
    first = (tmp_path / "correctness-x.events.jsonl.gz").read_bytes()
    run.save_raw("correctness-x", raw, {"": events})
    assert (tmp_path / "correctness-x.events.jsonl.gz").read_bytes() == first  # no timestamp in the gzip header


def test_rig_facts_leave_out_tokens_identities_and_the_redis_url():
    rig = {
        "versions": {"gateway": "1.1.0"}, "engines": ["go"], "teams": ["t1"],
        "gateways": [{"name": "gw1", "engine": "go", "ready_s": 3.0, "url": "http://127.0.0.1:1", "pid": 7}],
        "plugin_config": {"by_user": "5/m", "redis_url": "redis://127.0.0.1:6379/0"},
        "users": [{"email": "user000@rig.example", "team": "t1", "token": "eyJ.secret.x"}],
        "admin_token": "eyJ.admin.x", "tool": "rig-rig-echo",
    }  # fmt: skip
    facts = run.rig_facts(rig)
    text = json.dumps(facts)
    assert "eyJ" not in text and "@rig.example" not in text and "redis://" not in text
    assert facts["users"] == 1 and facts["plugin_config"] == {"by_user": "5/m"}


def test_the_docs_a_run_rewrites_do_not_make_the_tree_dirty():
    import report

    porcelain = " M docs/loadtest.md\n M docs/loadtest-results/scale-100.json\nM  docs/gateway.md\n"
    assert not [p for p in report.changed_files(porcelain) if not p.startswith(report.OUTPUTS)]
    porcelain += " M rig/rigctl.py\nR  a.py -> python/x.py\n"
    assert [p for p in report.changed_files(porcelain) if not p.startswith(report.OUTPUTS)] == [
        "rig/rigctl.py", "python/x.py"
    ]


def _fixed(key: str, certain: int, limit: int = 100) -> KeyReport:
    rep = KeyReport(key, limit, 60)
    rep.windows.append({"window_start": 0, "certain": certain, "possible": certain, "refused": 1})
    if certain > limit:
        rep.over.append(f"window starting 0: {certain} certain admissions > limit {limit}")
    return rep


def test_fail_open_over_admission_is_allowed_only_up_to_the_unchecked_requests():
    raw = {"fail_mode": "open", "algorithm": "fixed_window", "engine_errors_logged": {"gw1": 0, "gw2": 2}}
    assert run.fail_open_allowance(raw, [_fixed("user:u0", 101), _fixed("user:u1", 101)]) == 2
    assert run.fail_open_allowance(raw, [_fixed("user:u0", 103)]) == 0  # 3 over > 2 unchecked: strict
    assert run.fail_open_allowance(raw, [_fixed("user:u0", 100)]) == 0  # nothing to explain
    assert run.fail_open_allowance({**raw, "fail_mode": "closed"}, [_fixed("user:u0", 101)]) == 0
    assert run.key_rows([_fixed("user:u0", 101)], fail_open=True)[0][-1] == "over: fail_mode open"
    assert run.key_rows([_fixed("user:u0", 101)])[0][-1] == "FAIL"

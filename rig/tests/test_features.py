"""rig/features.py: response classes and the findings computed from raw calls."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import features  # noqa: E402


def test_outcome_classes():
    assert features.outcome(200, {"result": {"isError": False}}) == ("admitted", "")
    cls, _ = features.outcome(429, {"error": {"message": "Plugin Violation: The per-user limit of 6 ..."}})
    assert cls == "refused (HTTP 429)"
    tool_err = {"result": {"isError": True, "content": [{"type": "text", "text": "tool_pre_invoke blocked by plugin X"}]}}
    assert features.outcome(200, tool_err)[0] == "refused (MCP tool error)"
    sse = 'event: message\ndata: {"jsonrpc": "2.0", "id": 1, "result": {"isError": false}}\n'
    assert features.outcome(200, sse)[0] == "admitted"
    assert features._dimension("Plugin Violation: The per-tenant limit of 4 requests per 60 s is used up") == "tenant"


def _call(n, who, ep, remaining=None, cls="admitted"):
    headers = {} if remaining is None else {"x-ratelimit-limit": "6", "x-ratelimit-remaining": str(remaining)}
    return {"n": n, "caller": who, "endpoint": ep, "client_correlation_id": False, "status": 200, "outcome": cls,
            "dimension": "", "headers": headers, "reset_in_s": None}  # fmt: skip


def test_findings_count_down_per_caller_and_flag_a_leak():
    calls = [_call(1, "A", "/rpc", 5), _call(2, "B", "/rpc", 5), _call(3, "A", "/servers/<id>/mcp", 4)]
    found = dict(features.findings({"hooks": {"calls": calls, "observability": {}}}))
    assert found["caller A: X-RateLimit-Remaining on its admitted calls, in order (its own count: [5, 4])"] == "[5, 4]: right"
    leak = [_call(1, "A", "/rpc", 5), _call(2, "B", "/rpc", 4)]
    found = dict(features.findings({"hooks": {"calls": leak, "observability": {}}}))
    assert found["caller B: X-RateLimit-Remaining on its admitted calls, in order (its own count: [5])"].endswith(
        "NOT its own count"
    )
    partial = [_call(1, "A", "/rpc", 5), _call(2, "A", "/servers/<id>/mcp")]
    found = dict(features.findings({"hooks": {"calls": partial, "observability": {}}}))
    assert found["caller A: X-RateLimit-Remaining on its admitted calls, in order (its own count: [5, 4])"] == (
        "[5, -]: right on the 1 call(s) that carried it"
    )

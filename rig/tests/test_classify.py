"""Response classification: only the plugin's own refusal is rate-limited (load-test honesty rules)."""

from __future__ import annotations

import json

import pytest
from classify import INFRA, classify

UP = {"x-rig-upstream": "127.0.0.1:4444"}
RL_HEADERS = UP | {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000060",
                   "retry-after": "7"}  # fmt: skip


def violation(code="RATE_LIMIT", dimension="user", extra=""):
    return json.dumps({"error": {"code": -32602, "message": "Plugin Violation: limit used up" + extra,
                                 "data": {"description": "The per-user limit ...", "plugin_error_code": code,
                                          "details": {"dimension": dimension}}}})  # fmt: skip


def test_tool_success_is_admitted():
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "x"}], "isError": False}}
    )
    out = classify(200, UP, body)
    assert out.category == "admitted" and out.admitted and not out.infra


def test_tool_error_is_admitted_but_neither_ok_nor_limited():
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": True}})
    out = classify(200, UP, body)
    assert out.category == "tool_error" and out.admitted and not out.infra


def test_plugin_refusal_is_rate_limited_with_its_headers():
    out = classify(429, RL_HEADERS, violation(dimension="tenant"))
    assert out.category == "rate_limited"
    assert (out.dimension, out.limit, out.remaining, out.retry_after_s) == ("tenant", 10, 0, 7)


def test_429_made_by_nginx_is_not_the_plugin():
    # no X-Rig-Upstream: nginx answered itself (what a limit_req refusal looks like)
    out = classify(429, {"retry-after": "1"}, "<html>429 Too Many Requests</html>")
    assert out.category == "proxy_response" and out.infra


def test_gateway_own_limiter_is_not_the_plugin():
    body = json.dumps({"error": "Rate limit exceeded", "message": "Maximum 500 requests per minute for LOW tier"})
    out = classify(429, UP | {"retry-after": "60"}, body)
    assert out.category == "gateway_limiter_429" and out.infra


@pytest.mark.parametrize("drop", ["retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"])
def test_refusal_without_a_header_is_a_fault(drop):
    headers = {k: v for k, v in RL_HEADERS.items() if k != drop}
    assert classify(429, headers, violation()).category == "bad_rate_limit_headers"


def test_refusal_with_retry_after_zero_is_a_fault():
    assert classify(429, RL_HEADERS | {"retry-after": "0"}, violation()).category == "bad_rate_limit_headers"


def test_refusal_naming_the_caller_is_a_leak():
    out = classify(
        429, RL_HEADERS, violation(extra=" for alice@example.invalid"), identities=("alice@example.invalid",)
    )
    assert out.category == "identity_leak" and out.infra


def test_other_plugin_violation_429_is_not_counted_as_rate_limited():
    assert classify(429, RL_HEADERS, violation(code="SOMETHING_ELSE")).category == "malformed"


@pytest.mark.parametrize(
    "status,body,category",
    [
        (502, "bad gateway", "http_5xx"),
        (500, "{}", "http_5xx"),
        (401, json.dumps({"detail": "Not authenticated"}), "http_4xx"),
        (200, "not json", "malformed"),
        (200, json.dumps({"jsonrpc": "2.0", "id": 1}), "malformed"),
        (
            200,
            json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Tool not found"}}),
            "rpc_error",
        ),
        (503, violation(code="BACKEND_UNAVAILABLE"), "backend_unavailable"),
    ],
)
def test_infrastructure_errors(status, body, category):
    out = classify(status, UP, body)
    assert out.category == category and out.infra and not out.admitted


def test_no_response_is_a_connection_error():
    out = classify(0, {}, None, error="ConnectionRefusedError")
    assert out.category == "connection_error" and out.infra
    assert set(INFRA) >= {"connection_error", "proxy_response", "gateway_limiter_429"}


def test_refusal_on_the_mcp_endpoint_is_rate_limited_not_a_tool_error():
    # /servers/<id>/mcp: the gateway returns the violation as a tool result with isError true
    text = (
        "tool_pre_invoke blocked by plugin RateLimiter: RATE_LIMIT - Rate limit exceeded "
        "(The per-tenant limit of 5 requests per 60 s is used up; retry after 3 s.)"
    )
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}], "isError": True}}
    )
    out = classify(200, UP, body)
    assert out.category == "rate_limited" and out.dimension == "tenant" and out.retry_after_s is None


def test_other_plugin_block_on_the_mcp_endpoint_stays_a_tool_error():
    text = "tool_pre_invoke blocked by plugin rig_probe: RIG_PROBE - Probe block (rig probe blocks this call)"
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}], "isError": True}}
    )
    assert classify(200, UP, body).category == "tool_error"

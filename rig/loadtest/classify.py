"""Classify one HTTP response of a JSON-RPC ``tools/call`` sent through the rig's nginx.

The point is honesty: only the plugin's own refusal counts as rate-limited, a tool that reports an
error was admitted (it is neither rate-limited nor an infrastructure error), and everything else
that is not a clean answer is an infrastructure error, each kind counted separately:

* ``admitted``: HTTP 200, JSON-RPC ``result`` with ``isError`` false.
* ``tool_error``: HTTP 200, ``result.isError`` true: the limiter admitted it, the tool failed.
  Exception: on a virtual server's MCP endpoint (``/servers/<id>/mcp``) the gateway (1.0.7 and 1.1.0) turns
  a plugin violation into exactly such a result, with the text ``tool_pre_invoke blocked by plugin
  <name>: RATE_LIMIT - ...`` and no 429 or headers; that text is classified ``rate_limited``
  (without header values).
* ``rate_limited``: HTTP 429 produced behind nginx (``X-Rig-Upstream`` present), body in the
  gateway's plugin-violation shape with ``plugin_error_code`` ``RATE_LIMIT``, and well-formed
  ``Retry-After`` and ``X-RateLimit-*`` headers.
* infrastructure errors: ``backend_unavailable`` (the plugin's fail-closed 503),
  ``gateway_limiter_429`` (the gateway's own RateLimitMiddleware, which the rig disables),
  ``proxy_response`` (a response nginx made itself: no ``X-Rig-Upstream``; a ``limit_req`` 429
  would land here), ``bad_rate_limit_headers`` (a RATE_LIMIT 429 whose headers are missing or
  malformed), ``identity_leak`` (a refusal whose body names the caller), ``http_5xx``,
  ``http_4xx`` (auth, not found, ...), ``rpc_error`` (HTTP 200 with a JSON-RPC error),
  ``malformed`` (not the JSON we expect), ``connection_error`` (no HTTP response at all).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

ADMITTED = "admitted"
TOOL_ERROR = "tool_error"
RATE_LIMITED = "rate_limited"
INFRA = (
    "backend_unavailable",
    "gateway_limiter_429",
    "proxy_response",
    "bad_rate_limit_headers",
    "identity_leak",
    "http_5xx",
    "http_4xx",
    "rpc_error",
    "malformed",
    "connection_error",
)
ALL_CATEGORIES = (ADMITTED, TOOL_ERROR, RATE_LIMITED) + INFRA
DIMENSIONS = ("user", "tenant", "tool")
UPSTREAM_HEADER = "x-rig-upstream"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The category of one response and, for a refusal, the dimension that refused and its headers."""

    category: str
    dimension: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_unix: int | None = None
    retry_after_s: int | None = None
    detail: str = ""

    @property
    def admitted(self) -> bool:
        """The limiter let the call through (whether or not the tool then succeeded)."""
        return self.category in (ADMITTED, TOOL_ERROR)

    @property
    def infra(self) -> bool:
        return self.category in INFRA


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


def _parse_json(body: bytes | str | None) -> Any:
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def classify(
    status: int | None,
    headers: Mapping[str, str],
    body: bytes | str | None,
    error: str | None = None,
    identities: tuple[str, ...] = (),
) -> Outcome:
    """Classify a response. ``headers`` must have lower-case names; ``status`` None or 0 means no
    response (then ``error`` says why). ``identities`` are strings that must never appear in a
    refusal (the caller's email and team id)."""
    if not status:
        return Outcome("connection_error", detail=(error or "no response")[:120])
    if UPSTREAM_HEADER not in headers or not headers[UPSTREAM_HEADER]:
        return Outcome("proxy_response", detail=f"HTTP {status} made by the proxy")
    doc = _parse_json(body)
    if status == 429:
        return _classify_429(headers, doc, body, identities)
    if status == 503 and _plugin_code(doc) == "BACKEND_UNAVAILABLE":
        return Outcome("backend_unavailable", detail="plugin fail_mode closed")
    if status >= 500:
        return Outcome("http_5xx", detail=f"HTTP {status}")
    if status != 200:
        return Outcome("http_4xx", detail=f"HTTP {status}: {_short(doc, body)}")
    if not isinstance(doc, dict):
        return Outcome("malformed", detail="body is not a JSON object")
    if "error" in doc:
        return Outcome("rpc_error", detail=_short(doc.get("error"), body))
    result = doc.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("content"), list):
        return Outcome("malformed", detail="no JSON-RPC result with content")
    if result.get("isError") is not True:
        return Outcome(ADMITTED)
    text = " ".join(c.get("text", "") for c in result["content"] if isinstance(c, dict))
    m = _MCP_REFUSAL.match(text)
    if m and m.group(1) == "RATE_LIMIT":
        kind = _MCP_KIND.search(text)
        dimension = _MCP_KINDS[kind.group(1)] if kind else None
        return Outcome(RATE_LIMITED, dimension, detail="MCP tool result: no HTTP 429, no headers")
    return Outcome(TOOL_ERROR)


# How the gateway reports a pre-invoke violation on the MCP transport (tool_service.py, 1.0.7 and 1.1.0; measured by rig/discover.py).
_MCP_REFUSAL = re.compile(r"tool_pre_invoke blocked by plugin .*?: (\w+) - ")
_MCP_KIND = re.compile(r"\b(per-user|per-tenant|per-tool)\b")
_MCP_KINDS = {"per-user": "user", "per-tenant": "tenant", "per-tool": "tool"}


def _plugin_code(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), dict):
        return None
    data = doc["error"].get("data")
    return data.get("plugin_error_code") if isinstance(data, dict) else None


def _classify_429(
    headers: Mapping[str, str], doc: Any, body: bytes | str | None, identities: tuple[str, ...]
) -> Outcome:
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        # {"error": "Rate limit exceeded", "message": "Maximum N requests per minute for ... tier"}
        return Outcome("gateway_limiter_429", detail=str(doc.get("message", ""))[:120])
    if _plugin_code(doc) != "RATE_LIMIT":
        return Outcome("malformed", detail=f"429 without the plugin's RATE_LIMIT shape: {_short(doc, body)}")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    for ident in identities:
        if ident and ident in text:
            return Outcome("identity_leak", detail="a refusal body contains the caller's identity")
    details = doc["error"]["data"].get("details")
    dimension = details.get("dimension") if isinstance(details, dict) else None
    if dimension not in DIMENSIONS:
        dimension = None
    limit = _int_header(headers, "x-ratelimit-limit")
    remaining = _int_header(headers, "x-ratelimit-remaining")
    reset = _int_header(headers, "x-ratelimit-reset")
    retry = _int_header(headers, "retry-after")
    if None in (limit, remaining, reset, retry) or retry < 1 or dimension is None:
        return Outcome(
            "bad_rate_limit_headers",
            dimension=dimension,
            detail=f"limit={limit} remaining={remaining} reset={reset} retry_after={retry} dimension={dimension}",
        )
    return Outcome(RATE_LIMITED, dimension, limit, remaining, reset, retry)


def _short(doc: Any, body: bytes | str | None) -> str:
    if doc is not None:
        return json.dumps(doc)[:160]
    if isinstance(body, bytes):
        return body[:160].decode("utf-8", "replace")
    return (body or "")[:160]

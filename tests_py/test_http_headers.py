"""Rate-limit headers on admitted calls, through the gateway's HTTP post-request hook.

cpex drops the http_headers of an admitted tool_pre_invoke result. The plugin
hands them to its http_post_request hook of the same request (keyed by plugin,
request id and caller), which returns them as response headers. Here the real
cpex PluginManager runs the three hooks in the order the gateway's middleware
does, sharing one GlobalContext object that the tool path fills in, as gateway
1.1.0 does when a plugin registers http_pre_request (docs/gateway.md has what
the gateway itself does, measured on the rig).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cpex.framework import GlobalContext, PluginManager, ToolHookType, ToolPreInvokePayload
from cpex.framework.hooks.http import HttpHeaderPayload, HttpHookType, HttpPostRequestPayload, HttpPreRequestPayload
from cpex.framework.settings import settings as cpex_settings
from rate_limiter_go.config import parse_config
from rate_limiter_go.header_handoff import HANDOFF, HeaderHandoff
from support.plugin_helpers import KIND, write_plugins_yaml

HTTP_HOOKS = ["tool_pre_invoke", "prompt_pre_fetch", "http_pre_request", "http_post_request"]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PLUGINS_FAIL_ON_PLUGIN_ERROR", "true")
    cpex_settings.cache_clear()
    PluginManager.reset()
    HANDOFF.clear()
    yield
    PluginManager.reset()
    HANDOFF.clear()
    cpex_settings.cache_clear()


# --- the store ------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_take_returns_once_and_only_for_the_same_key() -> None:
    store = HeaderHandoff()
    store.put(("rl", "req-1", "alice"), {"X-RateLimit-Remaining": "4"})
    assert store.take(("rl", "req-1", "mallory")) is None  # same request id, other caller
    assert store.take(("other", "req-1", "alice")) is None  # other plugin
    assert store.take(("rl", "req-1", "alice")) == {"X-RateLimit-Remaining": "4"}
    assert store.take(("rl", "req-1", "alice")) is None


def test_entries_expire() -> None:
    clock = _Clock()
    store = HeaderHandoff(ttl_s=5.0, clock=clock)
    store.put(("rl", "a", "u"), {"h": "1"})
    store.put(("rl", "b", "u"), {"h": "2"})
    clock.now += 5.0
    assert store.take(("rl", "a", "u")) is None
    store.put(("rl", "c", "u"), {"h": "3"})  # a put drops what has expired
    assert len(store) == 1
    assert store.take(("rl", "c", "u")) == {"h": "3"}


def test_store_is_bounded_oldest_first() -> None:
    store = HeaderHandoff(max_entries=3)
    for i in range(10):
        store.put(("rl", f"r{i}", "u"), {"i": str(i)})
    assert len(store) == 3
    assert store.take(("rl", "r6", "u")) is None
    assert [store.take(("rl", f"r{i}", "u")) for i in (7, 8, 9)] == [{"i": "7"}, {"i": "8"}, {"i": "9"}]


# --- through cpex ---------------------------------------------------------------------------


async def _manager(tmp_path: Path, config: dict[str, Any], hooks: list[str]) -> PluginManager:
    entry = {"name": "rate_limiter", "kind": KIND, "hooks": hooks, "mode": "enforce", "priority": 10, "config": config}
    pm = PluginManager(str(write_plugins_yaml(tmp_path / "plugins.yaml", [entry])))
    await pm.initialize()
    assert pm.plugin_count == 1
    return pm


async def _request(pm: PluginManager, request_id: str, user: str) -> tuple[bool, dict[str, str] | None]:
    """One HTTP request as the gateway middleware runs it: pre hook, tool hook, post hook."""
    gctx = GlobalContext(request_id=request_id)  # the middleware's context: no user yet
    headers = HttpHeaderPayload(root={"authorization": "Bearer x"})
    if pm.has_hooks_for(HttpHookType.HTTP_PRE_REQUEST):
        await pm.invoke_hook(HttpHookType.HTTP_PRE_REQUEST,
                             HttpPreRequestPayload(path="/rpc", method="POST", headers=headers),
                             global_context=gctx, violations_as_exceptions=False)
    gctx.user = user  # the tool path fills in the caller on the same context object
    gctx.server_id = "srv-1"
    tool, _ = await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, ToolPreInvokePayload(name="search", args={}),
                                   global_context=gctx, violations_as_exceptions=False)
    if not pm.has_hooks_for(HttpHookType.HTTP_POST_REQUEST):
        return tool.continue_processing, None
    post, _ = await pm.invoke_hook(
        HttpHookType.HTTP_POST_REQUEST,
        HttpPostRequestPayload(path="/rpc", method="POST", headers=headers,
                               response_headers=HttpHeaderPayload(root={"content-type": "application/json"}),
                               status_code=200 if tool.continue_processing else 429),
        global_context=gctx, violations_as_exceptions=False)
    return tool.continue_processing, (post.modified_payload.root if post.modified_payload else None)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_admitted_responses_carry_the_rate_limit_headers(tmp_path: Path, backend: str,
                                                               request: pytest.FixtureRequest) -> None:
    config: dict[str, Any] = {"by_user": "2/h"}
    if backend == "redis":
        config |= {"backend": "redis", "redis_url": request.getfixturevalue("redis_url"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}
    pm = await _manager(tmp_path, config, HTTP_HOOKS)
    try:
        first = await _request(pm, "req-1", "alice@example.com")
        second = await _request(pm, "req-2", "alice@example.com")
        third = await _request(pm, "req-3", "alice@example.com")
    finally:
        await pm.shutdown()
    assert first[0] is True and first[1] is not None
    assert first[1]["X-RateLimit-Limit"] == "2" and first[1]["X-RateLimit-Remaining"] == "1"
    assert int(first[1]["X-RateLimit-Reset"]) > 0
    assert second[0] is True and second[1] is not None and second[1]["X-RateLimit-Remaining"] == "0"
    assert third == (False, None)  # refused: the 429 carries the violation's headers, nothing is handed off
    assert len(HANDOFF) == 0


async def test_a_reused_request_id_does_not_leak_another_callers_headers(tmp_path: Path) -> None:
    pm = await _manager(tmp_path, {"by_user": "5/h"}, ["tool_pre_invoke", "http_post_request"])
    try:
        gctx = GlobalContext(request_id="same-id", user="alice@example.com")
        await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, ToolPreInvokePayload(name="t", args={}), global_context=gctx)
        other = GlobalContext(request_id="same-id", user="mallory@example.com")
        post, _ = await pm.invoke_hook(
            HttpHookType.HTTP_POST_REQUEST,
            HttpPostRequestPayload(path="/rpc", method="POST", headers=HttpHeaderPayload(root={}), status_code=200),
            global_context=other)
    finally:
        await pm.shutdown()
    assert post.modified_payload is None


async def test_without_the_http_hooks_nothing_is_kept(tmp_path: Path) -> None:
    pm = await _manager(tmp_path, {"by_user": "5/h"}, ["tool_pre_invoke", "prompt_pre_fetch"])
    try:
        assert await _request(pm, "req-1", "alice@example.com") == (True, None)
    finally:
        await pm.shutdown()
    assert len(HANDOFF) == 0


async def test_setting_off_keeps_nothing(tmp_path: Path) -> None:
    pm = await _manager(tmp_path, {"by_user": "5/h", "admitted_headers": False}, HTTP_HOOKS)
    try:
        assert await _request(pm, "req-1", "alice@example.com") == (True, None)
    finally:
        await pm.shutdown()
    assert len(HANDOFF) == 0


def test_setting_is_a_strict_boolean() -> None:
    assert parse_config({}).admitted_headers is True
    with pytest.raises(ValueError, match="admitted_headers: must be true or false"):
        parse_config({"admitted_headers": "yes"})


async def test_a_post_hook_without_a_caller_gets_nothing(tmp_path: Path) -> None:
    """Gateway 1.0.7's /servers/<id>/mcp (measured on the rig, docs/gateway.md "Headers on admitted calls and
    observability"): the MCP transport runs the tool hook on a context of its own (same request id, the caller's
    email), while the HTTP hooks' context never gets the caller. The post hook then sets nothing: a key by request
    id alone would hand a caller's quota to whoever reuses its X-Correlation-ID."""
    pm = await _manager(tmp_path, {"by_user": "5/h"}, HTTP_HOOKS)
    try:
        middleware_ctx = GlobalContext(request_id="corr-1")  # the HTTP hooks' context: no caller
        await pm.invoke_hook(HttpHookType.HTTP_PRE_REQUEST,
                             HttpPreRequestPayload(path="/servers/s/mcp", method="POST", headers=HttpHeaderPayload(root={})),
                             global_context=middleware_ctx, violations_as_exceptions=False)
        tool_ctx = GlobalContext(request_id="corr-1", user="alice@example.com", server_id="srv-1")  # the transport's own
        tool, _ = await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, ToolPreInvokePayload(name="t", args={}),
                                       global_context=tool_ctx, violations_as_exceptions=False)
        post, _ = await pm.invoke_hook(
            HttpHookType.HTTP_POST_REQUEST,
            HttpPostRequestPayload(path="/servers/s/mcp", method="POST", headers=HttpHeaderPayload(root={}), status_code=200),
            global_context=middleware_ctx, violations_as_exceptions=False)
    finally:
        await pm.shutdown()
    assert tool.continue_processing is True
    assert post.modified_payload is None
    assert len(HANDOFF) == 1  # left behind; it expires after the store's TTL


async def test_headers_reach_the_response_without_a_user_limit(tmp_path: Path) -> None:
    # With only a tool limit the hook never computes the user, but the handoff is still keyed by caller.
    pm = await _manager(tmp_path, {"by_tool": {"search": "3/h"}}, HTTP_HOOKS)
    try:
        alice = await _request(pm, "req-1", "alice@example.com")
        bob = await _request(pm, "req-2", "bob@example.com")
    finally:
        await pm.shutdown()
    assert alice[1] is not None and alice[1]["X-RateLimit-Remaining"] == "2"
    assert bob[1] is not None and bob[1]["X-RateLimit-Remaining"] == "1"  # the tool limit is shared

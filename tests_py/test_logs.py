"""No user, tenant or tool identity in any log line; backend-error warnings are rate limited (§7, §8).

Every record of every logger (cpex's included) is captured at DEBUG while the
plugin blocks requests, fails open and closed against a stopped Redis, hits a
Redis script error, and is shut down.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cpex.framework import GlobalContext, PluginManager, ToolHookType, ToolPreInvokePayload
from rate_limiter_go.keys import escape_identity
from rate_limiter_go.plugin import ERROR_LOG_INTERVAL_S, sanitise_error
from support.plugin_helpers import call_tool, fetch_prompt, make_plugin, plugin_entry, unique_name, write_plugins_yaml

USER = "user-SECRET-7f3a@example.com"
TENANT = "tenant-SECRET-91"
TOOL = "tool-secret-x"
# Distinctive fragments too: a partial echo must not get through either.
FORBIDDEN = (USER, TENANT, TOOL, "SECRET", "secret-x", "7f3a")


def _all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything a handler could write: formatted messages, raw args, exception and stack texts."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(formatter.format(record))
        parts.append(repr(record.args))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        if record.stack_info:
            parts.append(record.stack_info)
    return "\n".join(parts)


def _assert_no_identity(text: str) -> None:
    for fragment in FORBIDDEN:
        assert fragment not in text, f"{fragment!r} leaked into the log"
    for identity in (USER, TENANT, TOOL):
        assert escape_identity(identity) not in text


def _redis_config(url: str, fail_mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "by_user": "2/h",
        "by_tenant": "5/h",
        "by_tool": {TOOL: "3/h"},
        "backend": "redis",
        "redis_url": url,
        "redis_key_prefix": unique_name("log"),
        "fail_mode": fail_mode,
        "redis_timeout_ms": 2000,
        **extra,
    }


async def test_no_identity_in_any_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, redis_server: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)  # root logger: every library's records
    # 1. Through the real manager: admitted and blocked calls, cpex's own logging included.
    PluginManager.reset()
    config = {"by_user": "2/h", "by_tenant": "5/h", "by_tool": {TOOL: "3/h"}}
    path = write_plugins_yaml(tmp_path / "plugins.yaml", [plugin_entry(config, name="rate_limiter")])
    pm = PluginManager(str(path))
    await pm.initialize()
    assert pm.plugin_count == 1
    try:
        gctx = GlobalContext(request_id="r", user={"email": USER}, tenant_id=TENANT)
        outcomes = []
        for _ in range(4):
            result, _ = await pm.invoke_hook(
                ToolHookType.TOOL_PRE_INVOKE, ToolPreInvokePayload(name=TOOL, args={}), global_context=gctx
            )
            outcomes.append(result.continue_processing)
        assert outcomes == [True, True, False, False]
    finally:
        await pm.shutdown()
        PluginManager.reset()

    # 2. Redis backend working, then a script error on a key of the wrong type (the user's own key).
    plugin = make_plugin(_redis_config(redis_url, "open", algorithm="sliding_window"))
    assert (await call_tool(plugin, TOOL, USER, TENANT)).continue_processing
    with redis_server.client() as client:
        for key in client.keys("*"):
            client.delete(key)
            client.set(key, "not a sorted set")  # makes the sliding-window script fail on this key
    broken = await call_tool(plugin, TOOL, USER, TENANT)
    assert broken.continue_processing and broken.http_headers is None  # failed open
    await plugin.shutdown()

    # 3. Redis stopped: fail open and fail closed, both hooks.
    redis_server.stop()
    try:
        for fail_mode in ("open", "closed"):
            plugin = make_plugin(_redis_config(redis_url, fail_mode))
            for _ in range(3):
                await call_tool(plugin, TOOL, USER, TENANT)
                await fetch_prompt(plugin, TOOL, USER, TENANT)
            await plugin.shutdown()
    finally:
        redis_server.ensure_running()

    text = _all_log_text(caplog)
    assert "engine error" in text  # the failures were logged ...
    assert "RATE_LIMIT" in text  # ... and so were cpex's block messages
    _assert_no_identity(text)  # ... without any identity


async def test_backend_error_warning_is_logged_once_and_rate_limited(
    caplog: pytest.LogCaptureFixture, redis_server: Any, redis_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = make_plugin(_redis_config(redis_url, "open"))
    now = [1000.0]
    plugin.error_log.clock = lambda: now[0]
    redis_server.stop()
    try:

        def warnings() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "rate_limiter_go.plugin"]

        for _ in range(5):
            await call_tool(plugin, TOOL, USER, TENANT)
        assert len(warnings()) == 1, [r.getMessage() for r in warnings()]
        first = warnings()[0].getMessage()
        assert plugin.name in first and "fail_mode=open" in first and "0 more errors suppressed" in first

        now[0] += ERROR_LOG_INTERVAL_S - 0.01  # still inside the 10 s span
        await call_tool(plugin, TOOL, USER, TENANT)
        assert len(warnings()) == 1

        now[0] += 0.02  # the span is over: the next error is logged with the count of the suppressed ones
        await call_tool(plugin, TOOL, USER, TENANT)
        assert len(warnings()) == 2
        assert "5 more errors suppressed" in warnings()[1].getMessage()
        _assert_no_identity(_all_log_text(caplog))
    finally:
        redis_server.ensure_running()
        await plugin.shutdown()


async def test_each_instance_has_its_own_error_budget(caplog: pytest.LogCaptureFixture, hung_redis: Any) -> None:
    caplog.set_level(logging.WARNING)
    config = _redis_config(hung_redis.url, "closed", redis_timeout_ms=50, redis_connect_timeout_ms=50)
    a, b = make_plugin(config), make_plugin(dict(config))
    for _ in range(3):
        await call_tool(a, TOOL, USER, TENANT)
        await call_tool(b, TOOL, USER, TENANT)
    messages = [r.getMessage() for r in caplog.records if r.name == "rate_limiter_go.plugin"]
    assert len(messages) == 2 and {a.name in messages[0], b.name in messages[1]} == {True}
    await a.shutdown()
    await b.shutdown()


# --- sanitise_error: what a warning keeps of an exception ----------------------------


def test_sanitise_error_redacts_keys_and_identities() -> None:
    key = f"rl:sw:user:2/3600:{escape_identity(USER)}"
    odd_tenant = "team:1 {a}"
    exc = RuntimeError(
        f"WRONGTYPE on {key}\nwhile serving {USER} of {TENANT} ({escape_identity(odd_tenant)}) for tool {TOOL}"
    )
    text = sanitise_error(exc, "rl", (USER, odd_tenant, TOOL, TENANT))
    assert text.startswith("RuntimeError: WRONGTYPE on <key>")
    assert "\n" not in text
    for fragment in (USER, TENANT, TOOL, escape_identity(odd_tenant), "SECRET"):
        assert fragment not in text


def test_sanitise_error_keeps_the_cause_chain_and_truncates() -> None:
    try:
        try:
            raise TimeoutError("x" * 1000)
        except TimeoutError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        text = sanitise_error(outer, "rl")
    assert text == "ValueError <- TimeoutError: wrapped"
    long_text = sanitise_error(TimeoutError("y" * 1000), "rl")
    assert len(long_text) < 200 and long_text.endswith("...")


def test_sanitise_error_survives_a_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert sanitise_error(Broken(), "rl") == "Broken"


# --- sanitise_error: whole tokens only, every identity shape ---------------------------

# Filler words share letters and digits with the identities below but are never
# one of them as a whole token, so the exact expected text shows both halves:
# every identity goes, everything around it stays.
_TEMPLATE = "TimeoutError calling {} (tenant={}, 'x{}'?) ; while serving {}. at {}\nrl_2 retried: {}"
IDENTITY_SHAPES = [
    "t",  # one letter, inside "TimeoutError", "tenant", "retried"
    "e",
    "2",  # a digit, inside the token "rl_2"
    "user-SECRET-7f3a@example.com",
    "team:1 {a}",  # spaces and punctuation: raw and escaped differ
    "{braces}",  # starts and ends with punctuation
    "bob.",  # ends with a kept punctuation byte, followed by "." or "," in the text
    "jörg",  # non-ASCII: escaped as UTF-8 %XX
    "a b",
    "under_score",
    "ü" * 30,  # escaped form (180 bytes) becomes "~" + SHA-256
]


@pytest.mark.parametrize("identity", IDENTITY_SHAPES)
def test_sanitise_error_redacts_every_identity_shape_as_a_token(identity: str) -> None:
    escaped = escape_identity(identity)
    forms = [identity, escaped, identity, escaped, identity, escaped]
    message = _TEMPLATE.format(*forms)
    text = sanitise_error(TimeoutError(message), "rl", (identity,))
    expected = " ".join(_TEMPLATE.format(*["<id>"] * 6).split())
    # "'x{}'": an identity glued to a letter is not a token when it starts with one.
    if identity[0].isalnum() or identity[0] == "_":
        expected = expected.replace("'x<id>'", "'x" + identity + "'")
    assert text == "TimeoutError: " + expected


def test_sanitise_error_keeps_words_that_contain_a_short_identity() -> None:
    exc = TimeoutError("Timeout reading from socket; tool t timed out (t)")
    text = sanitise_error(exc, "rl", ("t", "o", "ti"))
    assert text == "TimeoutError: Timeout reading from socket; tool <id> timed out (<id>)"
    # The class names are never touched, whatever the identities are.
    assert sanitise_error(TimeoutError("TimeoutError"), "rl", ("TimeoutError",)) == "TimeoutError: <id>"


def test_sanitise_error_merges_overlapping_identities() -> None:
    # Redacting one first must not leave a fragment of the other behind.
    exc = RuntimeError("ERR on ab cd ef now; cd ef-ab cd")
    text = sanitise_error(exc, "rl", ("ab cd", "cd ef"))
    assert text == "RuntimeError: ERR on <id> now; <id>-<id>"
    for fragment in ("ab", "cd", "ef"):
        assert fragment not in text


def test_sanitise_error_redacts_only_keys_of_its_prefix() -> None:
    exc = ConnectionError("redis url: 127.0.0.1:1 refused; key rl:sw:tool:3/3600:secret-tool and 'rl:fw:x'")
    assert sanitise_error(exc, "rl") == "ConnectionError: redis url: 127.0.0.1:1 refused; key <key> and '<key>"


def test_sanitise_error_never_leaks_a_generated_identity() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    # Never letters, digits or "_", so each occurrence below stands as a token.
    separator = st.sampled_from([" ", "(", ")", "'", "=", ": ", ".", ",", "\n", "[", "/", "%"])

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(identity=st.text(min_size=1, max_size=12), seps=st.lists(separator, min_size=3, max_size=3))
    def check(identity: str, seps: list[str]) -> None:
        # Identities are stripped (identity.py); one inside "<id>" cannot be told from the placeholder.
        hypothesis.assume(identity == identity.strip() and identity not in "<id>")
        message = f"{seps[0]}{identity}{seps[1]}{escape_identity(identity)}{seps[2]}"
        text = sanitise_error(ValueError(message), "rl", (identity,))
        assert "<id>" in text
        # Nothing of either form survives: what is left besides placeholders is separators only.
        leftover = text.removeprefix("ValueError: ").replace("<id>", "")
        assert set(leftover) <= set("".join(seps)) | {" "}, (message, text)

    check()

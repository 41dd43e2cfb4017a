"""RateLimiterPlugin called directly: headers (§7), dimensions (§4, §5), engine selection (RATE_LIMITER_ENGINE).

Header values are checked exactly against the §3 formulas. The engine reads
the wall clock (memory) or Redis TIME (same host), so each call is bracketed
by two clock readings and the expected value must lie between the formula
evaluated at both ends (plugin_helpers.within).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import PACKAGE_PARENT
from rate_limiter_go import _native
from rate_limiter_go.engines import ENGINE_ENV, EngineUnavailableError, requested_engine
from support.plugin_helpers import (
    ALGORITHMS,
    BLOCKED_HEADERS,
    RATE_HEADERS,
    Timed,
    call_tool,
    ceil_div,
    fetch_prompt,
    make_plugin,
    timed,
    unique_name,
    within,
)

HOUR_US = 3_600_000_000
LIMIT = 3



@pytest.fixture(params=["memory", "redis"])
def backend_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Backend settings for the parametrised backend; redis uses the private server of conftest."""
    if request.param == "memory":
        return {"backend": "memory"}
    url = request.getfixturevalue("redis_url")
    return {"backend": "redis", "redis_url": url, "redis_key_prefix": unique_name("t"), "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}


def _secs_up(us: int) -> int:
    return ceil_div(us, 1_000_000)


def _b(t: Timed) -> tuple[int, int]:
    return (t.before_us, t.after_us)


def _expected_admitted_reset(algorithm: str, first: Timed, k: int) -> tuple:
    """(fn, bounds) for X-RateLimit-Reset of the k-th admitted call (k from 1) of a fresh key, LIMIT per hour."""
    if algorithm == "fixed_window":  # §3.1: window_end, epoch aligned
        return (lambda t: _secs_up(t - t % HOUR_US + HOUR_US)), (_b(first),)
    if algorithm == "sliding_window":  # §3.2: oldest + W, the oldest being the first call
        return (lambda t: _secs_up(t + HOUR_US)), (_b(first),)
    # §3.3: after k takes at t1..tk the bucket is full again at t1 + k*W/L (refill is exact in integers)
    return (lambda t: _secs_up(t + ceil_div(k * HOUR_US, LIMIT))), (_b(first),)


async def test_headers_for_each_algorithm(algorithm: str, backend_config: dict[str, Any]) -> None:
    plugin = make_plugin({"by_user": f"{LIMIT}/h", "algorithm": algorithm, **backend_config})
    calls = [await timed(lambda: call_tool(plugin)) for _ in range(LIMIT + 1)]
    first, blocked = calls[0], calls[-1]

    # Admitted: the three X-RateLimit-* headers on the result, as strings (§7).
    for k, call in enumerate(calls[:LIMIT], start=1):
        result = call.result
        assert result.continue_processing is True and result.violation is None
        assert set(result.http_headers) == set(RATE_HEADERS)
        assert all(isinstance(v, str) for v in result.http_headers.values())
        assert result.http_headers["X-RateLimit-Limit"] == str(LIMIT)
        assert result.http_headers["X-RateLimit-Remaining"] == str(LIMIT - k)
        fn, bounds = _expected_admitted_reset(algorithm, first, k)
        assert within(result.http_headers["X-RateLimit-Reset"], fn, *bounds), (k, result.http_headers)

    # Blocked: 429 violation carrying all four headers (§7).
    result = blocked.result
    assert result.continue_processing is False
    violation = result.violation
    assert violation is not None
    assert (violation.code, violation.http_status_code, violation.reason) == ("RATE_LIMIT", 429, "Rate limit exceeded")
    headers = violation.http_headers
    assert set(headers) == set(BLOCKED_HEADERS)
    assert all(isinstance(v, str) for v in headers.values())
    assert headers["X-RateLimit-Limit"] == str(LIMIT)
    assert headers["X-RateLimit-Remaining"] == "0"
    if algorithm == "fixed_window":
        assert within(headers["X-RateLimit-Reset"], lambda t: _secs_up(t - t % HOUR_US + HOUR_US), _b(blocked))
        # Retry-After: the window's end minus now, rounded up (never early).
        retry = lambda t: max(1, _secs_up(t - t % HOUR_US + HOUR_US - t))  # noqa: E731
        assert within(headers["Retry-After"], retry, _b(blocked))
    elif algorithm == "sliding_window":
        assert within(headers["X-RateLimit-Reset"], lambda t: _secs_up(t + HOUR_US), _b(first))
        # The oldest entry (the first call) stops counting at first + W.
        assert within(headers["Retry-After"], lambda t1, t4: _secs_up(t1 + HOUR_US - t4), _b(first), _b(blocked))
    else:
        # Empty bucket refilled since the first take: full at first + W; a token at first + W/L.
        assert within(headers["X-RateLimit-Reset"], lambda t: _secs_up(t + HOUR_US), _b(first))
        assert within(
            headers["Retry-After"], lambda t1, t4: _secs_up(t1 + ceil_div(HOUR_US, LIMIT) - t4), _b(first), _b(blocked)
        )
    assert int(headers["Retry-After"]) >= 1
    assert violation.details == {
        "dimension": "user",
        "limit": LIMIT,
        "window_s": 3600,
        "remaining": 0,
        "reset_at_unix": int(headers["X-RateLimit-Reset"]),
        "retry_after_s": int(headers["Retry-After"]),
    }
    await plugin.shutdown()


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_blocked_stays_blocked_and_consumes_nothing(algorithm: str) -> None:
    # §4: refused requests write nothing; the 5th, 6th ... calls see the same state.
    plugin = make_plugin({"by_user": "2/h", "algorithm": algorithm})
    for _ in range(2):
        assert (await call_tool(plugin)).continue_processing
    refusals = [await call_tool(plugin) for _ in range(3)]
    assert all(not r.continue_processing for r in refusals)
    assert {r.violation.http_headers["X-RateLimit-Remaining"] for r in refusals} == {"0"}


async def test_violation_names_the_kind_never_the_identity(algorithm: str) -> None:
    user, tenant, tool = "user-SECRET-1@example.com", "tenant-SECRET-2", "tool-secret-3"
    plugin = make_plugin({"by_user": "1/h", "by_tenant": "1/h", "by_tool": {tool: "1/h"}, "algorithm": algorithm})
    assert (await call_tool(plugin, tool, user, tenant)).continue_processing
    result = await call_tool(plugin, tool, user, tenant)
    violation = result.violation
    assert violation is not None
    # All three refuse; equal Retry-After ties go to the earliest (user), or a later one if it waits longer.
    assert violation.details["dimension"] in ("user", "tenant", "tool")
    assert f"per-{violation.details['dimension']}" in violation.description
    dumped = violation.model_dump_json() + repr(violation.details) + violation.description
    for identity in (user, tenant, tool, "SECRET", "secret"):
        assert identity not in dumped


async def test_tool_dimension_reports_and_does_not_spend_user_quota() -> None:
    # §4: blocked by the tool limit -> the user dimension consumed nothing.
    plugin = make_plugin({"by_user": "5/h", "by_tool": {"search": "2/h"}})
    first = await call_tool(plugin, "search")
    # Admitted: the reported dimension is the one with the smallest remaining (tool: 1 < user: 4).
    assert first.http_headers["X-RateLimit-Limit"] == "2"
    assert first.http_headers["X-RateLimit-Remaining"] == "1"
    await call_tool(plugin, "search")
    blocked = await call_tool(plugin, "search")
    assert blocked.violation is not None and blocked.violation.details["dimension"] == "tool"
    other = await call_tool(plugin, "fetch")  # no tool limit: only the user dimension applies
    assert other.http_headers["X-RateLimit-Limit"] == "5"
    assert other.http_headers["X-RateLimit-Remaining"] == "2"  # 5 - (2 admitted searches + this one)


async def test_tool_names_are_normalised_and_shared_by_all_callers() -> None:
    plugin = make_plugin({"by_tool": {" Search ": "2/h"}})
    assert (await call_tool(plugin, "SEARCH", user="a@example.com")).continue_processing
    assert (await call_tool(plugin, "  search\t", user="b@example.com")).continue_processing
    blocked = await call_tool(plugin, "search", user="c@example.com")
    assert blocked.violation is not None and blocked.violation.details["dimension"] == "tool"


async def test_users_are_separate_and_anonymous_callers_share_one_counter() -> None:
    plugin = make_plugin({"by_user": "1/h"})
    assert (await call_tool(plugin, user="a@example.com")).continue_processing
    assert (await call_tool(plugin, user={"email": "b@example.com"})).continue_processing
    assert not (await call_tool(plugin, user=" a@example.com ")).continue_processing  # same user after strip
    assert not (await call_tool(plugin, user={"id": "a@example.com"})).continue_processing
    assert (await call_tool(plugin, user=None)).continue_processing
    assert not (await call_tool(plugin, user="   ")).continue_processing  # anonymous again
    assert not (await call_tool(plugin, user={"name": "x"})).continue_processing


async def test_tenant_dimension_is_skipped_without_a_tenant() -> None:
    plugin = make_plugin({"by_tenant": "1/h"})
    assert (await call_tool(plugin, tenant="team-1")).continue_processing
    assert not (await call_tool(plugin, tenant=" team-1 ", user="other@example.com")).continue_processing
    assert (await call_tool(plugin, tenant="team-2")).continue_processing
    for missing in (None, "", "  "):
        # §5: no tenant -> the dimension does not apply: admitted without headers, every time.
        for _ in range(2):
            result = await call_tool(plugin, tenant=missing)
            assert result.continue_processing and result.http_headers is None and result.violation is None


async def test_prompt_hook_limits_by_prompt_id() -> None:
    plugin = make_plugin({"by_tool": {"Greeting": "1/h"}})
    first = await fetch_prompt(plugin, " greeting ")
    assert first.continue_processing
    assert first.http_headers is not None and first.http_headers["X-RateLimit-Limit"] == "1"
    assert first.http_headers["X-RateLimit-Remaining"] == "0"
    second = await fetch_prompt(plugin, "GREETING", user="someone-else@example.com")
    assert second.continue_processing is False
    assert second.violation.code == "RATE_LIMIT" and second.violation.http_status_code == 429
    assert set(second.violation.http_headers) == set(BLOCKED_HEADERS)
    # The result type is the prompt hook's.
    assert type(second).__name__ == type(first).__name__
    other = await fetch_prompt(plugin, "farewell")
    assert other.continue_processing and other.http_headers is None


async def test_prompt_hook_user_limit_shares_the_tool_hook_counter() -> None:
    plugin = make_plugin({"by_user": "2/h"})
    assert (await call_tool(plugin, "search")).continue_processing
    assert (await fetch_prompt(plugin, "greeting")).continue_processing
    assert not (await fetch_prompt(plugin, "greeting")).continue_processing
    assert not (await call_tool(plugin, "search")).continue_processing


@pytest.mark.parametrize(
    "config",
    [None, {}, {"by_tool": {"search": "1/s"}}, {"by_tenant": "1/s"}],
    ids=["no-config", "empty", "other-tool-only", "tenant-without-tenant"],
)
async def test_no_dimension_gives_a_plain_result(config: dict[str, Any] | None) -> None:
    # §4: no dimension applies -> admitted, no headers at all, however often.
    plugin = make_plugin(config)
    for _ in range(5):
        result = await call_tool(plugin, "fetch", tenant=None)
        assert result.continue_processing is True
        assert result.http_headers is None and result.violation is None
        prompt = await fetch_prompt(plugin, "greeting", tenant=None)
        assert prompt.continue_processing is True and prompt.http_headers is None


async def test_identity_errors_never_escape_a_hook(caplog: pytest.LogCaptureFixture) -> None:
    # Any exception below the hook (here: a user whose str() raises) is a failure handled by fail_mode (§8).
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

    open_plugin = make_plugin({"by_user": "5/s"})
    closed_plugin = make_plugin({"by_user": "5/s", "fail_mode": "closed"})
    with caplog.at_level(logging.WARNING):
        opened = await call_tool(open_plugin, user={"email": Unprintable()})
        closed = await call_tool(closed_plugin, user={"email": Unprintable()})
    assert opened.continue_processing and opened.http_headers is None and opened.violation is None
    assert closed.continue_processing is False
    assert closed.violation.code == "BACKEND_UNAVAILABLE" and closed.violation.http_status_code == 503
    assert closed.violation.http_headers == {"Retry-After": "1"}
    assert sum("engine error" in r.getMessage() for r in caplog.records) == 2  # one per plugin instance


@pytest.mark.parametrize(
    "config",
    [{"by_user": 30}, {"by_user": "5/s", "fail_mode": "sometimes"}, {"algorithm": "gcra"}, {"by_tool": ["search"]}],
)
def test_bad_config_fails_at_init(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid rate limiter configuration"):
        make_plugin(config)


async def test_initialize_and_shutdown_are_safe_to_repeat() -> None:
    plugin = make_plugin({"by_user": "2/h"})
    await plugin.initialize()
    assert (await call_tool(plugin)).http_headers["X-RateLimit-Remaining"] == "1"
    await plugin.shutdown()
    await plugin.shutdown()  # the gateway may shut a manager down more than once; no exception


# --- engine selection ---------------------------------------------------------------


def _go_engine_usable() -> bool:
    return _native.native_available() and importlib.util.find_spec("rate_limiter_go.engine_go") is not None


def test_engine_is_the_one_the_environment_asks_for() -> None:
    # Runs under every ENGINES value of `make test-py`: the selected engine is the one requested.
    plugin = make_plugin({"by_user": "5/s"})
    choice = requested_engine()
    if choice == "auto":
        assert plugin.engine.name == ("go" if _go_engine_usable() else "python")
    else:
        assert plugin.engine.name == choice


@pytest.mark.parametrize("value", ["python", "PYTHON", " python "])
def test_python_engine_selected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENGINE_ENV, value)
    plugin = make_plugin({"by_user": "5/s"})
    assert plugin.engine.name == "python"
    assert plugin.engine.sync is True


@pytest.mark.parametrize("value", ["rust", "golang", "py", "1"])
def test_unknown_engine_value_fails_at_init(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENGINE_ENV, value)
    with pytest.raises(ValueError, match=f"{ENGINE_ENV}=.*is not one of auto, go, python"):
        make_plugin({"by_user": "5/s"})


def _package_without_go(tmp_path: Path) -> Path:
    """A copy of the rate_limiter_go package without the built Go extension (_goext)."""
    dest = tmp_path / "site"
    shutil.copytree(
        PACKAGE_PARENT / "rate_limiter_go",
        dest / "rate_limiter_go",
        ignore=shutil.ignore_patterns("_goext", "__pycache__"),
    )
    return dest


_SELECT_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="LOG %(levelname)s %(message)s")
    import rate_limiter_go
    assert rate_limiter_go.__file__.startswith(sys.argv[1]), rate_limiter_go.__file__
    from cpex.framework import PluginConfig
    from rate_limiter_go.plugin import RateLimiterPlugin
    names = []
    for i in range(2):
        try:
            p = RateLimiterPlugin(PluginConfig(name=f"p{i}", kind="k", hooks=["tool_pre_invoke"],
                                               config={"by_user": "5/s"}))
            names.append(p.engine.name)
        except Exception as e:
            print(f"INIT-ERROR {type(e).__name__}: {e}")
    print("ENGINES", ",".join(names))
    print("GO-RUNTIME-LOADED", "rate_limiter_go._goext._pyext" in sys.modules)
    """
)


def _run_select(tmp_path: Path, engine: str) -> str:
    site = _package_without_go(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site), ENGINE_ENV: engine}
    proc = subprocess.run(
        [sys.executable, "-c", _SELECT_SCRIPT, str(site)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_go_without_extension_fails_at_init(tmp_path: Path) -> None:
    out = _run_select(tmp_path, "go")
    errors = [line for line in out.splitlines() if line.startswith("INIT-ERROR")]
    assert len(errors) == 2, out
    assert errors[0].startswith(
        f"INIT-ERROR EngineUnavailableError: {ENGINE_ENV}=go but the Go extension is not available: "
    ), out
    assert "ENGINES " in out.splitlines(), out  # no instance was built
    assert "GO-RUNTIME-LOADED False" in out


def test_auto_without_extension_falls_back_with_one_warning(tmp_path: Path) -> None:
    out = _run_select(tmp_path, "auto")
    assert "ENGINES python,python" in out, out
    warnings = [line for line in out.splitlines() if line.startswith("LOG WARNING")]
    assert len(warnings) == 1, out  # one per process, not one per instance
    assert "using the Python engine" in warnings[0]
    assert "GO-RUNTIME-LOADED False" in out


def test_unset_or_empty_means_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert requested_engine() == "auto"
    monkeypatch.setenv(ENGINE_ENV, "  ")
    assert requested_engine() == "auto"
    # EngineUnavailableError is a RuntimeError: cpex reports it as a failed plugin load.
    assert issubclass(EngineUnavailableError, RuntimeError)

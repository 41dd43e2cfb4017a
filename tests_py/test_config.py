"""parse_rate / parse_config: every validation rule, one error listing all problems (docs/semantics.md §1, §5, §6, §8, §10)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rate_limiter_go import _native
from rate_limiter_go.config import (
    ALGORITHMS,
    FAIL_MODES,
    INT_SETTINGS,
    KNOWN_KEYS,
    MAX_RATE_COUNT,
    UNIT_SECONDS,
    ConfigError,
    LimiterConfig,
    Rate,
    parse_config,
    parse_rate,
)
from rate_limiter_go.engine import EngineError
from support.go_helpers import require_go_engine
from support.plugin_helpers import make_plugin

REPO = Path(__file__).resolve().parent.parent

# --- §1 rates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "window_s"),
    [
        ("10/s", 10, 1),
        ("10/sec", 10, 1),
        ("10/second", 10, 1),
        ("10/m", 10, 60),
        ("10/min", 10, 60),
        ("10/minute", 10, 60),
        ("10/h", 10, 3600),
        ("10/hr", 10, 3600),
        ("10/hour", 10, 3600),
        ("10/S", 10, 1),  # unit is case-insensitive
        ("10/Minute", 10, 60),
        (" 10 / M ", 10, 60),  # whitespace around the string and the slash
        ("\t7/h\n", 7, 3600),
        ("010/s", 10, 1),  # leading zeros accepted
        ("1/s", 1, 1),
        ("1000000/h", 1_000_000, 3600),
    ],
)
def test_parse_rate_accepts_the_section_1_forms(text: str, limit: int, window_s: int) -> None:
    rate = parse_rate(text)
    assert rate == Rate(limit=limit, window_s=window_s)
    assert rate.window_us == window_s * 1_000_000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "10",
        "/s",
        "10/",
        "10/d",
        "10/seconds",  # plural is not in §1
        "0/s",
        "000/s",
        "1000001/s",
        "99999999999999999999/s",
        "1.5/s",
        "-1/s",
        "+5/s",
        "1 0/s",
        "10/s/s",
        "10 per s",
        "\u0661\u0660/s",  # Arabic-Indic digits: int() would take them, §1 does not
        "10/\u0455",  # Cyrillic dze looks like "s"
    ],
)
def test_parse_rate_rejects_malformed_strings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize("value", [10, 1.5, None, True, ["10/s"], {"limit": 10}, b"10/s"])
def test_parse_rate_rejects_non_strings(value: object) -> None:
    # A number where a rate belongs is an error, never "no limit" (an earlier fault).
    with pytest.raises(ValueError, match="must be a string"):
        parse_rate(value)


def test_parse_rate_error_is_short_for_huge_input() -> None:
    with pytest.raises(ValueError) as info:
        parse_rate("x" * 10_000)
    assert len(str(info.value)) < 200


# --- defaults --------------------------------------------------------------------


def test_none_and_empty_mapping_give_the_defaults() -> None:
    for raw in (None, {}):
        config = parse_config(raw)
        assert config == LimiterConfig()
        assert config.by_user is None and config.by_tenant is None and dict(config.by_tool) == {}
        assert config.algorithm == "fixed_window"
        assert config.backend == "memory"
        assert config.fail_mode == "open"
        assert config.redis_url is None
        assert config.redis_key_prefix == "rl"
        assert config.redis_connect_timeout_ms == 50
        assert config.redis_timeout_ms == 50
        assert config.redis_breaker_failures == 5
        assert config.redis_breaker_cooldown_ms == 1000
        assert config.memory_max_keys == 100_000


def test_full_valid_config() -> None:
    config = parse_config(
        {
            "by_user": "30/m",
            "by_tenant": "1000/h",
            "by_tool": {" Search ": "3/s", "fetch": "10/min"},
            "algorithm": "token_bucket",
            "backend": "redis",
            "redis_url": "redis://127.0.0.1:6379/0",
            "redis_key_prefix": "gw-1.rl_x",
            "fail_mode": "closed",
            "redis_connect_timeout_ms": 100,
            "redis_timeout_ms": 60_000,
            "redis_breaker_failures": 1000,
            "redis_breaker_cooldown_ms": 600_000,
            "memory_max_keys": 100_000_000,
        }
    )
    assert config.by_user == Rate(30, 60)
    assert config.by_tenant == Rate(1000, 3600)
    # §5: by_tool keys are stripped and lower-cased at config time.
    assert dict(config.by_tool) == {"search": Rate(3, 1), "fetch": Rate(10, 60)}
    assert (config.algorithm, config.backend, config.fail_mode) == ("token_bucket", "redis", "closed")
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.redis_key_prefix == "gw-1.rl_x"
    assert config.redis_connect_timeout_ms == 100
    assert config.redis_timeout_ms == 60_000
    assert config.redis_breaker_failures == 1000
    assert config.redis_breaker_cooldown_ms == 600_000
    assert config.memory_max_keys == 100_000_000


def test_by_tool_is_read_only_and_canonical_json_is_deterministic() -> None:
    a = parse_config({"by_user": "5/s", "by_tool": {"b": "1/s", "A": "2/m"}})
    b = parse_config({"by_tool": {"a": "2/minute", "B": "1/sec"}, "by_user": " 5 / S "})
    with pytest.raises(TypeError):
        a.by_tool["c"] = Rate(1, 1)  # type: ignore[index]
    assert a == b
    assert a.canonical_json() == b.canonical_json()
    doc = json.loads(a.canonical_json())
    assert doc["by_tool"] == {"a": {"limit": 2, "window_s": 60}, "b": {"limit": 1, "window_s": 1}}
    assert doc["by_user"] == {"limit": 5, "window_s": 1}


@pytest.mark.parametrize("url", ["redis://localhost", "rediss://h:6380/2", "unix:///run/redis.sock"])
def test_redis_url_schemes(url: str) -> None:
    assert parse_config({"backend": "redis", "redis_url": url}).redis_url == url


# --- one problem at a time: each error names its key ------------------------------


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"by_user": 30}, "by_user", "must be a string"),  # wrong type, not "no limit"
        ({"by_user": [1]}, "by_user", "must be a string"),  # (None is "off", like cpex-rate-limiter's null)
        ({"by_user_per_server": 5}, "by_user_per_server", "must be a string"),
        ({"by_user": "30"}, "by_user", "not a rate"),
        ({"by_tenant": "5/d"}, "by_tenant", "unknown unit"),
        ({"by_tenant": 2.5}, "by_tenant", "must be a string"),
        ({"by_tool": ["search"]}, "by_tool", "must be a mapping"),
        ({"by_tool": "search: 3/s"}, "by_tool", "must be a mapping"),
        ({"by_tool": 3}, "by_tool", "must be a mapping"),
        ({"by_tool": {"search": 3}}, "by_tool['search']", "must be a string"),
        ({"by_tool": {"search": "0/s"}}, "by_tool['search']", "between 1 and"),
        ({"by_tool": {7: "1/s"}}, "by_tool", "must be strings"),
        ({"by_tool": {"   ": "1/s"}}, "by_tool", "empty after stripping"),
        ({"algorithm": "leaky_bucket"}, "algorithm", "must be one of"),
        ({"algorithm": "Fixed_Window"}, "algorithm", "must be one of"),
        ({"algorithm": 1}, "algorithm", "must be one of"),
        ({"backend": "memcached"}, "backend", "must be one of"),
        ({"fail_mode": "ignore"}, "fail_mode", "must be one of"),
        ({"fail_mode": True}, "fail_mode", "must be one of"),
        ({"backend": "redis"}, "redis_url", "required when backend is redis"),
        ({"backend": "redis", "redis_url": None}, "redis_url", "required when backend is redis"),
        ({"backend": "redis", "redis_url": "http://localhost:6379"}, "redis_url", "must start with"),
        ({"backend": "redis", "redis_url": "localhost:6379"}, "redis_url", "must start with"),
        ({"redis_url": 6379}, "redis_url", "must be a string"),
        ({"redis_key_prefix": ""}, "redis_key_prefix", "must match"),
        ({"redis_key_prefix": "a:b"}, "redis_key_prefix", "must match"),
        ({"redis_key_prefix": "a b"}, "redis_key_prefix", "must match"),
        ({"redis_key_prefix": "x" * 65}, "redis_key_prefix", "must match"),
        ({"redis_key_prefix": "caf\u00e9"}, "redis_key_prefix", "must match"),
        ({"redis_key_prefix": 5}, "redis_key_prefix", "must match"),
        ({"redis_timeout_ms": 0}, "redis_timeout_ms", "between 1 and 60000"),
        ({"redis_timeout_ms": 60_001}, "redis_timeout_ms", "between 1 and 60000"),
        ({"redis_timeout_ms": "50"}, "redis_timeout_ms", "must be an integer"),
        ({"redis_timeout_ms": 50.0}, "redis_timeout_ms", "must be an integer"),
        ({"redis_timeout_ms": True}, "redis_timeout_ms", "must be an integer"),  # bools are not ints
        ({"redis_connect_timeout_ms": 0}, "redis_connect_timeout_ms", "between 1 and 60000"),
        ({"redis_connect_timeout_ms": False}, "redis_connect_timeout_ms", "must be an integer"),
        ({"redis_breaker_failures": 0}, "redis_breaker_failures", "between 1 and 1000"),
        ({"redis_breaker_failures": 1001}, "redis_breaker_failures", "between 1 and 1000"),
        ({"redis_breaker_cooldown_ms": 600_001}, "redis_breaker_cooldown_ms", "between 1 and 600000"),
        ({"redis_breaker_cooldown_ms": -1}, "redis_breaker_cooldown_ms", "between 1 and 600000"),
        ({"memory_max_keys": 0}, "memory_max_keys", "between 1 and 100000000"),
        ({"memory_max_keys": 100_000_001}, "memory_max_keys", "between 1 and 100000000"),
        ({"memory_max_keys": None}, "memory_max_keys", "must be an integer"),
    ],
)
def test_each_problem_names_its_key(raw: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    err = info.value
    assert isinstance(err, ValueError)
    assert len(err.problems) == 1, err.problems
    assert err.problems[0].startswith(f"{key}: "), err.problems
    assert fragment in err.problems[0]
    assert err.problems[0] in str(err)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"Search": "1/s", "search": "2/s"}, ("'Search'", "'search'")),
        ({"search": "1/s", " search ": "1/s"}, ("'search'", "' search '")),
        ({"FETCH": "1/s", "\tfetch": "1/m"}, ("'FETCH'", "'\\tfetch'")),
    ],
)
def test_by_tool_names_colliding_after_normalisation(raw: dict, names: tuple[str, str]) -> None:
    # §5: two keys equal after strip().lower() are a configuration error, not "last one wins".
    with pytest.raises(ConfigError) as info:
        parse_config({"by_tool": raw})
    (problem,) = info.value.problems
    assert problem.startswith("by_tool: ") and "collide" in problem
    for name in names:
        assert name in problem


def test_unknown_keys_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"by_usr": "5/s", "redis_timeout": 50, "colour": "blue", 3: "x"})
    problems = info.value.problems
    assert len(problems) == 4
    assert "by_usr: unknown setting (did you mean 'by_user'?)" in problems
    assert "redis_timeout: unknown setting (did you mean 'redis_timeout_ms'?)" in problems
    assert "colour: unknown setting" in problems
    assert any(p.startswith("3: ") and "must be strings" in p for p in problems)


def test_one_error_lists_every_problem() -> None:
    raw = {
        "by_user": 30,
        "by_tenant": "ten/s",
        "by_tool": {"A": "1/s", "a": "x"},
        "algorithm": "gcra",
        "backend": "redis",
        "fail_mode": "maybe",
        "redis_key_prefix": "bad prefix",
        "redis_timeout_ms": True,
        "memory_max_keys": 0,
        "extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    err = info.value
    keys = sorted(p.split(":", 1)[0] for p in err.problems)
    assert keys == sorted(
        [
            "extra",
            "by_user",
            "by_tenant",
            "by_tool",  # collision
            "by_tool['a']",  # bad rate
            "algorithm",
            "fail_mode",
            "redis_url",
            "redis_key_prefix",
            "redis_timeout_ms",
            "memory_max_keys",
        ]
    )
    text = str(err)
    assert text.startswith(f"invalid rate limiter configuration ({len(err.problems)} problems)")
    assert all(p in text for p in err.problems)


def test_redis_url_is_never_echoed() -> None:
    # The URL can hold a password; the error describes the problem without it.
    secret = "http://:hunter2-pass@cache:6379"
    with pytest.raises(ConfigError) as info:
        parse_config({"backend": "redis", "redis_url": secret})
    assert "hunter2" not in str(info.value)


def test_config_that_is_not_a_mapping() -> None:
    for raw in (["by_user", "5/s"], "by_user: 5/s", 5):
        with pytest.raises(ConfigError, match="config: must be a mapping"):
            parse_config(raw)  # type: ignore[arg-type]


# --- hostile configurations (hypothesis) ---------------------------------------------------
#
# Configuration fuzzing (§1, §5, §6, §8, §10): hostile ``config:`` blocks at plugin init.
#
# * Every malformed configuration (a valid one with one setting broken: wrong
#   type, bad rate, out of range, unknown key, bad choice, colliding tool names)
#   is refused when the plugin is constructed, with a ConfigError whose text
#   names the broken key. Nothing half-configured ever runs.
# * Every valid configuration is accepted by both engines: the Go engine parses
#   the canonical JSON that Python produces (core.ParseConfig) and must not
#   refuse anything Python accepted.


UNITS = ["s", "sec", "second", "m", "min", "minute", "h", "hr", "hour", "S", "Min", "HOUR"]

rates = st.builds(
    lambda n, pad, unit: f"{pad}{n}{pad}/{pad}{unit}{pad}",
    st.integers(1, 1_000_000),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(UNITS),
)
tool_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda s: s.strip() != ""
)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if draw(st.booleans()):
        cfg["by_user"] = draw(rates)
    if draw(st.booleans()):
        cfg["by_tenant"] = draw(rates)
    if draw(st.booleans()):
        tools = draw(st.dictionaries(tool_names, rates, max_size=4))
        normalised: dict[str, str] = {}
        for name, rate in tools.items():  # drop names that collide after strip().lower()
            normalised.setdefault(name.strip().lower(), name)
        cfg["by_tool"] = {name: tools[name] for name in normalised.values()}
    if draw(st.booleans()):
        cfg["algorithm"] = draw(st.sampled_from(["fixed_window", "sliding_window", "token_bucket"]))
    if draw(st.booleans()):
        cfg["fail_mode"] = draw(st.sampled_from(["open", "closed"]))
    if draw(st.booleans()):
        cfg["redis_key_prefix"] = draw(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True))
    for key, lo, hi in (
        ("redis_connect_timeout_ms", 1, 60_000),
        ("redis_timeout_ms", 1, 60_000),
        ("redis_breaker_failures", 1, 1_000),
        ("redis_breaker_cooldown_ms", 1, 600_000),
        ("memory_max_keys", 1, 100_000_000),
    ):
        if draw(st.booleans()):
            cfg[key] = draw(st.integers(lo, hi))
    if draw(st.booleans()):
        cfg["backend"] = "redis"
        cfg["redis_url"] = "redis://127.0.0.1:1/0"  # port 1: nothing listens; construction must not connect
    return cfg


WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=4),
)
BAD_RATES = st.one_of(
    WRONG_TYPES.filter(lambda v: v is not None and not isinstance(v, str)),  # null turns a dimension off
    st.sampled_from(["", "10", "10/d", "0/s", "1.5/s", "-1/s", "+1/s", "1000001/s", "1e3/s", "10/ s s", "10 0/s",
                     "\u0661\u0660/s", "10/\u017f", "10\x00/s", "10/sec/", "/s", "10/", "١/s", "99999999999999999999/m"]),
    st.text(max_size=8).filter(lambda s: "/" not in s),
)


@st.composite
def broken_configs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid config with exactly one setting broken, and the key the error must name."""
    cfg = draw(valid_configs())
    how = draw(st.sampled_from(["rate", "tool_rate", "tool_table", "tool_name", "int", "choice", "prefix", "unknown",
                                "url", "collide"]))
    if how == "rate":
        key = draw(st.sampled_from(["by_user", "by_user_per_server", "by_tenant"]))
        cfg[key] = draw(BAD_RATES)
    elif how == "tool_rate":
        key = "by_tool"
        cfg[key] = {"search": draw(BAD_RATES)}
    elif how == "tool_table":
        key = "by_tool"
        cfg[key] = draw(WRONG_TYPES.filter(lambda v: v is not None and not isinstance(v, dict)))  # null: off
    elif how == "tool_name":
        key = "by_tool"
        cfg[key] = {draw(st.sampled_from(["", " ", "\t\n"])): "1/s"}
    elif how == "collide":
        key = "by_tool"
        name = draw(tool_names)
        cfg[key] = {name: "1/s", f"  {name.upper()} ": "2/s"} if name.upper().strip().lower() == name.strip().lower() \
            else {"Search": "1/s", " search ": "2/s"}
    elif how == "int":
        key = draw(st.sampled_from(["redis_connect_timeout_ms", "redis_timeout_ms", "redis_breaker_failures",
                                    "redis_breaker_cooldown_ms", "memory_max_keys"]))
        cfg[key] = draw(st.one_of(
            WRONG_TYPES.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)),
            st.integers(max_value=0),
            st.integers(min_value=100_000_001),
            st.sampled_from([1.0, "50", math.inf]),
        ))
    elif how == "choice":
        key = draw(st.sampled_from(["algorithm", "backend", "fail_mode"]))
        cfg[key] = draw(st.one_of(WRONG_TYPES, st.sampled_from(["", "Fixed_Window", "OPEN", "sliding", "mem"])))
    elif how == "prefix":
        key = "redis_key_prefix"
        cfg[key] = draw(st.one_of(WRONG_TYPES, st.sampled_from(["", "a:b", "{x}", "p" * 65, "é", "a b"])))
    elif how == "url":
        key = "redis_url"
        cfg["backend"] = "redis"
        cfg[key] = draw(st.one_of(WRONG_TYPES.filter(lambda v: v is not None),
                                  st.sampled_from(["", "http://x", "127.0.0.1:6379", "REDIS://x"])))
    else:
        key = draw(st.sampled_from(["by_users", "limit", "Backend", "redis-url", "timeout_ms", "by_ip", ""]))
        cfg[key] = draw(st.one_of(rates, WRONG_TYPES))
    return cfg, key


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=broken_configs())
def test_malformed_config_is_refused_at_init_naming_the_key(case: tuple[dict[str, Any], str]) -> None:
    """Every broken configuration stops the plugin at init with a ConfigError that names the broken key."""
    cfg, key = case
    assert key not in KNOWN_KEYS or key in cfg
    with pytest.raises(ConfigError) as err:
        make_plugin(cfg)
    assert any(p.startswith(f"{key}:") or p.startswith(f"{key}[") or (key == "" and p.startswith("''"))
               or p.startswith(f"{key} ") for p in err.value.problems), (key, err.value.problems)


@pytest.mark.parametrize("raw", [[], "by_user: 10/s", 42, ("by_user", "1/s")])
def test_a_config_that_is_not_a_mapping_is_refused(raw: Any) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.problems[0].startswith("config:")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=valid_configs())
def test_valid_config_is_accepted_by_both_engines(cfg: dict[str, Any]) -> None:
    """Whatever Python accepts, the Go engine's core.ParseConfig accepts too (from canonical_json)."""
    go_engine_class = require_go_engine()
    limits = parse_config(cfg)
    engine = go_engine_class(limits, "hardening-config")
    try:
        if limits.backend == "memory":
            decision = engine.evaluate("u", "t", None)
            assert decision.admitted or decision.dimension is not None
        elif limits.by_user is None and limits.by_tenant is None:
            # No dimension applies to this request: answered without Redis (§4).
            decision = asyncio.run(engine.check("u", "t", None))
            assert decision.admitted and decision.dimension is None
        else:
            # Binding creates the Go limiter (ParseConfig) without contacting Redis; the request itself
            # then fails on the closed port, which is a backend error, not a configuration refusal.
            with pytest.raises(EngineError) as err:
                asyncio.run(engine.check("u", "t", None))
            assert "configuration" not in str(err.value), str(err.value)
    finally:
        asyncio.run(engine.close())


# --- one table for both engines --------------------------------------------------


def test_go_settings_file_is_generated_from_this_table() -> None:
    """core/settings_gen.go is tools/build/gen_settings.py's rendering of config.py's table (run it after a change)."""
    spec = importlib.util.spec_from_file_location("gen_settings", REPO / "tools" / "build" / "gen_settings.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (REPO / "core" / "settings_gen.go").read_text(encoding="utf-8") == gen.render()


def _python_accepts(raw: dict[str, Any]) -> bool:
    try:
        parse_config(raw)
    except ConfigError:
        return False
    return True


def _go_accepts(doc: dict[str, Any]) -> bool:
    """Whether the Go engine's core.ParseConfig takes this canonical JSON (through NewLimiter)."""
    mod = _native.load_native()
    try:
        handle = mod.NewLimiter("config-bounds", json.dumps(doc, sort_keys=True, separators=(",", ":")))
    except RuntimeError:
        return False
    mod.CloseLimiter(handle)
    return True


def _bound_cases() -> list[tuple[str, Any, dict[str, Any]]]:
    """(description, the config key's value, the raw Python config) at and just beyond every bound."""
    cases: list[tuple[str, Any, dict[str, Any]]] = []
    for name, s in INT_SETTINGS.items():
        for v in (s.lo - 1, s.lo, s.default, s.hi, s.hi + 1):
            cases.append((f"{name}={v}", v, {name: v}))
    for v in ("", "a", "a" * 64, "a" * 65, "a:b", "A.b-c_9", "\u00e9", "a b"):
        cases.append((f"redis_key_prefix={v!r}", v, {"redis_key_prefix": v}))
    for v in (*ALGORITHMS, "leaky_bucket", "Fixed_Window"):
        cases.append((f"algorithm={v!r}", v, {"algorithm": v}))
    for v in ("memory", "disk", "Memory"):
        cases.append((f"backend={v!r}", v, {"backend": v}))
    return cases


def test_go_decodes_with_the_bounds_python_validates() -> None:
    """Every bound of the table: Go's decoder accepts a value exactly when Python's validation does."""
    require_go_engine()
    base = json.loads(LimiterConfig().canonical_json())
    for what, value, raw in _bound_cases():
        doc = dict(base)
        doc.update(raw)
        assert _go_accepts(doc) == _python_accepts(raw), what


def test_go_decodes_rates_with_the_bounds_python_validates() -> None:
    """Rates (§1): the count's bounds and the window lengths are the same in both engines."""
    require_go_engine()
    base = json.loads(LimiterConfig().canonical_json())
    windows = sorted(set(UNIT_SECONDS.values()))
    for limit in (0, 1, MAX_RATE_COUNT, MAX_RATE_COUNT + 1):
        for window_s in (*windows, 2, 86_400):
            unit = {1: "s", 60: "m", 3600: "h"}.get(window_s)
            python = unit is not None and _python_accepts({"by_user": f"{limit}/{unit}"})
            doc = dict(base, by_user={"limit": limit, "window_s": window_s})
            assert _go_accepts(doc) == python, (limit, window_s)


def test_go_accepts_plugin_layer_keys_and_refuses_unknown_ones() -> None:
    """fail_mode is applied by the plugin: Go takes the key without reading it; any other unknown key is an error."""
    require_go_engine()
    for mode in FAIL_MODES:
        assert _go_accepts(json.loads(parse_config({"fail_mode": mode}).canonical_json()))
    assert not _go_accepts(dict(json.loads(LimiterConfig().canonical_json()), fail_mood="open"))

"""Configuration fuzzing (§1, §5, §6, §8, §10): hostile ``config:`` blocks at plugin init.

* Every malformed configuration (a valid one with one setting broken: wrong
  type, bad rate, out of range, unknown key, bad choice, colliding tool names)
  is refused when the plugin is constructed, with a ConfigError whose text
  names the broken key. Nothing half-configured ever runs.
* Every valid configuration is accepted by both engines: the Go engine parses
  the canonical JSON that Python produces (core.ParseConfig) and must not
  refuse anything Python accepted.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rate_limiter_go.config import KNOWN_KEYS, ConfigError, parse_config
from rate_limiter_go.engine import EngineError
from support.go_helpers import require_go_engine
from support.plugin_helpers import make_plugin

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

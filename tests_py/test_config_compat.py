"""Configurations written for cpex-rate-limiter 0.1.12 load unchanged into this plugin (issue "Drop-in").

Each YAML below has the shape of a configuration that cpex-rate-limiter's
manifest and README document (values are ours), with only the ``kind:`` line
swapped. cpex's PluginManager loads it from a file with
PLUGINS_FAIL_ON_PLUGIN_ERROR=true, so a refused configuration fails the test
instead of silently leaving the gateway without a limiter. The last part
checks that the settings keep their meaning: null turns a dimension off, the
TLS names map onto the same files, and wrong types are still errors.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cpex.framework import GlobalContext, PluginManager, ToolHookType, ToolPreInvokePayload
from cpex.framework.settings import settings as cpex_settings
from rate_limiter_go.config import ConfigError, parse_config
from support.plugin_helpers import KIND, clear_of_window_end

# cpex-rate-limiter's complete default configuration (its compat_default_config), every key explicit.
FULL_DEFAULTS = """
by_user: null
by_user_per_server: null
by_tenant: null
by_tool: null
algorithm: fixed_window
backend: memory
redis_url: null
redis_key_prefix: rl
fail_mode: open
redis_ssl_ca_certs: null
redis_ssl_certfile: null
redis_ssl_keyfile: null
redis_ssl_check_hostname: true
"""

# name -> config block as YAML; {redis_url} becomes the test's private redis-server (flushed per test)
SHAPES: dict[str, str] = {
    "full_defaults": FULL_DEFAULTS,
    "manifest_default_configs": """
        by_user: "60/m"
        by_user_per_server: null
        by_tenant: "600/m"
        by_tool: {}
    """,
    "readme_configuration": """
        by_user: "300/m"
        by_user_per_server: "60/m"
        by_tenant: "300/m"
        by_tool:
          search: "10/m"
          summarise: "5/m"
        algorithm: "fixed_window"
        backend: "memory"
        redis_url: "{redis_url}"
        redis_key_prefix: "rl"
        fail_mode: "open"
    """,
    "single_instance": """
        by_user: "300/m"
        by_user_per_server: "60/m"
        by_tenant: "600/m"
    """,
    "multi_instance_redis": """
        backend: "redis"
        redis_url: "{redis_url}"
        by_user: "30/m"
        by_tenant: "3000/m"
        by_tool:
          search: "10/m"
    """,
    "sliding_window": """
        algorithm: "sliding_window"
        by_user: "30/m"
        by_tenant: "300/m"
    """,
    "token_bucket_memory": """
        algorithm: "token_bucket"
        by_user: "30/m"
    """,
    "token_bucket_redis": """
        algorithm: "token_bucket"
        backend: "redis"
        redis_url: "{redis_url}"
        by_user: "30/m"
    """,
    "permissive": """
        by_user: "60/m"
    """,
    "closed_with_check_hostname_on_plain_redis": """
        backend: redis
        redis_url: "{redis_url}"
        fail_mode: closed
        by_user: 5/s
        redis_ssl_check_hostname: true
    """,
}


@pytest.fixture(autouse=True)
def _strict_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PLUGINS_FAIL_ON_PLUGIN_ERROR", "true")
    cpex_settings.cache_clear()
    PluginManager.reset()
    yield
    PluginManager.reset()
    cpex_settings.cache_clear()


def _plugins_yaml(path: Path, config_yaml: str, mode: str) -> Path:
    block = textwrap.indent(textwrap.dedent(config_yaml).strip(), " " * 6)
    path.write_text(
        "plugins:\n"
        "  - name: RateLimiterPlugin\n"
        f"    kind: {KIND}\n"
        "    hooks:\n      - prompt_pre_fetch\n      - tool_pre_invoke\n"
        f"    mode: {mode}\n"
        f"    config:\n{block}\n"
        "plugin_dirs: []\n"
    )
    return path


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_cpex_rate_limiter_configuration_loads_unchanged(shape: str, tmp_path: Path, redis_url: str) -> None:
    text = SHAPES[shape].replace("{redis_url}", redis_url)
    mode = "permissive" if shape == "permissive" else "enforce"
    pm = PluginManager(str(_plugins_yaml(tmp_path / "plugins.yaml", text, mode)))
    await pm.initialize()
    try:
        assert pm.plugin_count == 1
        limits = parse_config(yaml.safe_load(textwrap.dedent(text)))
        # The user limit (when there is one) is enforced through the manager: the call after the quota is refused.
        if limits.by_user is not None and limits.by_user.limit <= 300:
            if limits.algorithm == "fixed_window":
                # the calls use the wall clock: a window boundary among them would reset the count
                # (it did once in CI: the 61st call of 60/m admitted)
                clear_of_window_end(limits.by_user.window_s)
            outcomes = []
            for n in range(limits.by_user.limit + 1):
                gctx = GlobalContext(request_id=f"r{n}", user="compat@example.com", server_id="srv-1")
                result, _ = await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE,
                                                 ToolPreInvokePayload(name="other_tool", args={}),
                                                 global_context=gctx, violations_as_exceptions=False)
                outcomes.append(result.continue_processing)
            if mode == "enforce":
                # by_user_per_server (when configured lower) may refuse earlier; never later than by_user
                assert outcomes[-1] is False
                assert outcomes[0] is True
            else:
                assert all(outcomes)  # permissive: cpex logs the violation and lets the call through
    finally:
        await pm.shutdown()


@pytest.mark.parametrize("key", ["by_user", "by_user_per_server", "by_tenant"])
def test_null_rate_turns_the_dimension_off(key: str) -> None:
    assert getattr(parse_config({key: None}), key) is None
    assert getattr(parse_config({key: "5/s"}), key) is not None


def test_null_by_tool_and_null_tool_rate() -> None:
    assert dict(parse_config({"by_tool": None}).by_tool) == {}
    assert dict(parse_config({"by_tool": {"search": None, "fetch": "2/s"}}).by_tool).keys() == {"fetch"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"by_user": 30}, "by_user: a rate must be a string"),
        ({"by_user_per_server": 5}, "by_user_per_server: a rate must be a string"),
        ({"by_user_per_server": "5/d"}, "by_user_per_server: '5/d' has unknown unit"),
        ({"by_tool": {"search": 3}}, "by_tool['search']: a rate must be a string"),
        ({"redis_ssl_check_hostname": "false"}, "redis_ssl_check_hostname: must be true or false"),
        ({"redis_ssl_check_hostnam": True}, "did you mean 'redis_ssl_check_hostname'?"),
        ({"by_user_per_servr": "5/s"}, "did you mean 'by_user_per_server'?"),
        ({"redis_ssl_ca_certs": "/a.pem", "redis_tls_ca_file": "/b.pem", "redis_url": "rediss://h:1/0"},
         "redis_ssl_ca_certs: also given as redis_tls_ca_file"),
        ({"redis_ssl_ca_certs": "/a.pem", "redis_url": "redis://h:1/0"}, "redis_ssl_ca_certs: only allowed with"),
        ({"redis_ssl_certfile": "/nonexistent.pem", "redis_ssl_keyfile": "/nonexistent.key",
          "redis_url": "rediss://h:1/0"}, "redis_ssl_certfile: cannot read"),
    ],
)
def test_wrong_values_are_still_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
        parse_config(raw)


def test_tls_names_map_onto_the_same_settings(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("ca.pem", "client.pem", "client.key")}
    for f in files.values():
        f.write_text("-----BEGIN CERTIFICATE-----\n")
    documented = parse_config({
        "redis_url": "rediss://h:1/0",
        "redis_ssl_ca_certs": str(files["ca.pem"]),
        "redis_ssl_certfile": str(files["client.pem"]),
        "redis_ssl_keyfile": str(files["client.key"]),
        "redis_ssl_check_hostname": False,
    })
    ours = parse_config({
        "redis_url": "rediss://h:1/0",
        "redis_tls_ca_file": str(files["ca.pem"]),
        "redis_tls_cert_file": str(files["client.pem"]),
        "redis_tls_key_file": str(files["client.key"]),
        "redis_tls_check_hostname": False,
    })
    assert documented == ours
    assert documented.redis_tls_ca_file == str(files["ca.pem"]) and documented.redis_tls_check_hostname is False
    # the default (true) is not written, so configurations without the key keep their store identity (§10)
    assert "check_hostname" not in parse_config({"redis_ssl_check_hostname": True}).canonical_json()

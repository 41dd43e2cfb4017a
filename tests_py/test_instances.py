"""Plugin instances come and go, counters stay (docs/semantics.md §10).

The gateway rebuilds plugin instances every 30 s and per team and tool, and
shuts the old ones down: a new instance with the same name and configuration
must continue the same counters; a different configuration must not.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.plugin_helpers import call_tool, make_plugin, unique_name


def _remaining(result: Any) -> str:
    headers = result.http_headers if result.continue_processing else result.violation.http_headers
    return headers["X-RateLimit-Remaining"]


@pytest.fixture(params=["fixed_window", "sliding_window", "token_bucket"])
def algorithm(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_new_instance_with_same_name_and_config_carries_on(algorithm: str) -> None:
    name = unique_name()
    config = {"by_user": "4/h", "algorithm": algorithm}
    first = make_plugin(config, name=name)
    await first.initialize()
    assert [_remaining(await call_tool(first)) for _ in range(2)] == ["3", "2"]
    await first.shutdown()  # §10: shutdown does not clear the shared memory state

    second = make_plugin(dict(config), name=name)
    await second.initialize()
    assert _remaining(await call_tool(second)) == "1"
    assert _remaining(await call_tool(second)) == "0"
    assert (await call_tool(second)).continue_processing is False
    await second.shutdown()


async def test_instances_alive_at_once_share_counters() -> None:
    name = unique_name()
    a = make_plugin({"by_user": "3/h"}, name=name)
    b = make_plugin({"by_user": "3/h"}, name=name)
    assert (await call_tool(a)).continue_processing
    assert (await call_tool(b)).continue_processing
    assert (await call_tool(a)).continue_processing
    assert (await call_tool(b)).continue_processing is False


async def test_equivalent_spellings_of_a_config_are_the_same_config() -> None:
    # The store is chosen by the validated configuration, not the YAML text.
    name = unique_name()
    a = make_plugin({"by_user": "2/h", "by_tool": {"Search": "10/m"}}, name=name)
    b = make_plugin(
        {"by_tool": {" search ": "10/minute"}, "by_user": " 2 / hour ", "algorithm": "fixed_window"}, name=name
    )
    assert (await call_tool(a, "fetch")).continue_processing
    assert (await call_tool(b, "fetch")).continue_processing
    assert (await call_tool(a, "fetch")).continue_processing is False


@pytest.mark.parametrize(
    "changed",
    [
        {"by_user": "4/h", "by_tool": {"other": "1/s"}},  # another dimension added
        {"by_user": "4/h", "algorithm": "sliding_window"},  # another algorithm
        {"by_user": "4/h", "memory_max_keys": 5000},  # another store bound
        {"by_user": "4/h", "redis_key_prefix": "other"},
    ],
)
async def test_different_config_has_separate_counters(changed: dict[str, Any]) -> None:
    name = unique_name()
    original = make_plugin({"by_user": "4/h"}, name=name)
    for _ in range(4):
        assert (await call_tool(original)).continue_processing
    assert (await call_tool(original)).continue_processing is False

    other = make_plugin(changed, name=name)
    result = await call_tool(other)
    assert result.continue_processing is True
    assert _remaining(result) == "3"


async def test_different_plugin_name_has_separate_counters() -> None:
    config = {"by_user": "1/h"}
    a = make_plugin(config, name=unique_name())
    b = make_plugin(config, name=unique_name())
    assert (await call_tool(a)).continue_processing
    assert (await call_tool(a)).continue_processing is False
    assert (await call_tool(b)).continue_processing


async def test_redis_counters_survive_instances(redis_url: str) -> None:
    # On Redis the state lives in Redis: a new instance (even another name) continues it (§6 keys).
    config = {"by_user": "3/h", "backend": "redis", "redis_url": redis_url, "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}
    first = make_plugin(config)
    assert _remaining(await call_tool(first)) == "2"
    await first.shutdown()
    second = make_plugin(dict(config))
    assert _remaining(await call_tool(second)) == "1"
    await second.shutdown()

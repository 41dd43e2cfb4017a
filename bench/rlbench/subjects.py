"""The subjects under test, each built as a cpex plugin from the same scenario.

* ``go`` / ``python``: our RateLimiterPlugin with RATE_LIMITER_ENGINE set to
  that engine while the instance is built (the plugin reads it at init).
* ``cpex-rate-limiter``: the upstream ContextForge plugin (Rust core),
  ``cpex_rate_limiter.rate_limiter.RateLimiterPlugin``, same config keys.
* ``limits``: ``rlbench.limits_hook.LimitsPlugin`` (fixed and sliding window only).
* ``floor``: ``rlbench.floor.FloorPlugin``, no limiting, same result objects.

Each subject and scenario gets its own Redis key prefix, so no two share
state: cpex-rate-limiter's keys name neither the algorithm nor the rate (a
sliding-window ZSET would land on a fixed-window counter's key: WRONGTYPE,
then fail-open), and the admitted and blocked paths must not share counters.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from cpex.framework import PluginConfig

from rlbench.workload import ALGO_SHORT, HOOKS, Scenario, limiter_config

OURS = ("go", "python")
PEERS = ("cpex-rate-limiter", "limits")
SUBJECTS = ("floor", *OURS, *PEERS)

_KEY_PREFIX = {"go": "bgo", "python": "bpy", "cpex-rate-limiter": "brs", "limits": "blim"}
_KIND = {
    "go": "rate_limiter_go.plugin.RateLimiterPlugin",
    "python": "rate_limiter_go.plugin.RateLimiterPlugin",
    "cpex-rate-limiter": "cpex_rate_limiter.rate_limiter.RateLimiterPlugin",
    "limits": "rlbench.limits_hook.LimitsPlugin",
    "floor": "rlbench.floor.FloorPlugin",
}
ENGINE_ENV = "RATE_LIMITER_ENGINE"
BENCH_REDIS_TIMEOUT_MS = 2000


class SubjectUnavailableError(RuntimeError):
    """The subject cannot run here (not installed, not built); the message says why."""


def supports(subject: str, scenario: Scenario) -> bool:
    """Whether the subject has an equivalent of the scenario's algorithm."""
    if subject == "limits":
        return scenario.algorithm in ("fixed_window", "sliding_window")
    return True


def _load_class(kind: str) -> type:
    module_name, _, cls_name = kind.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SubjectUnavailableError(f"cannot import {module_name}: {e}") from e
    return getattr(module, cls_name)


def _config(name: str, kind: str, raw: dict[str, Any], hooks: tuple[str, ...] = HOOKS) -> PluginConfig:
    return PluginConfig(name=name, kind=kind, hooks=list(hooks), config=raw)


def key_prefix(subject: str, scenario: Scenario, hooks: tuple[str, ...] = HOOKS) -> str:
    """The ``redis_key_prefix`` of ``subject``'s instance for ``scenario``."""
    prefix = f"{_KEY_PREFIX[subject]}.{ALGO_SHORT[scenario.algorithm]}.{scenario.dims}.{scenario.path}"
    return prefix + ".http" if hooks != HOOKS else prefix  # its own counters, like every other instance


def build(subject: str, scenario: Scenario | None, redis_url: str | None, hooks: tuple[str, ...] = HOOKS,
          redis_mode: str = "standalone", remember_refusals: bool = True) -> Any:  # fmt: skip
    """A plugin instance of ``subject`` for ``scenario`` (``None`` for the floor, which takes a path).

    ``hooks``: the hooks listed in its configuration (ours keeps admitted headers for the HTTP
    response only when ``http_post_request`` is among them). ``redis_mode``: our plugin's setting
    (§11); the peers have no such setting and get only ``redis_url``. ``remember_refusals=False``: our
    plugin with ``redis_blocked_max_keys: 0`` (§12 off; its own key prefix). Raises SubjectUnavailableError
    when the subject cannot be built here.
    """
    if subject == "floor":
        path = scenario.path if scenario is not None else "admitted"
        return _load_class(_KIND["floor"])(_config("bench-floor", _KIND["floor"], {"path": path}))
    if scenario is None:
        raise ValueError(f"{subject} needs a scenario")
    prefix = key_prefix(subject, scenario, hooks) + ("" if remember_refusals else ".b0")
    raw = limiter_config(scenario, redis_url, prefix)
    if subject in OURS and scenario.backend == "redis":
        # The 50 ms defaults (§8) are for production; on a loaded 2-core machine one slow reply
        # would fail open and abort the run. cpex-rate-limiter has no such settings.
        raw |= {"redis_timeout_ms": BENCH_REDIS_TIMEOUT_MS, "redis_connect_timeout_ms": BENCH_REDIS_TIMEOUT_MS}
        if redis_mode != "standalone":
            raw["redis_mode"] = redis_mode
        if not remember_refusals:
            raw["redis_blocked_max_keys"] = 0
    cls = _load_class(_KIND[subject])
    cfg = _config(f"bench-{subject}" + (".http" if hooks != HOOKS else ""), _KIND[subject], raw, hooks)
    if subject not in OURS:
        return cls(cfg)
    saved = os.environ.get(ENGINE_ENV)
    os.environ[ENGINE_ENV] = subject
    try:
        plugin = cls(cfg)
    except Exception as e:  # EngineUnavailableError and friends: report, do not fall back
        raise SubjectUnavailableError(f"our plugin with {ENGINE_ENV}={subject}: {type(e).__name__}: {e}") from e
    finally:
        if saved is None:
            os.environ.pop(ENGINE_ENV, None)
        else:
            os.environ[ENGINE_ENV] = saved
    if plugin.engine.name != subject:
        raise SubjectUnavailableError(f"asked for the {subject} engine, got {plugin.engine.name}")
    return plugin


def versions() -> dict[str, str]:
    """Installed versions of the Python packages that take part."""
    from importlib import metadata

    out = {}
    for dist in ("cpex", "cpex-rate-limiter", "limits", "redis", "pydantic", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out

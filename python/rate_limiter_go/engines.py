"""Which engine runs: the RATE_LIMITER_ENGINE switch, read once per plugin instance at init.

* ``python``: the pure-Python engine (always available).
* ``go``: the Go engine; if it cannot be used the plugin fails at init with
  the reason, instead of silently running something else.
* ``auto`` (default, also when unset or empty): Go when the extension is
  present and the Go engine constructs, else Python with one WARNING per
  process (the gateway builds many instances, one warning is enough).

This module never imports the Go extension itself: importing it starts the Go
runtime, which must happen only in the process that uses it (see _native.py);
``engine_go.GoEngine`` does that, lazily.
"""

from __future__ import annotations

import importlib
import logging
import os

from rate_limiter_go import _native
from rate_limiter_go.config import LimiterConfig
from rate_limiter_go.engine import Engine

logger = logging.getLogger(__name__)

#: Environment variable that selects the engine.
ENGINE_ENV = "RATE_LIMITER_ENGINE"
ENGINE_CHOICES = ("auto", "go", "python")

_fallback_warned = False  # per process; reset_fallback_warning() clears it for tests


class EngineUnavailableError(RuntimeError):
    """RATE_LIMITER_ENGINE=go was asked for but the Go engine cannot be used."""


def reset_fallback_warning() -> None:
    """Let the next auto fallback warn again (tests)."""
    global _fallback_warned
    _fallback_warned = False


def requested_engine() -> str:
    """The validated value of RATE_LIMITER_ENGINE: auto, go or python."""
    raw = os.environ.get(ENGINE_ENV, "")
    choice = raw.strip().lower() or "auto"
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"{ENGINE_ENV}={raw!r} is not one of {', '.join(ENGINE_CHOICES)}")
    return choice


def _python_engine(config: LimiterConfig, store_name: str) -> Engine:
    from rate_limiter_go.engine_python.engine import PythonEngine

    return PythonEngine(config, store_name)


def _go_engine(config: LimiterConfig, store_name: str) -> Engine:
    """Build the Go engine or raise EngineUnavailableError saying why not."""
    if not _native.native_available():
        raise EngineUnavailableError(_native.native_unavailable_reason() or "the Go extension is not built")
    try:
        module = importlib.import_module("rate_limiter_go.engine_go")
    except ImportError as e:
        raise EngineUnavailableError(f"rate_limiter_go.engine_go cannot be imported: {e}") from e
    try:
        return module.GoEngine(config, store_name)
    except Exception as e:  # ImportError/NativeForkError from the loader, or a construction failure
        raise EngineUnavailableError(f"{type(e).__name__}: {e}") from e


def select_engine(config: LimiterConfig, store_name: str) -> Engine:
    """Build the engine that RATE_LIMITER_ENGINE asks for, bound to ``config``.

    ``store_name`` is the plugin's name: with the configuration it identifies
    the process-wide memory store that instances share (§10). Raises
    ValueError for an unknown RATE_LIMITER_ENGINE value and
    EngineUnavailableError when ``go`` is required but unusable.
    """
    global _fallback_warned
    choice = requested_engine()
    if choice == "python":
        return _python_engine(config, store_name)
    if choice == "go":
        try:
            return _go_engine(config, store_name)
        except EngineUnavailableError as e:
            raise EngineUnavailableError(f"{ENGINE_ENV}=go but the Go extension is not available: {e}") from e
    try:
        return _go_engine(config, store_name)
    except EngineUnavailableError as e:
        if not _fallback_warned:
            _fallback_warned = True
            logger.warning("rate limiter: Go engine not available, using the Python engine: %s", e)
        else:
            logger.debug("rate limiter: Go engine not available, using the Python engine: %s", e)
        return _python_engine(config, store_name)

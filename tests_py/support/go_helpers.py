"""Helpers for the tests of the Go engine (test_parity, test_engine_go, test_go_memory)."""

from __future__ import annotations

import os

import pytest
from rate_limiter_go import _native


def require_go_engine() -> type:
    """The GoEngine class; skips the test when the extension is not built, fails instead with CI=true."""
    if not _native.native_available():
        reason = f"Go extension not available: {_native.native_unavailable_reason()} (run `make build`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    from rate_limiter_go.engine_go import GoEngine

    return GoEngine


def reset_go_memory_stores() -> None:
    """Empty the Go engine's shared memory stores (if this process has loaded it)."""
    from rate_limiter_go.engine_go import reset_memory_stores

    reset_memory_stores()

"""The Redis Lua scripts (docs/semantics.md §9), read from one source.

An installed package carries copies in ``rate_limiter_go/lua/`` (made by the
build); a development checkout without them reads ``backends/redis/lua/`` at
the repository root, the files the Go engine embeds.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

__all__ = ["GIVE_BACK_FILES", "SCRIPT_FILES", "give_back_text", "script_text"]

#: Algorithm name -> script file name.
SCRIPT_FILES: dict[str, str] = {
    "fixed_window": "fixed_window.lua",
    "sliding_window": "sliding_window.lua",
    "token_bucket": "token_bucket.lua",  # nosec B105 # a Lua script file name, not a password
}

#: Algorithm name -> the file of its Cluster give-back script (§11.1).
GIVE_BACK_FILES: dict[str, str] = {name: file.replace(".lua", "_give_back.lua") for name, file in SCRIPT_FILES.items()}

# python/rate_limiter_go/scripts.py -> <repo>/backends/redis/lua
_REPO_LUA_DIR = Path(__file__).resolve().parents[2] / "backends" / "redis" / "lua"


@functools.cache
def script_text(algorithm: str) -> str:
    """The Lua source for ``algorithm`` (``fixed_window``, ``sliding_window`` or ``token_bucket``).

    Raises ValueError for an unknown algorithm and FileNotFoundError when
    neither the package copy nor the repository file exists.
    """
    try:
        name = SCRIPT_FILES[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}") from None
    return _read(name)


@functools.cache
def give_back_text(algorithm: str) -> str:
    """The Lua source of ``algorithm``'s Cluster give-back script (§11.1); errors as :func:`script_text`."""
    try:
        name = GIVE_BACK_FILES[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}") from None
    return _read(name)


def _read(name: str) -> str:
    packaged = importlib.resources.files("rate_limiter_go").joinpath("lua", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    repo_file = _REPO_LUA_DIR / name
    if repo_file.is_file():
        return repo_file.read_text(encoding="utf-8")
    raise FileNotFoundError(f"Lua script {name} is neither in the package (rate_limiter_go/lua) nor at {repo_file}")

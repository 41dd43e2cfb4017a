"""Where a hook's time goes: a cProfile summary of many awaited calls.

cProfile adds its own cost to every Python-level call, so the absolute
numbers are inflated and only the split between functions is of interest;
time spent inside C or Go (the gopy extension, pydantic-core) is charged to
the builtin that called it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

TOP = 18

# Long install paths shortened to the package-relative part.
_PATH_RE = re.compile(r"\S*?/(?:site-packages|python3\.\d+|python|bench)/")


async def profile_hook(call: Callable[[Any, Any], Awaitable[Any]], args: Sequence[tuple[Any, Any]], n: int) -> str:
    """Profile ``n`` awaited calls of ``call`` cycling over ``args``; the top functions by own time."""
    prof = cProfile.Profile()
    count = len(args)
    prof.enable()
    for i in range(n):
        a, b = args[i % count]
        await call(a, b)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(TOP)
    return shorten(buf.getvalue())


def shorten(text: str) -> str:
    """Drop pstats' header noise and shorten file paths."""
    lines = []
    started = False
    for line in text.splitlines():
        if "ncalls" in line:
            started = True
        if started and line.strip():
            lines.append(_PATH_RE.sub("", line.replace(sys.prefix, "")))
        elif "function calls" in line:
            lines.append(line.strip())
    return "\n".join(lines)

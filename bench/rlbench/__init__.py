"""rlbench: the hook-path A/B benchmark of the rate limiter engines and their peers.

Everything is measured in one process, on one event loop, in interleaved
rounds (see ``runner``). ``python -m rlbench --help`` lists the options; the
Makefile fragment ``bench/bench.mk`` has the targets ``bench``, ``bench-ab``
and ``bench-ab-quick``. ``report`` turns a results JSON into
docs/benchmarks.md and its chart.
"""

import sys
from pathlib import Path

# The one private redis-server helper lives with the tests (tests_py/support/redis_server.py):
# `from support.redis_server import RedisServer` needs tests_py/ on the path.
_TESTS_PY = str(Path(__file__).resolve().parents[2] / "tests_py")
if _TESTS_PY not in sys.path:
    sys.path.append(_TESTS_PY)

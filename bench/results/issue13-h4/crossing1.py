"""One round of the crossing measurements, from the rate_limiter_go package in the directory
sys.argv[1] (a work tree's python/, with the extension built there by `make build`).

Prints benchstat-readable lines: CPU time of the process per call, best of 5 timeit repeats of
100,000 calls (timeit turns the garbage collector off while it times). crossing_ab.sh alternates
two trees.
"""

import sys
import time
import timeit

sys.path.insert(0, sys.argv[1])

from rate_limiter_go import _native  # noqa: E402
from rate_limiter_go.config import parse_config  # noqa: E402
from rate_limiter_go.engine_go import GoEngine  # noqa: E402

raw = _native.load_native()._pyext
three = parse_config({"by_user": "1000000/s", "by_tenant": "1000000/s", "by_tool": {"search": "1000000/s"}})
engine = GoEngine(three, "bench3")
engine.evaluate("x", None, None)  # binds
handle = engine._handle
evaluate = engine.evaluate
cases = [
    ("Crossing/noop_Add", lambda: raw.pyext_Add(1, 2)),
    ("Crossing/raw_Evaluate_3dim", lambda: raw.pyext_Evaluate(handle, "alice@example.com", "", "team-a", "search", 0)),
    ("Crossing/GoEngine_evaluate_3dim", lambda: evaluate("alice@example.com", "team-a", "search")),
]
n = 100_000
for name, fn in cases:
    best = min(timeit.repeat(fn, number=n, repeat=5, timer=time.process_time))
    print(f"Benchmark{name} \t{n}\t{best / n * 1e9:.1f} ns/op")

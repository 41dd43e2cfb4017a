"""Redis time per fixed-window check, old script against new, alternating order per round.

Run by run.sh from a directory holding old.lua and new.lua, against the redis-server on port 6399.
"""

from pathlib import Path

import redis

r = redis.Redis(port=6399)
shas = {n: r.script_load(Path(f"{n}.lua").read_text()) for n in ("old", "new")}


def run(name: str, dims: int, calls: int, rnd: int) -> float:
    """Redis's usec per EVALSHA of script ``name`` over ``calls`` admitted checks of ``dims`` keys."""
    keys = [f"{name}{rnd}:fw:{d}:{{u}}" for d in ("user", "tenant", "tool")[:dims]]
    argv = [""] + ["1000000000", "3600000000"] * dims
    r.config_resetstat()
    for _ in range(calls):
        r.evalsha(shas[name], dims, *keys, *argv)
    return r.info("commandstats")["cmdstat_evalsha"]["usec"] / calls


res: dict[tuple[str, int], list[float]] = {}
for rnd in range(14):
    for dims in (1, 3):
        for name in ("old", "new") if rnd % 2 == 0 else ("new", "old"):
            res.setdefault((name, dims), []).append(run(name, dims, 10000, rnd))
for k, v in sorted(res.items()):
    print(k, f"min {min(v):.2f} us/check median {sorted(v)[len(v) // 2]:.2f}")

import redis, time, sys
r = redis.Redis(port=6399)
shas = {n: r.script_load(open(f"{n}.lua").read()) for n in ("old", "new")}
def run(name, dims, calls, rnd):
    keys = [f"{name}{rnd}:fw:{d}:{{u}}" for d in ("user","tenant","tool")[:dims]]
    argv = [""] + ["1000000000", "3600000000"] * dims
    r.config_resetstat()
    for _ in range(calls):
        r.evalsha(shas[name], dims, *keys, *argv)
    st = r.info("commandstats")["cmdstat_evalsha"]
    return st["usec"] / calls
res = {}
for rnd in range(14):
    for dims in (1, 3):
        for name in (("old","new") if rnd % 2 == 0 else ("new","old")):
            res.setdefault((name,dims), []).append(run(name, dims, 10000, rnd))
for k, v in sorted(res.items()):
    print(k, "min %.2f us/check" % min(v), "median %.2f" % sorted(v)[len(v)//2])

"""Redis usec per check by command (INFO commandstats), old and new fixed-window script, 1 key.

Run by run.sh from a directory holding old.lua and new.lua, against the redis-server on port 6399.
"""

from pathlib import Path

import redis

r = redis.Redis(port=6399)
shas = {n: r.script_load(Path(f"{n}.lua").read_text()) for n in ("old", "new")}
for rnd in range(3):
    for name in ("old", "new"):
        keys = [f"{name}{rnd}:fw:user:{{u}}"]
        argv = ["", "1000000000", "3600000000"]
        r.config_resetstat()
        n = 20000
        for _ in range(n):
            r.evalsha(shas[name], 1, *keys, *argv)
        st = r.info("commandstats")
        print(name, {k[8:]: round(v["usec"] / n, 2) for k, v in st.items() if k != "cmdstat_config|resetstat"})

#!/bin/bash
# Redis time per fixed-window check: the script at main (old) against the optimistic
# HINCRBY variant (fixed_window_optimistic.lua.txt, new), one private redis-server,
# alternating order per round. Writes compare.txt and per_command.txt here.
set -eu
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d); trap 'redis-cli -p 6399 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cp "$root/backends/redis/lua/fixed_window.lua" "$work/old.lua"
cp "$here/fixed_window_optimistic.lua.txt" "$work/new.lua"
redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$work/r.log"
sleep 0.5
py=${PYTHON:-$root/bench/.venv/bin/python}
{ echo "# $(date -u) $(git -C "$root" rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"; (cd "$work" && "$py" "$here/compare.py"); } > "$here/compare.txt"
{ echo "# $(date -u) load $(cut -d' ' -f1-3 /proc/loadavg)"; (cd "$work" && "$py" "$here/per_command.py"); } > "$here/per_command.txt"

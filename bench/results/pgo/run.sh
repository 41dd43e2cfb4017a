#!/bin/bash
# PGO against no PGO on the same source: instruction counts (callgrind) and an
# interleaved wall-clock A/B of the core's hot-key benchmarks, raw output kept.
# usage: bash bench/results/pgo/run.sh  (from the repository root; about 3 minutes)
set -euo pipefail
out=bench/results/pgo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -pgo=off -o "$tmp/nopgo.test" ./core
go test -c -pgo=pyext/default.pgo -o "$tmp/pgo.test" ./core
{
  echo "# $(date -u) commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' +changes'); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# instructions per request (bench/results/issue13-core/instructions.sh: 120,000 minus 20,000 iterations)"
  for b in nopgo pgo; do
    for bench in HotKey/fixed_window/3dim HotKey/sliding_window/3dim HotKey/token_bucket/3dim ManyKeys/fixed_window; do
      bash bench/results/issue13-core/instructions.sh "$tmp/$b.test" "$bench" | sed "s|$tmp/||"
    done
  done
} > "$out/instructions.txt"
{
  echo "# $(date -u) commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' +changes'); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# 12 rounds, each: nopgo then pgo, -test.benchtime 300000x, GOMAXPROCS 2"
  for r in $(seq 12); do
    for b in nopgo pgo; do
      "$tmp/$b.test" -test.run XXX -test.bench 'HotKey/.*/3dim$' -test.benchtime 300000x | awk -v b=$b -v r=$r '/ns\/op/{print r, b, $1, $3}'
    done
  done
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/wall-ab.txt"
python3 - "$out/wall-ab.txt" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.startswith("#"):
        _, b, name, ns = line.split()
        d[(name, b)].append(float(ns))
for (name, b), v in sorted(d.items()):
    print(f"{name:40s} {b:6s} min {min(v):6.1f}  median {statistics.median(v):6.1f} ns  ({len(v)} rounds)")
PY

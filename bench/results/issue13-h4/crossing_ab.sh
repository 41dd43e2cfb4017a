#!/bin/bash
# crossing_ab.sh OLDTREE NEWTREE OUTPREFIX ROUNDS: crossing1.py on two work trees (each built
# with `make build`), alternating which goes first, with the interpreter in $PY (default: the
# project's .venv).
set -eu
py=${PY:-.venv/bin/python}
here=$(dirname "$0")
: > "$3.old"; : > "$3.new"
echo "load before: $(cat /proc/loadavg)" > "$3.load"
for i in $(seq "$4"); do
  if (( i % 2 )); then
    "$py" "$here/crossing1.py" "$1/python" >> "$3.old"; "$py" "$here/crossing1.py" "$2/python" >> "$3.new"
  else
    "$py" "$here/crossing1.py" "$2/python" >> "$3.new"; "$py" "$here/crossing1.py" "$1/python" >> "$3.old"
  fi
done
echo "load after: $(cat /proc/loadavg)" >> "$3.load"

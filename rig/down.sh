#!/usr/bin/env bash
# Stop a rig started by rig/up.sh: only the pids recorded in its run directory, after checking
# their command lines. Default: rig/run/current. Usage: rig/down.sh [RUN_DIR]
set -euo pipefail
RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${RIG_PYTHON:-python3}" "$RIG_DIR/rigctl.py" down "$@"

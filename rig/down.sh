#!/usr/bin/env bash
# Stop rigs: only the pids recorded in a run directory, after checking their command lines.
# Default: every run under rig/run/ with a recorded process still running (the rig of rig/up.sh and any
# a crashed or --keep driver left). Usage: rig/down.sh [RUN_DIR]
set -euo pipefail
RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${RIG_PYTHON:-python3}" "$RIG_DIR/rigctl.py" down "$@"

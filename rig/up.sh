#!/usr/bin/env bash
# Start the rig and leave it running: redis-server, the MCP test server, the gateways (ContextForge
# GATEWAY_VERSION, default 1.1.0, from rig/.venv-gateway-<version>), nginx.
# Everything on 127.0.0.1; ports are picked free. Prints the run directory (rig/run/<timestamp>/,
# also linked as rig/run/current) where rig.json, logs and pids are. Stop it with rig/down.sh.
#
# Options are rigctl's (python3 rig/rigctl.py up --help); the environment sets the defaults:
#   GW_ENGINES="go python go"  one gateway per word, RATE_LIMITER_ENGINE of each
#   RL_BACKEND=redis|memory    RL_ALGORITHM=fixed_window|sliding_window|token_bucket
#   RL_BY_USER=20/s  RL_BY_TENANT=  RL_FAIL_MODE=open  RIG_USERS=4  RIG_TEAMS=2
#   GW_CACHE=memory|redis (the gateway's own cache; Redis DB 1, the limiter uses DB 0)
set -euo pipefail
RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${RIG_PYTHON:-python3}" "$RIG_DIR/rigctl.py" up "$@"

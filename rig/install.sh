#!/usr/bin/env bash
# rig-deps: everything the rig needs, idempotent.
#   - nginx from Debian (apt), without leaving Debian's own nginx daemon running on port 80
#   - rig/.venv-gateway: mcp-contextforge-gateway 1.0.7 (pinned: rig/requirements-gateway.txt)
#     plus this package, pip-installed the normal way (its build compiles the Go engine)
#   - rig/.venv-rig: locust and the rig's test tools (rig/requirements-rig.txt)
# Environment:
#   RIG_PYTHON=python3.11      interpreter for both venvs (the gateway 1.0.7 needs >= 3.11)
#   RIG_INSTALL_FROM=head|tree install the package from the committed HEAD (default: a clean
#                              export, so other people's uncommitted edits never leak in) or
#                              from the working tree as it is
#   RIG_REINSTALL=1            reinstall the package even if the venv has it
set -euo pipefail

RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$RIG_DIR")"
PY="${RIG_PYTHON:-python3}"
GW_VENV="$RIG_DIR/.venv-gateway"
RIG_VENV="$RIG_DIR/.venv-rig"

say() { printf 'rig-deps: %s\n' "$*"; }
# install timings for docs/gateway.md (rig/discover.py reads them): rig/run/install-<what>.json
record() {
  mkdir -p "$RIG_DIR/run"
  printf '{"what": "%s", "seconds": %s, "when": "%s", "detail": "%s"}\n' "$1" "$2" "$(date -u +%FT%TZ)" "$3" \
    > "$RIG_DIR/run/install-$1.json"
}

"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { say "$PY is $("$PY" --version 2>&1); the gateway needs Python >= 3.11"; exit 1; }

# --- nginx (Debian) ---------------------------------------------------------------------------
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  say "installing nginx with apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  # Debian's package may start its own daemon on :80; the rig runs its own nginx per run instead.
  if [ -s /run/nginx.pid ]; then
    /usr/sbin/nginx -s quit || true
  fi
fi
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] \
  || { say "redis-server missing (Debian: apt-get install redis-server)"; exit 1; }

# --- the gateway's venv -----------------------------------------------------------------------
if [ ! -x "$GW_VENV/bin/mcpgateway" ]; then
  say "creating $GW_VENV (pinned gateway dependencies)"
  "$PY" -m venv "$GW_VENV"
  "$GW_VENV/bin/pip" install -q --upgrade pip
  t0=$(date +%s)
  "$GW_VENV/bin/pip" install -q -r "$RIG_DIR/requirements-gateway.txt"
  dt=$(( $(date +%s) - t0 ))
  say "gateway install took $dt s"
  record gateway "$dt" "pip install -r rig/requirements-gateway.txt into a new venv"
fi

if [ "${RIG_REINSTALL:-0}" = 1 ] || ! "$GW_VENV/bin/python" -c 'import rate_limiter_go.plugin' 2>/dev/null; then
  src="$REPO_DIR"
  tmp=""
  if [ "${RIG_INSTALL_FROM:-head}" = head ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    git -C "$REPO_DIR" archive HEAD | tar -x -C "$tmp"
    src="$tmp"
    say "installing rate_limiter_go from commit $(git -C "$REPO_DIR" rev-parse --short HEAD) into the gateway venv"
  else
    say "installing rate_limiter_go from the working tree into the gateway venv"
  fi
  t0=$(date +%s)
  # require: if Go cannot be built the install fails here instead of silently shipping Python only
  RATE_LIMITER_GO_NATIVE="${RATE_LIMITER_GO_NATIVE:-require}" \
    "$GW_VENV/bin/pip" install -q --force-reinstall --no-deps "$src"
  dt=$(( $(date +%s) - t0 ))
  say "package install (including the Go build) took $dt s"
  record package "$dt" "pip install of rate_limiter_go (${RIG_INSTALL_FROM:-head}) including the Go build"
fi
"$GW_VENV/bin/python" - <<'EOF'
from rate_limiter_go import _native
reason = _native.native_unavailable_reason()
print("rig-deps: Go extension in the gateway venv:", "present" if reason is None else f"MISSING ({reason})")
EOF

# --- the rig's tools venv ---------------------------------------------------------------------
if [ ! -x "$RIG_VENV/bin/locust" ]; then
  say "creating $RIG_VENV (locust, pytest, ruff)"
  "$PY" -m venv "$RIG_VENV"
  "$RIG_VENV/bin/pip" install -q --upgrade pip
  "$RIG_VENV/bin/pip" install -q -r "$RIG_DIR/requirements-rig.txt"
fi
say "ready"

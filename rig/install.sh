#!/usr/bin/env bash
# rig-deps: everything the rig needs, idempotent.
#   - nginx from Debian (apt), without leaving Debian's own nginx daemon running on port 80
#   - rig/.venv-gateway-<GATEWAY_VERSION>: mcp-contextforge-gateway, pinned by
#     rig/requirements-gateway-<GATEWAY_VERSION>.txt, on the CPython that version needs (pyenv),
#     plus this package, installed from the wheel `make wheels` builds for that CPython
#   - rig/.venv-rig: locust and the rig's test tools (rig/requirements-rig.txt)
# Environment:
#   GATEWAY_VERSION=1.1.0|1.0.7  which gateway (default 1.1.0, on CPython 3.12; 1.0.7 runs on 3.11)
#   RIG_GATEWAY_PYTHON=<path>    interpreter for the gateway venv instead of pyenv's 3.12 / 3.11
#   RIG_PYTHON=python3           interpreter for the rig's tools venv
#   RIG_PACKAGE_FROM=wheel|source
#                                wheel (default): `make wheels PYTHONS=<minor>` in a clean export of
#                                the committed HEAD, then `pip install` of the wheel for the
#                                gateway's cpXY tag; source: `pip install` of the package source
#                                (its build compiles the Go engine)
#   RIG_INSTALL_FROM=head|tree   build from the committed HEAD (default: a clean export, so other
#                                people's uncommitted edits never leak in) or the working tree
#   RIG_REINSTALL=1              reinstall the package even if the venv has it
set -euo pipefail

RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$RIG_DIR")"
GATEWAY_VERSION="${GATEWAY_VERSION:-1.1.0}"
PY="${RIG_PYTHON:-python3}"
GW_VENV="$RIG_DIR/.venv-gateway-$GATEWAY_VERSION"
GW_REQ="$RIG_DIR/requirements-gateway-$GATEWAY_VERSION.txt"
RIG_VENV="$RIG_DIR/.venv-rig"
FROM="${RIG_PACKAGE_FROM:-wheel}"

say() { printf 'rig-deps: %s\n' "$*"; }
# install timings for docs/gateway.md (rig/discover.py reads them): rig/run/install-<what>.json
record() {
  mkdir -p "$RIG_DIR/run"
  printf '{"what": "%s", "seconds": %s, "when": "%s", "detail": "%s"}\n' "$1" "$2" "$(date -u +%FT%TZ)" "$3" \
    > "$RIG_DIR/run/install-$1.json"
}

case "$GATEWAY_VERSION" in
  1.1.0) minor=3.12 ;;
  1.0.7) minor=3.11 ;;
  *) say "GATEWAY_VERSION=$GATEWAY_VERSION: the rig knows 1.1.0 (CPython 3.12) and 1.0.7 (CPython 3.11)"; exit 1 ;;
esac
[ -f "$GW_REQ" ] || { say "$GW_REQ missing"; exit 1; }
case "$FROM" in wheel|source) ;; *) say "RIG_PACKAGE_FROM must be wheel or source, not $FROM"; exit 1 ;; esac
if [ -n "${RIG_GATEWAY_PYTHON:-}" ]; then
  GW_PY="$RIG_GATEWAY_PYTHON"
else
  command -v pyenv >/dev/null 2>&1 || { say "pyenv missing: set RIG_GATEWAY_PYTHON to a CPython $minor"; exit 1; }
  prefix="$(pyenv prefix "$minor" 2>/dev/null)" || { say "pyenv has no CPython $minor (pyenv install $minor)"; exit 1; }
  GW_PY="$prefix/bin/python$minor"
fi
"$GW_PY" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$minor' else 1)" \
  || { say "$GW_PY is $("$GW_PY" --version 2>&1); gateway $GATEWAY_VERSION needs CPython $minor"; exit 1; }

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
  say "creating $GW_VENV (gateway $GATEWAY_VERSION on $("$GW_PY" --version 2>&1), pinned dependencies)"
  rm -rf "$GW_VENV"
  "$GW_PY" -m venv "$GW_VENV"
  "$GW_VENV/bin/pip" install -q --upgrade pip
  t0=$(date +%s)
  "$GW_VENV/bin/pip" install -q -r "$GW_REQ"
  dt=$(( $(date +%s) - t0 ))
  say "gateway install took $dt s"
  record "gateway-$GATEWAY_VERSION" "$dt" "pip install -r rig/$(basename "$GW_REQ") into a new venv ($("$GW_PY" --version 2>&1))"
fi

if [ "${RIG_REINSTALL:-0}" = 1 ] || ! "$GW_VENV/bin/python" -c 'import rate_limiter_go.plugin' 2>/dev/null; then
  # Replacing the package under running gateways mixes the old mapped extension with new Python
  # wrappers ("Go extension speaks ABI 3, this wrapper 2"): refuse while a rig runs on this venv.
  if pgrep -f "$GW_VENV/bin/mcpgateway" >/dev/null 2>&1; then
    say "gateways from $GW_VENV are running (pids $(pgrep -d ' ' -f "$GW_VENV/bin/mcpgateway")): stop their rig first, then reinstall"
    exit 1
  fi
  src="$REPO_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  dist="$tmp/dist"  # never the repository's dist/, which other work may be using
  if [ "${RIG_INSTALL_FROM:-head}" = head ]; then
    git -C "$REPO_DIR" archive HEAD | tar -x -C "$tmp"
    src="$tmp"
    what="a clean export of commit $(git -C "$REPO_DIR" rev-parse --short HEAD)"
  else
    what="the working tree"
  fi
  if [ "$FROM" = wheel ]; then
    tag="cp${minor/./}"
    say "building the $tag wheel of rate_limiter_go from $what (make wheels PYTHONS=$minor)"
    t0=$(date +%s)
    make -C "$src" wheels PYTHONS="$minor" DIST="$dist"
    tb=$(( $(date +%s) - t0 ))
    shopt -s nullglob
    wheels=("$dist"/rate_limiter_go-*-"$tag"-"$tag"-manylinux*_x86_64.whl)
    shopt -u nullglob
    [ "${#wheels[@]}" = 1 ] || { say "expected one $tag manylinux wheel in $dist, found ${#wheels[@]}: $(ls "$dist" 2>&1)"; exit 1; }
    wheel="${wheels[0]}"
    say "installing $(basename "$wheel") into the gateway venv (no build tools needed from here on)"
    t0=$(date +%s)
    "$GW_VENV/bin/pip" install -q --force-reinstall --no-deps "$wheel"
    ti=$(( $(date +%s) - t0 ))
    say "wheel build took $tb s, wheel install $ti s"
    record "wheel-build-$GATEWAY_VERSION" "$tb" "make wheels PYTHONS=$minor in $what (its build venv included): $(basename "$wheel"), $(( $(stat -c %s "$wheel") / 1024 )) KiB"
    record "package-$GATEWAY_VERSION" "$ti" "pip install of the wheel $(basename "$wheel") into the gateway $GATEWAY_VERSION venv"
  else
    say "installing rate_limiter_go from the source of $what into the gateway venv"
    t0=$(date +%s)
    # require: if Go cannot be built the install fails here instead of silently shipping Python only
    RATE_LIMITER_GO_NATIVE="${RATE_LIMITER_GO_NATIVE:-require}" \
      "$GW_VENV/bin/pip" install -q --force-reinstall --no-deps "$src"
    dt=$(( $(date +%s) - t0 ))
    say "package install (including the Go build) took $dt s"
    record "package-$GATEWAY_VERSION" "$dt" "pip install of rate_limiter_go from source ($what) including the Go build, gateway $GATEWAY_VERSION venv"
  fi
fi
"$GW_VENV/bin/python" - <<'EOF'
from rate_limiter_go import _native
reason = _native.native_unavailable_reason()
print("rig-deps: Go extension in the gateway venv:", "present" if reason is None else f"MISSING ({reason})")
EOF

# --- the rig's tools venv ---------------------------------------------------------------------
if [ ! -x "$RIG_VENV/bin/locust" ] || ! "$RIG_VENV/bin/python" -c "import redis" 2>/dev/null; then
  say "creating $RIG_VENV (locust, redis-py, pytest, ruff)"
  "$PY" -m venv "$RIG_VENV"
  "$RIG_VENV/bin/pip" install -q --upgrade pip
  "$RIG_VENV/bin/pip" install -q -r "$RIG_DIR/requirements-rig.txt" -c "$RIG_DIR/../constraints.txt"
fi
say "ready (gateway $GATEWAY_VERSION: $GW_VENV)"

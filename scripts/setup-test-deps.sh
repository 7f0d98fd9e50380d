#!/usr/bin/env bash
# Installs the third-party MCP implementations the fortress-mcp interop tests run against:
#   - the official Python `mcp` SDK (2.x, both protocol eras) in ./.venv
#   - `@modelcontextprotocol/server-everything` (a legacy-era reference server) in ./node_modules
# Idempotent: when the pinned versions are already present it only checks them.
# Both folders are project-local and gitignored. Exits non-zero with a clear message on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MCP_PY_VERSION="${FORTRESS_MCP_PY_VERSION:-2.3.0}"
EVERYTHING_VERSION="${FORTRESS_EVERYTHING_VERSION:-2026.8.31}"

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "setup-test-deps: '$1' is required but not installed" >&2; exit 1; }
}

need python3
need npm

# --- Python SDK ------------------------------------------------------------------------
PY="$ROOT/.venv/bin/python"
if [ -x "$PY" ] && "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$MCP_PY_VERSION')" 2>/dev/null; then
    echo "setup-test-deps: python mcp $MCP_PY_VERSION already in .venv"
else
    echo "setup-test-deps: installing python mcp==$MCP_PY_VERSION into .venv"
    [ -x "$PY" ] || python3 -m venv "$ROOT/.venv"
    "$PY" -m pip install --quiet --disable-pip-version-check "mcp==$MCP_PY_VERSION" "httpx" "uvicorn"
fi

# --- server-everything -----------------------------------------------------------------
EVERYTHING_PKG="$ROOT/node_modules/@modelcontextprotocol/server-everything/package.json"
if [ -f "$EVERYTHING_PKG" ] && node -e "process.exit(require('$EVERYTHING_PKG').version === '$EVERYTHING_VERSION' ? 0 : 1)"; then
    echo "setup-test-deps: server-everything $EVERYTHING_VERSION already in node_modules"
else
    echo "setup-test-deps: installing @modelcontextprotocol/server-everything@$EVERYTHING_VERSION"
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$ROOT" \
        "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION"
fi

echo "setup-test-deps: ready"

#!/usr/bin/env bash
# Installs what the PAT end-to-end tests need beyond cargo: the official `anthropic` Python
# SDK, in a project-local virtual environment `.venv-pat/`. Idempotent; quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-pat
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import anthropic" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "anthropic>=0.40,<1"
"$VENV/bin/python" -c "import anthropic; print('anthropic', anthropic.__version__)"

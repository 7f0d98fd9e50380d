#!/usr/bin/env bash
# Installs what the S3 archive tests need beyond cargo: a moto S3-compatible server
# (`moto[server]` from PyPI), in a project-local virtual environment `.venv-s3/`.
# Idempotent; quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-s3
if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto.server" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]>=5,<6"
"$VENV/bin/python" -c "import moto; print('moto', moto.__version__)"

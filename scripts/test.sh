#!/usr/bin/env bash
# The test command: prepares what the tests need beyond cargo, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/fortress-target}"

bash scripts/services.sh
if [ -x scripts/setup-test-deps.sh ]; then
  bash scripts/setup-test-deps.sh
fi
cargo test --workspace "$@"

#!/usr/bin/env bash
# The test command: prepares what the tests need beyond cargo, then runs the whole suite and
# closes with one summary line over every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/fortress-target}"

bash scripts/services.sh
for setup in scripts/setup-*.sh; do
  [ -f "$setup" ] && bash "$setup"
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"

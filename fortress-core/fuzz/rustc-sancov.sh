#!/bin/sh
# RUSTC_WRAPPER for a libFuzzer build on a stable toolchain without cargo-fuzz: adds
# cargo-fuzz's coverage instrumentation (no sanitizer) to the crates under test only
# (fortress-core and the fuzz target), so dependencies already built for the workspace's
# debug profile are reused. See docs/redaction.md#fuzzing.
rustc="$1"
shift
case " $* " in
*" --crate-name fortress_core "* | *" --crate-name redact "*)
    exec "$rustc" "$@" \
        -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing
    ;;
*) exec "$rustc" "$@" ;;
esac

#!/usr/bin/env bash
# Load benchmark of fortress-pat against the real binary: POST /v1/messages to the mock
# Claude API (fortress-pat/examples/mock_claude.rs), all in the same run, rounds interleaved:
#   direct    the mock itself (the baseline)
#   nginx     a bare nginx proxy_pass hop in front of it (no request/response buffering)
#   fortress  `fortress-pat serve` with everything on: gateway keys, allow-list policy,
#             budgets (tokens and USD), rate limits, the vault-held Anthropic key, redaction,
#             the encrypted archive, and the signed durable audit trail of the dashboard
#   shared    as `fortress`, on the shared multi-thread runtime (workers = 0), for an A/B
#             of the serving mode (not run unless listed in PATHS)
# Scenarios: non-streaming 1 KB and 16 KB request bodies, and streaming (wrk measures the
# whole stream); then streaming time to first byte at one connection (examples/ttfb.rs).
# Medians over ROUNDS rounds, ratios to `direct` and `nginx`. Binds 127.0.0.1 only, on free
# ephemeral ports. Needs wrk and nginx (installed with apt-get when missing).
#
#   bash scripts/bench-pat.sh                                  # release, 5 rounds of 5 s
#   ROUNDS=3 DURATION=3s CONNS="1 32" bash scripts/bench-pat.sh
#   PATHS="direct nginx fortress shared" SCENARIOS="1k" bash scripts/bench-pat.sh
#   WORKERS=2 (default nproc)  TTFB_N=2000 (0: skip)  PROFILE=debug  SKIP_BUILD=1
#   AUDIT_DURABILITY=process_crash  AUDIT_ACK=queued   an [audit] section (needs the [audit]
#              settings of the audit work; default: none, i.e. the trail's defaults)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bench-lib.sh
PROFILE="${PROFILE:-release}"
DURATION="${DURATION:-5s}"
ROUNDS="${ROUNDS:-5}"
CONNS="${CONNS:-1 32}"
PATHS="${PATHS:-direct nginx fortress}"
SCENARIOS="${SCENARIOS:-1k 16k stream}"
WORKERS="${WORKERS:-$(nproc)}"
TTFB_N="${TTFB_N:-2000}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
UPSTREAM_KEY="sk-ant-bench-upstream-0123456789"

bench_tools
if [ -z "${SKIP_BUILD:-}" ]; then
    flags=(-q -p fortress-pat --bin fortress-pat --example mock_claude --example ttfb)
    [ "$PROFILE" = release ] && flags+=(--release)
    cargo build "${flags[@]}"
fi
BIN="$TARGET/$PROFILE"
WORK="$(mktemp -d)"
RESULTS="$WORK/results.txt"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/examples/mock_claude" "$UPSTREAM_KEY" >"$WORK/mock.out" &
PIDS+=($!)
MOCK=$(bench_wait_addr "$WORK/mock.out" "mock claude on")
NGINX=$(bench_free_port)
bench_nginx "$WORK" "$NGINX" "$MOCK"

pat_config() { # name workers
    cat <<TOML
listen = "127.0.0.1:0"
data_dir = "$WORK/data-$1"
workers = $2

[upstream]
base_url = "http://$MOCK"

[[credentials]]
workspace = "bench"
env = "BENCH_ANTHROPIC_KEY"

[[policy.allow]]
principal = "anyone"
action = "*"
resource = "model:claude-*"

[[limits.budgets]]
scope = "workspace"
window = "day"
max_tokens = 1000000000000000
max_usd = 1000000000000.0

[[limits.budgets]]
scope = "user"
window = "month"
max_tokens = 1000000000000000

[[limits.rates]]
scope = "key"
requests_per_minute = 1000000000

[archive]
url = "$WORK/archive-$1"

[admin]
owner = "owner"

$(bench_audit_section)
TOML
}
export BENCH_ANTHROPIC_KEY="$UPSTREAM_KEY"
# The vault's (and the archive's) master key.
FORTRESS_MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export FORTRESS_MASTER_KEY
declare -A ADDR=([direct]="$MOCK" [nginx]="127.0.0.1:$NGINX")
declare -A KEY=([direct]="$UPSTREAM_KEY" [nginx]="$UPSTREAM_KEY")
for path in fortress shared; do
    case " $PATHS " in *" $path "*) ;; *) continue ;; esac
    pat_config "$path" "$([ "$path" = shared ] && echo 0 || echo "$WORKERS")" >"$WORK/$path.toml"
    KEY[$path]=$("$BIN/fortress-pat" keys --config "$WORK/$path.toml" create --workspace bench --subject wrk --team bench |
        sed -n 's/^key: //p')
    FORTRESS_LOG=warn "$BIN/fortress-pat" serve --config "$WORK/$path.toml" >"$WORK/$path.out" &
    PIDS+=($!)
    ADDR[$path]=$(bench_wait_addr "$WORK/$path.out" "listening on")
done

body() { # bytes stream
    python3 - "$1" "$2" <<'PY'
import json, sys
size, stream = int(sys.argv[1]), sys.argv[2] == "true"
pad = ("lorem ipsum " * (size // 12 + 1))[: max(size - 120, 1)]
print(json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
                  "messages": [{"role": "user", "content": pad}]}, separators=(",", ":")), end="")
PY
}
body 1024 false >"$WORK/1k.json"
body 16384 false >"$WORK/16k.json"
body 1024 true >"$WORK/stream.json"
for scen in $SCENARIOS; do
    for path in $PATHS; do
        lua="$WORK/$scen-$path.lua"
        {
            echo 'wrk.method = "POST"'
            echo 'wrk.headers["Content-Type"] = "application/json"'
            echo 'wrk.headers["anthropic-version"] = "2023-06-01"'
            echo "wrk.headers[\"x-api-key\"] = \"${KEY[$path]}\""
            echo "local f = io.open(\"$WORK/$scen.json\", \"rb\")"
            echo 'wrk.body = f:read("*a")'
            echo 'f:close()'
        } >"$lua"
        # Every path must answer correctly before it is measured.
        curl -sf -X POST "http://${ADDR[$path]}/v1/messages" -H "x-api-key: ${KEY[$path]}" \
            -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \
            --data-binary "@$WORK/$scen.json" | grep -q 'Echo' ||
            { echo "$path does not answer the $scen request" >&2; exit 1; }
    done
done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; Fortress workers: $WORKERS; profile: $PROFILE"
for round in $(seq "$ROUNDS"); do
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            for path in $PATHS; do
                bench_wrk "$scen" "$path" "$c" "$round" "http://${ADDR[$path]}/v1/messages" "$WORK/$scen-$path.lua"
            done
        done
    done
    if [ "$TTFB_N" -gt 0 ]; then
        for path in $PATHS; do
            read -r p50 p99 < <("$BIN/examples/ttfb" "http://${ADDR[$path]}/v1/messages" "${KEY[$path]}" "$WORK/stream.json" "$TTFB_N")
            echo "ttfb $path 1 $round 0 $p50 $p99" >>"$RESULTS"
            printf '  %-10s %-9s c=1   round %s: TTFB p50 %8s us  p99 %9s us\n' ttfb "$path" "$round" "$p50" "$p99"
        done
    fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
bench_summary direct nginx

#!/usr/bin/env bash
# Load benchmark of fortress-mcp: tools/call (2026-07-28, stateless) against a fast upstream
# directly, through a bare nginx proxy_pass hop, and through Fortress — all in the same run.
# Needs wrk and nginx: installed with apt-get when missing (idempotent). Binds 127.0.0.1 only,
# on free ephemeral ports. Prints each run and, at the end, the ratios to direct and to the
# nginx hop measured in the same run.
#
#   bash scripts/bench-mcp.sh                # release build, 10 s per run, 1 and 32 connections
#   PROFILE=debug DURATION=3s bash scripts/bench-mcp.sh
#   CONNS="1" ROUNDS=3 bash scripts/bench-mcp.sh   # rounds interleave the three paths
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
DURATION="${DURATION:-10s}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CONNS="${CONNS:-1 32}"
ROUNDS="${ROUNDS:-1}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(free_port); NGINX=$(free_port); FORTRESS=$(free_port)

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk nginx >/dev/null
fi
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
if [ "$PROFILE" = release ]; then
    cargo build --release -p fortress-mcp --bin fortress-mcp --example fast_upstream
else
    cargo build -p fortress-mcp --bin fortress-mcp --example fast_upstream
fi
BIN="$TARGET/$PROFILE"
WORK="$(mktemp -d)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN/examples/fast_upstream" "127.0.0.1:$UP" >/dev/null &
cat > "$WORK/nginx.conf" <<NGINX
pid $WORK/nginx.pid;
worker_processes 1;
error_log $WORK/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    upstream mcp { server 127.0.0.1:$UP; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX;
        location / { proxy_pass http://mcp; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
NGINX
"$NGINX_BIN" -c "$WORK/nginx.conf" -p "$WORK"
cat > "$WORK/fortress.toml" <<TOML
[server]
listen = "127.0.0.1:$FORTRESS"
[naming]
prefix = false
[[upstream]]
name = "fast"
url = "http://127.0.0.1:$UP/mcp"
TOML
FORTRESS_LOG=warn "$BIN/fortress-mcp" serve --config "$WORK/fortress.toml" >/dev/null &
cat > "$WORK/call.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "echo"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
LUA
# Wait for the three listeners (bounded).
for port in $UP $NGINX $FORTRESS; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
curl -sf -X POST "http://127.0.0.1:$FORTRESS/mcp" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
    -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo' --data "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$WORK/call.lua")" | grep -q '"ok"'

# wrk prints latencies with units; the summary works in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'; }
RESULTS="$WORK/results.tsv"
run() { # name port connections round
    local out="$WORK/$1-$3-$4.txt"
    wrk -t1 -c"$3" -d"$DURATION" --latency -s "$WORK/call.lua" "http://127.0.0.1:$2/mcp" > "$out"
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    p50=$(awk '$1=="50%" {print $2}' "$out")
    p99=$(awk '$1=="99%" {print $2}' "$out")
    printf '%-9s c=%-3s round %s %10s req/s  p50 %-9s p99 %s\n' "$1" "$3" "$4" "$rps" "$p50" "$p99"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$3" "$4" "$rps" "$(to_us "$p50")" "$(to_us "$p99")" >> "$RESULTS"
}
for round in $(seq "$ROUNDS"); do
    for c in $CONNS; do
        run direct $UP $c $round
        run nginx $NGINX $c $round
        run fortress $FORTRESS $c $round
    done
done
# Medians over rounds, then ratios within the run.
echo
printf '%-9s %-5s %10s %9s %9s %10s %10s %10s %12s\n' path conns 'req/s' 'p50 us' 'p99 us' 'x direct' 'x nginx' 'p50-direct' 'p50-nginx'
for c in $CONNS; do
    awk -F'\t' -v c="$c" '
        function median(list,   n, a, i, j, t) {
            n = split(list, a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $2 == c { rps[$1] = rps[$1] " " $4; p50[$1] = p50[$1] " " $5; p99[$1] = p99[$1] " " $6 }
        END {
            d = median(rps["direct"]); n = median(rps["nginx"]); dp = median(p50["direct"]); np = median(p50["nginx"])
            split("direct nginx fortress", paths, " ")
            for (i = 1; i <= 3; i++) {
                p = paths[i]; r = median(rps[p]); l = median(p50[p])
                printf "%-9s %-5s %10.0f %9.0f %9.0f %9.2fx %9.2fx %+10.0f %+12.0f\n", p, c, r, l, median(p99[p]), r / d, r / n, l - dp, l - np
            }
        }' "$RESULTS"
done

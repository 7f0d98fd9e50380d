#!/usr/bin/env bash
# Load benchmark of fortress-mcp: tools/call (2026-07-28, stateless) against a fast upstream
# directly, through a bare nginx proxy_pass hop, through Fortress with governance reduced to
# the minimum (anonymous loopback, permit-all policy, no redaction, no pinning: the part-1
# relay plus the always-on audit) and through Fortress with all governance on (API key,
# Cedar policy with an argument condition, redaction, tool pinning, signed audit) — all in
# the same run.
# Needs wrk and nginx (installed with apt-get when missing). Binds 127.0.0.1 only.
#
#   bash scripts/bench-mcp.sh                # release build, 10 s per run
#   PROFILE=debug DURATION=3s bash scripts/bench-mcp.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
DURATION="${DURATION:-10s}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
UP=3101; NGINX=3102; FORTRESS=3103; GOVERNED=3104

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk nginx >/dev/null
fi
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
nginx -c "$WORK/nginx.conf" -p "$WORK"
echo 'permit (principal, action, resource);' > "$WORK/permit-all.cedar"
cat > "$WORK/fortress.toml" <<TOML
[server]
listen = "127.0.0.1:$FORTRESS"
[naming]
prefix = false
[data]
dir = "$WORK/data-min"
[auth]
anonymous = true
[policy]
files = ["$WORK/permit-all.cedar"]
[redaction]
enabled = false
[pinning]
mode = "off"
[[upstream]]
name = "fast"
url = "http://127.0.0.1:$UP/mcp"
TOML
mkdir -p "$WORK/policies"
cat > "$WORK/policies/main.cedar" <<'CEDAR'
permit (principal, action in [Action::"tools/list", Action::"resources/list", Action::"prompts/list"], resource is Workspace);
permit (principal in Group::"bench", action in [Action::"tools/list", Action::"tools/call"], resource in Connector::"fast");
forbid (principal, action == Action::"tools/call", resource == Tool::"fast/echo")
unless { context has tool_arguments && context.tool_arguments has m && context.tool_arguments.m != "forbidden" };
CEDAR
echo 'type ToolArguments = { m?: String };' > "$WORK/policies/arguments.cedarschema"
cat > "$WORK/governed.toml" <<TOML
[server]
listen = "127.0.0.1:$GOVERNED"
[naming]
prefix = false
[data]
dir = "$WORK/data-gov"
[policy]
dir = "$WORK/policies"
[pinning]
mode = "trust_on_first_use"
[[upstream]]
name = "fast"
url = "http://127.0.0.1:$UP/mcp"
TOML
FORTRESS_LOG=warn "$BIN/fortress-mcp" serve --config "$WORK/fortress.toml" >/dev/null &
KEY=$("$BIN/fortress-mcp" keys --config "$WORK/governed.toml" create --workspace bench --subject wrk --group bench | sed -n 's/^key: //p')
FORTRESS_LOG=warn "$BIN/fortress-mcp" serve --config "$WORK/governed.toml" >/dev/null &
cat > "$WORK/call.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "echo"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
LUA
sed "s/^wrk.method = \"POST\"/wrk.method = \"POST\"\nwrk.headers[\"x-api-key\"] = \"$KEY\"/" "$WORK/call.lua" > "$WORK/call-key.lua"
# Wait for the three listeners (bounded).
for port in $UP $NGINX $FORTRESS $GOVERNED; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
curl -sf -X POST "http://127.0.0.1:$FORTRESS/mcp" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
    -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo' --data "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$WORK/call.lua")" | grep -q '"ok"'
# The governed gateway approves the tool on first sight (a list), then serves the call.
curl -sf -X POST "http://127.0.0.1:$GOVERNED/mcp" -H "x-api-key: $KEY" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
    -H 'Mcp-Method: tools/list' \
    --data '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' | grep -q '"echo"'
curl -sf -X POST "http://127.0.0.1:$GOVERNED/mcp" -H "x-api-key: $KEY" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
    -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo' --data "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$WORK/call.lua")" | grep -q '"ok"'

run() { # name port connections [script]
    wrk -t1 -c"$3" -d"$DURATION" --latency -s "$WORK/${4:-call.lua}" "http://127.0.0.1:$2/mcp" > "$WORK/$1-$3.txt"
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$1-$3.txt")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/$1-$3.txt")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/$1-$3.txt")
    printf '%-9s c=%-3s %10s req/s  p50 %-9s p99 %s\n' "$1" "$3" "$rps" "$p50" "$p99"
}
for c in 1 32; do
    run direct $UP $c
    run nginx $NGINX $c
    run fortress $FORTRESS $c
    run governed $GOVERNED $c call-key.lua
done

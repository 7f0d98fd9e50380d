#!/usr/bin/env bash
# Load benchmark of fortress-mcp: tools/call (2026-07-28, stateless) against a fast upstream
# (fortress-mcp/examples/fast_upstream.rs), all in the same run, rounds interleaved:
#   direct    the upstream itself (the baseline)
#   nginx     a bare nginx proxy_pass hop in front of it
#   fortress  Fortress with governance at its minimum (anonymous loopback subject, permit-all
#             Cedar policy, no redaction, no pinning; the durable audit trail is always on)
#   governed  Fortress with everything on (API key, Cedar policy with a group rule and an
#             argument condition, list and result redaction, tool pinning, signed audit)
#   shared    as `fortress`, on the shared multi-thread runtime (workers = 0), for an A/B
#             of the serving mode (not run unless listed in PATHS)
# Medians over ROUNDS rounds, ratios to `direct` and to `nginx`. Binds 127.0.0.1 only,
# on free ephemeral ports. Needs wrk and nginx (installed with apt-get when missing).
#
#   bash scripts/bench-mcp.sh                                  # release, 5 rounds of 5 s
#   ROUNDS=3 DURATION=3s CONNS="1 32" bash scripts/bench-mcp.sh
#   PATHS="direct nginx fortress shared" bash scripts/bench-mcp.sh
#   WORKERS=2              serving threads of the Fortress paths (default: nproc)
#   AUDIT_DURABILITY=process_crash  AUDIT_ACK=queued   an [audit] section in the Fortress
#              configs (needs the [audit] settings of the audit work; default: none, i.e.
#              power_loss durability, each call acknowledged once its event is durable)
#   PROFILE=debug  SKIP_BUILD=1
#   FORTRESS_BIN=path      the fortress-mcp binary of the Fortress paths (e.g. one built from
#              another commit, for a before/after in one run; default: the build's own)
#   CALLGRIND=N            instead of timing: runs each Fortress path in PATHS under
#              valgrind --tool=callgrind, warms it up, counts the instructions of N calls at
#              one connection and prints instructions per call (independent of machine load);
#              the profiles are kept in CALLGRIND_OUT (default ./callgrind-out) for
#              callgrind_annotate --inclusive=yes
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bench-lib.sh
PROFILE="${PROFILE:-release}"
DURATION="${DURATION:-5s}"
ROUNDS="${ROUNDS:-5}"
CONNS="${CONNS:-1 32}"
PATHS="${PATHS:-direct nginx fortress governed}"
WORKERS="${WORKERS:-$(nproc)}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CALLGRIND="${CALLGRIND:-}"
CALLGRIND_OUT="${CALLGRIND_OUT:-$ROOT/callgrind-out}"

bench_tools
if [ -z "${SKIP_BUILD:-}" ]; then
    if [ "$PROFILE" = release ]; then
        cargo build -q --release -p fortress-mcp --bin fortress-mcp --example fast_upstream
    else
        cargo build -q -p fortress-mcp --bin fortress-mcp --example fast_upstream
    fi
fi
BIN="$TARGET/$PROFILE"
FORTRESS_BIN="${FORTRESS_BIN:-$BIN/fortress-mcp}"
WORK="$(mktemp -d)"
RESULTS="$WORK/results.txt"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/examples/fast_upstream" 127.0.0.1:0 >"$WORK/upstream.out" &
PIDS+=($!)
UP=$(bench_wait_addr "$WORK/upstream.out" "fast upstream on")
NGINX=$(bench_free_port)
bench_nginx "$WORK" "$NGINX" "$UP"

AUDIT="$(bench_audit_section)"
echo 'permit (principal, action, resource);' >"$WORK/permit-all.cedar"
minimum_config() { # name workers
    cat <<TOML
[server]
listen = "127.0.0.1:0"
workers = $2
[naming]
prefix = false
[data]
dir = "$WORK/data-$1"
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
url = "http://$UP/mcp"
$AUDIT
TOML
}
minimum_config fortress "$WORKERS" >"$WORK/fortress.toml"
minimum_config shared 0 >"$WORK/shared.toml"
mkdir -p "$WORK/policies"
cat >"$WORK/policies/main.cedar" <<'CEDAR'
permit (principal, action in [Action::"tools/list", Action::"resources/list", Action::"prompts/list"], resource is Workspace);
permit (principal in Group::"bench", action in [Action::"tools/list", Action::"tools/call"], resource in Connector::"fast");
forbid (principal, action == Action::"tools/call", resource == Tool::"fast/echo")
unless { context has tool_arguments && context.tool_arguments has m && context.tool_arguments.m != "forbidden" };
CEDAR
echo 'type ToolArguments = { m?: String };' >"$WORK/policies/arguments.cedarschema"
cat >"$WORK/governed.toml" <<TOML
[server]
listen = "127.0.0.1:0"
workers = $WORKERS
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
url = "http://$UP/mcp"
$AUDIT
TOML
KEY=$("$FORTRESS_BIN" keys --config "$WORK/governed.toml" create --workspace bench --subject wrk --group bench | sed -n 's/^key: //p')

declare -A ADDR=([direct]="$UP" [nginx]="127.0.0.1:$NGINX")
declare -A PID=()
for path in fortress shared governed; do
    case " $PATHS " in *" $path "*) ;; *) continue ;; esac
    if [ -n "$CALLGRIND" ]; then
        mkdir -p "$CALLGRIND_OUT"
        FORTRESS_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$CALLGRIND_OUT/$path.%p" \
            "$FORTRESS_BIN" serve --config "$WORK/$path.toml" >"$WORK/$path.out" 2>"$WORK/$path.valgrind" &
    else
        FORTRESS_LOG=warn "$FORTRESS_BIN" serve --config "$WORK/$path.toml" >"$WORK/$path.out" &
    fi
    PIDS+=($!)
    PID[$path]=$!
    # Under valgrind the start takes far longer than bench_wait_addr's minute: five tries.
    for try in 1 2 3 4 5; do
        ADDR[$path]=$(bench_wait_addr "$WORK/$path.out" "listening on" 2>/dev/null) && break
        [ "$try" = 5 ] && { echo "$path did not start" >&2; exit 1; }
    done
done

BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
cat >"$WORK/call.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "echo"
wrk.body = '$BODY'
LUA
sed "s/^wrk.method = \"POST\"/wrk.method = \"POST\"\nwrk.headers[\"x-api-key\"] = \"$KEY\"/" "$WORK/call.lua" >"$WORK/call-key.lua"
mcp_post() { # addr method [extra curl args...]
    local addr=$1 method=$2
    shift 2
    curl -sf -X POST "http://$addr/mcp" "$@" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
        -H "Mcp-Method: $method"
}
# Every path must answer the call correctly before it is measured.
for path in $PATHS; do
    extra=()
    [ "$path" = governed ] && extra=(-H "x-api-key: $KEY")
    if [ "$path" = governed ]; then
        # The governed gateway approves the tool on first sight (a list), then serves it.
        mcp_post "${ADDR[$path]}" tools/list "${extra[@]}" \
            --data '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' |
            grep -q '"echo"'
    fi
    mcp_post "${ADDR[$path]}" tools/call "${extra[@]}" -H 'Mcp-Name: echo' --data "$BODY" | grep -q '"ok"' ||
        { echo "$path does not answer tools/call" >&2; exit 1; }
done

if [ -n "$CALLGRIND" ]; then
    # calls ADDR N [x-api-key]: N tools/call on one keep-alive connection, each checked.
    calls() {
        python3 - "$1" "$2" "$BODY" "${3:-}" <<'PY'
import http.client, sys
addr, n, body, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
host, port = addr.split(":")
conn = http.client.HTTPConnection(host, int(port))
headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
if key:
    headers["x-api-key"] = key
for _ in range(n):
    conn.request("POST", "/mcp", body, headers)
    answer = conn.getresponse().read()
    if b'"ok"' not in answer:
        sys.exit(f"unexpected answer: {answer[:200]!r}")
PY
    }
    for path in fortress shared governed; do
        case " $PATHS " in *" $path "*) ;; *) continue ;; esac
        pid=${PID[$path]}
        key=""
        [ "$path" = governed ] && key=$KEY
        calls "${ADDR[$path]}" 200 "$key"
        callgrind_control -z "$pid" >/dev/null
        callgrind_control -i on "$pid" >/dev/null
        calls "${ADDR[$path]}" "$CALLGRIND" "$key"
        callgrind_control -i off "$pid" >/dev/null
        callgrind_control -d "counted-$path" "$pid" >/dev/null
        file=$(ls -t "$CALLGRIND_OUT/$path.$pid".* | head -1)
        total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
        echo "callgrind $path: $CALLGRIND calls, $total instructions, $((total / CALLGRIND)) per call ($file)"
    done
    exit 0
fi

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; Fortress workers: $WORKERS; profile: $PROFILE"
for round in $(seq "$ROUNDS"); do
    for c in $CONNS; do
        for path in $PATHS; do
            lua="$WORK/call.lua"
            [ "$path" = governed ] && lua="$WORK/call-key.lua"
            bench_wrk tools-call "$path" "$c" "$round" "http://${ADDR[$path]}/mcp" "$lua"
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
bench_summary direct nginx governed fortress

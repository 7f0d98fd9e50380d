#!/usr/bin/env bash
# Instructions per PAT call: runs `fortress-pat serve` (one worker, everything on as in
# bench-pat.sh, audit acknowledged when queued) under callgrind and sends N sequential 1 KB
# calls on one keep-alive connection. Run it twice (e.g. N=100 and N=600) and divide the
# difference of the totals by the difference of N to cancel start-up and shutdown.
#   OUT=/tmp/cg bash scripts/profile-pat-call.sh 600   # needs valgrind and a release build
set -euo pipefail
N=$1
OUT="${OUT:-/tmp/cg}"
mkdir -p "$OUT"
BIN="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/release"
W=$(mktemp -d)
KEYU="sk-ant-bench-upstream-0123456789"
$BIN/examples/mock_claude "$KEYU" > $W/mock.out &
MP=$!
for _ in $(seq 100); do grep -q "mock claude on" "$W/mock.out" 2>/dev/null && break; sleep 0.1; done
MOCK=$(grep -oE '127\.0\.0\.1:[0-9]+' $W/mock.out | head -1)
cat > $W/c.toml <<TOML
listen = "127.0.0.1:0"
data_dir = "$W/data"
workers = 1
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
url = "$W/archive"
[admin]
owner = "owner"
[audit]
acknowledge = "queued"
TOML
export BENCH_ANTHROPIC_KEY="$KEYU"
export FORTRESS_MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
KEY=$($BIN/fortress-pat keys --config $W/c.toml create --workspace bench --subject wrk --team bench | sed -n 's/^key: //p')
FORTRESS_LOG=warn valgrind --tool=callgrind --callgrind-out-file=$OUT/out.$N $BIN/fortress-pat serve --config $W/c.toml > $W/s.out 2>$W/s.err &
SP=$!
for _ in $(seq 600); do grep -q "listening on" "$W/s.out" 2>/dev/null && break; sleep 0.2; done
ADDR=$(grep -oE '127\.0\.0\.1:[0-9]+' $W/s.out | head -1)
python3 - "$ADDR" "$KEY" "$N" <<'PY'
import http.client, json, sys
addr, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
h, p = addr.split(":")
c = http.client.HTTPConnection(h, int(p))
body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "lorem ipsum " * 75}]})
for i in range(n):
    c.request("POST", "/v1/messages", body, {"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
print("done", n)
PY
kill -INT $SP; wait $SP || true
kill $MP
rm -rf $W

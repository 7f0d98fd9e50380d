# Helpers shared by the load benchmarks (sourced by bench-mcp.sh and bench-pat.sh).
# Results are appended to "$RESULTS" as lines: scenario path conns round rps p50_us p99_us.

bench_tools() {
    if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
        apt-get update -qq && apt-get install -y -qq wrk nginx >/dev/null
    fi
}

# An [audit] section from AUDIT_DURABILITY / AUDIT_ACK (empty when neither is set).
bench_audit_section() {
    [ -z "${AUDIT_DURABILITY:-}${AUDIT_ACK:-}" ] && return 0
    echo "[audit]"
    [ -n "${AUDIT_DURABILITY:-}" ] && echo "durability = \"$AUDIT_DURABILITY\""
    [ -n "${AUDIT_ACK:-}" ] && echo "acknowledge = \"$AUDIT_ACK\""
    return 0
}

# A TCP port free on 127.0.0.1 right now (for nginx, which cannot report a port-0 bind).
bench_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_wait_addr FILE PATTERN: waits (at most 60 s) for a line of FILE containing PATTERN,
# prints the 127.0.0.1:PORT it names.
bench_wait_addr() {
    local line
    for _ in $(seq 600); do
        if line=$(grep -m1 -- "$2" "$1" 2>/dev/null); then
            grep -oE '127\.0\.0\.1:[0-9]+' <<<"$line" | head -1
            return 0
        fi
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    return 1
}

# bench_wait_port PORT: waits (at most 10 s) until 127.0.0.1:PORT accepts connections.
bench_wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# bench_nginx WORKDIR LISTEN_PORT UPSTREAM_HOST:PORT: a bare proxy_pass hop (one worker,
# keep-alive upstream connections, no request or response buffering).
bench_nginx() {
    cat >"$1/nginx.conf" <<NGINX
pid $1/nginx.pid;
worker_processes 1;
error_log $1/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $1;
    upstream up { server $3; keepalive 64; }
    server {
        listen 127.0.0.1:$2;
        client_max_body_size 64m;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
NGINX
    nginx -c "$1/nginx.conf" -p "$1"
    bench_wait_port "$2"
}

# wrk's latency (e.g. 42.10us, 1.20ms, 2.00s) in microseconds.
bench_us() {
    awk '{ v = $1
        if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
        else print v }'
}

# bench_wrk SCENARIO PATH CONNS ROUND URL LUA: one wrk run, recorded in $RESULTS.
bench_wrk() {
    local out="$WORK/wrk-$1-$2-$3-$4.txt" rps p50 p99
    wrk -t1 -c"$3" -d"$DURATION" --latency -s "$6" "$5" >"$out" 2>&1 || true
    if grep -qE 'Non-2xx|Socket errors' "$out"; then
        echo "warning: errors in $out:" >&2
        grep -E 'Non-2xx|Socket errors' "$out" >&2
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    p50=$(awk '$1=="50%" {print $2}' "$out" | bench_us)
    p99=$(awk '$1=="99%" {print $2}' "$out" | bench_us)
    echo "$1 $2 $3 $4 ${rps:-0} ${p50:-0} ${p99:-0}" >>"$RESULTS"
    printf '  %-10s %-9s c=%-3s round %s: %10s req/s  p50 %8s us  p99 %9s us\n' \
        "$1" "$2" "$3" "$4" "${rps:-0}" "${p50:-0}" "${p99:-0}"
}

# bench_summary BASELINE HOP [EXTRA_RATIO_NUM EXTRA_RATIO_DEN]: median per scenario, path and
# connection count, as a Markdown table with ratios to the baseline path and the hop path
# of the same scenario and connection count.
bench_summary() {
    python3 - "$RESULTS" "$1" "$2" "${3:-}" "${4:-}" <<'PY'
import sys, statistics
from collections import OrderedDict
results, base, hop, num, den = sys.argv[1:6]
rows = OrderedDict()
for line in open(results):
    scen, path, conns, rnd, rps, p50, p99 = line.split()
    rows.setdefault((scen, int(conns)), OrderedDict()).setdefault(path, []).append(
        (float(rps), float(p50), float(p99)))
def fmt_us(us):
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"
print("| scenario | path | conns | req/s (median) | rounds | × " + base + " | × " + hop
      + " | p50 | p50 − " + base + " | p99 | p99 − " + base + " |")
print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for (scen, conns), paths in rows.items():
    med = {p: tuple(statistics.median(v[i] for v in runs) for i in range(3))
           for p, runs in paths.items()}
    b, h = med.get(base), med.get(hop)
    for path, (rps, p50, p99) in med.items():
        rounds = " / ".join(f"{r[0]:.0f}" for r in paths[path])
        x_base = f"{rps / b[0]:.2f}×" if b and b[0] else "—"
        x_hop = f"{rps / h[0]:.2f}×" if h and h[0] else "—"
        d50 = f"{p50 - b[1]:+.0f} µs" if b and path != base else "—"
        d99 = f"{(p99 - b[2]) / 1000:+.2f} ms" if b and path != base else "—"
        print(f"| {scen} | {path} | {conns} | {rps:,.0f} | {rounds} | {x_base} | {x_hop} "
              f"| {fmt_us(p50)} | {d50} | {fmt_us(p99)} | {d99} |")
    if num and den and num in med and den in med and med[den][0]:
        print(f"| {scen} | {num} ÷ {den} | {conns} | {med[num][0] / med[den][0]:.2f}× | | | | | | | |")
PY
}

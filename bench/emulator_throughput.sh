#!/usr/bin/env bash
# Throughput of the Partner Center emulator (test/pc_emulator.py) under wrk.
#
#   bench/emulator_throughput.sh
#
# Starts the emulator on a free loopback port, gets an app token from its
# token endpoint with curl, then runs wrk twice over generic customer GUIDs
# with 256 keep-alive connections and 2 threads for 10 s:
#   (a) injected latency 20 ms  -- ideal: 256 / 0.020 s = 12,800 req/s
#   (b) injected latency 0      -- the emulator's raw ceiling
# and prints requests/s for each plus (a) / 12,800.  Every step has a time
# limit and the emulator is stopped on exit, whatever happens.
#
# Environment: PYTHON (default python3), DURATION (default 10s),
# CONNECTIONS (default 256), THREADS (default 2), LATENCY_MS (default 20).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-python3}
duration=${DURATION:-10s}
conns=${CONNECTIONS:-256}
threads=${THREADS:-2}
latency=${LATENCY_MS:-20}

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found; installing the Debian package" >&2
    timeout 300 apt-get install -y wrk >/dev/null
fi
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

work=$(mktemp -d)
emu_pid=
cleanup() {
    if [ -n "$emu_pid" ] && kill -0 "$emu_pid" 2>/dev/null; then
        kill -TERM "$emu_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$emu_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$emu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- start the emulator on a free port (--port 0; it prints the port) -------
"$python" "$root/test/pc_emulator.py" --port 0 --latency-ms "$latency" \
    >"$work/emu.out" 2>"$work/emu.err" &
emu_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's#^pc_emulator listening on http://127\.0\.0\.1:\([0-9]*\)$#\1#p' "$work/emu.out")
    [ -n "$port" ] && break
    kill -0 "$emu_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "emulator did not start:" >&2; cat "$work/emu.err" >&2; exit 1
fi
base="http://127.0.0.1:$port"
ctl() { curl -sf --max-time 10 -X "$1" "$base/_emulator/$2"; }

get_token() {
    curl -sf --max-time 10 "$base/bench-partner/oauth2/token" \
        --data-urlencode grant_type=client_credentials \
        --data-urlencode client_id=pcqual-test-app \
        --data-urlencode client_secret=pcqual-test-secret \
        --data-urlencode resource=https://api.partnercenter.microsoft.com |
        "$python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

write_lua() {  # $1 = token
    cat >"$work/bench.lua" <<EOF
-- GET qualifications of generic customer GUIDs (4096 of them, none a fixture)
local token = "$1"
local n = 0
local headers = {
  ["Authorization"] = "Bearer " .. token,
  ["Accept"] = "application/json",
  ["MS-CorrelationId"] = "00000000-0000-4000-8000-00000000be0c",
}
request = function()
  n = n + 1
  local path = string.format(
    "/v1/customers/be0c%04x-0000-4000-8000-%012x/qualifications",
    math.random(0, 65535), n % 4096)
  return wrk.format("GET", path, headers)
end
EOF
}

run() {  # $1 = label, $2 = latency ms; prints requests/s on fd 3
    local label=$1 lat=$2
    ctl POST reset >/dev/null
    ctl POST "config?latency_ms=$lat" >/dev/null
    write_lua "$(get_token)"
    echo "== ($label) latency ${lat} ms: wrk -t$threads -c$conns -d$duration" >&2
    timeout 60 wrk -t"$threads" -c"$conns" -d"$duration" -s "$work/bench.lua" "$base/" \
        >"$work/wrk.$label" 2>&1 || { cat "$work/wrk.$label" >&2; exit 1; }
    sed 's/^/   /' "$work/wrk.$label" >&2
    echo "   emulator stats: $(ctl GET stats)" >&2
    awk '/^Requests\/sec:/ {print $2}' "$work/wrk.$label"
}

rps_a=$(run a "$latency")
rps_b=$(run b 0)

ideal=$(awk -v c="$conns" -v l="$latency" 'BEGIN { printf "%.0f", c / (l / 1000.0) }')
echo
echo "cores: $(nproc)   connections: $conns   threads: $threads   duration: $duration"
printf '(a) latency %s ms : %10.0f req/s\n' "$latency" "$rps_a"
printf '(b) latency 0 ms  : %10.0f req/s\n' "$rps_b"
awk -v a="$rps_a" -v i="$ideal" -v c="$conns" -v l="$latency" \
    'BEGIN { printf "(a) / ideal (%d conns / %s ms = %d req/s) = %.3f\n", c, l, i, a / i }'

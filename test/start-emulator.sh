#!/bin/bash
# Sourced by the scripts that need the emulator: starts it on
# $PCQUAL_EMULATOR_PORT (default 18765, plain HTTP; 18766 to 18769 HTTPS with
# the certificates test/prepare-test-files.sh made, 18770 the redirect
# target) and the test proxy (test/connect_proxy.py) on the port after those
# (18771), stops both on exit, and waits until they answer.  Its own curl
# commands never use a proxy from the environment (--noproxy '*').
port=${PCQUAL_EMULATOR_PORT:-18765}
proxy_port=$((port + 6))
tls_dir=${PCQUAL_TEST_DIR:-/tmp/pcqual-test}/tls
python3 test/pc_emulator.py --port "$port" --tls-dir "$tls_dir" --quiet &
emulator=$!
python3 test/connect_proxy.py --port "$proxy_port" --quiet &
test_proxy=$!
# `|| true`: the test proxy ends by SIGTERM (wait returns 143), which under
# a caller's set -e would become the caller's exit status.
trap 'kill $emulator $test_proxy 2>/dev/null; wait $emulator $test_proxy 2>/dev/null || true' EXIT
answers() {
	curl -sf --noproxy '*' "$1" >/dev/null
}
for _ in $(seq 1 100); do
	answers "http://127.0.0.1:$port/_emulator/health" &&
		answers "http://127.0.0.1:$proxy_port/_proxy/health" && break
	sleep 0.1
done
if ! answers "http://127.0.0.1:$port/_emulator/health"; then
	echo "the Partner Center emulator did not start" >&2
	exit 1
fi
if ! answers "http://127.0.0.1:$proxy_port/_proxy/health"; then
	echo "the test proxy (test/connect_proxy.py) did not start on 127.0.0.1:$proxy_port" >&2
	exit 1
fi

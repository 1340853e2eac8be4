#!/bin/bash
# Sourced by the scripts that need the emulator: starts it on
# $PCQUAL_EMULATOR_PORT (default 18765, plain HTTP; 18766 to 18769 HTTPS with
# the certificates test/prepare-test-files.sh made, 18770 the redirect
# target), stops it on exit, and waits until it answers.
port=${PCQUAL_EMULATOR_PORT:-18765}
tls_dir=${PCQUAL_TEST_DIR:-/tmp/pcqual-test}/tls
python3 test/pc_emulator.py --port "$port" --tls-dir "$tls_dir" --quiet &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null' EXIT
for _ in $(seq 1 100); do
	curl -sf "http://127.0.0.1:$port/_emulator/health" >/dev/null && break
	sleep 0.1
done
if ! curl -sf "http://127.0.0.1:$port/_emulator/health" >/dev/null; then
	echo "the Partner Center emulator did not start" >&2
	exit 1
fi

#!/bin/bash
# Sourced by the scripts that need the emulator: starts it on
# $PCQUAL_EMULATOR_PORT (default 18765), stops it on exit, and waits until
# it answers.
port=${PCQUAL_EMULATOR_PORT:-18765}
python3 test/pc_emulator.py --port "$port" --quiet &
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

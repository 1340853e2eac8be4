#!/bin/bash
# Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER, PGPASSWORD are set):
# starts the emulator, runs pg_regress and pgTAP, stops the emulator.
set -uo pipefail
cd "$(dirname "$0")/.."

port=${PCQUAL_EMULATOR_PORT:-18765}
python3 test/pc_emulator.py --port "$port" --quiet &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null' EXIT
for _ in $(seq 1 100); do
	curl -sf "http://127.0.0.1:$port/_emulator/health" >/dev/null && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$port/_emulator/health" >/dev/null || {
	echo "the Partner Center emulator did not start" >&2
	exit 1
}

status=0
python3 test/emulator_selftest.py 2>&1 | tail -3 || status=1

if ! make -s installcheck; then
	status=1
	[ -f regression.diffs ] && cat regression.diffs
fi

dropdb --if-exists pcqual_tap
createdb pcqual_tap
psql -q -X -v ON_ERROR_STOP=1 -d pcqual_tap \
	-c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION pcqual' -c 'CREATE EXTENSION dblink' || status=1
pg_prove -d pcqual_tap --failures test/*.sql || status=1

exit $status

#!/bin/bash
# Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER, PGPASSWORD are set):
# starts the emulator, runs pg_regress and pgTAP, stops the emulator.
set -uo pipefail
cd "$(dirname "$0")/.."

source test/start-emulator.sh

status=0
python3 test/emulator_selftest.py 2>&1 | tail -3 || status=1

if ! make -s installcheck; then
	status=1
	[ -f regression.diffs ] && cat regression.diffs
fi

dropdb --if-exists pcqual_tap
createdb pcqual_tap
psql -q -X -v ON_ERROR_STOP=1 -v db=pcqual_tap -d pcqual_tap -f test/emulator-settings.psql || status=1
psql -q -X -v ON_ERROR_STOP=1 -d pcqual_tap \
	-c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION pcqual' -c 'CREATE EXTENSION dblink' \
	-c 'CREATE EXTENSION pg_cron' || status=1
pg_prove -d pcqual_tap --failures test/*.sql || status=1
# dates through the backend's own date code in this server (test/fuzz/README)
test/fuzz/dates-in-server.sh || status=1

exit $status

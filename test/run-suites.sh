#!/bin/bash
# Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER, PGPASSWORD are set):
# starts the emulator, runs pg_regress and pgTAP, stops the emulator.
set -uo pipefail
cd "$(dirname "$0")/.."

source test/start-emulator.sh

status=0
# PGXN metadata: valid against the 1.0.0 spec and at pcqual.control's version
python3 test/check-meta.py || status=1
python3 test/check-meta.py --self-test >/dev/null || status=1
# the emulator's self-test: its summary, or everything when it fails
if ! selftest=$(python3 test/emulator_selftest.py 2>&1); then
	status=1
	echo "$selftest"
else
	tail -3 <<<"$selftest"
fi

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

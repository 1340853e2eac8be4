#!/bin/bash
#
# test/fuzz/dates-in-server.sh [count]
#
# The fuzzer (test/fuzz/run.sh) cannot run the backend's date routines --
# ParseDateTime, DecodeDateTime and tm2timestamp are only in the postgres
# executable -- so this puts dates through the real code path in a running
# server: the date strings of the fuzzer's corpus and regressions, a fixed
# list of adversarial ones and `count` (default 3000) generated ones
# (test/fuzz/date_cases.py says which) are served by the Partner Center
# emulator as vetting dates of a few customers (/_emulator/customer), and
# fetched with pc_qualifications(uuid) and pc_fetch_qualifications(uuid[])
# under several TimeZone and DateStyle settings.  Every customer must
# succeed, the server must stay up, every date must come back as the
# backend's own timestamptz input of the same text and an independent
# reading both give -- or NULL with one WARNING 22007 naming its customer and
# quoting its text, as src/functions.c reports a date that is not ISO 8601.
# About 3 seconds.
#
# Runs where test/run-suites.sh runs: inside pg_virtualenv (PGHOST, PGPORT,
# PGUSER set; pcqual installed and preloaded; test/prepare-test-files.sh
# run), e.g.
#   flock /tmp/pcqual-tests.lock pg_virtualenv -t -v 15 $(test/emulator-settings.sh) \
#       -- test/fuzz/dates-in-server.sh
# It uses the emulator on 127.0.0.1:18765 when one answers there, else
# starts one (test/start-emulator.sh) for its own run.  It works in a
# database of its own, pcqual_dates (UTF-8), dropped afterwards unless
# DATES_KEEP=1 (which also keeps the cases and results), and clears the
# fixtures it set.  DATES_SEED=n generates other strings (the default seed
# is fixed, so that a run repeats the last one).

set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2

COUNT=${1:-3000}
case "$COUNT" in
	''|*[!0-9]*)
		echo "usage: $0 [count]" >&2
		exit 2
		;;
esac
if [ -z "${PGHOST:-}${PGPORT:-}" ]; then
	echo "$0: run inside pg_virtualenv (see the comment at the top)" >&2
	exit 2
fi

port=${PCQUAL_EMULATOR_PORT:-18765}
base="http://127.0.0.1:$port"
if ! curl -sf --noproxy '*' -o /dev/null "$base/_emulator/health"; then
	# shellcheck source=test/start-emulator.sh
	source test/start-emulator.sh || exit 1
fi

db=pcqual_dates
work=$(mktemp -d /tmp/pcqual-dates.XXXXXX)
tenants=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
	local t
	for t in "${tenants[@]}"; do
		curl -sf --noproxy '*' -o /dev/null -X POST -H 'Content-Type: application/json' \
			--data-binary '{"clear": true}' "$base/_emulator/customer?tenant=$t" || true
	done
	if [ "${DATES_KEEP:-0}" = 1 ]; then
		echo "== kept $work and database $db"
	else
		rm -rf "$work"
		dropdb --if-exists "$db" 2>/dev/null || true
	fi
}
# start-emulator.sh's trap stops the emulator it started: keep it
previous_trap=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
trap 'cleanup; '"$previous_trap" EXIT

python3 test/fuzz/date_cases.py make "$work" --count "$COUNT" ${DATES_SEED:+--seed "$DATES_SEED"} \
	>"$work/make.log" || {
	cat "$work/make.log" >&2
	exit 2
}
head -1 "$work/make.log"
mapfile -t tenants < <(sed -n 's/^tenant //p' "$work/make.log")

for t in "${tenants[@]}"; do
	if ! curl -sf --noproxy '*' -o /dev/null -X POST -H 'Content-Type: application/json' \
		--data-binary "@$work/fixture-$t.json" "$base/_emulator/customer?tenant=$t"; then
		echo "$0: the emulator did not take the fixture for $t" >&2
		exit 1
	fi
done

export PGCLIENTENCODING=UTF8
dropdb --if-exists "$db" 2>/dev/null
if ! { createdb -E UTF8 -T template0 --locale=C "$db" &&
	psql -q -X -v ON_ERROR_STOP=1 -v db="$db" -d "$db" -f test/emulator-settings.psql &&
	psql -q -X -v ON_ERROR_STOP=1 -d "$db" -c 'CREATE EXTENSION pcqual'; }; then
	echo "$0: could not set up database $db" >&2
	exit 1
fi

start=$(date +%s%N)
psql -q -X -d "$db" -f "$work/run.sql" >"$work/stdout.txt" 2>"$work/stderr.txt"
status=$?
end=$(date +%s%N)
if [ "$status" -ne 0 ] || ! grep -q 'the backend is still there' "$work/stdout.txt"; then
	echo "== FAILED: psql exited with status $status; its last words:"
	grep -v -E '^(WARNING|DETAIL|LOCATION):  ' "$work/stderr.txt" | tail -20
	# a crashed backend takes the postmaster through recovery: say so
	psql -X -At -d "$db" -c "SELECT 'the server answers again'" 2>&1 | tail -1
	exit 1
fi
echo "== fetched in $(((end - start) / 1000000)) ms"

if ! python3 test/fuzz/date_cases.py check "$work"; then
	echo "== FAILED (DATES_KEEP=1 keeps $work: cases.csv, results.csv, backend.csv, stderr.txt)"
	exit 1
fi
echo "== passed"
exit 0

#!/bin/bash
# test/pg-upgrade.sh: pg_upgrade of a cluster whose pcqual tables hold data,
# from PostgreSQL $PCQUAL_UPGRADE_FROM (default 15) to the distribution's
# major (test/pg-major.sh, or $PG_MAJOR). Run as root, like check.sh, where
# both majors' server and server-dev packages are installed: test/matrix.sh
# runs it in its trixie root, which also holds bookworm's postgresql-15 (as
# a bookworm machine upgraded to trixie keeps it).
#
# 1. Builds and installs pcqual for both majors.
# 2. Old cluster, preloading pcqual: CREATE EXTENSION, two syncs against
#    the emulator (the second after a customer changed), so that
#    pc_qualification_state, pc_qualification_changes and pc_customer_sync
#    hold rows; then counts and checksums of every row.
# 3. pg_upgrade to a new cluster whose postgresql.conf does NOT preload
#    pcqual: pg_upgrade's check of loadable libraries then loads pcqual in
#    a server in binary-upgrade mode, which pcqual must allow.
# 4. The new cluster, now preloading pcqual: the same counts and checksums,
#    pc_qualifications() against the emulator, a sync that appends to the
#    history, and ALTER EXTENSION pcqual UPDATE changing nothing.
# Exits non-zero, with a message saying what differed, on any failure.
set -euo pipefail
source "$(dirname "$0")/common.sh"

old=${PCQUAL_UPGRADE_FROM:-15}
new=$pg_major
old_bin=/usr/lib/postgresql/$old/bin
new_bin=/usr/lib/postgresql/$new/bin
work=/tmp/pcqual-upgrade
pg_port=${PCQUAL_UPGRADE_PORT:-50432}

fail() {
	echo "pg-upgrade: FAILED: $*" >&2
	exit 1
}

[ "$old" != "$new" ] || fail "PostgreSQL $old is also the new major; set PCQUAL_UPGRADE_FROM"
for bin in "$old_bin" "$new_bin"; do
	if [ ! -x "$bin/pg_ctl" ] || [ ! -x "$bin/pg_config" ]; then
		fail "$bin has no pg_ctl or pg_config: install postgresql-N and" \
			"postgresql-server-dev-N for PostgreSQL $old and $new" \
			"(test/matrix.sh trixie builds a root with both)"
	fi
done

echo "pg-upgrade: building pcqual for PostgreSQL $old and $new"
# Each major's objects from scratch; the new major's last, so that the tree
# is left as common.sh built it.
for bin in "$old_bin" "$new_bin"; do
	make -s clean PG_CONFIG="$bin/pg_config"
	make -s -j"$(nproc)" PG_CONFIG="$bin/pg_config"
	make -s install PG_CONFIG="$bin/pg_config"
done

source test/start-emulator.sh
emulator_url=http://127.0.0.1:${PCQUAL_EMULATOR_PORT:-18765}

# The servers run as postgres, with their socket in $work; stopped on exit
# with the emulator (start-emulator.sh's trap, replaced here).
repo=$(pwd)
rm -rf "$work"
install -d -o postgres -g postgres "$work"
cd "$work"
psql_bin=$new_bin/psql
source "$repo/test/upgrade-lib.sh"
stop_servers() {
	local d
	for d in "$work/old" "$work/new"; do
		if [ -f "$d/postmaster.pid" ]; then
			as_postgres "$new_bin/pg_ctl" stop -D "$d" -m immediate -s 2>/dev/null ||
				as_postgres "$old_bin/pg_ctl" stop -D "$d" -m immediate -s 2>/dev/null || true
		fi
	done
	kill "$emulator" 2>/dev/null
	wait "$emulator" 2>/dev/null
}
trap stop_servers EXIT

echo "pg-upgrade: PostgreSQL $old cluster preloading pcqual, with synced data"
init_cluster "$old_bin" "$work/old"
preload_pcqual "$work/old"
start_cluster "$old_bin" "$work/old"
create_synced_database "on $old"
stop_cluster "$old_bin" "$work/old"

echo "pg-upgrade: pg_upgrade to PostgreSQL $new, pcqual not preloaded by the new cluster"
init_cluster "$new_bin" "$work/new"
if ! as_postgres "$new_bin/pg_upgrade" -b "$old_bin" -B "$new_bin" \
	-d "$work/old" -D "$work/new" -p "$pg_port" -P "$pg_port" -s "$work" -U postgres \
	>"$work/pg_upgrade.log" 2>&1; then
	cat "$work/pg_upgrade.log" >&2
	# Its check of loadable libraries names each failure, with the error.
	find "$work/new" -name loadable_libraries.txt -exec cat {} + >&2 2>/dev/null || true
	fail "pg_upgrade from PostgreSQL $old to $new"
fi
grep -q 'Upgrade Complete' "$work/pg_upgrade.log" ||
	{ cat "$work/pg_upgrade.log" >&2; fail "pg_upgrade did not report completion"; }

echo "pg-upgrade: PostgreSQL $new cluster, now preloading pcqual"
preload_pcqual "$work/new"
start_cluster "$new_bin" "$work/new"
after=$(snapshot)
if [ "$after" != "$before" ]; then
	diff <(echo "$before") <(echo "$after") >&2 || true
	fail "the data or the extension differ after pg_upgrade (< $old, > $new)"
fi
echo "pg-upgrade: every row, the identity and the extension's objects as on $old"

expect_customer_answer "on PostgreSQL $new"
# The history goes on where it stopped: the new change rows follow the old.
expect_history_goes_on "on PostgreSQL $new"

# Already at the default version: UPDATE says so and changes nothing.
before_update=$(snapshot | grep -E '^(extension|members) ')
notice=$(sql -c "ALTER EXTENSION pcqual UPDATE" 2>&1) ||
	fail "ALTER EXTENSION pcqual UPDATE on PostgreSQL $new: $notice"
after_update=$(snapshot | grep -E '^(extension|members) ')
[ "$after_update" = "$before_update" ] ||
	fail "ALTER EXTENSION pcqual UPDATE changed the extension: $before_update -> $after_update"
case $notice in
*"is already installed"*) ;;
*) fail "ALTER EXTENSION pcqual UPDATE said '$notice', expected that the version is already installed" ;;
esac

stop_cluster "$new_bin" "$work/new"
echo "pg-upgrade: passed (PostgreSQL $old to $new, $(echo "$before" | grep -c '^pc_') tables carried over)"

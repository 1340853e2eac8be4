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
as_postgres() {
	runuser -u postgres -- "$@"
}
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

# SQL on stdin, in database pcqual_upgrade; prints the rows, unaligned.
sql() {
	as_postgres "$new_bin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" \
		-d "${db:-pcqual_upgrade}" "$@"
}

# Same options for both clusters, as pg_upgrade requires (data checksums:
# PostgreSQL 18's initdb enables them by default).
init_cluster() {
	local bin=$1 dir=$2
	as_postgres "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C \
		--data-checksums >"$dir.initdb.log" 2>&1 ||
		{ cat "$dir.initdb.log" >&2; fail "initdb $dir"; }
	cat >>"$dir/postgresql.conf" <<-EOF
		port = $pg_port
		listen_addresses = ''
		unix_socket_directories = '$work'
	EOF
}
preload_pcqual() {
	echo "shared_preload_libraries = 'pcqual'" >>"$1/postgresql.conf"
}
start_cluster() {
	local bin=$1 dir=$2
	as_postgres "$bin/pg_ctl" start -D "$dir" -l "$dir.log" -w -s ||
		{ cat "$dir.log" >&2; fail "the server in $dir did not start"; }
}
stop_cluster() {
	as_postgres "$1/pg_ctl" stop -D "$2" -w -s
}
set_customer() {
	curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
		--data-binary "$2" "$emulator_url/_emulator/customer?tenant=$1" ||
		fail "the emulator refused POST /_emulator/customer?tenant=$1"
}

# What pg_upgrade must carry over: each table's row count and an md5 of its
# rows in a fixed order and text form; the identity's next value; the
# extension's version and member objects. Types aside: pg_upgrade's
# restore (pg_dump --binary-upgrade) makes the tables' and views' row types
# members too, which CREATE EXTENSION does not.
snapshot() {
	sql <<-'SQL'
		SET timezone = 'UTC';
		SET datestyle = 'ISO';
		SELECT 'pc_qualification_state ' || count(*) || ' ' ||
		       md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), ''))
		FROM pc_qualification_state t;
		SELECT 'pc_qualification_changes ' || count(*) || ' ' ||
		       md5(coalesce(string_agg(t::text, E'\n' ORDER BY t.change_id), ''))
		FROM pc_qualification_changes t;
		SELECT 'pc_customer_sync ' || count(*) || ' ' ||
		       md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), ''))
		FROM pc_customer_sync t;
		SELECT 'change_id sequence ' || last_value || ' ' || is_called
		FROM pc_qualification_changes_change_id_seq;
		SELECT 'extension ' || extversion FROM pg_extension WHERE extname = 'pcqual';
		SELECT 'members ' || count(*) || ' ' ||
		       md5(string_agg(member, E'\n' ORDER BY member))
		FROM (SELECT pg_describe_object(classid, objid, objsubid) AS member
		      FROM pg_depend
		      WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		        AND classid <> 'pg_type'::regclass
		        AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pcqual')) m;
	SQL
}

sync_sql="SELECT customers, succeeded, failed, rows_changed FROM pc_sync_qualifications(ARRAY[
	'66666666-0000-0000-0000-000000000001', '66666666-0000-0000-0000-000000000002',
	'11111111-0000-0000-0000-000000000015', '11111111-0000-0000-0000-000000000007',
	'22222222-0000-0000-0000-000000000404']::uuid[])"
# A sync: expects its result row (customers|succeeded|failed|rows_changed).
expect_sync() {
	local got
	got=$(sql -c "SET pcqual.max_retries = 0" -c "$sync_sql" 2>"$work/sync.err") ||
		{ cat "$work/sync.err" >&2; fail "pc_sync_qualifications ($1)"; }
	[ "$got" = "$2" ] || fail "pc_sync_qualifications ($1) returned $got, expected $2"
}

echo "pg-upgrade: PostgreSQL $old cluster preloading pcqual, with synced data"
init_cluster "$old_bin" "$work/old"
preload_pcqual "$work/old"
start_cluster "$old_bin" "$work/old"
db=postgres sql -c "CREATE DATABASE pcqual_upgrade"
# The emulator's settings, as test/emulator-settings.psql has them; read
# here by root, since postgres cannot read the tree under /root.
sql -v db=pcqual_upgrade <"$repo/test/emulator-settings.psql"
sql -c "CREATE EXTENSION pcqual"
set_customer 66666666-0000-0000-0000-000000000001 '{"qualifications": [
	{"qualification": "Education", "vettingStatus": "InReview",
	 "vettingCreatedDate": "2024-01-15T10:00:00Z"},
	{"qualification": "StateOwnedEntity"}]}'
set_customer 66666666-0000-0000-0000-000000000002 '{"qualifications": [
	{"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved",
	 "vettingCreatedDate": "2023-05-01T00:00:00Z"}]}'
# Five customers; the 404 tenant fails; four qualifications added (the
# Education of ...0015 once, its latest).
expect_sync "first, on $old" "5|4|1|4"
# Education approved, StateOwnedEntity gone: one changed, one removed.
set_customer 66666666-0000-0000-0000-000000000001 '{"qualifications": [
	{"qualification": "Education", "vettingStatus": "Approved",
	 "vettingCreatedDate": "2024-01-15T10:00:00Z"}]}'
expect_sync "second, on $old" "5|4|1|2"
before=$(snapshot)
echo "$before" | sed 's/^/  /'
for table in pc_qualification_state pc_qualification_changes pc_customer_sync; do
	echo "$before" | grep -q "^$table [1-9]" || fail "$table is empty before the upgrade"
done
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

got=$(sql <<-'SQL'
	SELECT string_agg(qualification || ':' || coalesce(vetting_status, ''), ',' ORDER BY qualification)
	FROM pc_qualifications('66666666-0000-0000-0000-000000000001'::uuid);
SQL
) || fail "pc_qualifications() on PostgreSQL $new"
[ "$got" = "Education:Approved" ] ||
	fail "pc_qualifications() on PostgreSQL $new returned '$got', expected 'Education:Approved'"

# The history goes on where it stopped: the new change rows follow the old.
last_change=$(sql -c "SELECT max(change_id) FROM pc_qualification_changes")
set_customer 66666666-0000-0000-0000-000000000002 '{"qualifications": []}'
expect_sync "on $new" "5|4|1|1"
got=$(sql -c "SELECT string_agg(change_id || ' ' || change, ',') FROM pc_qualification_changes WHERE change_id > $last_change")
[ "$got" = "$((last_change + 1)) removed" ] ||
	fail "the sync on PostgreSQL $new appended '$got', expected '$((last_change + 1)) removed'"

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

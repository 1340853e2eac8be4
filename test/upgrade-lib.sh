# shellcheck shell=bash
# Sourced by test/pg-upgrade.sh and test/package-upgrade.sh, as root: a
# throwaway cluster run as postgres with its socket in $work, and a
# database pcqual_upgrade whose pcqual tables hold synced data, compared
# before and after an upgrade.  The caller sets work, pg_port, psql_bin (the
# psql to use), repo (this tree), emulator_url (an emulator it started,
# test/start-emulator.sh), and defines fail MESSAGE.

as_postgres() {
	runuser -u postgres -- "$@"
}
# SQL on stdin, in database pcqual_upgrade; prints the rows, unaligned.
sql() {
	as_postgres "$psql_bin" -X -q -At -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" \
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

# What pg_upgrade must carry over: test/sync-snapshot.psql, read here by
# root (postgres cannot read the tree under /root).
snapshot() {
	sql <"$repo/test/sync-snapshot.psql"
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

# create_synced_database WHERE: in the running cluster, the database
# pcqual_upgrade with the emulator's settings and CREATE EXTENSION pcqual
# (its default version), and two syncs (the second after a customer
# changed), so that pc_qualification_state, pc_qualification_changes and
# pc_customer_sync hold rows.  Prints the snapshot and sets $before to it.
create_synced_database() {
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
	expect_sync "first, $1" "5|4|1|4"
	# Education approved, StateOwnedEntity gone: one changed, one removed.
	set_customer 66666666-0000-0000-0000-000000000001 '{"qualifications": [
		{"qualification": "Education", "vettingStatus": "Approved",
		 "vettingCreatedDate": "2024-01-15T10:00:00Z"}]}'
	expect_sync "second, $1" "5|4|1|2"
	before=$(snapshot)
	echo "$before" | sed 's/^/  /'
	for table in pc_qualification_state pc_qualification_changes pc_customer_sync; do
		echo "$before" | grep -q "^$table [1-9]" || fail "$table is empty before the upgrade"
	done
}

# expect_customer_answer WHEN: pc_qualifications() of the first synced
# customer answers its latest rows.
expect_customer_answer() {
	local got
	got=$(sql -c "SELECT string_agg(qualification || ':' || coalesce(vetting_status, ''), ',' ORDER BY qualification)
		FROM pc_qualifications('66666666-0000-0000-0000-000000000001'::uuid)") ||
		fail "pc_qualifications() $1"
	[ "$got" = "Education:Approved" ] ||
		fail "pc_qualifications() $1 returned '$got', expected 'Education:Approved'"
}

# expect_history_goes_on WHEN: a sync after the upgrade appends to the
# change history where it stopped (one customer's qualification removed).
expect_history_goes_on() {
	local last_change got
	last_change=$(sql -c "SELECT max(change_id) FROM pc_qualification_changes")
	set_customer 66666666-0000-0000-0000-000000000002 '{"qualifications": []}'
	expect_sync "$1" "5|4|1|1"
	got=$(sql -c "SELECT string_agg(change_id || ' ' || change, ',') FROM pc_qualification_changes WHERE change_id > $last_change")
	[ "$got" = "$((last_change + 1)) removed" ] ||
		fail "the sync $1 appended '$got', expected '$((last_change + 1)) removed'"
}

#!/bin/bash
# examples/crm-view-test/run.sh [PG_PROVE_OPTION...]
#
# Runs crm_view_test.sql, a pgTAP test of CRM views over pcqual, offline:
# against the Partner Center emulator (pcqual-emulator, from pcqual's Debian
# package; or $PCQUAL_EMULATOR) answering as fixtures.json says, in a scratch
# database of the server that psql's PG* variables name (PGHOST, PGPORT,
# PGUSER, PGPASSWORD...).  Copy this directory and change the three files
# to test your own queries.
#
# The server must run on this machine (it reaches the emulator on
# 127.0.0.1 and reads the emulator's client secret from a file under /tmp),
# preload pcqual (shared_preload_libraries = 'pcqual') and have the pgtap
# extension available; the role must be a superuser (pcqual's settings are
# superuser-only).  pg_prove (Debian: libtap-parser-sourcehandler-pgtap-perl)
# runs the test.  pcqual reads its client secret only from a file owned by
# the server's operating system user, mode 0600: run this script as that
# user (sudo -u postgres ./run.sh) or as root (it then gives the file to
# that user), e.g.
#   pg_virtualenv -o shared_preload_libraries=pcqual ./run.sh
#
# It
#   1. checks the server (connection, superuser, preload, pgtap and pcqual
#      available) and asks it for its operating system user;
#   2. starts the emulator: --port 0 (free ports), --fixtures fixtures.json,
#      --secret-file and --print-settings in a private directory under /tmp,
#      and waits for its --pid-file, which it writes once it is ready;
#   3. creates a scratch database, applies the printed settings to it
#      (ALTER DATABASE ... SET: every session of pg_prove gets them), and
#      CREATE EXTENSION pgtap, pcqual;
#   4. runs pg_prove [PG_PROVE_OPTION...] -d DB crm_view_test.sql, and exits
#      with its status; on every exit it drops the database, stops the
#      emulator and removes its directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
emulator=${PCQUAL_EMULATOR:-pcqual-emulator}
db=pcqual_crm_view_test_$$
me=$(id -un)

say() { echo "run.sh: $*" >&2; }
die() { say "$@"; exit 2; }
admin() { # psql as the PG* variables say, in the maintenance database
	psql -X -q -A -t -v ON_ERROR_STOP=1 -d postgres "$@"
}
server_run() { # COMMAND: its output, run by the server as its own OS user
	admin -c 'CREATE TEMP TABLE shell (line text)' \
		-c "COPY shell FROM PROGRAM '${1//\'/\'\'}'" \
		-c 'SELECT line FROM shell'
}

# ---- 1. the server ----

for tool in psql pg_prove "$emulator"; do
	command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
out=$(admin -c 'SELECT 1' 2>&1) || die "cannot connect with psql (set PGHOST, PGPORT, PGUSER...): $out"
[ "$(admin -c 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user')" = t ] ||
	die "connect as a superuser (PGUSER): pcqual's settings are superuser-only"
preload=$(admin -c 'SHOW shared_preload_libraries')
tr ',' '\n' <<<"$preload" | sed 's/^[[:space:]"]*//; s/[[:space:]"]*$//' | grep -qx pcqual ||
	die "the server does not preload pcqual (shared_preload_libraries is '$preload'):" \
		"add pcqual to it in postgresql.conf and restart the server"
for ext in pcqual pgtap; do
	[ "$(admin -c "SELECT count(*) FROM pg_available_extensions WHERE name = '$ext'")" = 1 ] ||
		die "the extension $ext is not installed on the server"
done
server_user=$(server_run 'id -un') || die "the server could not run id -un (COPY ... FROM PROGRAM)"
if [ "$me" != "$server_user" ] && [ "$(id -u)" != 0 ]; then
	die "pcqual reads the client secret only from a file of the server's user ($server_user):" \
		"run this as $server_user (sudo -u $server_user $0) or as root"
fi

# ---- 2. the emulator ----

emulator_pid=
made_db=
tmp=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local status=$?
	set +e
	[ -z "$made_db" ] || admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
	if [ -n "$emulator_pid" ]; then
		kill "$emulator_pid" 2>/dev/null
		wait "$emulator_pid" 2>/dev/null
	fi
	[ -z "$tmp" ] || rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# A helper to copy into your own scripts.
# start_emulator DIR DBNAME [EMULATOR_OPTION...]: starts the emulator in the
# background on free ports, its client secret in DIR/client_secret (mode
# 0600) and the ALTER DATABASE DBNAME SET ... statements that point pcqual
# at it in DIR/settings.sql; returns once it is ready (its --pid-file
# exists, written after the settings), with its process id in emulator_pid.
# Stop it with kill "$emulator_pid" (it removes the secret and pid files).
start_emulator() {
	local dir=$1 dbname=$2
	shift 2
	"$emulator" --port 0 --quiet --secret-file "$dir/client_secret" \
		--print-settings --settings-format "alter-database:$dbname" \
		--pid-file "$dir/emulator.pid" "$@" >"$dir/settings.sql" 2>"$dir/emulator.log" &
	emulator_pid=$!
	for _ in $(seq 1 200); do
		[ -s "$dir/emulator.pid" ] && return 0
		kill -0 "$emulator_pid" 2>/dev/null || break
		sleep 0.05
	done
	cat "$dir/emulator.log" >&2
	emulator_pid=
	return 1
}

# Under /tmp, which the server shares: a directory only the server's user
# (and root) may enter.
tmp=$(mktemp -d /tmp/pcqual-crm-view-test.XXXXXX)
if [ "$me" != "$server_user" ]; then
	chown "$server_user:" "$tmp"
fi
start_emulator "$tmp" "$db" --fixtures "$here/fixtures.json" ||
	die "the emulator ($emulator) did not start"
if [ "$me" != "$server_user" ]; then
	chown "$server_user:" "$tmp/client_secret"
fi
server_run "test -r $tmp/client_secret && echo ok" >/dev/null 2>&1 ||
	die "the server ($server_user) cannot read $tmp/client_secret: it must run on this" \
		"machine and share its /tmp"
say "the emulator runs as process $emulator_pid, $(sed -n "s/.*pcqual.base_url = '\(.*\)';/\1/p" "$tmp/settings.sql")"

# ---- 3. the scratch database ----

admin -c "CREATE DATABASE $db"
made_db=1
admin -f "$tmp/settings.sql"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION pcqual'

# ---- 4. the test ----

status=0
pg_prove "$@" -d "$db" "$here/crm_view_test.sql" || status=$?
exit "$status"

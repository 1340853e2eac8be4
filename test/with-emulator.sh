#!/bin/bash
# test/with-emulator.sh PG_REGRESS [ARG...]
#
# `make installcheck` runs pg_regress through this script (the Makefile puts
# it in front of PGXS's pg_regress command), so that the suites' Partner
# Center emulator is there, as a PGXS user expects of installcheck: against
# any running server that preloads pcqual, with no root, no apt and nothing
# started by hand.  It
#   1. asks the server (psql with the PG* environment and pg_regress's
#      --host/--port/--user options) whether pcqual is in its
#      shared_preload_libraries, the role a superuser (the suites set
#      superuser-only settings and run curl through COPY ... PROGRAM), the
#      installed pcqual this tree's version, and whether a role of the
#      suites may log in from here (sql/privileges.sql connects as its own
#      roles: over TCP with PGPASSWORD, say, not by peer authentication); a
#      clear error if not;
#   2. if an emulator already answers on 127.0.0.1:18765 (test/check.sh's
#      run started one), uses it and the test files its run made; otherwise
#      makes the test files in /tmp/pcqual-test (test/prepare-test-files.sh:
#      certificates, and the credential files, which must belong to the
#      server's operating system user: if that is not the caller, the server
#      itself copies them into place, as sql/credentials.sql makes its own),
#      starts test/pc_emulator.py and waits until it answers;
#   3. checks that the server sees the files and reaches the emulator (it
#      must run on this machine and share its /tmp);
#   4. runs PG_REGRESS ARG..., stops what it started, removes the files it
#      made, and exits with pg_regress's status.
# The suites name 127.0.0.1:18765 and /tmp/pcqual-test themselves
# (sql/setup.sql), so both are fixed; the emulator also listens on the
# ports up to 18770 (HTTPS, the redirect target).  Needs python3 and curl.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
port=18765
dir=/tmp/pcqual-test
me=$(id -un)

say() { echo "installcheck: $*" >&2; }
die() { say "$@"; exit 2; }

[ $# -gt 0 ] || die "usage: $0 PG_REGRESS [ARG...]"

# pg_regress's own connection options, in either form (--port=N, --port N);
# the PG* variables reach psql as they reach pg_regress.
bindir=
where=()
user=()
args=("$@")
for ((i = 1; i < ${#args[@]}; i++)); do
	a=${args[i]}
	case $a in
	--bindir=* | --host=* | --port=* | --user=*) opt=${a%%=*} val=${a#*=} ;;
	--bindir | --host | --port | --user) opt=$a val=${args[i + 1]:-}; i=$((i + 1)) ;;
	*) continue ;;
	esac
	case $opt in
	--bindir) bindir=$val ;;
	--host) where+=(-h "$val") ;;
	--port) where+=(-p "$val") ;;
	--user) user=(-U "$val") ;;
	esac
done
psql=${bindir:+$bindir/}psql
# pg_regress connects to "postgres" to create its database; so do we.
sql() {
	"$psql" -X -q -A -t -v ON_ERROR_STOP=1 "${where[@]}" "${user[@]}" -d postgres "$@"
}

for tool in python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is needed (the emulator and its health checks)"
done

# ---- 1. the server ----

if ! out=$(sql -c 'SELECT 1' 2>&1); then
	die "cannot connect to the server with psql: $out
(make installcheck runs against a running server: set PGHOST, PGPORT, PGUSER... as for psql)"
fi
server="the server at ${PGHOST:-its default socket}, port ${PGPORT:-its default}"
if [ "$(sql -c 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user')" != t ]; then
	die "the suites need a superuser role (they set pcqual's superuser-only settings and" \
		"call the emulator with COPY ... PROGRAM); connect as one (PGUSER)"
fi
preload=$(sql -c 'SHOW shared_preload_libraries')
if ! tr ',' '\n' <<<"$preload" | sed 's/^[[:space:]"]*//; s/[[:space:]"]*$//' | grep -qx pcqual; then
	die "pcqual is not in shared_preload_libraries of $server (it is '$preload').
pcqual must be preloaded: add it to shared_preload_libraries in postgresql.conf
(shared_preload_libraries = 'pcqual', or append it to the list there), restart
the server, then run make installcheck again."
fi
version=$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$repo/pcqual.control")
installed=$(sql -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pcqual'")
if [ -z "$installed" ]; then
	# Debian's extension_destdir (pg_buildext installcheck: the package being
	# built, in debian/postgresql-NN-pcqual): the server finds pcqual there,
	# pg_available_extensions does not list it.
	destdir=$(sql -c "SELECT current_setting('extension_destdir', true)")
	control=$destdir$("${bindir:+$bindir/}pg_config" --sharedir 2>/dev/null)/extension/pcqual.control
	if [ -n "$destdir" ] && [ -r "$control" ]; then
		installed=$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$control")
	fi
fi
if [ "$installed" != "$version" ]; then
	die "$server has ${installed:+pcqual $installed}${installed:-no pcqual} installed; this tree" \
		"is $version: run make install (PG_CONFIG=... of this server's PostgreSQL)"
fi
# sql/privileges.sql logs in as roles of its own (\c - regress_crm_reader),
# as an application would, with PGPASSWORD if set: a role without an
# operating system user of its name must be able to log in from here.
login_check=regress_pcqual_login_check
sql -c "DROP ROLE IF EXISTS $login_check" \
	-c "CREATE ROLE $login_check LOGIN PASSWORD '$(sed "s/'/''/g" <<<"${PGPASSWORD:-no password needed}")'" 2>/dev/null
login=0
out=$("$psql" -X -q -A -t -w "${where[@]}" -U "$login_check" -d postgres -c 'SELECT 1' 2>&1) || login=$?
sql -c "DROP ROLE IF EXISTS $login_check" 2>/dev/null || true
if [ "$login" != 0 ]; then
	die "sql/privileges.sql logs in as roles of its own (regress_crm_reader...), as an
application would, but such a role cannot log in to $server from here:
  $out
Connect over TCP with a password, e.g. PGHOST=localhost PGPASSWORD=<this role's
password> (the suite gives its roles the same one), or let the regress_* roles
in through pg_hba.conf."
fi
# COPY ... PROGRAM, as the suites use it: a shell command as the server's
# operating system user, its output the rows of a temporary table.
server_run() { # COMMAND
	sql -c 'CREATE TEMP TABLE shell (line text)' \
		-c "COPY shell FROM PROGRAM '${1//\'/\'\'}'" \
		-c 'SELECT line FROM shell'
}
server_user=$(server_run 'id -un') || die "the server could not run id -un through COPY ... PROGRAM"

# ---- 2. the emulator and its files ----

answers() {
	curl -sf --noproxy '*' "$1" >/dev/null 2>&1
}
health=http://127.0.0.1:$port/_emulator/health
emulator=
made_dir=
cleanup() {
	local status=$?
	set +e
	if [ -n "$emulator" ]; then
		kill "$emulator" 2>/dev/null
		wait "$emulator" 2>/dev/null
	fi
	# The credential files may be the server's: this user may unlink them as
	# the owner of their (sticky) directory.
	[ -z "$made_dir" ] || rm -rf "$dir"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if answers "$health"; then
	say "using the Partner Center emulator already running on 127.0.0.1:$port and its files in $dir"
	[ -r "$dir/tls/ca.crt" ] ||
		die "... but $dir/tls/ca.crt is missing: the run that started it did not make the test files"
else
	for p in $(seq "$port" $((port + 5))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "127.0.0.1:$p, one of the emulator's ports, is in use, but not by an emulator:" \
				"see \`ss -ltnp 'sport = :$p'\`"
		fi
	done
	if [ -e "$dir" ] && ! rm -rf "$dir" 2>/dev/null; then
		die "$dir exists (another test run's, owner $(stat -c %U "$dir")) and $me cannot" \
			"replace it: remove it as its owner or as root (rm -rf $dir)"
	fi
	made_dir=1
	# Owned by the server's user where this user can make it so (it is that
	# user, or root); otherwise this user's for now.
	owner=$me
	if [ "$me" = "$server_user" ] || [ "$(id -u)" = 0 ]; then
		owner=$server_user
	fi
	PCQUAL_TEST_DIR=$dir PCQUAL_TEST_OWNER=$owner "$here/prepare-test-files.sh"
	if [ "$owner" != "$server_user" ]; then
		# The server copies the credential files into a directory it may
		# write to but not list (1733), so that they are its own, mode 600
		# (certificates 644); the test values are readable to others only
		# meanwhile.
		mv "$dir/secrets" "$dir/staging"
		chmod 755 "$dir/staging"
		chmod 644 "$dir"/staging/*
		mkdir -m 1733 "$dir/secrets"
		server_run "umask 077 && cd $dir/staging && cp -- * ../secrets/ && for f in *.crt; do chmod 644 \"../secrets/\$f\"; done" >/dev/null ||
			die "the server ($server_user) could not copy $dir/staging to $dir/secrets;" \
				"it must run on this machine and share its /tmp"
		rm -rf "$dir/staging"
	fi
	python3 "$here/pc_emulator.py" --port "$port" --tls-dir "$dir/tls" --quiet &
	emulator=$!
	for _ in $(seq 1 100); do
		answers "$health" && break
		kill -0 "$emulator" 2>/dev/null || break
		sleep 0.1
	done
	answers "$health" || die "the Partner Center emulator (test/pc_emulator.py) did not start on 127.0.0.1:$port"
	say "started the Partner Center emulator on 127.0.0.1:$port (files in $dir); stopped when pg_regress ends"
fi

# ---- 3. what the server sees ----

if ! server_run "test -r $dir/tls/ca.crt && test -r $dir/secrets/client_secret" >/dev/null 2>&1; then
	die "the server ($server_user) cannot read $dir/tls/ca.crt and $dir/secrets/client_secret:" \
		"it must run on this machine and share its /tmp (no PrivateTmp)"
fi
if ! server_run "curl -sf --noproxy '*' -o /dev/null $health" >/dev/null 2>&1; then
	die "the server cannot reach the emulator at $health with curl, as the suites do:" \
		"it must run on this machine, with curl installed"
fi

# ---- 4. the suites ----

status=0
"$@" || status=$?
exit "$status"

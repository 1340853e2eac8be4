#!/bin/bash
# `make installcheck` as a PGXS user runs it, as root on Debian 12, 13 or
# testing: test/matrix.sh runs this after ./test/check.sh in each release's
# root.  Installs what is missing, builds and installs pcqual (as check.sh
# does: test/common.sh), then creates a real cluster with pg_createcluster
# that preloads pcqual, starts it, and runs plain `make installcheck` as the
# postgres user, not root, in a copy of this tree that user owns, with only
# PG* variables naming the server: the Makefile's test/with-emulator.sh has
# to start and stop the emulator itself.  The connection is TCP with a
# password (Debian's pg_hba.conf: scram-sha-256 on 127.0.0.1), since
# sql/privileges.sql logs in as roles that have no operating system user
# for peer authentication.  Stops and drops the cluster at the end; exits
# with make's status.
source "$(dirname "$0")/common.sh"

# common.sh made the test files as root, for check.sh; a PGXS user has
# none, and with-emulator.sh (as postgres) could not replace root's.
rm -rf /tmp/pcqual-test

cluster=pcqual_installcheck
# A port no server listens on (the matrix's network namespace is private,
# but PCQUAL_MATRIX_NETWORK=host or a run on a host shares the host's).
port=54330
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
	port=$((port + 1))
done
work=$(mktemp -d /tmp/pcqual-installcheck.XXXXXX)
cleanup() {
	local status=$?
	set +e
	pg_dropcluster --stop "$pg_major" "$cluster" 2>/dev/null
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

pg_dropcluster --stop "$pg_major" "$cluster" 2>/dev/null || true
pg_createcluster -q "$pg_major" "$cluster" -p "$port" --locale C.UTF-8 -e UTF8 \
	-o shared_preload_libraries=pcqual >/dev/null
pg_ctlcluster "$pg_major" "$cluster" start
password=$(openssl rand -hex 16)
runuser -u postgres -- psql -X -q -p "$port" -v ON_ERROR_STOP=1 \
	-c "ALTER ROLE postgres PASSWORD '$password'"

# The tree as a developer has it, owned by the user who runs make.
cp -a . "$work/pcqual"
rm -rf "$work/pcqual/results" "$work/pcqual"/regression.*
chown -R postgres: "$work"

status=0
runuser -u postgres -- env HOME=/var/lib/postgresql \
	PGHOST=localhost PGPORT="$port" PGUSER=postgres PGPASSWORD="$password" \
	make -C "$work/pcqual" installcheck PG_CONFIG="$pg_config" || status=$?
if [ "$status" != 0 ] && [ -f "$work/pcqual/regression.diffs" ]; then
	cat "$work/pcqual/regression.diffs"
fi
exit "$status"

#!/bin/bash
# test/package-upgrade.sh PREVIOUS_TREE
#
# The upgrade path as a DBA takes it: a package upgrade, then ALTER
# EXTENSION pcqual UPDATE, with the sync tables holding data.  Run as root
# after test/build-deb.sh, where build/ holds this tree's
# postgresql-NN-pcqual package; test/matrix.sh runs it in its trixie package
# root, with PREVIOUS_TREE the source of the previous release (the last
# commit whose pcqual.control has the previous default_version).
#
# 1. Builds PREVIOUS_TREE's package (test/build-deb.sh --tree, with this
#    tree's debian/) and installs it with apt.
# 2. A cluster preloading pcqual: CREATE EXTENSION (the previous version),
#    two syncs against the emulator; counts and checksums of every row.
# 3. apt-get installs this tree's package over it; the server restarts on
#    the new library with the old extension objects: pc_qualifications()
#    still answers.
# 4. ALTER EXTENSION pcqual UPDATE: the new version, every row as before, a
#    sync that appends to the history, pc_stat.
# Leaves this tree's package installed; exits non-zero, saying what
# differed, on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export DEBIAN_FRONTEND=noninteractive

fail() {
	echo "package-upgrade: FAILED: $*" >&2
	exit 1
}
say() { echo "package-upgrade: $*"; }

[ $# -eq 1 ] && [ -f "$1/pcqual.control" ] || fail "usage: $0 PREVIOUS_TREE (a pcqual source tree)"
previous_tree=$(cd "$1" && pwd)
version_of() {
	sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$1/pcqual.control"
}
old_version=$(version_of "$previous_tree")
new_version=$(version_of "$repo")
[ "$old_version" != "$new_version" ] || fail "$previous_tree is at $new_version too"

major=$(test/pg-major.sh)
bin=/usr/lib/postgresql/$major/bin
package=postgresql-$major-pcqual
new_deb=$(ls "$repo"/build/"$package"_"$new_version"-*_*.deb 2>/dev/null | tail -n 1 || true)
[ -n "$new_deb" ] || fail "no build/${package}_$new_version-*.deb: run test/build-deb.sh first"

work=/tmp/pcqual-package-upgrade
pg_port=${PCQUAL_UPGRADE_PORT:-50433}
rm -rf "$work"
install -d -o postgres -g postgres "$work"

say "building pcqual $old_version's package from $previous_tree"
test/build-deb.sh --tree "$previous_tree" --out "$work/previous" --nocheck >"$work/build-previous.log" 2>&1 ||
	{ tail -n 40 "$work/build-previous.log" >&2; fail "building pcqual $old_version's package"; }
old_deb=$(ls "$work"/previous/"$package"_"$old_version"-*_*.deb)

installed_version() {
	dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true
}
say "apt-get install $(basename "$old_deb")"
apt-get install -y -qq --allow-downgrades "$old_deb" >"$work/apt-old.log" 2>&1 ||
	{ cat "$work/apt-old.log" >&2; fail "apt-get install $old_deb"; }
[ "$(installed_version)" = "$old_version-1" ] || fail "$package is at $(installed_version), not $old_version-1"

test/prepare-test-files.sh
source test/start-emulator.sh
emulator_url=http://127.0.0.1:${PCQUAL_EMULATOR_PORT:-18765}

cd "$work"
psql_bin=$bin/psql
source "$repo/test/upgrade-lib.sh"
stop_server() {
	[ ! -f "$work/data/postmaster.pid" ] ||
		as_postgres "$bin/pg_ctl" stop -D "$work/data" -m immediate -s 2>/dev/null || true
	kill "$emulator" "$test_proxy" 2>/dev/null
	wait "$emulator" "$test_proxy" 2>/dev/null || true
}
trap stop_server EXIT

init_cluster "$bin" "$work/data"
preload_pcqual "$work/data"
start_cluster "$bin" "$work/data"
say "PostgreSQL $major with pcqual $old_version's package, synced data"
create_synced_database "with pcqual $old_version"
extension() {
	sql -c "SELECT extversion FROM pg_extension WHERE extname = 'pcqual'"
}
[ "$(extension)" = "$old_version" ] || fail "CREATE EXTENSION made pcqual $(extension), not $old_version"

say "apt-get install $(basename "$new_deb") (an upgrade of $package)"
apt-get install -y "$new_deb" >"$work/apt-new.log" 2>&1 ||
	{ cat "$work/apt-new.log" >&2; fail "apt-get install $new_deb"; }
grep -E "Unpacking $package \(.*\) over \($old_version-1\)" "$work/apt-new.log" ||
	{ cat "$work/apt-new.log" >&2; fail "apt did not upgrade $package from $old_version-1"; }
[ "$(installed_version)" = "$(dpkg-deb -f "$new_deb" Version)" ] || fail "$package is at $(installed_version)"

# The new library, the old objects: what a server runs between the package
# upgrade and ALTER EXTENSION UPDATE.
as_postgres "$bin/pg_ctl" restart -D "$work/data" -l "$work/data.log" -w -s ||
	{ cat "$work/data.log" >&2; fail "the server did not restart on the new library"; }
[ "$(extension)" = "$old_version" ] || fail "the extension is at $(extension) before ALTER EXTENSION UPDATE"
expect_customer_answer "of pcqual $old_version's objects on the $new_version library"
say "pcqual $old_version's objects answer on the $new_version library"

sql -c "ALTER EXTENSION pcqual UPDATE" || fail "ALTER EXTENSION pcqual UPDATE"
[ "$(extension)" = "$new_version" ] || fail "ALTER EXTENSION pcqual UPDATE left pcqual at $(extension)"
tables() { grep -Ev '^(extension|members) '; }
after=$(snapshot)
if [ "$(tables <<<"$after")" != "$(tables <<<"$before")" ]; then
	diff <(tables <<<"$before") <(tables <<<"$after") >&2 || true
	fail "the sync tables differ after the upgrade (< $old_version, > $new_version)"
fi
say "ALTER EXTENSION pcqual UPDATE: pcqual $new_version, every row of the sync tables as before:"
tables <<<"$after" | sed 's/^/  /'

expect_history_goes_on "with pcqual $new_version"
got=$(sql -c "SELECT sum(requests) > 0 FROM pc_stat") || fail "pc_stat after the upgrade"
[ "$got" = t ] || fail "pc_stat counts no request after the upgrade's sync"

stop_cluster "$bin" "$work/data"
say "passed ($package $old_version-1 to $(installed_version), the extension $old_version to $new_version)"

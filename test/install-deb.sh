#!/bin/bash
# test/install-deb.sh: installs the packages test/build-deb.sh left in
# build/ -- postgresql-NN-pcqual for this distribution's PostgreSQL major
# (test/pg-major.sh) and pcqual-emulator -- with apt-get, as a DBA would
# (apt resolves their dependencies), then checks that each package holds
# only what a package of an extension should: the shared library and its
# JIT bitcode, the control file and SQL scripts, docs; the emulator package
# its command and docs.  Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

fail() {
	echo "install-deb: FAILED: $*" >&2
	exit 1
}
major=$(test/pg-major.sh)
version=$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" pcqual.control)
extension_deb=$(ls build/postgresql-"$major"-pcqual_"$version"-*_*.deb 2>/dev/null | tail -n 1 || true)
emulator_deb=$(ls build/pcqual-emulator_"$version"-*_all.deb 2>/dev/null | tail -n 1 || true)
[ -n "$extension_deb" ] && [ -n "$emulator_deb" ] ||
	fail "build/ has no postgresql-$major-pcqual_$version-*.deb and pcqual-emulator_$version-*.deb:" \
		"run test/build-deb.sh first"

echo "install-deb: apt-get install ./$extension_deb ./$emulator_deb"
apt-get install -y -qq "./$extension_deb" "./$emulator_deb" >/tmp/pcqual-install-deb.log 2>&1 ||
	{ cat /tmp/pcqual-install-deb.log >&2; fail "apt-get install"; }

# check_contents PACKAGE ALLOWED-REGEX...: every file of PACKAGE matches
# one of the patterns, and every pattern matches a file.
check_contents() {
	local package=$1 files unexpected p
	shift
	files=$(dpkg -L "$package" | while read -r f; do [ -d "$f" ] || echo "$f"; done)
	unexpected=$(grep -Ev "$(IFS='|'; echo "$*")" <<<"$files" || true)
	[ -z "$unexpected" ] || fail "$package holds files an extension package should not:" $'\n'"$unexpected"
	for p in "$@"; do
		grep -Eq "$p" <<<"$files" || fail "$package has no file matching $p"
	done
	echo "install-deb: $package $(dpkg-query -W -f='${Version}' "$package"): $(wc -l <<<"$files") files:"
	sed 's/^/  /' <<<"$files"
}
lib=/usr/lib/postgresql/$major/lib
share=/usr/share/postgresql/$major/extension
check_contents "postgresql-$major-pcqual" \
	"^$lib/pcqual\.so\$" \
	"^$lib/bitcode/pcqual(\.index\.bc|/src/[a-z_]+\.bc)\$" \
	"^$share/pcqual\.control\$" \
	"^$share/pcqual--$version\.sql\$" \
	"^$share/pcqual--[0-9.]+(--[0-9.]+)?\.sql\$" \
	"^/usr/share/doc/postgresql-$major-pcqual/(README\.md\.gz|changelog\.Debian\.gz|copyright)\$"
check_contents pcqual-emulator \
	"^/usr/bin/pcqual-emulator\$" \
	"^/usr/share/doc/pcqual-emulator/(README\.md\.gz|changelog\.Debian\.gz|copyright)\$"
command -v pcqual-emulator >/dev/null || fail "pcqual-emulator is not on the PATH"

#!/bin/bash
# test/build-deb.sh [--tree DIR] [--out DIR] [--nocheck]
#
# Builds pcqual's Debian packages the Debian PostgreSQL way, as root on
# Debian 12, 13 or testing: installs the build dependencies with apt, then
# `dpkg-buildpackage -us -uc -b` (debian/rules: pg_buildext builds and
# installs pcqual for every PostgreSQL major that debian/pgversions allows
# and this distribution supports, and runs the pg_regress suites against
# each package's files with pcqual preloaded).  Leaves
#   postgresql-NN-pcqual_<version>_<arch>.deb   one per major built
#   pcqual-emulator_<version>_all.deb           the emulator as a command
# in the repository's build/ folder (or --out DIR), and prints their names.
#
# The build works on a copy of the tree in a temporary directory: the
# tree's own objects (a `make` in it) cannot leak into the VPATH builds, and
# debian/control, generated from debian/control.in for this distribution's
# majors (pg_buildext updatecontrol), is not written into the repository.
#
#   --tree DIR   build that source tree instead of this repository, e.g. an
#                earlier release's (test/package-upgrade.sh); a tree without
#                debian/ gets this repository's, with a changelog entry for
#                the version in its pcqual.control
#   --nocheck    skip the suites in the build (DEB_BUILD_OPTIONS=nocheck)
#   --deps-only  install the build dependencies, build nothing
#                (test/matrix.sh's base roots, which then need no network)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

tree=$repo
out=$repo/build
nocheck=
deps_only=
while [ $# -gt 0 ]; do
	case $1 in
	--tree) tree=$(cd "$2" && pwd); shift 2 ;;
	--out) mkdir -p "$2"; out=$(cd "$2" && pwd); shift 2 ;;
	--nocheck) nocheck=1; shift ;;
	--deps-only) deps_only=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" != 0 ]; then
	echo "build-deb: run as root (it installs the build dependencies with apt-get)" >&2
	exit 1
fi

say() { echo "build-deb: $*"; }
version_of() { # pcqual.control's default_version
	sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$1/pcqual.control"
}

source test/apt-install.sh
# The tools that read debian/: dpkg-buildpackage, pg_buildext (and
# supported-versions) from postgresql-server-dev-all.
install_missing dpkg-dev debhelper postgresql-server-dev-all fakeroot

work=$(mktemp -d /tmp/pcqual-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The suites' server runs as postgres and loads pcqual from the build's
# debian/postgresql-NN-pcqual: it must be able to reach it.
chmod 755 "$work"
src=$work/pcqual

# The tree's sources, not its build products: git's list where there is
# one, else everything but objects, libraries and test output.
mkdir "$src"
if [ -e "$tree/.git" ] && command -v git >/dev/null; then
	(
		cd "$tree"
		git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do
				[ ! -e "$f" ] || printf '%s\0' "$f" # not a file deleted but not yet committed
			done | xargs -0 cp --parents -a -t "$src"
	)
else
	tar -C "$tree" --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./build --exclude=./results --exclude=./log --exclude=./tmp_check \
		--exclude=./regression.diffs --exclude=./regression.out --exclude=__pycache__ \
		-cf - . | tar -C "$src" -xf -
fi
version=$(version_of "$src")
[ -n "$version" ] || { echo "build-deb: no default_version in $tree/pcqual.control" >&2; exit 1; }

if [ ! -d "$src/debian" ]; then
	# An earlier release without packaging: this repository's debian/, and
	# a changelog that starts with that release's version.
	cp -a "$repo/debian" "$src/debian"
	{
		printf 'pcqual (%s-1) unstable; urgency=medium\n\n' "$version"
		printf '  * pcqual %s, packaged with the debian/ of a later release.\n\n' "$version"
		printf ' -- pcqual developers <dev@pcqual.invalid>  %s\n\n' "$(date -R)"
		cat "$repo/debian/changelog"
	} >"$src/debian/changelog.new"
	mv "$src/debian/changelog.new" "$src/debian/changelog"
fi
deb_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
if [ "${deb_version%-*}" != "$version" ]; then
	echo "build-deb: debian/changelog is at $deb_version but pcqual.control's default_version" \
		"is $version: add a changelog entry for $version-1" >&2
	exit 1
fi

cd "$src"
pg_buildext updatecontrol
say "pcqual $deb_version for PostgreSQL $(pg_buildext supported-versions | tr '\n' ' ')"
# Build-Depends from the generated debian/control, unless all are there
# already (test/matrix.sh's roots have them, and no network).
build_profiles=()
[ -z "$nocheck" ] || build_profiles=(-P nocheck)
if ! dpkg-checkbuilddeps ${nocheck:+-P nocheck} >/dev/null 2>&1; then
	say "installing the build dependencies (apt-get build-dep)"
	apt_update_once
	apt-get build-dep -y -qq --no-install-recommends "${build_profiles[@]}" ./ >/dev/null
fi
if [ -n "$deps_only" ]; then
	say "the build dependencies are installed"
	exit 0
fi

options=${DEB_BUILD_OPTIONS:-}
[ -z "$nocheck" ] || options="${options:+$options }nocheck"
DEB_BUILD_OPTIONS=$options dpkg-buildpackage -us -uc -b ${nocheck:+-Pnocheck}

mkdir -p "$out"
debs=("$work"/*.deb)
cp "${debs[@]}" "$out/"
for d in "${debs[@]}"; do
	say "built $out/$(basename "$d")"
done

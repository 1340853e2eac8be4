#!/bin/bash
# Installs what pcqual needs to build and test, if missing, and prints the
# PostgreSQL major version it chose: the distribution's own (Debian 12
# bookworm: 15, 13 trixie: 17, testing forky: 18), or $PG_MAJOR if set
# (e.g. PG_MAJOR=18, which then has to be packaged for this distribution).
# test/pg-major.sh prints the same version for the other scripts.
# Run as root on Debian (or a derivative); apt-get runs only if something is
# missing, and `apt-get update` at most once.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/apt-install.sh

# postgresql-common knows the distribution's PostgreSQL version: its
# supported-versions script, which moved to postgresql-common-dev (the
# extension build helpers) in forky.
if [ -z "${PG_MAJOR:-}" ]; then
	install_missing postgresql-common
	if [ ! -x /usr/share/postgresql-common/supported-versions ]; then
		install_missing postgresql-common-dev
	fi
fi
major=$(test/pg-major.sh)

packages=(
	make gcc libc6-dev curl python3 openssl ca-certificates
	# postgresql-$major ships the contrib modules (dblink) and Provides
	# postgresql-contrib-$major; the postgresql-contrib metapackage only
	# exists up to bookworm, and pulls in the default major, so it is not
	# listed.
	"postgresql-$major" "postgresql-server-dev-$major"
	libcurl4-openssl-dev libcjson-dev libssl-dev
	# pkg-config (pkgconf in every release): the Makefile takes the
	# libraries' flags from their .pc files
	pkgconf
	# tests: pgTAP and pg_prove, pg_cron
	"postgresql-$major-pgtap" libtap-parser-sourcehandler-pgtap-perl
	"postgresql-$major-cron"
)
if ! install_missing "${packages[@]}"; then
	if ! apt-cache show "postgresql-$major" >/dev/null 2>&1; then
		echo "install-deps: PostgreSQL $major is not packaged for this distribution" \
			"(PG_MAJOR=${PG_MAJOR:-unset}); apt.postgresql.org has other versions" >&2
	fi
	exit 1
fi
echo "install-deps: PostgreSQL $major"

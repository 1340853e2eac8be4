#!/bin/bash
# Prints the PostgreSQL major version pcqual is built and tested against:
# $PG_MAJOR if set (e.g. PG_MAJOR=18), else the distribution's own
# (bookworm 15, trixie 17, forky 18), as postgresql-common reports it.
# test/install-deps.sh installs postgresql-common first; check.sh and demo.sh
# call this after it, so the three always agree.
set -euo pipefail

if [ -n "${PG_MAJOR:-}" ]; then
	if ! [[ $PG_MAJOR =~ ^[1-9][0-9]*$ ]]; then
		echo "PG_MAJOR=$PG_MAJOR: expected a PostgreSQL major version such as 17" >&2
		exit 1
	fi
	echo "$PG_MAJOR"
	exit 0
fi

supported=/usr/share/postgresql-common/supported-versions
if [ ! -x "$supported" ]; then
	echo "$supported is missing (postgresql-common, or postgresql-common-dev" \
		"since forky): run test/install-deps.sh, or set PG_MAJOR" >&2
	exit 1
fi
# PG_SUPPORTED_VERSIONS=default asks for the distribution's version alone,
# whatever /etc/postgresql-common/supported_versions may add (e.g. pgdg).
PG_SUPPORTED_VERSIONS=default "$supported" | tail -n 1

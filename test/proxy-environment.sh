#!/bin/bash
# pg_virtualenv options that give the test cluster's postmaster, and so every
# backend, https_proxy, http_proxy and ALL_PROXY naming the test proxy
# (test/connect_proxy.py on $PCQUAL_EMULATOR_PORT + 6), as a server on a
# machine with a proxy in its environment would have: test/proxy.sql checks
# that pcqual ignores them.  pg_ctlcluster starts the postmaster with an
# environment of its own (the cluster's "environment" file) rather than its
# caller's, so exporting the variables would not do: they go into that file
# (pg_createcluster --environment).
set -euo pipefail
proxy="http://127.0.0.1:$((${PCQUAL_EMULATOR_PORT:-18765} + 6))"
dir=${PCQUAL_TEST_DIR:-/tmp/pcqual-test}
file=$dir/postmaster.environment
mkdir -p "$dir"
{
	# the system's default environment file, which --environment replaces
	if [ -f /etc/postgresql-common/environment ]; then
		cat /etc/postgresql-common/environment
	fi
	for var in https_proxy http_proxy ALL_PROXY; do
		printf "%s = '%s'\n" "$var" "$proxy"
	done
} > "$file.new"
chmod 644 "$file.new"
mv "$file.new" "$file"
printf -- "-c --environment=%s " "$file"

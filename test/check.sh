#!/bin/bash
# Runs every pcqual test on a fresh Debian 12 machine, as root:
# installs what is missing, builds and installs the extension, starts a
# throwaway PostgreSQL 15 cluster and the Partner Center emulator, then runs
# the pg_regress suites (make installcheck) and the pgTAP suites (pg_prove).
set -euo pipefail
cd "$(dirname "$0")/.."

test/install-deps.sh
make -s
make -s install
exec pg_virtualenv -t -v 15 $(test/emulator-settings.sh) -- test/run-suites.sh

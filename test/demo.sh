#!/bin/bash
# The README's first command: on a fresh Debian 12 machine, as root, install
# what is missing, build and install pcqual, start a throwaway PostgreSQL 15
# cluster and the Partner Center emulator, and join a small CRM table with
# pc_qualifications.
set -euo pipefail
cd "$(dirname "$0")/.."

test/install-deps.sh
make -s
make -s install
exec pg_virtualenv -t -v 15 $(test/emulator-settings.sh) -- test/demo-query.sh

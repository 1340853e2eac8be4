#!/bin/bash
# The README's first command, as root, on Debian 12, 13 or testing: installs
# what is missing, builds and installs pcqual for the distribution's
# PostgreSQL major (or $PG_MAJOR), starts a throwaway cluster and the Partner
# Center emulator, and joins a small CRM table with pc_qualifications
# (test/demo-query.sh).
source "$(dirname "$0")/common.sh"
exec pg_virtualenv -t -v "$pg_major" $(test/emulator-settings.sh) -- test/demo-query.sh

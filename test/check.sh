#!/bin/bash
# The README's test command: runs every pcqual test, as root, on Debian 12,
# 13 or testing. Installs what is missing, builds and installs the extension
# for the distribution's PostgreSQL major (or $PG_MAJOR), starts a throwaway
# cluster with pg_virtualenv and the Partner Center emulator, then runs the
# emulator self-test, the pg_regress suites (make installcheck) and the
# pgTAP suites (pg_prove): test/run-suites.sh.  The cluster's postmaster
# has https_proxy, http_proxy and ALL_PROXY pointing at the test proxy
# (test/proxy-environment.sh): pcqual must not use them.
#
# test/check.sh --installed tests the pcqual a Debian package installed
# (test/build-deb.sh) instead of building and installing this tree's; the
# suites and their checks are the same.
case ${1:-} in
--installed) export PCQUAL_TEST_INSTALLED=1 ;;
"") ;;
*) echo "usage: $0 [--installed]" >&2; exit 2 ;;
esac
source "$(dirname "$0")/common.sh"
exec pg_virtualenv -t -v "$pg_major" $(test/proxy-environment.sh) \
	$(test/emulator-settings.sh --cron) -- test/run-suites.sh

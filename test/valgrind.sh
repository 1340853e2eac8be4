#!/bin/bash
# Memcheck over 1,000 calls (successes and every fault kind) in one backend:
# runs a single-user PostgreSQL backend under valgrind against the emulator
# and fails if valgrind reports an error or a definitely/indirectly lost
# block in pcqual, libcurl or cJSON.  Slow (a few minutes); not part of
# check.sh.  Run as root after `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind

work=$(mktemp -d)
chown postgres "$work"
trap 'kill $emulator 2>/dev/null; rm -rf "$work"' EXIT
port=18799
python3 test/pc_emulator.py --port $port --quiet &
emulator=$!
su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $work/data -A trust" >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
pcqual.base_url = 'http://127.0.0.1:$port'
pcqual.authority = 'http://127.0.0.1:$port'
pcqual.allow_http = on
pcqual.partner_tenant = 'pcqual-test-partner.onmicrosoft.com'
pcqual.client_id = 'pcqual-test-app'
pcqual.client_secret = 'pcqual-test-secret'
pcqual.max_retries = 0
CONF

{
	echo "CREATE EXTENSION pcqual;"
	for i in $(seq 1 50); do
		for t in 11111111-0000-0000-0000-0000000000{01,06,09,11,12,16} \
			22222222-0000-0000-0000-000000000{400,404,429,502,503,600,601,602,604,606,608,609,610}; do
			echo "SELECT count(*) FROM pc_qualifications('$t'::uuid);"
		done
		echo "SELECT count(*) FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000005','22222222-0000-0000-0000-000000000404']::uuid[], 'warning');"
	done
} > "$work/calls.sql"
echo "$(grep -c pc_qualifications "$work/calls.sql") calls"

su postgres -c "valgrind --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
	--suppressions=/dev/null --log-file=$work/valgrind.log \
	/usr/lib/postgresql/15/bin/postgres --single -D $work/data postgres" \
	< "$work/calls.sql" > "$work/out.log" 2>&1 || true
cp "$work/valgrind.log" /tmp/pcqual-valgrind.log; cp "$work/out.log" /tmp/pcqual-valgrind.out
echo "answered: $(grep -c "count = " "$work/out.log") calls, of which errors: $(grep -c "ERROR:" "$work/out.log")"
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$work/valgrind.log"
if grep -E "pcqual|curl|cJSON" "$work/valgrind.log" | grep -q -E "^==[0-9]+== +(at|by)"; then
	echo "valgrind reports a problem involving pcqual, libcurl or cJSON (full log: /tmp/pcqual-valgrind.log):"
	grep -B3 -A25 "lost in loss record\|Invalid\|uninitialised" "$work/valgrind.log" | head -120
	exit 1
fi
echo "valgrind: no error or leak in pcqual, libcurl or cJSON"

#!/usr/bin/env bash
# The README's first example at bulk speed: the batched LATERAL join
# against the Nested Loop and the uuid[] call, in one run.
#
#   bench/lateral.sh         (as root, on Debian 12/13/testing; about 1 minute)
#
# Installs what is missing, makes the test files in a private directory,
# builds and installs the extension, then in a throwaway cluster (pcqual
# preloaded) with the emulator on port 18865 (BENCH_EMULATOR_PORT) at 20 ms
# per request, over crm.customers (1,000 customers, distinct tenants) and
# pcqual.concurrency 32, measures three times each, alternating:
#
#   batched   SELECT c.name, q.* FROM crm.customers c
#             CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
#             (the plan must be the Custom Scan PcqualBatchedLateral)
#   bulk      the same rows from pc_qualifications(ARRAY(SELECT tenant_id ...))
#             joined back to crm.customers
#   nested    the first query with pcqual.batch_lateral = off: the Nested
#             Loop, one request per customer (once: about 21 s)
#
# Targets (medians): batched / bulk <= 1.2, nested / batched >= 20.  Also
# checks that the three return the same 1,000 rows, and that the batch sent
# one request per customer.  Prints one table with PASS/MISS per target;
# exits non-zero only when a run fails, never for a missed target.
#
# Environment: PYTHON, BUILD_RETRIES, BENCH_EMULATOR_PORT (bench/lib.sh),
# LATERAL_CUSTOMERS (default 1000), LATERAL_CONCURRENCY (default 32),
# LATERAL_LATENCY_MS (default 20).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

if [ "${1:-}" != "--inner" ]; then
	bench_outer_begin
	bench_build_install || exit 1
	export BENCH_SETUP_SECONDS=$SECONDS
	bench_virtualenv 300
	exit $?
fi

bench_inner_begin
customers=${LATERAL_CUSTOMERS:-1000}
concurrency=${LATERAL_CONCURRENCY:-32}
latency=${LATERAL_LATENCY_MS:-20}

bench_start_emulator "$work" || exit 1
bench_write_ctl "$work"
db=pcqual_bench
bench_createdb "$db" || { echo "creating the benchmark database failed" >&2; exit 1; }
psql_db=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db")

"${psql_db[@]}" -v n="$customers" <<'EOF' || { fail "crm.customers"; bench_finish; }
CREATE SCHEMA crm;
CREATE TABLE crm.customers (id int PRIMARY KEY, name text, tenant_id uuid);
INSERT INTO crm.customers
SELECT i, 'Customer ' || i, t
FROM unnest(bench_tenants(7, :n)) WITH ORDINALITY AS u(t, i);
ANALYZE crm.customers;
EOF

# The three queries, each as "SELECT count(*), md5 of the rows in order".
batched_sql="SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM (
	SELECT c.name, q.* FROM crm.customers c
	CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q) x"
bulk_sql="SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM (
	SELECT c.name, q.qualification, q.vetting_status, q.vetting_reason, q.vetting_created_date
	FROM crm.customers c
	JOIN pc_qualifications(ARRAY(SELECT tenant_id FROM crm.customers)) q
	  ON q.customer_tenant_id = c.tenant_id) x"

# run KIND SQL [SETTING...]: one timed run in a new session; writes
# "ms rows md5 requests" to $work/run (not in a subshell: fail records)
run() {
	local kind=$1 sql=$2 out
	shift 2
	exec 4>"$work/run"
	"$work/ctl" reset "latency_ms=$latency" || { fail "$kind: emulator reset"; echo "n/a n/a n/a n/a" >&4; return 1; }
	out=$(timeout 120 "${psql_db[@]}" <<EOF
SET pcqual.concurrency = $concurrency;
$(printf '%s\n' "$@")
-- the reset revoked the cluster's shared token: drop it, so that the
-- warm-up below is exactly one request (not a 401 and a retry)
SELECT pc_disconnect() \gset
SELECT count(*) FROM pc_qualifications('be0c0000-0000-4000-8000-000000000000'::uuid);
SELECT clock_timestamp() AS t0 \gset
$sql;
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1);
EOF
	) || { fail "$kind: psql failed"; echo "n/a n/a n/a n/a" >&4; return 1; }
	"$work/ctl" stats "$kind"
	# lines: warm-up count, count|md5, ms
	local rows_md5 ms requests
	rows_md5=$(sed -n 2p <<<"$out")
	ms=$(sed -n 3p <<<"$out")
	requests=$(( $(json_get "$work/stats.$kind" api_requests) - 1 ))
	echo "$ms ${rows_md5%%|*} ${rows_md5#*|} $requests" >&4
	exec 4>&-
}

plan=$("${psql_db[@]}" -c "SET pcqual.concurrency = $concurrency" -c "EXPLAIN (COSTS OFF) $batched_sql")
grep -q PcqualBatchedLateral <<<"$plan" || fail "the batched query's plan has no PcqualBatchedLateral node: $plan"

declare -a B_MS U_MS
expect=
check() { # KIND "ms rows md5 requests"
	local rows md5
	read -r _ rows md5 _ <<<"$2"
	if [ -z "$expect" ]; then expect="$rows $md5"; fi
	[ "$rows $md5" = "$expect" ] || fail "$1 returned $rows rows ($md5), not $expect"
}
for round in 1 2 3; do
	order="batched bulk"
	[ $((round % 2)) -eq 0 ] && order="bulk batched"
	for kind in $order; do
		if [ "$kind" = batched ]; then
			run batched "$batched_sql"
			r=$(cat "$work/run")
			B_MS+=("${r%% *}")
			read -r _ _ _ breq <<<"$r"
			[ "$breq" = "$customers" ] || fail "the batch sent $breq requests for $customers customers"
		else
			run bulk "$bulk_sql"
			r=$(cat "$work/run")
			U_MS+=("${r%% *}")
		fi
		check "$kind" "$r"
		echo "round $round $kind: $r" >&2
	done
done
run nested "$batched_sql" "SET pcqual.batch_lateral = off;"
r=$(cat "$work/run")
check nested "$r"
N_MS=${r%% *}
echo "nested: $r" >&2

b=$(median "${B_MS[@]}")
u=$(median "${U_MS[@]}")
bound=$(calc 'a * b' '%.0f' "$(calc 'int((a + b - 1) / b)' '%d' "$customers" "$concurrency")" "$latency")
echo "LATERAL join over $customers customers at $latency ms per request, pcqual.concurrency $concurrency"
echo "(medians of 3; the emulator and PostgreSQL share $(nproc) CPUs)"
printf '   %-44s %9s ms\n' "batched (Custom Scan PcqualBatchedLateral)" "$b" \
	"bulk: pc_qualifications(uuid[]) joined back" "$u" \
	"Nested Loop (pcqual.batch_lateral = off)" "$N_MS" \
	"latency bound ceil(N / concurrency) x latency" "$bound"
echo "   runs: batched ${B_MS[*]}; bulk ${U_MS[*]}"
target "batched / bulk" "$(calc 'a / b' '%.2f' "$b" "$u")" le 1.2
target "Nested Loop / batched" "$(calc 'a / b' '%.1f' "$N_MS" "$b")" ge 20
bench_machine_line
bench_finish

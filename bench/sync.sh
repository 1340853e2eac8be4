#!/usr/bin/env bash
# Issue 11: what pc_sync_qualifications' bookkeeping costs over the fetch.
#
#   bench/sync.sh          (as root, on Debian; about 1-2 minutes)
#
# Builds and installs pcqual (as bench/bulk.sh does), then in a throwaway
# cluster (pg_virtualenv -t, pcqual preloaded) with the emulator on port 18865
# at 20 ms latency, pcqual.concurrency 32, for 10,000 customers of the
# emulator's sync population (44444444-..., see test/pc_emulator.py: config
# sync_epoch, change_percent=1, fail_percent=1):
#
#   baseline  pc_sync_qualifications at epoch 0: every customer answers,
#             every qualification is "added"
#   rounds    ROUNDS times, alternating which goes first:
#             - the epoch is flipped (1, 2, 3, ...): the 1% of customers in
#               the change bucket switch between Approved and InReview, the
#               1% in the fail bucket answer 503 (epoch >= 1)
#             - pc_sync_qualifications(tenants): fetch + state, change and
#               per-customer bookkeeping, committed (autocommit)
#             - pc_qualifications(tenants, on_error => 'warning'): the same
#               fetch alone
#
# pcqual.max_retries = 0 in the benchmark session: a 503 fails at once
# instead of being retried with backoff (3 retries by default, seconds of
# jittered waiting that would dominate both timings and differ run to run).
# client_min_messages = error: the WARNINGs for the failed customers (both
# functions give one each) are not sent to psql.
#
# The expected counts are computed here from the emulator's documented
# bucket rule (SHA-256 of the tenant id) and checked against what the sync
# returns and writes.  Prints each run's time, the median ratio
# sync / fetch alone (target <= 1.20: bookkeeping adds at most 20%), and the
# rows written.  Exits non-zero when a run fails or a count is wrong, never
# for a missed target.  The emulator (Python) and PostgreSQL share this
# machine's CPUs.
#
# Environment: CUSTOMERS (default 10000), ROUNDS (default 4), LATENCY_MS
# (default 20), CONCURRENCY (default 32), BENCH_EMULATOR_PORT (default 18865).
#
# shellcheck disable=SC2028,SC2317,SC2017  # psql meta-commands echoed; trap handlers; ceil(a / b) * c is meant
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
CUSTOMERS=${CUSTOMERS:-10000}
ROUNDS=${ROUNDS:-4}
LATENCY_MS=${LATENCY_MS:-20}
CONCURRENCY=${CONCURRENCY:-32}
export CUSTOMERS ROUNDS LATENCY_MS CONCURRENCY

# ===========================================================================
# outer part
# ===========================================================================
if [ "${1:-}" != "--inner" ]; then
	bench_outer_begin
	bench_build_install || exit 1
	export BENCH_SETUP_SECONDS=$SECONDS
	bench_virtualenv 600
	exit $?
fi

# ===========================================================================
# inner part: runs inside pg_virtualenv
# ===========================================================================
bench_inner_begin

bench_start_emulator "$work" || exit 1
if ! curl -sf --max-time 5 -X POST "$emu_base/_emulator/config?sync_epoch=0&change_percent=1&fail_percent=1" >/dev/null; then
	echo "this emulator has no sync population (config sync_epoch, change_percent, fail_percent)" >&2
	exit 1
fi
db=pcqual_sync
bench_createdb "$db" || { echo "creating the benchmark database failed" >&2; exit 1; }

cat >"$work/ctl" <<EOF
#!/bin/sh
curl -sf --max-time 10 -X POST "$emu_base/_emulator/config?\$1" >/dev/null
EOF
chmod +x "$work/ctl"

# --- the customers and what the emulator will answer them -------------------
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<EOF || { echo "making the customers failed" >&2; exit 1; }
CREATE TABLE bench_customers AS SELECT bench_tenants(1, $CUSTOMERS, 0, '44444444') AS a;
EOF
psql -X -A -t -d "$db" -c "SELECT unnest(a) FROM bench_customers" >"$work/tenants"
read -r n_fail n_change < <("$python" - "$work/tenants" <<'PY'
import hashlib, sys
fail = change = 0
for line in open(sys.argv[1]):
    t = line.strip().lower()
    if not t:
        continue
    h = hashlib.sha256(t.encode("ascii")).digest()
    c, f = int.from_bytes(h[0:4], "big") % 100, int.from_bytes(h[4:8], "big") % 100
    if f < 1:
        fail += 1
    elif c < 1:
        change += 1          # a customer that fails never shows its change
print(fail, change)
PY
)
echo "== $CUSTOMERS customers: $n_fail will fail (503), $n_change will change each epoch" >&2

# --- the runs -------------------------------------------------------------------
sync_sql() {  # $1 = key
	cat <<EOF
SELECT clock_timestamp() AS t0 \\gset
SELECT * FROM pc_sync_qualifications((SELECT a FROM bench_customers)) \\gset
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \\gset
\\echo RES $1.ms :ms
\\echo RES $1.customers :customers
\\echo RES $1.succeeded :succeeded
\\echo RES $1.failed :failed
\\echo RES $1.rows_changed :rows_changed
EOF
}
fetch_sql() {  # $1 = key
	cat <<EOF
SELECT clock_timestamp() AS t0 \\gset
SELECT count(*) AS n, count(DISTINCT customer_tenant_id) AS nc FROM pc_qualifications((SELECT a FROM bench_customers), on_error => 'warning') \\gset
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \\gset
\\echo RES $1.ms :ms
\\echo RES $1.rows :n
\\echo RES $1.customers :nc
EOF
}
{
	echo "SET statement_timeout = '300s';"
	echo "SET client_min_messages = error;"
	echo "SET pcqual.concurrency = $CONCURRENCY;"
	echo "SET pcqual.max_retries = 0;"
	echo "\\! $work/ctl 'latency_ms=$LATENCY_MS&sync_epoch=0&change_percent=1&fail_percent=1'"
	echo "SELECT count(*) AS warm FROM pc_qualifications('be0cffff-0000-4000-8000-000000000000'::uuid) \\gset"
	sync_sql base
	for r in $(seq "$ROUNDS"); do
		echo "\\! $work/ctl sync_epoch=$r"
		if [ $((r % 2)) -eq 1 ]; then
			sync_sql "sync.$r"; fetch_sql "fetch.$r"
		else
			fetch_sql "fetch.$r"; sync_sql "sync.$r"
		fi
	done
	echo "SELECT count(*) AS n FROM pc_qualification_state \\gset"
	echo "\\echo RES state_rows :n"
	echo "SELECT count(*) AS n, count(*) FILTER (WHERE change = 'added') AS a, count(*) FILTER (WHERE change = 'changed') AS c, count(*) FILTER (WHERE change = 'removed') AS d FROM pc_qualification_changes \\gset"
	echo "\\echo RES change_rows :n"
	echo "\\echo RES change_added :a"
	echo "\\echo RES change_changed :c"
	echo "\\echo RES change_removed :d"
	echo "SELECT count(*) AS n, count(*) FILTER (WHERE consecutive_failures = $ROUNDS) AS f, max(consecutive_failures) AS m FROM pc_customer_sync \\gset"
	echo "\\echo RES sync_rows :n"
	echo "\\echo RES sync_failing :f"
	echo "\\echo RES sync_maxfail :m"
	echo "SELECT pg_size_pretty(pg_total_relation_size('pc_qualification_state') + pg_total_relation_size('pc_qualification_changes') + pg_total_relation_size('pc_customer_sync')) AS s \\gset"
	echo "\\echo RES table_size :s"
} >"$work/run.sql"
echo "== baseline sync, then $ROUNDS rounds of sync and fetch alone, alternating (about $(( (ROUNDS * 2 + 1) * ( (CUSTOMERS + CONCURRENCY - 1) / CONCURRENCY * LATENCY_MS ) / 1000 + 10 )) s)" >&2
timeout -k 5 500 psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$work/run.sql" >"$work/run.out" 2>"$work/run.err"
rc=$?
[ $rc -eq 0 ] || fail "benchmark session (psql exit $rc): $(head -5 "$work/run.err" | tr '\n' ' ')"

# ===========================================================================
# report
# ===========================================================================
declare -A R
while read -r _ key val; do R[$key]=$val; done < <(grep '^RES ' "$work/run.out")
r() { echo "${R[$1]:-n/a}"; }
expect() {  # key expected
	[ "$(r "$1")" = "$2" ] || fail "$1 = $(r "$1"), expected $2"
}
expect base.customers "$CUSTOMERS"; expect base.succeeded "$CUSTOMERS"; expect base.failed 0
expect base.rows_changed "$CUSTOMERS"
for i in $(seq "$ROUNDS"); do
	expect "sync.$i.customers" "$CUSTOMERS"; expect "sync.$i.failed" "$n_fail"
	expect "sync.$i.succeeded" $((CUSTOMERS - n_fail)); expect "sync.$i.rows_changed" "$n_change"
	expect "fetch.$i.rows" $((CUSTOMERS - n_fail)); expect "fetch.$i.customers" $((CUSTOMERS - n_fail))
done
expect state_rows "$CUSTOMERS"
expect change_rows $((CUSTOMERS + ROUNDS * n_change))
expect sync_rows "$CUSTOMERS"
expect sync_failing "$n_fail"

bound=$(( (CUSTOMERS + CONCURRENCY - 1) / CONCURRENCY * LATENCY_MS ))
echo
echo "pcqual sync benchmark (issue 11) -- $(date -u '+%Y-%m-%d %H:%M UTC')"
bench_machine_line
echo "PostgreSQL $(psql -X -A -t -d "$db" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)," \
	"pcqual $(psql -X -A -t -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pcqual'" 2>/dev/null);" \
	"$CUSTOMERS customers, emulator latency $LATENCY_MS ms, pcqual.concurrency $CONCURRENCY, pcqual.max_retries 0"
echo "per epoch: $n_fail customers answer 503 (fail bucket), $n_change others change status (change bucket)"
echo
printf '   %-34s %9s %9s %8s %9s %9s %8s\n' "run" "time ms" "customers" "failed" "changed" "rows" "sync/fetch"
printf '   %-34s %9s %9s %8s %9s %9s %8s\n' "sync, epoch 0 (baseline: all added)" "$(r base.ms)" "$(r base.customers)" \
	"$(r base.failed)" "$(r base.rows_changed)" "-" "-"
ss=(); ff=(); qq=()
for i in $(seq "$ROUNDS"); do
	first=sync; [ $((i % 2)) -eq 0 ] && first=fetch
	q=$(calc 'a / b' '%.3f' "$(r "sync.$i.ms")" "$(r "fetch.$i.ms")")
	printf '   %-34s %9s %9s %8s %9s %9s %8s\n' "sync, epoch $i" "$(r "sync.$i.ms")" "$(r "sync.$i.customers")" \
		"$(r "sync.$i.failed")" "$(r "sync.$i.rows_changed")" "-" "$q"
	printf '   %-34s %9s %9s %8s %9s %9s %8s\n' "fetch alone, epoch $i ($first first)" "$(r "fetch.$i.ms")" \
		"$(r "fetch.$i.customers")" "-" "-" "$(r "fetch.$i.rows")" ""
	ss+=("$(r "sync.$i.ms")"); ff+=("$(r "fetch.$i.ms")"); qq+=("$q")
done
ms_sync=$(median "${ss[@]}"); ms_fetch=$(median "${ff[@]}")
ratio=$(calc 'a / b' '%.3f' "$ms_sync" "$ms_fetch")
printf '   %-50s %9s ms\n' "median sync (epochs 1..$ROUNDS)" "$ms_sync"
printf '   %-50s %9s ms\n' "median fetch alone" "$ms_fetch"
printf '   %-50s %9s ms\n' "latency bound ceil(N / concurrency) x latency" "$bound"
printf '   %-50s %9s ms\n' "bookkeeping (median sync - median fetch)" "$(calc 'a - b' '%.1f' "$ms_sync" "$ms_fetch")"
printf '   %-50s %9s   (per round: %s)  target <= 1.20 %s\n' "sync / fetch alone (medians)" "$ratio" "${qq[*]}" "$(verdict "$ratio" le 1.20)"
target "sync / fetch alone time, $CUSTOMERS customers, 1% change, 1% fail" "$ratio" le 1.20 "per round ${qq[*]}"
echo
echo "rows written (after the baseline and $ROUNDS syncs; expected in brackets)"
printf '   %-50s %9s  [%s]\n' "pc_qualification_state rows" "$(r state_rows)" "$CUSTOMERS"
printf '   %-50s %9s  [%s]\n' "pc_qualification_changes rows" "$(r change_rows)" "$((CUSTOMERS + ROUNDS * n_change))"
printf '   %-50s %9s\n' "  added / changed / removed" "$(r change_added) / $(r change_changed) / $(r change_removed)"
printf '   %-50s %9s  [%s]\n' "pc_customer_sync rows" "$(r sync_rows)" "$CUSTOMERS"
printf '   %-50s %9s  [%s]\n' "  with consecutive_failures = $ROUNDS" "$(r sync_failing)" "$n_fail"
printf '   %-50s %9s\n' "size of the three tables with indexes" "$(r table_size)"
echo
bench_finish

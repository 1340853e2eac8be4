#!/usr/bin/env bash
# Issue 9, "Memory bounded by what is in flight", and cancellation.
#
#   bench/memory.sh        (as root, on Debian; about 2-3 minutes, most of it
#                           two calls of 1,000,000 tenants)
#
# Builds and installs pcqual (as bench/bulk.sh does), then in a throwaway
# cluster (pg_virtualenv -t, pcqual preloaded) with the emulator on port 18865
# at 0 ms latency, pcqual.concurrency 64:
#
#   0. stores arrays of 10,000, 1,000,000 and 10,000,000 distinct tenant ids
#      (be0c + 28 hex digits of md5: in random order, so the de-duplicating
#      sort does its full work; all answered 200 by the emulator) in a table
#      (about 20 s).
#   1. peak memory of a fresh backend (after a warm single call) during
#        SELECT count(*) FROM pc_qualifications(ARRAY, on_error => 'warning')
#      - ARRAY read from the table, 10,000 and 1,000,000 ids: the target runs
#      - ARRAY(SELECT ... FROM generate_series(1, 1000000)) written in the
#        statement, and that ARRAY(...) alone under cardinality(): building
#        the argument is PostgreSQL's work (about 100 bytes per element,
#        before pcqual runs), shown for comparison (INLINE=0 skips these)
#      Memory: VmHWM (the kernel's peak RSS, shared buffers the backend
#      touches included) after the call minus VmRSS before it, and the peak
#      of RssAnon (anonymous memory) sampled every 50 ms from
#      /proc/<backend>/status by this script, minus RssAnon before; also the
#      peak during the first 10 s of the call.  Target: the 1,000,000 run
#      stays within 64 MB of the 10,000 run (VmHWM growth).
#   2. cancel: pg_cancel_backend() from a second session; the time from the
#      cancel until the first session's statement has ended (its backend is
#      no longer active in pg_stat_activity, polled every 1 ms) and until its
#      psql has exited with the error; target 0.5 s (server side):
#        (a) during set-up: 1,000,000 stored ids, cancelled 20 ms after the
#            statement started, while the array is being sorted and
#            de-duplicated (no request, not even the token's, has reached the
#            emulator: its counters are shown)
#        (a2) the same with 10,000,000 ids (the most one call takes),
#            cancelled 1 s after the start (HUGE_DELAY ms)
#        (b) mid-run: 1,000,000 ids, cancelled 3 s after the start
#        (c) in retry back-off: 1,000 tenants of the emulator's sync
#            population that all answer 503 (pcqual.max_retries 3),
#            cancelled 1.5 s after the start
#   3. 10,000,001 tenants (ARRAY(SELECT one uuid FROM generate_series(...))):
#      refused with SQLSTATE 54000; the statement's time against the same
#      ARRAY(...) under cardinality(): what pcqual spends before refusing.
#
# Prints a table and a PASS/MISS line per target.  Exits non-zero only when a
# run fails (build, cluster, query error, wrong row count, a cancel that did
# not cancel), never for a missed target.  The emulator (Python) and
# PostgreSQL share this machine's CPUs: a 1,000,000-tenant call takes as
# long as the emulator needs to answer a million requests, 30-60 s on 2 cores.
#
# Environment: BIG (default 1000000), SMALL (default 10000), HUGE (default
# 10000000), HUGE_DELAY (default 1000), CONCURRENCY (default 64), INLINE
# (default 1), BENCH_EMULATOR_PORT (default 18865); see bench/lib.sh.
#
# shellcheck disable=SC2028,SC2317  # psql meta-commands echoed; trap handlers
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
BIG=${BIG:-1000000}
SMALL=${SMALL:-10000}
CONCURRENCY=${CONCURRENCY:-64}
HUGE=${HUGE:-10000000}
HUGE_DELAY=${HUGE_DELAY:-1000}
export BIG SMALL CONCURRENCY HUGE HUGE_DELAY

# ===========================================================================
# outer part
# ===========================================================================
if [ "${1:-}" != "--inner" ]; then
	bench_outer_begin
	bench_build_install || exit 1
	export BENCH_SETUP_SECONDS=$SECONDS
	bench_virtualenv 900
	exit $?
fi

# ===========================================================================
# inner part: runs inside pg_virtualenv
# ===========================================================================
bench_inner_begin

bench_start_emulator "$work" || exit 1
db=pcqual_mem
bench_createdb "$db" || { echo "creating the benchmark database failed" >&2; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<'EOF' || { echo "helpers failed" >&2; exit 1; }
-- N distinct tenant ids in random order: be0c + 28 hex digits of md5(i)
CREATE FUNCTION bench_uuid(i bigint, salt text DEFAULT '') RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ('be0c' || substr(md5(salt || i::text), 5))::uuid $$;

-- Waits for the statement of the session named app that calls
-- pc_qualifications, cancels it delay_ms after it started, and waits until
-- that backend is no longer running it.
CREATE FUNCTION bench_cancel(app text, delay_ms int, OUT pid int, OUT cancel_epoch numeric,
                             OUT after_start_ms numeric, OUT took_ms numeric)
LANGUAGE plpgsql AS $$
DECLARE
    qs timestamptz;
    cancel_at timestamptz;
    deadline timestamptz := clock_timestamp() + interval '120 s';
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT a.pid, a.query_start INTO pid, qs FROM pg_stat_activity a
         WHERE a.application_name = app AND a.state = 'active'
           AND a.query LIKE '%pc_qualifications(%';
        EXIT WHEN pid IS NOT NULL;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'no pc_qualifications statement in session %', app;
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
    PERFORM pg_sleep(greatest(0, extract(epoch FROM qs + delay_ms * interval '1 ms' - clock_timestamp())));
    cancel_at := clock_timestamp();
    PERFORM pg_cancel_backend(pid);
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity a
                              WHERE a.pid = bench_cancel.pid AND a.state = 'active' AND a.query_start = qs);
        EXIT WHEN clock_timestamp() > cancel_at + interval '60 s';
        PERFORM pg_sleep(0.001);
    END LOOP;
    took_ms := round((extract(epoch FROM clock_timestamp() - cancel_at) * 1000)::numeric, 1);
    after_start_ms := round((extract(epoch FROM cancel_at - qs) * 1000)::numeric, 1);
    cancel_epoch := extract(epoch FROM cancel_at);
END
$$;
EOF

declare -A R
res() { R[$1]=$2; }
r() { echo "${R[$1]:-n/a}"; }

# sample PID NAME: RssAnon/VmRSS/VmHWM (kB) of PID every 50 ms into
# $work/samples.NAME ("ms-since-start anon rss hwm") until PID or the
# sampling session ends; runs in the background.
sample() {
	local pid=$1 out=$work/samples.$2 t0=${EPOCHREALTIME/./} k v _ anon rss hwm now
	: >"$out"
	while [ -r "/proc/$pid/status" ] && [ ! -e "$work/stop.$2" ]; do
		anon=; rss=; hwm=
		while read -r k v _; do
			case $k in
			RssAnon:) anon=$v ;; VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;;
			esac
		done <"/proc/$pid/status" 2>/dev/null
		now=${EPOCHREALTIME/./}
		[ -n "$anon" ] && echo "$(((now - t0) / 1000)) $anon $rss $hwm" >>"$out"
		sleep 0.05
	done
}

# backend_of APP: the pid of the session named APP (waits up to 10 s)
backend_of() {
	local pid
	for _ in $(seq 200); do
		pid=$(psql -X -A -t -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$1'" 2>/dev/null | head -1)
		[ -n "$pid" ] && { echo "$pid"; return 0; }
		sleep 0.05
	done
	return 1
}

# --- 1. memory -----------------------------------------------------------------
# mem_run NAME KIND SOURCE: a fresh session; between "before" and "after" the
# one statement over the uuid[] expression SOURCE (KIND pcqual: the bulk
# call; array: cardinality() alone); the sampler watches the backend.
mem_run() {
	local name=$1 kind=$2 src=$3 app=bench-mem-$1 bpid spid rc stmt sampler=
	if [ "$kind" = pcqual ]; then
		stmt="SELECT count(*) AS n FROM pc_qualifications($src, on_error => 'warning')"
	else
		stmt="SELECT cardinality($src) AS n"
	fi
	emu_reset latency_ms=0 || fail "emulator reset"
	{
		echo "SET statement_timeout = '600s';"
		echo "SET client_min_messages = error;"
		echo "SET pcqual.concurrency = $CONCURRENCY;"
		# connection and token first (also loads what a call loads)
		echo "SELECT count(*) AS warm FROM pc_qualifications('be0cffff-0000-4000-8000-000000000000'::uuid) \\gset"
		echo "\\! sleep 0.3"          # the sampler's first readings: the baseline
		echo "SELECT rss_kb AS rss0, hwm_kb AS hwm0, anon_kb AS anon0 FROM bench_mem() \\gset"
		echo "SELECT clock_timestamp() AS t0 \\gset"
		echo "$stmt \\gset"
		echo "SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \\gset"
		echo "SELECT rss_kb AS rss1, hwm_kb AS hwm1, anon_kb AS anon1 FROM bench_mem() \\gset"
		echo "\\echo RES $name.n :n"
		echo "\\echo RES $name.ms :ms"
		echo "\\echo RES $name.rss0 :rss0"
		echo "\\echo RES $name.hwm0 :hwm0"
		echo "\\echo RES $name.anon0 :anon0"
		echo "\\echo RES $name.rss1 :rss1"
		echo "\\echo RES $name.hwm1 :hwm1"
		echo "\\echo RES $name.anon1 :anon1"
		echo "\\! touch $work/stop.$name"
	} >"$work/mem.$name.sql"
	PGAPPNAME=$app timeout -k 5 700 psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$work/mem.$name.sql" \
		>"$work/mem.$name.out" 2>"$work/mem.$name.err" &
	spid=$!
	if bpid=$(backend_of "$app"); then
		sample "$bpid" "$name" &
		sampler=$!
	else
		fail "mem $name: no backend found"
	fi
	wait "$spid"
	rc=$?
	touch "$work/stop.$name"
	[ -n "$sampler" ] && wait "$sampler" 2>/dev/null
	[ $rc -eq 0 ] || fail "mem $name (psql exit $rc): $(head -3 "$work/mem.$name.err" | tr '\n' ' ')"
	while read -r _ k v; do res "$k" "$v"; done < <(grep '^RES ' "$work/mem.$name.out")
	# peak RssAnon while the statement ran (the first readings are the
	# baseline before it), and during its first 10 s
	res "$name.peak_anon" "$(awk '$2 > m { m = $2 } END { print m + 0 }' "$work/samples.$name")"
	res "$name.peak_anon_10s" "$(awk -v ms="$(r "$name.ms")" 'NR == FNR { last = $1; next }
		{ start = last - ms; if ($1 >= start - 100 && $1 <= start + 10000 && $2 > m) m = $2 }
		END { print m + 0 }' "$work/samples.$name" "$work/samples.$name")"
	res "$name.samples" "$(wc -l <"$work/samples.$name")"
}

echo "== 0. the tenant arrays ($SMALL, $BIG, $HUGE distinct ids; about 20 s)" >&2
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<EOF || { echo "making the arrays failed" >&2; exit 1; }
CREATE TABLE bench_arrays (name text PRIMARY KEY, a uuid[] NOT NULL);
ALTER TABLE bench_arrays ALTER COLUMN a SET STORAGE EXTERNAL;  -- uuids do not compress
INSERT INTO bench_arrays
SELECT name, ARRAY(SELECT bench_uuid(i, name) FROM generate_series(1, n) i)
FROM (VALUES ('small', $SMALL), ('big', $BIG), ('huge', $HUGE)) v(name, n);
EOF
stored() { echo "(SELECT a FROM bench_arrays WHERE name = '$1')"; }
inline() { echo "ARRAY(SELECT bench_uuid(i, 'inline') FROM generate_series(1, $1) i)"; }

echo "== 1. memory: $SMALL tenants" >&2
mem_run small pcqual "$(stored small)"
echo "== 1. memory: $BIG tenants (about as long as the emulator needs for $BIG requests)" >&2
mem_run big pcqual "$(stored big)"
if [ "${INLINE:-1}" = 1 ]; then
	echo "== 1. memory: ARRAY(SELECT ... generate_series(1, $BIG)) alone" >&2
	mem_run iarray array "$(inline "$BIG")"
	echo "== 1. memory: pc_qualifications(ARRAY(SELECT ... generate_series(1, $BIG))) (as long again)" >&2
	mem_run ibig pcqual "$(inline "$BIG")"
fi

# --- 2. cancel -------------------------------------------------------------------
# cancel_run NAME DELAY_MS SETUP-SQL CALL-SQL [CONFIG]: session A runs
# SETUP-SQL then CALL-SQL; session B cancels CALL-SQL DELAY_MS after it began.
cancel_run() {
	local name=$1 delay=$2 setup=$3 call=$4 cfg=${5:-latency_ms=0} app=bench-cancel-$1 apid line
	emu_reset "$cfg" || fail "emulator reset"
	{
		echo "SET statement_timeout = '600s';"
		echo "SET client_min_messages = error;"
		echo "SET pcqual.concurrency = $CONCURRENCY;"
		echo "$setup"
		echo "$call;"
	} >"$work/cancel.$name.sql"
	( PGAPPNAME=$app timeout -k 5 300 psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$work/cancel.$name.sql" \
		>"$work/cancel.$name.out" 2>"$work/cancel.$name.err"
	  echo $? >"$work/cancel.$name.rc"
	  date +%s.%N >"$work/cancel.$name.end" ) &
	apid=$!
	line=$(timeout 200 psql -X -A -t -F ' ' -d "$db" \
		-c "SELECT pid, cancel_epoch, after_start_ms, took_ms FROM bench_cancel('$app', $delay)" 2>"$work/cancel.$name.b.err")
	emu_stats >"$work/cancel.$name.stats"
	wait "$apid"
	local pid epoch after took end
	read -r pid epoch after took <<<"$line"
	end=$(cat "$work/cancel.$name.end" 2>/dev/null)
	res "$name.after" "${after:-n/a}"
	res "$name.took" "${took:-n/a}"
	res "$name.client" "$(calc '(a - b) * 1000' '%.1f' "$end" "$epoch")"
	res "$name.api" "$(json_get "$work/cancel.$name.stats" api_requests)"
	res "$name.tokens" "$(json_get "$work/cancel.$name.stats" token_requests)"
	res "$name.status" "$(json_get "$work/cancel.$name.stats" status_counts | tr -d ' ')"
	if grep -q 'canceling statement due to user request' "$work/cancel.$name.err"; then
		res "$name.error" "57014"
	else
		res "$name.error" "none"
		fail "cancel $name: no 'canceling statement due to user request' (psql: $(head -2 "$work/cancel.$name.err" | tr '\n' ' '); B: $(head -2 "$work/cancel.$name.b.err" | tr '\n' ' '))"
	fi
}

echo "== 2. cancel (a) during set-up, $BIG tenants" >&2
cancel_run setup 20 "" \
	"SELECT count(*) FROM pc_qualifications($(stored big), on_error => 'warning')"
echo "== 2. cancel (a2) during set-up, $HUGE tenants" >&2
cancel_run setup10m "$HUGE_DELAY" "" \
	"SELECT count(*) FROM pc_qualifications($(stored huge), on_error => 'warning')"
echo "== 2. cancel (b) mid-run, $BIG tenants" >&2
cancel_run midrun 3000 "" \
	"SELECT count(*) FROM pc_qualifications($(stored big), on_error => 'warning')"
echo "== 2. cancel (c) in retry back-off, 1,000 tenants answering 503" >&2
cancel_run backoff 1500 \
	"CREATE TEMP TABLE t AS SELECT bench_tenants(7, 1000, 0, '44444444') AS a; SET pcqual.max_retries = 3;" \
	"SELECT count(*) FROM pc_qualifications((SELECT a FROM t), on_error => 'warning')" \
	"latency_ms=0&sync_epoch=1&fail_percent=100"

# --- 3. 10,000,001 tenants ----------------------------------------------------------
echo "== 3. 10,000,001 tenants" >&2
emu_reset latency_ms=0
big_arr="ARRAY(SELECT 'be0c0000-0000-4000-8000-000000000001'::uuid FROM generate_series(1, 10000001))"
psql -X -q -d "$db" >"$work/limit.out" 2>"$work/limit.err" <<EOF
\\set VERBOSITY verbose
SET statement_timeout = '300s';
SELECT clock_timestamp() AS t0 \\gset
SELECT cardinality($big_arr) AS n \\gset
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \\gset
\\echo RES limit.array_ms :ms
\\echo RES limit.array_n :n
SELECT clock_timestamp() AS t0 \\gset
SELECT count(*) FROM pc_qualifications($big_arr);
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \\gset
\\echo RES limit.call_ms :ms
EOF
while read -r _ k v; do res "$k" "$v"; done < <(grep '^RES ' "$work/limit.out")
limit_state=$(sed -n 's/^.*ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' "$work/limit.err" | head -1)
limit_msg=$(grep -m1 'ERROR:' "$work/limit.err" | sed 's/^.*ERROR:  //' | cut -c1-110)
limit_api=$(emu_stats | "$python" -c 'import json, sys; print(json.load(sys.stdin)["api_requests"])' 2>/dev/null)
[ "$limit_state" = 54000 ] || fail "10,000,001 tenants: SQLSTATE ${limit_state:-none}, expected 54000 ($limit_msg)"

# ===========================================================================
# report
# ===========================================================================
mb() { calc 'a / 1024' '%.1f' "$1"; }
growth_hwm() { calc '(b - a) / 1024' '%.1f' "$(r "$1.rss0")" "$(r "$1.hwm1")"; }
growth_anon() { calc '(b - a) / 1024' '%.1f' "$(r "$1.anon0")" "$(r "$1.peak_anon")"; }
[ "$(r small.n)" = "$SMALL" ] || fail "memory run $SMALL: $(r small.n) rows"
[ "$(r big.n)" = "$BIG" ] || fail "memory run $BIG: $(r big.n) rows"
if [ "${INLINE:-1}" = 1 ]; then
	[ "$(r iarray.n)" = "$BIG" ] || fail "array run: $(r iarray.n) elements"
	[ "$(r ibig.n)" = "$BIG" ] || fail "inline memory run $BIG: $(r ibig.n) rows"
fi

echo
echo "pcqual memory and cancellation benchmark (issue 9) -- $(date -u '+%Y-%m-%d %H:%M UTC')"
bench_machine_line
echo "PostgreSQL $(psql -X -A -t -d "$db" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)," \
	"pcqual $(psql -X -A -t -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pcqual'" 2>/dev/null);" \
	"emulator latency 0 ms, pcqual.concurrency $CONCURRENCY, work_mem $(psql -X -A -t -d "$db" -c 'SHOW work_mem')"
echo
echo "1. backend memory, a fresh session per run, MB (growth: during the statement, from just before it)"
printf '   %-44s %8s %7s %7s %7s %7s %7s\n' "run" "rows" "time s" "VmRSS0" "VmHWM1" "HWM +" "anon +"
rows_of() {
	local x k
	for x in "$@"; do
		k=${x%%:*}
		[ "$(r "$k.n")" = n/a ] && continue
		printf '   %-44s %8s %7s %7s %7s %7s %7s\n' "${x#*:}" "$(r "$k.n")" "$(calc 'a / 1000' '%.1f' "$(r "$k.ms")")" \
			"$(mb "$(r "$k.rss0")")" "$(mb "$(r "$k.hwm1")")" "$(growth_hwm "$k")" "$(growth_anon "$k")"
	done
}
rows_of "small:pc_qualifications(stored array of $SMALL)" "big:pc_qualifications(stored array of $BIG)" \
	"iarray:cardinality(ARRAY(... $BIG)), no pcqual" "ibig:pc_qualifications(ARRAY(... $BIG))"
diff_hwm=$(calc 'b - a' '%.1f' "$(growth_hwm small)" "$(growth_hwm big)")
diff_anon=$(calc 'b - a' '%.1f' "$(growth_anon small)" "$(growth_anon big)")
printf '   %-60s %7s MB  target <= 64 %s\n' "$BIG minus $SMALL (stored arrays), VmHWM growth" "$diff_hwm" "$(verdict "$diff_hwm" le 64)"
printf '   %-60s %7s MB\n' "$BIG minus $SMALL (stored arrays), sampled RssAnon growth" "$diff_anon"
printf '   %-60s %7s MB\n' "RssAnon growth in the first 10 s of the $BIG call" \
	"$(calc '(b - a) / 1024' '%.1f' "$(r big.anon0)" "$(r big.peak_anon_10s)")"
printf '   %-60s %7s MB\n' "  of which the ids: 16 bytes x $BIG, detoasted + pcqual's copy" "$(calc 'a * 32 / 1048576' '%.1f' "$BIG")"
if [ "$(r ibig.n)" != n/a ]; then
	printf '   %-60s %7s MB\n' "inline ARRAY(...) of $BIG minus stored $SMALL, VmHWM growth" \
		"$(calc 'b - a' '%.1f' "$(growth_hwm small)" "$(growth_hwm ibig)")"
	printf '   %-60s %7s MB\n' "inline: pc_qualifications minus the ARRAY(...) alone" \
		"$(calc 'b - a' '%.1f' "$(growth_hwm iarray)" "$(growth_hwm ibig)")"
fi
printf '   %-60s %7s\n' "$BIG call, tenants/s" "$(calc 'a * 1000 / b' '%.0f' "$BIG" "$(r big.ms)")"
echo "   (stored: the array read from a table; inline: built by ARRAY(SELECT ... generate_series) in the"
echo "    statement itself, which PostgreSQL does before pcqual runs, at about 100 bytes per element."
echo "    VmRSS0: before the statement, after a warm call; VmHWM1: the kernel's peak RSS after it;"
echo "    anon: RssAnon sampled every 50 ms, $(r big.samples) samples in the $BIG call)"
target "memory: $BIG minus $SMALL tenants (VmHWM growth), MB" "$diff_hwm" le 64
target "refusal of 10,000,001 tenants: SQLSTATE" "${limit_state:-none}" = 54000
echo
echo "2. cancel: pg_cancel_backend() from another session, until the statement ended"
printf '   %-36s %10s %11s %11s %8s %7s %6s\n' "phase" "cancel at" "server ms" "client ms" "API req" "tokens" "error"
for x in "setup:(a) set-up, $BIG tenants" "setup10m:(a2) set-up, $HUGE tenants" \
	"midrun:(b) mid-run, $BIG tenants" "backoff:(c) retry back-off (503s)"; do
	k=${x%%:*}
	printf '   %-36s %8s ms %11s %11s %8s %7s %6s\n' "${x#*:}" "$(r "$k.after")" "$(r "$k.took")" "$(r "$k.client")" \
		"$(r "$k.api")" "$(r "$k.tokens")" "$(r "$k.error")"
	target "cancel ${x#*:}: ms until the statement ended" "$(r "$k.took")" le 500
done
echo "   (cancel at: after the statement started; server ms: until pg_stat_activity no longer shows it active;"
echo "    client ms: until its psql exited with the error; API req / tokens: what reached the emulator)"
echo "   (c) emulator answers: $(r backoff.status)"
echo
echo "3. $((10000001)) tenants (one uuid repeated, generate_series)"
printf '   %-46s %s\n' "error (SQLSTATE: message)" "${limit_msg:-none}"
printf '   %-46s %8s ms\n' "ARRAY(...) alone, under cardinality()" "$(r limit.array_ms)"
printf '   %-46s %8s ms\n' "the same under pc_qualifications (refused)" "$(r limit.call_ms)"
printf '   %-46s %8s ms\n' "difference: pcqual before refusing" "$(calc 'b - a' '%.1f' "$(r limit.array_ms)" "$(r limit.call_ms)")"
printf '   %-46s %8s\n' "requests that reached the emulator" "${limit_api:-n/a}"
echo
bench_finish

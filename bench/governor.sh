#!/usr/bin/env bash
# Issue 14: the cluster-wide throttle governor and the shared token.
#
#   bench/governor.sh        (as root, on Debian; about 1-2 minutes)
#
# Builds and installs pcqual (as bench/bulk.sh does), then in a throwaway
# cluster (pg_virtualenv -t, pcqual preloaded) with test/pc_emulator.py on
# port 18865 (BENCH_EMULATOR_PORT) measures, side by side in one run, for
# customers with the emulator's generic answer (be0c...):
#
#   1. one backend, 4,000 customers, pc_qualifications(uuid[]) at
#      pcqual.concurrency 64 against a throttled partner (emulator config
#      latency_ms=20, throttle_inflight=8 (K), throttle_retry_after=1):
#      elapsed / ideal, ideal = N / K x 20 ms = 10 s (target <= 1.3), and the
#      429s the emulator sent (target <= 4 x K = 32).  pc_governor_reset()
#      just before, so the governor starts from nothing learned (the hard
#      case); then a second run of 4,000 other customers at once, the learned
#      state kept (for information).
#   2. four backends at once (four psql processes, each 1,000 distinct
#      customers, concurrency 64), the same throttled partner,
#      pc_governor_reset() before: total elapsed (first call start to last
#      call end) / ideal (4,000 / 8 x 20 ms = 10 s; target <= 1.3), total 429s
#      (target <= 32).
#   3. 20 new sessions calling pc_qualifications(uuid) at once, after an
#      emulator reset (which revokes every token) and pc_disconnect() (which
#      drops the shared token): the token requests the emulator saw
#      (target 1); the mean and longest call time.  The token endpoint answers
#      after TOKEN_LATENCY_MS (default 100 ms, emulator config
#      token_latency_ms), as Azure AD takes a while too: every session asks
#      while the first request is still on its way.
#   4. no throttling, 1,000 customers at concurrency 64, 20 ms: time and
#      backend CPU per customer (utime+stime from /proc/<pid>/stat, and
#      schedstat run time, as bench/bulk.sh reads them) with the governor on
#      against pcqual.cluster_governor = off (ALTER SYSTEM + pg_reload_conf();
#      every run is a new session), a warm-up of each, then ROUNDS rounds of
#      each, alternating which goes first; medians compared (targets: time
#      on/off <= 1.05, CPU on/off <= 1.05, judged on the schedstat run time:
#      whole ticks are 15-20% of one such call, too coarse for 5%).
#
# The calls wait behind an advisory lock held by a gate session until every
# session taking part has connected and made its warm call (connection and
# token): they start within a few ms of each other.  In 1 and 2 a sampler
# session records pc_stat_governor and pc_stat_activity every 50 ms; the
# table shows that timeline next to the emulator's own log (200s and 429s per
# second of the run, and when the 429s came), and pc_stat's status_429,
# retries and requests, which must equal the emulator's counts (a mismatch
# is a failed run).
#
# Prints one table with PASS/MISS per target and the raw numbers.  Exits
# non-zero only when a run fails (build, cluster, emulator, a query error, a
# lost customer, a count that does not match), never for a missed target.
# Every step has a time limit; the emulator and every session this script
# started are stopped on exit, whatever happens.  The emulator (Python) and
# PostgreSQL share this machine's CPUs.
#
# Environment: ROUNDS (default 5), TOKEN_LATENCY_MS (default 100),
# BUILD_RETRIES (default 2), BENCH_EMULATOR_PORT (default 18865),
# BENCH_KEEP=1 (keep the scratch directory); see bench/lib.sh.
#
# shellcheck disable=SC2028,SC2317,SC2017  # psql meta-commands echoed; trap handlers; ceil(a / b) * c is meant
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
ROUNDS=${ROUNDS:-5}
TOKEN_LATENCY_MS=${TOKEN_LATENCY_MS:-100}
export ROUNDS TOKEN_LATENCY_MS

# ===========================================================================
# outer part: dependencies, test files, build, cluster
# ===========================================================================
if [ "${1:-}" != "--inner" ]; then
	bench_outer_begin
	bench_build_install || exit 1
	export BENCH_SETUP_SECONDS=$SECONDS
	bench_virtualenv 420
	exit $?
fi

# ===========================================================================
# inner part: runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER... are set)
# ===========================================================================
bench_inner_begin
shopt -s lastpipe       # "... | session": fail() in this shell, not a subshell

K=8                    # the emulator's in-flight limit in 1 and 2
LAT=20                 # ms, every API request
THROTTLE="latency_ms=$LAT&throttle_inflight=$K&throttle_retry_after=1"
N1=4000                # customers in 1
N2=1000                # customers per backend in 2 (4 backends)
N3=20                  # sessions in 3
N4=1000                # customers in 4
WARM=be0c0000-0000-4000-8000-000000000000
clk=$(getconf CLK_TCK)

bench_start_emulator "$work" || exit 1
base=$emu_base

bench_write_ctl "$work"
ctl() { "$work/ctl" "$@" || fail "emulator control: $*"; }
stat_of() {  # $1 = stats name, $2 = counter
	json_get "$work/stats.$1" "$2"
}
stat_delta() {  # $1 = stats name (NAME.0 before, NAME.1 after), $2 = counter
	calc 'b - a' '%d' "$(stat_of "$1.0" "$2")" "$(stat_of "$1.1" "$2")"
}

# --- database ----------------------------------------------------------------
db=pcqual_governor
bench_createdb "$db" || { echo "creating the benchmark database failed" >&2; exit 1; }
q() { timeout -k 5 "${QT:-30}" psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" "$@"; }

extversion=$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pcqual'" 2>&1)
missing=$(q -c "SELECT string_agg(f, ', ') FROM unnest(ARRAY['pc_governor_reset()', 'pc_stat_reset()',
                  'pc_stat()', 'pc_stat_governor()', 'pc_stat_activity()', 'pc_disconnect()']) f
                WHERE to_regprocedure(f) IS NULL" 2>&1)
gov_setting=$(q -c "SELECT coalesce(current_setting('pcqual.cluster_governor', true), 'missing')" 2>&1)
if [ -n "$missing" ] || [ "$gov_setting" = missing ]; then
	echo "pcqual $extversion has not got the governor (missing: ${missing:-} ${gov_setting/on/}); is the 1.3 C code built?" >&2
	exit 1
fi

q <<'EOF' || { echo "creating the sampler failed" >&2; exit 1; }
CREATE UNLOGGED TABLE bench_gov (tag text, t float8, kind text, target text, in_flight int,
  window_size int, learned_limit int, paused bool, active_backends int, waiting_backends int,
  throttled bigint);
CREATE UNLOGGED TABLE bench_act (tag text, t float8, pid int, customers_done bigint,
  requests_in_flight int, throttled bigint, waiting bool, window_size int);
CREATE UNLOGGED TABLE bench_stop (tag text);
-- samples pc_stat_governor and pc_stat_activity every every_s seconds until
-- a bench_stop row with p_tag appears, or max_s have passed
CREATE PROCEDURE bench_sample(p_tag text, max_s float8, every_s float8) LANGUAGE plpgsql AS $$
DECLARE
  t_end timestamptz := clock_timestamp() + make_interval(secs => max_s);
BEGIN
  LOOP
    INSERT INTO bench_gov
      SELECT p_tag, extract(epoch FROM clock_timestamp()), g.kind, g.target, g.in_flight,
             g.window_size, g.learned_limit, coalesce(g.paused_until > clock_timestamp(), false),
             g.active_backends, g.waiting_backends, g.throttled
      FROM pc_stat_governor g;
    INSERT INTO bench_act
      SELECT p_tag, extract(epoch FROM clock_timestamp()), a.pid, a.customers_done,
             a.requests_in_flight, a.throttled, coalesce(a.waiting_until > clock_timestamp(), false),
             a.window_size
      FROM pc_stat_activity a;
    COMMIT;
    EXIT WHEN clock_timestamp() > t_end OR EXISTS (SELECT FROM bench_stop s WHERE s.tag = p_tag);
    PERFORM pg_sleep(every_s);
  END LOOP;
END
$$;
EOF

# "RES key value" lines of every session are collected in $work/res
: >"$work/res"
collect() {  # $1 = a session's output file
	grep '^RES ' "$1" >>"$work/res" 2>/dev/null || true
}
session_ok() {  # $1 = name, $2 = psql exit status: a failure when psql failed or said ERROR
	if [ "$2" -ne 0 ] || grep -q 'ERROR:' "$work/$1.err" 2>/dev/null; then
		fail "session $1 (psql exit $2): $(grep -v 'WARNING:' "$work/$1.err" | head -3 | tr '\n' ' ')"
		return 1
	fi
}
# session NAME LIMIT: SQL from stdin in one new session
session() {
	local rc=0
	timeout -k 5 "$2" psql -X -q -d "$db" >"$work/$1.out" 2>"$work/$1.err" || rc=$?
	collect "$work/$1.out"
	session_ok "$1" "$rc"
}

# --- the sampler -------------------------------------------------------------
sampler_pid=
sampler_start() {  # $1 = tag, $2 = most seconds
	PGAPPNAME=bench-sampler timeout -k 5 $(($2 + 15)) psql -X -q -d "$db" \
		-c "SET synchronous_commit = off" -c "CALL bench_sample('$1', $2, 0.05)" \
		>"$work/sampler.$1.out" 2>"$work/sampler.$1.err" &
	sampler_pid=$!
}
sampler_stop() {  # $1 = tag; a failing sampler is reported, it fails no run
	local rc=0
	q -c "INSERT INTO bench_stop VALUES ('$1')" >/dev/null 2>&1
	[ -n "$sampler_pid" ] && { wait "$sampler_pid" || rc=$?; }
	sampler_pid=
	if [ "$rc" -ne 0 ]; then
		echo "sampler $1 failed (exit $rc): $(head -3 "$work/sampler.$1.err" | tr '\n' ' ')" >&2
		sampler_note="${sampler_note:-}sampler $1 failed: $(head -1 "$work/sampler.$1.err"); "
	fi
	q -F ' ' -c "SELECT t, coalesce(in_flight, -1), coalesce(window_size, -1), coalesce(learned_limit, -1),
	                    paused::int, coalesce(active_backends, -1), coalesce(waiting_backends, -1),
	                    coalesce(throttled, -1)
	             FROM bench_gov WHERE tag = '$1' AND kind = 'api' ORDER BY t" >"$work/gov.$1" 2>/dev/null
	q -F ' ' -c "SELECT t, pid, coalesce(customers_done, -1), coalesce(requests_in_flight, -1),
	                    coalesce(window_size, -1), waiting::int
	             FROM bench_act WHERE tag = '$1' ORDER BY t" >"$work/act.$1" 2>/dev/null
}

# --- the gate: sessions wait behind an advisory lock until all are ready ------
gate_pid=
gate_open() {  # $1 = lock key, $2 = name
	rm -f "$work/go.$2"
	timeout -k 5 150 psql -X -q -d "$db" >"$work/gate.$2.out" 2>"$work/gate.$2.err" <<EOF &
SELECT pg_advisory_lock($1);
\! n=0; while [ ! -e "$work/go.$2" ] && [ \$n -lt 2400 ]; do sleep 0.05; n=\$((n + 1)); done
SELECT pg_advisory_unlock($1);
EOF
	gate_pid=$!
	gate_wait "$1" ExclusiveLock true 1 ||
		{ fail "gate $2: the lock was not taken"; return 1; }
}
gate_wait() {  # $1 = key, $2 = mode, $3 = granted, $4 = count: waits up to 60 s
	local n
	for _ in $(seq 600); do
		n=$(q -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1
		          AND objsubid = 1 AND mode = '$2' AND granted = $3" 2>/dev/null)
		[ "$n" = "$4" ] && return 0
		sleep 0.1
	done
	return 1
}
gate_release() {  # $1 = name
	touch "$work/go.$1"
	[ -n "$gate_pid" ] && wait "$gate_pid"
	gate_pid=
}

# SQL: one timed call into RES KEY.t0, KEY.t1 (epoch s), KEY.rows
timed_call() {  # $1 = key, $2 = the first argument, $3 = more arguments (optional)
	local v=${1//./_}
	cat <<EOF
SELECT extract(epoch FROM clock_timestamp()) AS t0_$v \\gset
SELECT count(*) AS n_$v FROM pc_qualifications($2${3:+, $3}) \\gset
SELECT extract(epoch FROM clock_timestamp()) AS t1_$v \\gset
\\echo RES $1.t0 :t0_$v
\\echo RES $1.t1 :t1_$v
\\echo RES $1.rows :n_$v
EOF
}
warm_call() {  # SQL: a connection and a token before measuring
	echo "SELECT count(*) AS warm_n FROM pc_qualifications('$WARM'::uuid) \\gset"
}
# SQL: pc_stat's counters of endpoint $2 into RES KEY.pc_*
pc_stat_sql() {  # $1 = key, $2 = endpoint
	local v=${1//./_}
	cat <<EOF
SELECT requests AS rq_$v, status_2xx AS s2_$v, status_429 AS s429_$v, retries AS rt_$v,
       round(retry_wait_ms)::bigint AS rw_$v, coalesce(shared_token_hits::text, 'NULL') AS sh_$v
FROM pc_stat WHERE endpoint = '$2' \\gset
\\echo RES $1.pc_requests :rq_$v
\\echo RES $1.pc_2xx :s2_$v
\\echo RES $1.pc_429 :s429_$v
\\echo RES $1.pc_retries :rt_$v
\\echo RES $1.pc_retry_wait_ms :rw_$v
\\echo RES $1.pc_shared_hits :sh_$v
EOF
}

# --- 1. one backend, 4,000 customers, throttled ------------------------------
echo "== 1. one backend, $N1 customers, concurrency 64, throttle_inflight=$K" >&2
ctl reset "$THROTTLE"
sampler_start s1 90
{
	echo "SET statement_timeout = '60s';"
	echo "SET client_min_messages = warning;"
	echo "SET pcqual.concurrency = 64;"
	echo "CREATE TEMP TABLE s1a AS SELECT bench_tenants(101, $N1) AS a;"
	echo "CREATE TEMP TABLE s1b AS SELECT bench_tenants(102, $N1) AS a;"
	echo "SELECT bench_library() AS lib \\gset"
	echo "\\echo RES lib :lib"
	warm_call
	for run in s1a s1b; do
		# the fresh run starts from nothing learned; the second keeps it
		[ $run = s1a ] && echo "SELECT pc_governor_reset();"
		echo "SELECT pc_stat_reset();"
		echo "\\! $work/ctl stats $run.0"
		timed_call "$run" "(SELECT a FROM $run)" "on_error => 'warning'"
		echo "\\! $work/ctl stats $run.1"
		pc_stat_sql "$run" qualifications
	done
	echo "\\! $work/ctl log s1"
} | session s1 100
sampler_stop s1
s1_warnings=$(grep -c 'WARNING:' "$work/s1.err" 2>/dev/null || true)

# --- 2. four backends at once, throttled ------------------------------------
echo "== 2. four backends x $N2 customers at once, concurrency 64, throttle_inflight=$K" >&2
ctl reset "$THROTTLE"
s2_pids=()
if gate_open 4201 s2; then
	for i in 1 2 3 4; do
		{
			echo "SET statement_timeout = '90s';"
			echo "SET client_min_messages = warning;"
			echo "SET pcqual.concurrency = 64;"
			echo "CREATE TEMP TABLE s2 AS SELECT bench_tenants($((200 + i)), $N2) AS a;"
			warm_call
			echo "SELECT pg_advisory_lock_shared(4201);"
			timed_call "s2.w$i" "(SELECT a FROM s2)" "on_error => 'warning'"
			echo "SELECT pg_backend_pid() AS bpid \\gset"
			echo "\\echo RES s2.w$i.pid :bpid"
		} >"$work/s2.w$i.sql"
		timeout -k 5 120 psql -X -q -d "$db" -f "$work/s2.w$i.sql" \
			>"$work/s2.w$i.out" 2>"$work/s2.w$i.err" &
		s2_pids+=($!)
	done
	if gate_wait 4201 ShareLock false 4; then
		q -c "SELECT pc_governor_reset()" -c "SELECT pc_stat_reset()" >/dev/null ||
			fail "s2: pc_governor_reset() / pc_stat_reset()"
		ctl stats s2.0
		sampler_start s2 90
		gate_release s2
	else
		fail "s2: the four sessions did not all reach the gate within 60 s"
		gate_release s2
	fi
	for i in 1 2 3 4; do
		rc=0
		wait "${s2_pids[$((i - 1))]}" || rc=$?
		collect "$work/s2.w$i.out"
		session_ok "s2.w$i" "$rc"
	done
	ctl stats s2.1
	sampler_stop s2
	pc_stat_sql s2 qualifications | { timeout -k 5 30 psql -X -q -d "$db" >"$work/s2.pc.out" 2>"$work/s2.pc.err"; }
	collect "$work/s2.pc.out"
	ctl log s2
fi
s2_warnings=$(cat "$work"/s2.w*.err 2>/dev/null | grep -c 'WARNING:' || true)

# --- 3. 20 new sessions, one call each, no token to start with ---------------
echo "== 3. $N3 new sessions at once after pc_disconnect(), token latency $TOKEN_LATENCY_MS ms" >&2
if "$work/ctl" reset "latency_ms=$LAT&token_latency_ms=$TOKEN_LATENCY_MS"; then
	s3_token_latency=$TOKEN_LATENCY_MS
else  # an emulator without token_latency_ms
	s3_token_latency=0
	ctl reset "latency_ms=$LAT"
fi
q -c "SELECT pc_disconnect()" -c "SELECT pc_stat_reset()" >/dev/null || fail "s3: pc_disconnect() / pc_stat_reset()"
ctl stats s3.0
s3_pids=()
if gate_open 4301 s3; then
	for i in $(seq "$N3"); do
		{
			echo "SET statement_timeout = '60s';"
			echo "SELECT pg_advisory_lock_shared(4301);"
			timed_call "s3.w$i" "'$(printf 'be0c0300-0000-4000-8000-%012d' "$i")'::uuid"
		} >"$work/s3.w$i.sql"
		timeout -k 5 90 psql -X -q -d "$db" -f "$work/s3.w$i.sql" \
			>"$work/s3.w$i.out" 2>"$work/s3.w$i.err" &
		s3_pids+=($!)
	done
	if gate_wait 4301 ShareLock false "$N3"; then
		gate_release s3
	else
		fail "s3: the $N3 sessions did not all reach the gate within 60 s"
		gate_release s3
	fi
	for i in $(seq "$N3"); do
		rc=0
		wait "${s3_pids[$((i - 1))]}" || rc=$?
		collect "$work/s3.w$i.out"
		session_ok "s3.w$i" "$rc"
	done
fi
ctl stats s3.1
pc_stat_sql s3 token | { timeout -k 5 30 psql -X -q -d "$db" >"$work/s3.pc.out" 2>"$work/s3.pc.err"; }
collect "$work/s3.pc.out"

# --- 4. governor on against off, no throttling --------------------------------
echo "== 4. governor on/off, $N4 customers, concurrency 64, $LAT ms, $ROUNDS rounds each" >&2
# set_governor on|off: ALTER SYSTEM, reload, until a new session sees it
set_governor() {
	q -c "ALTER SYSTEM SET pcqual.cluster_governor = $1" -c "SELECT pg_reload_conf()" >/dev/null ||
		{ fail "ALTER SYSTEM SET pcqual.cluster_governor = $1"; return 1; }
	for _ in $(seq 50); do
		[ "$(q -c "SHOW pcqual.cluster_governor" 2>/dev/null)" = "$1" ] && return 0
		sleep 0.1
	done
	fail "pcqual.cluster_governor = $1 not seen by a new session after 5 s"
	return 1
}
restore_governor() {
	q -c "ALTER SYSTEM RESET pcqual.cluster_governor" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
}
s4_run() {  # $1 = on|off, $2 = key, $3 = tenant tag
	local v=${2//./_}
	set_governor "$1" || return 1
	{
		echo "SET statement_timeout = '60s';"
		echo "SET client_min_messages = warning;"
		echo "SET pcqual.concurrency = 64;"
		echo "SELECT current_setting('pcqual.cluster_governor') AS gov \\gset"
		echo "\\echo RES $2.gov :gov"
		echo "CREATE TEMP TABLE s4 AS SELECT bench_tenants($3, $N4) AS a;"
		warm_call
		echo "SELECT coalesce((SELECT string_agg(window_size::text, '/') FROM pc_stat_governor WHERE kind = 'api'), 'none') AS win \\gset"
		echo "\\echo RES $2.win :win"
		echo "SELECT ticks AS c0t, ns AS c0n FROM bench_cpu() \\gset"
		timed_call "$2" "(SELECT a FROM s4)" "on_error => 'warning'"
		echo "SELECT ticks - :c0t AS dt, coalesce((ns - :c0n)::text, 'n/a') AS dn FROM bench_cpu() \\gset"
		echo "\\echo RES $2.ticks :dt"
		echo "\\echo RES $2.ns :dn"
		echo "SELECT coalesce((SELECT string_agg(window_size::text, '/') FROM pc_stat_governor WHERE kind = 'api'), 'none') AS win1 \\gset"
		echo "\\echo RES $2.win1 :win1"
	} | session "$2" 60
}
ctl reset "latency_ms=$LAT"
q -c "SELECT pc_governor_reset()" >/dev/null || fail "s4: pc_governor_reset()"
tag=400
s4_run on s4.warm.on $tag; tag=$((tag + 1))
s4_run off s4.warm.off $tag; tag=$((tag + 1))
for r in $(seq "$ROUNDS"); do
	order="on off"
	[ $((r % 2)) -eq 0 ] && order="off on"   # alternate, against drift
	for g in $order; do
		s4_run "$g" "s4.$g.$r" $tag
		tag=$((tag + 1))
	done
done
restore_governor
ctl stats s4

# ===========================================================================
# report
# ===========================================================================
declare -A R
while read -r _ key val; do R[$key]=$val; done <"$work/res"
r() { echo "${R[$1]:-n/a}"; }
elapsed_ms() {  # $1 = key: (t1 - t0) in ms
	calc '(b - a) * 1000' '%.0f' "$(r "$1.t0")" "$(r "$1.t1")"
}
check_rows() {  # $1 = key, $2 = expected
	local got
	got=$(r "$1.rows")
	[ "$got" = "$2" ] || fail "$1: $got rows, expected $2"
}
# check_match LABEL PC EMU: pc_stat must count what the emulator counted
check_match() {
	[ "$2" = "$3" ] || fail "$1: pc_stat says $2, the emulator $3"
}

# timeline LOG GOV T0 T1: the emulator's answers and the governor's samples
# over the run [T0, T1] (epoch s)
timeline() {
	"$python" - "$@" <<'PY' 2>&1 | sed 's/^/      /'
import calendar, json, sys, time
log_f, gov_f, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def ts(s):
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + int(s[20:23]) / 1000.0
try:
    log = [e for e in json.load(open(log_f)) if t0 - 0.01 <= ts(e["time"]) <= t1 + 0.05]
except Exception as ex:
    log = []
    print("(no emulator log: %s)" % ex)
secs = int(t1 - t0) + 1
ok = [0] * secs; thr = [0] * secs; thr_t = []
for e in log:
    b = min(max(int(ts(e["time"]) - t0), 0), secs - 1)
    if e["status"] == 429:
        thr[b] += 1; thr_t.append(ts(e["time"]) - t0)
    else:
        ok[b] += 1
def row(label, vals):
    print("%-24s %s" % (label, " ".join("%4s" % v for v in vals)))
row("second of the run", range(secs))
row("200s (emulator)", ok)
row("429s (emulator)", thr)
# 429 bursts: 429s less than 50 ms apart
bursts = []
for t in sorted(thr_t):
    if bursts and t - bursts[-1][1] < 0.05:
        bursts[-1][1] = t; bursts[-1][2] += 1
    else:
        bursts.append([t, t, 1])
if bursts:
    print("429 bursts (s after start x count): " +
          ", ".join("%.3f x%d" % (b[0], b[2]) for b in bursts[:20]) +
          (" ... (%d bursts)" % len(bursts) if len(bursts) > 20 else ""))
samples = []
try:
    for line in open(gov_f):
        f = line.split()
        if len(f) >= 8:
            t = float(f[0]) - t0
            if -0.01 <= t <= t1 - t0 + 0.01:
                samples.append((t,) + tuple(int(x) for x in f[1:8]))
except Exception as ex:
    print("(no governor samples: %s)" % ex)
if not samples:
    print("(no pc_stat_governor samples of an 'api' entry during the run)")
    sys.exit(0)
def per(bucket, n, idx, agg):
    out = []
    for i in range(n):
        v = [s[idx] for s in samples if i * bucket <= s[0] < (i + 1) * bucket]
        out.append(agg(v) if v else "-")
    return out
mean = lambda v: "%.0f" % (sum(v) / len(v))
last = lambda v: "-" if v[-1] < 0 else v[-1]
pct = lambda v: "%d%%" % round(100.0 * sum(v) / len(v))
print("pc_stat_governor ('api' entry), sampled every 50 ms (%d samples):" % len(samples))
row("window, mean", per(1.0, secs, 2, mean))
row("in flight, mean", per(1.0, secs, 1, mean))
row("learned limit, last", per(1.0, secs, 3, last))
row("paused, % of samples", per(1.0, secs, 4, pct))
row("waiting backends, max", per(1.0, secs, 6, max))
n = min(20, int((t1 - t0) / 0.1) + 1)
print("first %.1f s in 100-ms steps:" % (n / 10.0))
row("window, max", per(0.1, n, 2, max))
row("in flight, max", per(0.1, n, 1, max))
row("learned limit, last", per(0.1, n, 3, last))
row("paused (P)", ["-" if x == "-" else ("P" if x > 0 else ".") for x in per(0.1, n, 4, max)])
PY
}

# per-backend figures of scenario 2: call start/end offsets and the sampled window
s2_backends() {
	"$python" - "$work/act.s2" "$@" <<'PY' 2>&1 | sed 's/^/      /'
import sys
act_f, t_min = sys.argv[1], float(sys.argv[2])
args = sys.argv[3:]
acts = {}
try:
    for line in open(act_f):
        f = line.split()
        if len(f) >= 6:
            acts.setdefault(f[1], []).append((float(f[0]), int(f[4]), int(f[3])))
except Exception:
    pass
print("%-8s %9s %9s %9s %13s %14s" % ("backend", "start ms", "end ms", "rows", "window, mean", "in flight, mean"))
for i in range(0, len(args), 5):
    w, pid, t0, t1, rows = args[i:i + 5]
    try:
        s, e = "%.0f" % ((float(t0) - t_min) * 1000), "%.0f" % ((float(t1) - t_min) * 1000)
    except ValueError:
        s = e = "n/a"
    a = [x for x in acts.get(pid, []) if x[1] >= 0]
    win = "%.1f" % (sum(x[1] for x in a) / len(a)) if a else "-"
    infl = "%.1f" % (sum(x[2] for x in a) / len(a)) if a else "-"
    print("%-8s %9s %9s %9s %13s %14s" % (w, s, e, rows, win, infl))
PY
}

ideal1=$((N1 * LAT / K))
ideal2=$((4 * N2 * LAT / K))
max429=$((4 * K))

echo
echo "pcqual governor benchmark -- $(date -u '+%Y-%m-%d %H:%M UTC')"
bench_machine_line
echo "PostgreSQL $(q -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)," \
	"pcqual $extversion ($(r lib)), emulator on 127.0.0.1:$BENCH_EMULATOR_PORT," \
	"pcqual.max_cluster_concurrency $(q -c 'SHOW pcqual.max_cluster_concurrency' 2>/dev/null)"
echo

# --- 1 -------------------------------------------------------------------------
check_rows s1a "$N1"
check_rows s1b "$N1"
echo "1. one backend, $N1 customers, concurrency 64; emulator: ${LAT} ms, throttle_inflight $K, Retry-After 1 s"
echo "   ideal = $N1 / $K x $LAT ms = $ideal1 ms"
printf '   %-30s %6s %8s %10s %10s %8s %8s %10s %13s\n' "run" "rows" "time ms" "time/ideal" \
	"429s emu" "pc 429" "pc retr" "retry wait" "requests e/pc"
for run in s1a s1b; do
	t=$(elapsed_ms $run)
	ratio=$(calc 'a / b' '%.2f' "$t" "$ideal1")
	thr=$(stat_delta $run throttled)
	api=$(stat_delta $run api_requests)
	label="fresh (pc_governor_reset)"
	[ $run = s1b ] && label="second (learned state kept)"
	printf '   %-30s %6s %8s %10s %10s %8s %8s %10s %13s\n' "$label" "$(r $run.rows)" "$t" "$ratio" \
		"$thr" "$(r $run.pc_429)" "$(r $run.pc_retries)" "$(r $run.pc_retry_wait_ms)ms" "$api/$(r $run.pc_requests)"
	check_match "$run: status_429" "$(r $run.pc_429)" "$thr"
	check_match "$run: requests (qualifications)" "$(r $run.pc_requests)" "$api"
done
echo "   (time: the call, from the server's clock; 429s emu: /_emulator/stats throttled; pc: pc_stat 'qualifications')"
[ "${s1_warnings:-0}" != 0 ] && echo "   $s1_warnings WARNINGs, the first: $(grep -m1 'WARNING:' "$work/s1.err" | cut -c1-150)"
q1t=$(calc 'a / b' '%.2f' "$(elapsed_ms s1a)" "$ideal1")
target "1. one backend, fresh: time / ideal" "$q1t" le 1.3
target "1. one backend, fresh: 429s sent by the emulator" "$(stat_delta s1a throttled)" le $max429
for run in s1a s1b; do
	echo "   timeline of the $([ $run = s1a ] && echo fresh || echo second) run:"
	timeline "$work/log.s1" "$work/gov.s1" "$(r $run.t0)" "$(r $run.t1)"
done
echo

# --- 2 -------------------------------------------------------------------------
# extreme MIN|MAX VALUE...: the least or greatest numeric value (n/a if none)
extreme() {
	local how=$1
	shift
	printf '%s\n' "$@" | awk -v how="$how" '$1 ~ /^[0-9]+(\.[0-9]+)?$/ {
		if (!n++ || (how == "MIN" && $1 + 0 < m) || (how == "MAX" && $1 + 0 > m)) { m = $1 + 0; s = $1 } }
		END { print n ? s : "n/a" }'
}
starts=(); ends=()
for i in 1 2 3 4; do
	check_rows "s2.w$i" "$N2"
	starts+=("$(r "s2.w$i.t0")"); ends+=("$(r "s2.w$i.t1")")
done
t_min=$(extreme MIN "${starts[@]}")
t_max=$(extreme MAX "${ends[@]}")
t2=$(calc '(b - a) * 1000' '%.0f' "$t_min" "$t_max")
q2t=$(calc 'a / b' '%.2f' "$t2" "$ideal2")
thr2=$(stat_delta s2 throttled)
api2=$(stat_delta s2 api_requests)
check_match "s2: status_429" "$(r s2.pc_429)" "$thr2"
check_match "s2: requests (qualifications)" "$(r s2.pc_requests)" "$api2"
echo "2. four backends at once, $N2 customers each, concurrency 64; the same throttled partner"
echo "   ideal = $((4 * N2)) / $K x $LAT ms = $ideal2 ms"
printf '   %-40s %8s\n' "total time ms (first start to last end)" "$t2"
printf '   %-40s %8s  target <= 1.3 %s\n' "time / ideal" "$q2t" "$(verdict "$q2t" le 1.3)"
printf '   %-40s %8s  target <= %d %s\n' "429s sent by the emulator" "$thr2" $max429 "$(verdict "$thr2" le $max429)"
printf '   %-40s %8s  (must equal the emulator: %s)\n' "pc_stat status_429" "$(r s2.pc_429)" \
	"$([ "$(r s2.pc_429)" = "$thr2" ] && echo OK || echo FAIL)"
printf '   %-40s %8s\n' "pc_stat retries" "$(r s2.pc_retries)"
printf '   %-40s %8s\n' "pc_stat retry_wait_ms" "$(r s2.pc_retry_wait_ms)"
printf '   %-40s %8s  (emulator %s: %s)\n' "pc_stat requests" "$(r s2.pc_requests)" "$api2" \
	"$([ "$(r s2.pc_requests)" = "$api2" ] && echo OK || echo FAIL)"
[ "${s2_warnings:-0}" != 0 ] && echo "   $s2_warnings WARNINGs, the first: $(cat "$work"/s2.w*.err | grep -m1 'WARNING:' | cut -c1-150)"
target "2. four backends: total time / ideal" "$q2t" le 1.3
target "2. four backends: 429s sent by the emulator" "$thr2" le $max429
args=()
for i in 1 2 3 4; do args+=("w$i" "$(r "s2.w$i.pid")" "$(r "s2.w$i.t0")" "$(r "s2.w$i.t1")" "$(r "s2.w$i.rows")"); done
echo "   per backend (ms after the first start; window/in flight from pc_stat_activity):"
num "$t_min" && s2_backends "$t_min" "${args[@]}"
echo "   timeline:"
num "$t_min" && num "$t_max" && timeline "$work/log.s2" "$work/gov.s2" "$t_min" "$t_max"
echo

# --- 3 -------------------------------------------------------------------------
tok3=$(stat_delta s3 token_requests)
tok3_before=$(stat_of s3.0 token_requests)
s3_times=()
s3_ok=0
for i in $(seq "$N3"); do
	[ "$(r "s3.w$i.rows")" = n/a ] || s3_ok=$((s3_ok + 1))
	check_rows "s3.w$i" 1
	s3_times+=("$(elapsed_ms "s3.w$i")")
done
s3_mean=$(printf '%s\n' "${s3_times[@]}" | awk '$1 ~ /^[0-9.]+$/ { s += $1; n++ } END { if (n) printf "%.0f", s / n; else print "n/a" }')
s3_max=$(printf '%s\n' "${s3_times[@]}" | awk '$1 ~ /^[0-9.]+$/ { if ($1 > m) m = $1; n++ } END { if (n) printf "%.0f", m; else print "n/a" }')
s3_401=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["status_counts"].get("401", 0))' \
	"$work/stats.s3.1" 2>/dev/null || echo n/a)
check_match "s3: token requests" "$(r s3.pc_requests)" "$tok3"
echo "3. $N3 new sessions, one pc_qualifications(uuid) each, started together behind a gate,"
echo "   after an emulator reset and pc_disconnect(); API ${LAT} ms, token endpoint ${s3_token_latency} ms"
printf '   %-40s %8s  target = 1 %s\n' "token requests (emulator)" "$tok3" "$(verdict "$tok3" = 1)"
printf '   %-40s %8s  (before the sessions started: %s)\n' "pc_stat token requests" "$(r s3.pc_requests)" "$tok3_before"
printf '   %-40s %8s\n' "pc_stat shared_token_hits" "$(r s3.pc_shared_hits)"
printf '   %-40s %8s\n' "401s from the API (emulator)" "$s3_401"
printf '   %-40s %8s\n' "API requests (emulator)" "$(stat_delta s3 api_requests)"
printf '   %-40s %8s\n' "sessions answered" "$s3_ok of $N3"
printf '   %-40s %8s  (token %s ms + API %s ms at least)\n' "mean call time per session, ms" "$s3_mean" "$s3_token_latency" "$LAT"
printf '   %-40s %8s\n' "longest call time, ms" "$s3_max"
target "3. token requests for $N3 new sessions at once" "$tok3" = 1
echo

# --- 4 -------------------------------------------------------------------------
# CPU: utime+stime counts whole clock ticks (10 ms at CLK_TCK 100), and one
# call of 1,000 customers takes a few of them: a median of such counts moves
# in steps of 15-20%.  The target is therefore judged on the same backend's
# run time from /proc/<pid>/schedstat (ns; bench/bulk.sh judges its CPU
# target on it too), the ticks are shown beside it (medians and the ratio of
# the totals over all rounds); without schedstat the totals of ticks decide.
bound4=$(( (N4 + 63) / 64 * LAT ))
declare -A M
for g in on off; do
	times=(); ticks=(); nss=(); wins=(); tsum=0
	for r4 in $(seq "$ROUNDS"); do
		key=s4.$g.$r4
		check_rows "$key" "$N4"
		[ "$(r "$key.gov")" = "$g" ] || fail "$key: the session ran with pcqual.cluster_governor = $(r "$key.gov")"
		times+=("$(elapsed_ms "$key")")
		ticks+=("$(calc 'a * 1000000 / b / c' '%.1f' "$(r "$key.ticks")" "$clk" "$N4")")
		nss+=("$(calc 'a / 1000 / b' '%.2f' "$(r "$key.ns")" "$N4")")
		wins+=("$(r "$key.win")->$(r "$key.win1")")
		tsum=$(calc 'a + b' '%d' "$tsum" "$(r "$key.ticks")")
	done
	check_rows "s4.warm.$g" "$N4"
	M[$g.t]=$(median "${times[@]}")
	M[$g.c]=$(median "${ticks[@]}")
	M[$g.n]=$(median "${nss[@]}")
	M[$g.tsum]=$tsum
	M[$g.times]="${times[*]}"
	M[$g.ticks]="${ticks[*]}"
	M[$g.nss]="${nss[*]}"
	M[$g.wins]="${wins[*]}"
	M[$g.warm]=$(elapsed_ms "s4.warm.$g")
done
qt4=$(calc 'a / b' '%.3f' "${M[on.t]}" "${M[off.t]}")
qc4=$(calc 'a / b' '%.3f' "${M[on.c]}" "${M[off.c]}")
qs4=$(calc 'a / b' '%.3f' "${M[on.tsum]}" "${M[off.tsum]}")
qn4=$(calc 'a / b' '%.3f' "${M[on.n]}" "${M[off.n]}")
if num "$qn4"; then cpu4=$qn4 cpu4_how="schedstat run time, medians"
else cpu4=$qs4 cpu4_how="utime+stime, totals over the rounds (no schedstat)"; fi
echo "4. no throttling, $N4 customers, concurrency 64, ${LAT} ms; governor on / off, $ROUNDS rounds each"
echo "   (alternating, every run a new session; after a warm-up of each: on ${M[on.warm]} ms, off ${M[off.warm]} ms;"
echo "   latency bound ceil($N4 / 64) x $LAT ms = $bound4 ms; CLK_TCK $clk)"
printf '   %-38s %9s   %s\n' "" "median" "rounds"
for g in on off; do
	printf '   %-38s %9s   %s\n' "governor $g: time ms" "${M[$g.t]}" "${M[$g.times]}"
done
for g in on off; do
	printf '   %-38s %9s   %s\n' "governor $g: CPU us/customer, sched" "${M[$g.n]}" "${M[$g.nss]}"
done
for g in on off; do
	printf '   %-38s %9s   %s  (total %s ticks)\n' "governor $g: CPU us/customer, ticks" "${M[$g.c]}" "${M[$g.ticks]}" "${M[$g.tsum]}"
done
printf '   %-38s %9s   %s\n' "governor on: window before->after" "" "${M[on.wins]}"
printf '   %-38s %9s   target <= 1.05 %s\n' "time on / off (medians)" "$qt4" "$(verdict "$qt4" le 1.05)"
printf '   %-38s %9s   target <= 1.05 %s\n' "CPU on / off, schedstat (medians)" "$qn4" "$(verdict "$qn4" le 1.05)"
printf '   %-38s %9s   (whole ticks: steps of ~%s%%)\n' "CPU on / off, utime+stime (medians)" "$qc4" \
	"$(calc '100 / (a * b / 1000000 * c)' '%.0f' "${M[off.c]}" "$N4" "$clk")"
printf '   %-38s %9s\n' "CPU on / off, utime+stime (totals)" "$qs4"
echo "   (sched: run time from /proc/<pid>/schedstat, ns; ticks: utime+stime from /proc/<pid>/stat, 1/$clk s;"
echo "    window: pc_stat_governor's 'api' window_size after the session's warm call -> after the measured call;"
echo "    emulator throttled count over all of 4: $(stat_of s4 throttled), expected 0)"
target "4. governor on / off time (medians)" "$qt4" le 1.05
target "4. governor on / off backend CPU ($cpu4_how)" "$cpu4" le 1.05
echo
[ -n "${sampler_note:-}" ] && echo "note: $sampler_note" && echo

bench_finish

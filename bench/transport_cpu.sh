#!/usr/bin/env bash
# Issue 9, "CPU per tenant before and after the wait-machinery change".
#
#   bench/transport_cpu.sh        (as root, on Debian; about 2-3 minutes)
#
# The 1.1 transport rebuilt a WaitEventSet (a new epoll descriptor, every
# socket added again) whenever curl changed a socket; 1.2 keeps one epoll
# set that curl's socket callback changes incrementally.  This measures the
# backend CPU per tenant of a bulk call, pc_qualifications(uuid[]), of
# 10,000 distinct tenants, for BOTH builds in the same run:
#   old  commit 91e9aeb (OLD_COMMIT), the last 1.1 commit
#   new  the working tree (/work/main as it is now, uncommitted changes too)
# at emulator latency 0 ms and 20 ms, pcqual.concurrency 16 and 64.
#
# Neither build touches the system's installation (no `make install` into
# /usr/lib/postgresql: a test/check.sh running meanwhile keeps its build).
# Each is built in a copy under /tmp and installed with DESTDIR into its own
# private tree; Debian's PostgreSQL loads it from there with
# extension_destdir and dynamic_library_path.  One throwaway cluster
# (pg_virtualenv -t) is switched between the builds with ALTER SYSTEM and a
# restart:
#   new  shared_preload_libraries = pcqual (1.2 requires it), database
#        bench_new, extension 1.2, secret from a file
#   old  nothing preloaded (1.1 loads on first use), database bench_old,
#        extension 1.1, secret as the setting pcqual.client_secret
# Every session checks, in /proc/<backend>/maps, which pcqual.so it runs.
#
# Builds alternate, A B B A A B (ROUNDS=3 by default), each round measuring
# the four configurations in one fresh session: against each
# configuration's emulator reset, a warm single call (connection, token),
# then the bulk call between two readings of the backend's own CPU:
# utime+stime from /proc/<pid>/stat (1/CLK_TCK s) and the run time from
# /proc/<pid>/schedstat (ns), and its voluntary context switches (sleeps).
# Prints CPU us/tenant per build (sums over the rounds), new/old per
# configuration with the per-round spread, wall times, the backend's busy
# share and sleeps per 100 tenants, and a PASS/MISS line per configuration
# (target: new/old <= 1.0).  The emulator
# (Python) and PostgreSQL share this machine's CPUs: absolute numbers are
# for comparison within one run only.
#
# Exits non-zero when a run fails (build, cluster, query, wrong row count,
# wrong library), never for a missed target.  Cleans up (emulator, cluster,
# build trees, test files) whatever happens.
#
# Environment: OLD_COMMIT (default 91e9aeb), ROUNDS (default 3), TENANTS
# (default 10000), BENCH_EMULATOR_PORT (default 18865), BENCH_KEEP (set: keep
# the inner work directory with every session's output); see bench/lib.sh.
#
# shellcheck disable=SC2028,SC2317,SC2017  # psql meta-commands echoed; trap handlers; ceil(a / b) * c is meant
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
OLD_COMMIT=${OLD_COMMIT:-91e9aeb}
ROUNDS=${ROUNDS:-3}
TENANTS=${TENANTS:-10000}
export OLD_COMMIT ROUNDS TENANTS

# ===========================================================================
# outer part: dependencies, the two builds, the cluster
# ===========================================================================
if [ "${1:-}" != "--inner" ]; then
	bench_need_root
	cd "$root"
	SECONDS=0
	BENCH_BUILDS=
	outer_cleanup() {
		bench_outer_cleanup
		if [ -n "$BENCH_BUILDS" ] && [[ $BENCH_BUILDS == /tmp/pcqual-transport.* ]]; then
			rm -rf "$BENCH_BUILDS"
		fi
	}
	trap outer_cleanup EXIT
	trap 'exit 130' INT TERM
	bench_outer_prepare
	pg_config=/usr/lib/postgresql/$BENCH_PG_MAJOR/bin/pg_config

	BENCH_BUILDS=$(mktemp -d /tmp/pcqual-transport.XXXXXX)
	chmod 755 "$BENCH_BUILDS"          # the server (postgres) reads the installs
	export BENCH_BUILDS
	mkdir "$BENCH_BUILDS/old-src" "$BENCH_BUILDS/new-src"
	git -C "$root" archive "$OLD_COMMIT" | tar -x -C "$BENCH_BUILDS/old-src"
	# the working tree, as it is (what `make` in it would build)
	cp -a Makefile pcqual.control pcqual--*.sql src "$BENCH_BUILDS/new-src/"
	for b in old new; do
		echo "== building the $b build" >&2
		make -s -C "$BENCH_BUILDS/$b-src" clean PG_CONFIG="$pg_config" >/dev/null 2>&1 || true
		if ! { timeout 600 make -s -j"$(nproc)" -C "$BENCH_BUILDS/$b-src" PG_CONFIG="$pg_config" &&
			timeout 120 make -s -C "$BENCH_BUILDS/$b-src" install PG_CONFIG="$pg_config" \
				DESTDIR="$BENCH_BUILDS/$b-dest"; } >"$BENCH_BUILDS/$b-build.log" 2>&1; then
			echo "transport_cpu.sh: the $b build failed:" >&2
			tail -20 "$BENCH_BUILDS/$b-build.log" >&2
			exit 1
		fi
	done
	export BENCH_OLD_REV
	BENCH_OLD_REV=$(git -C "$root" rev-parse --short "$OLD_COMMIT")
	export BENCH_SETUP_SECONDS=$SECONDS
	# The inner part chooses the build (ALTER SYSTEM) before anything loads pcqual.
	bench_pick_pgport || exit 1
	timeout -k 10 600 pg_virtualenv -t -v "$BENCH_PG_MAJOR" -- "$0" --inner
	exit $?
fi

# ===========================================================================
# inner part: runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER... are set)
# ===========================================================================
bench_inner_begin

libdir=$("/usr/lib/postgresql/$PGVERSION/bin/pg_config" --pkglibdir)
bench_start_emulator "$work" || exit 1

cat >"$work/ctl" <<EOF
#!/bin/sh
curl -sf --max-time 10 -X POST "$emu_base/_emulator/reset" >/dev/null &&
curl -sf --max-time 10 -X POST "$emu_base/_emulator/config?\$1" >/dev/null
EOF
chmod +x "$work/ctl"

mode=none
# use_build old|new: switch the cluster to that build (ALTER SYSTEM, restart)
use_build() {
	[ "$1" = "$mode" ] && return 0
	local spl='ALTER SYSTEM RESET shared_preload_libraries'
	[ "$1" = new ] && spl="ALTER SYSTEM SET shared_preload_libraries = 'pcqual'"
	echo "== switching the cluster to the $1 build" >&2
	psql -X -q -v ON_ERROR_STOP=1 -d postgres \
		-v dest="$BENCH_BUILDS/$1-dest" -v path="$BENCH_BUILDS/$1-dest$libdir:\$libdir" <<EOF || return 1
ALTER SYSTEM SET extension_destdir = :'dest';
ALTER SYSTEM SET dynamic_library_path = :'path';
$spl;
EOF
	# (stop, then start: `restart` sometimes found the old postmaster still there)
	timeout 60 pg_ctlcluster "$PGVERSION" regress stop || return 1
	timeout 60 pg_ctlcluster "$PGVERSION" regress start || return 1
	mode=$1
}

# --- databases ---------------------------------------------------------------
use_build new || { echo "switching to the new build failed" >&2; exit 1; }
bench_createdb bench_new || { echo "creating bench_new failed" >&2; exit 1; }
use_build old || { echo "switching to the old build failed" >&2; exit 1; }
{ timeout 30 createdb bench_old &&
	psql -X -q -v ON_ERROR_STOP=1 -d bench_old -v base="$emu_base" <<'EOF' &&
-- 1.1 took its secret as a setting (1.2 refuses that)
ALTER DATABASE bench_old SET pcqual.base_url = :'base';
ALTER DATABASE bench_old SET pcqual.authority = :'base';
ALTER DATABASE bench_old SET pcqual.allow_http = on;
ALTER DATABASE bench_old SET pcqual.partner_tenant = 'pcqual-test-partner.onmicrosoft.com';
ALTER DATABASE bench_old SET pcqual.client_id = 'pcqual-test-app';
ALTER DATABASE bench_old SET pcqual.client_secret = 'pcqual-test-secret';
CREATE EXTENSION pcqual;
EOF
	bench_helpers bench_old; } || { echo "creating bench_old failed" >&2; exit 1; }

configs=("0 16" "0 64" "20 16" "20 64")

# one round of one build: a fresh session, the four configurations
measure() {  # $1 = build, $2 = round
	local b=$1 r=$2 tag=$(($2 * 32)) lat c key
	[ "$b" = new ] && tag=$((tag + 16))
	{
		echo "SET statement_timeout = '120s';"
		echo "SET client_min_messages = warning;"
		echo "SELECT extversion AS v FROM pg_extension WHERE extname = 'pcqual' \\gset"
		echo "\\echo RES $b.$r.version :v"
		for cfg in "${configs[@]}"; do
			read -r lat c <<<"$cfg"
			key="$b.$r.$lat.$c"
			tag=$((tag + 1))
			echo "CREATE TEMP TABLE t_${lat}_$c AS SELECT bench_tenants($tag, $TENANTS) AS a;"
			echo "\\! $work/ctl latency_ms=$lat"
			echo "SET pcqual.concurrency = $c;"
			echo "SELECT count(*) AS warm_n FROM pc_qualifications('be0cffff-0000-4000-8000-000000000000'::uuid) \\gset"
			echo "SELECT ticks AS c0t, ns AS c0n, bench_vcsw() AS v0 FROM bench_cpu() \\gset"
			echo "SELECT clock_timestamp() AS t0 \\gset"
			echo "SELECT count(*) AS n FROM pc_qualifications((SELECT a FROM t_${lat}_$c)) \\gset"
			echo "SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \\gset"
			echo "SELECT ticks - :c0t AS dt, coalesce((ns - :c0n)::text, 'n/a') AS dn, bench_vcsw() - :v0 AS dv FROM bench_cpu() \\gset"
			echo "\\echo RES $key.ms :ms"
			echo "\\echo RES $key.rows :n"
			echo "\\echo RES $key.ticks :dt"
			echo "\\echo RES $key.ns :dn"
			echo "\\echo RES $key.vcsw :dv"
		done
		echo "SELECT bench_library() AS lib \\gset"
		echo "\\echo RES $b.$r.lib :lib"
	} | timeout -k 5 300 psql -X -q -v ON_ERROR_STOP=1 -d "bench_$b" >"$work/m.$b.$r.out" 2>"$work/m.$b.$r.err"
	local rc=$?
	grep '^RES ' "$work/m.$b.$r.out" >>"$work/res"
	[ $rc -eq 0 ] || fail "$b round $r (psql exit $rc): $(head -5 "$work/m.$b.$r.err" | tr '\n' ' ')"
	grep -q "^RES $b.$r.lib $BENCH_BUILDS/$b-dest/" "$work/m.$b.$r.out" ||
		fail "$b round $r ran $(grep "^RES $b.$r.lib" "$work/m.$b.$r.out" | cut -d' ' -f3), not the $b build"
}

order=()
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then order+=("old $r" "new $r"); else order+=("new $r" "old $r"); fi
done
for step in "${order[@]}"; do
	read -r b r <<<"$step"
	use_build "$b" || { fail "switching to the $b build"; break; }
	echo "== round $r, $b build" >&2
	measure "$b" "$r"
done

# ===========================================================================
# report
# ===========================================================================
declare -A R
while read -r _ key val; do R[$key]=$val; done <"$work/res"
r() { echo "${R[$1]:-n/a}"; }
clk=$(getconf CLK_TCK)
sum_of() {  # $1 = build, $2 = config "lat.c", $3 = field
	local s=0 v i
	for i in $(seq "$ROUNDS"); do
		v=$(r "$1.$i.$2.$3"); num "$v" || { echo n/a; return; }
		s=$(awk -v s="$s" -v v="$v" 'BEGIN { printf "%.1f", s + v }')
	done
	echo "$s"
}
for b in old new; do
	for i in $(seq "$ROUNDS"); do
		for cfg in "${configs[@]}"; do
			read -r lat c <<<"$cfg"
			[ "$(r "$b.$i.$lat.$c.rows")" = "$TENANTS" ] ||
				fail "$b round $i, $lat ms / $c: $(r "$b.$i.$lat.$c.rows") rows, expected $TENANTS"
		done
	done
done

echo
echo "pcqual transport CPU benchmark (issue 9) -- $(date -u '+%Y-%m-%d %H:%M UTC')"
bench_machine_line
echo "PostgreSQL $(psql -X -A -t -d postgres -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1);" \
	"old = $BENCH_OLD_REV (extension $(r old.1.version)), new = working tree (extension $(r new.1.version));" \
	"$TENANTS distinct tenants per bulk call, $ROUNDS rounds per build, alternating (A B B A ...)"
echo "libraries: old $(r old.1.lib)"
echo "           new $(r new.1.lib)"
echo
echo "backend CPU per tenant, us (schedstat run time; ticks: utime+stime at 1/$clk s)"
printf '   %-16s %10s %10s %8s %10s %10s %8s %14s\n' "latency / conc." "old sched" "new sched" "new/old" \
	"old ticks" "new ticks" "new/old" "per-round n/o"
printf '   %-16s %10s %10s %8s %10s %10s %8s %14s\n' "" "us/tenant" "us/tenant" "sched" "us/tenant" "us/tenant" "ticks" "sched min..max"
for cfg in "${configs[@]}"; do
	read -r lat c <<<"$cfg"
	n=$((ROUNDS * TENANTS))
	ons=$(sum_of old "$lat.$c" ns); nns=$(sum_of new "$lat.$c" ns)
	otk=$(sum_of old "$lat.$c" ticks); ntk=$(sum_of new "$lat.$c" ticks)
	ous=$(calc 'a / 1000 / b' '%.1f' "$ons" "$n"); nus=$(calc 'a / 1000 / b' '%.1f' "$nns" "$n")
	qns=$(calc 'a / b' '%.2f' "$nns" "$ons")
	qtk=$(calc 'a / b' '%.2f' "$ntk" "$otk")
	spread=()
	for i in $(seq "$ROUNDS"); do spread+=("$(calc 'a / b' '%.2f' "$(r "new.$i.$lat.$c.ns")" "$(r "old.$i.$lat.$c.ns")")"); done
	lo=$(printf '%s\n' "${spread[@]}" | sort -g | head -1); hi=$(printf '%s\n' "${spread[@]}" | sort -g | tail -1)
	printf '   %-16s %10s %10s %8s %10s %10s %8s %14s\n' "$lat ms / $c" "$ous" "$nus" "$qns" \
		"$(calc 'a * 1000000 / b / c' '%.1f' "$otk" "$clk" "$n")" "$(calc 'a * 1000000 / b / c' '%.1f' "$ntk" "$clk" "$n")" \
		"$qtk" "$lo..$hi"
	target "new/old backend CPU per tenant, $lat ms, concurrency $c" "$qns" le 1.0 "rounds $lo..$hi"
done
echo
echo "wall time of the bulk call (median of $ROUNDS rounds), the backend's share of it on a CPU (busy: schedstat"
echo "run time / wall time, over all rounds) and its sleeps (voluntary context switches) per 100 tenants"
printf '   %-16s %9s %9s %8s %8s %7s %7s %7s %7s\n' "latency / conc." "old ms" "new ms" "new/old" "bound ms" \
	"old bsy" "new bsy" "old slp" "new slp"
for cfg in "${configs[@]}"; do
	read -r lat c <<<"$cfg"
	mo=(); mn=()
	for i in $(seq "$ROUNDS"); do mo+=("$(r "old.$i.$lat.$c.ms")"); mn+=("$(r "new.$i.$lat.$c.ms")"); done
	om=$(median "${mo[@]}"); nm=$(median "${mn[@]}")
	n=$((ROUNDS * TENANTS))
	printf '   %-16s %9s %9s %8s %8s %6s%% %6s%% %7s %7s\n' "$lat ms / $c" "$om" "$nm" "$(calc 'a / b' '%.2f' "$nm" "$om")" \
		"$(( (TENANTS + c - 1) / c * lat ))" \
		"$(calc 'a / 10000 / b' '%.0f' "$(sum_of old "$lat.$c" ns)" "$(sum_of old "$lat.$c" ms)")" \
		"$(calc 'a / 10000 / b' '%.0f' "$(sum_of new "$lat.$c" ns)" "$(sum_of new "$lat.$c" ms)")" \
		"$(calc 'a * 100 / b' '%.1f' "$(sum_of old "$lat.$c" vcsw)" "$n")" \
		"$(calc 'a * 100 / b' '%.1f' "$(sum_of new "$lat.$c" vcsw)" "$n")"
done
echo
bench_finish

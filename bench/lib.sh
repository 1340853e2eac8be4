# shellcheck shell=bash
# Shared by the bench/*.sh scripts (sourced, never run).
#
# A benchmark runs as root in two parts:
#   outer  bench_outer_prepare: dependencies, test files in a private
#          directory (test/prepare-test-files.sh with PCQUAL_TEST_DIR, so a
#          concurrent test/check.sh, which recreates /tmp/pcqual-test, is
#          never disturbed), then bench_virtualenv runs the script again
#          with --inner inside a throwaway PostgreSQL cluster
#          (pg_virtualenv -t, pcqual preloaded, on a free port from 55432).
#   inner  bench_start_emulator on BENCH_EMULATOR_PORT (default 18865, never
#          the tests' 18765..18770; the emulator also takes port+5), then
#          bench_createdb for each database it measures in.
# Both parts clean up on exit (traps), whatever happens.
#
# Environment: BENCH_EMULATOR_PORT (default 18865), BENCH_PORT_WAIT (seconds
# to wait for another benchmark to free the emulator ports, default 900),
# PYTHON (default python3).

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
BENCH_EMULATOR_PORT=${BENCH_EMULATOR_PORT:-18865}
export BENCH_EMULATOR_PORT

bench_need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$(basename "$0"): run as root (it installs packages, makes test files owned by postgres and starts a throwaway cluster)" >&2
		exit 1
	fi
}

# ---------------------------------------------------------------------------
# outer part
# ---------------------------------------------------------------------------

# install-deps, the PostgreSQL major, the private test files; sets and
# exports BENCH_FILES and BENCH_PG_MAJOR.  The caller's EXIT trap must call
# bench_outer_cleanup.
bench_outer_prepare() {
	cd "$bench_root" || return 1
	timeout 900 test/install-deps.sh >/dev/null
	BENCH_PG_MAJOR=$(test/pg-major.sh)
	export BENCH_PG_MAJOR
	BENCH_FILES=$(mktemp -d /tmp/pcqual-bench.XXXXXX)
	export BENCH_FILES
	PCQUAL_TEST_DIR=$BENCH_FILES test/prepare-test-files.sh
}

# The start of every benchmark's outer part: root, the repository, the clock,
# clean-up on exit, bench_outer_prepare.
bench_outer_begin() {
	bench_need_root
	cd "$bench_root" || exit 1
	SECONDS=0
	trap bench_outer_cleanup EXIT
	trap 'exit 130' INT TERM
	bench_outer_prepare
}

bench_outer_cleanup() {
	if [ -n "${BENCH_FILES:-}" ] && [[ $BENCH_FILES == /tmp/pcqual-bench.* ]]; then
		rm -rf "$BENCH_FILES"
	fi
}

# make && make install of the working tree (/work/main), as check.sh does;
# a failing make (someone mid-edit?) is retried BUILD_RETRIES times, 60 s apart.
bench_build_install() {
	local tries=$((${BUILD_RETRIES:-2} + 1)) attempt
	local pg_config=/usr/lib/postgresql/$BENCH_PG_MAJOR/bin/pg_config
	for attempt in $(seq "$tries"); do
		if timeout 300 make -s -C "$bench_root" PG_CONFIG="$pg_config" &&
			timeout 120 make -s -C "$bench_root" install PG_CONFIG="$pg_config"; then
			return 0
		fi
		if [ "$attempt" -eq "$tries" ]; then
			echo "$(basename "$0"): build failed $tries times" >&2
			return 1
		fi
		echo "$(basename "$0"): build failed (someone mid-edit?); retrying in 60 s" >&2
		sleep 60
	done
}

# Waits until the emulator's ports (BENCH_EMULATOR_PORT .. +5) are free:
# only one benchmark at a time uses them.
bench_wait_for_ports() {
	local waited=0 limit=${BENCH_PORT_WAIT:-900} p busy
	while :; do
		busy=
		for p in $(seq "$BENCH_EMULATOR_PORT" $((BENCH_EMULATOR_PORT + 5))); do
			if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then busy=$p; break; fi
		done
		[ -z "$busy" ] && return 0
		if [ "$waited" -ge "$limit" ]; then
			echo "127.0.0.1:$busy is still in use after $limit s (another benchmark?)" >&2
			return 1
		fi
		[ $((waited % 60)) -eq 0 ] &&
			echo "127.0.0.1:$busy is in use (another benchmark?); waiting up to $((limit - waited)) s" >&2
		sleep 5
		waited=$((waited + 5))
	done
}

# Exports PGPORT: a free port for the benchmark's cluster, from 55432 up
# (pg_virtualenv would take the first free one from 5432, racing with the
# test runs' clusters).
bench_pick_pgport() {
	local p
	for p in $(seq 55432 55531); do
		[ -e "/var/run/postgresql/.s.PGSQL.$p" ] && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		export PGPORT=$p
		return 0
	done
	echo "no free port for the cluster in 55432..55531" >&2
	return 1
}

# Runs "$0 --inner" inside a throwaway cluster with pcqual preloaded.
# $1 = time limit (s); more arguments are extra pg_virtualenv options.
# (Not test/emulator-settings.sh's options: those also preload pg_cron for the
# scheduled-sync suite, whose launcher restarts every second, looking for the
# pgTAP database, and would take CPU from what is measured.)
bench_virtualenv() {
	local limit=$1
	shift
	bench_pick_pgport || return 1
	timeout -k 10 "$limit" pg_virtualenv -t -v "$BENCH_PG_MAJOR" -o shared_preload_libraries=pcqual "$@" \
		-- "$0" --inner
}

# ---------------------------------------------------------------------------
# inner part
# ---------------------------------------------------------------------------

emu_pid=
emu_base=

# Starts test/pc_emulator.py on BENCH_EMULATOR_PORT (plain HTTP; +5 is its
# redirect target); $1 = directory for its output.  Sets emu_pid, emu_base.
bench_start_emulator() {
	local dir=$1
	bench_wait_for_ports || return 1
	emu_base="http://127.0.0.1:$BENCH_EMULATOR_PORT"
	"$python" "$bench_root/test/pc_emulator.py" --port "$BENCH_EMULATOR_PORT" \
		>"$dir/emu.out" 2>"$dir/emu.err" &
	emu_pid=$!
	for _ in $(seq 100); do
		curl -sf --max-time 2 "$emu_base/_emulator/health" >/dev/null && return 0
		kill -0 "$emu_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "the Partner Center emulator did not start on port $BENCH_EMULATOR_PORT:" >&2
	cat "$dir/emu.err" >&2
	return 1
}

# bench_write_ctl DIR: DIR/ctl, the emulator's control for a benchmark's
# own shell and for scripts it runs:
#   DIR/ctl reset QUERY   reset (revokes tokens, zeroes stats), then config
#   DIR/ctl stats NAME    save /_emulator/stats as DIR/stats.NAME
#   DIR/ctl log NAME      save the API request log (JSON) as DIR/log.NAME
bench_write_ctl() {
	local dir=$1
	cat >"$dir/ctl" <<EOF
#!/bin/sh
case "\$1" in
reset) curl -sf --max-time 10 -X POST "$emu_base/_emulator/reset" >/dev/null &&
       curl -sf --max-time 10 -X POST "$emu_base/_emulator/config?\$2" >/dev/null ;;
stats) curl -sf --max-time 10 "$emu_base/_emulator/stats" >"$dir/stats.\$2" ;;
log)   curl -sf --max-time 20 "$emu_base/_emulator/requests?format=json&kind=api" >"$dir/log.\$2" ;;
*) exit 2 ;;
esac
EOF
	chmod +x "$dir/ctl"
}

bench_stop_emulator() {
	if [ -n "$emu_pid" ] && kill -0 "$emu_pid" 2>/dev/null; then
		kill -TERM "$emu_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$emu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$emu_pid" 2>/dev/null
		wait "$emu_pid" 2>/dev/null
	fi
	emu_pid=
}

# emu_reset [QUERY]: reset (clears the log and statistics, config back to the
# defaults, REVOKES every token), then set QUERY's config keys.
emu_reset() {
	curl -sf --max-time 10 -X POST "$emu_base/_emulator/reset" >/dev/null || return 1
	[ -z "${1:-}" ] || emu_config "$1"
}
emu_config() { curl -sf --max-time 10 -X POST "$emu_base/_emulator/config?$1" >/dev/null; }
emu_stats() { curl -sf --max-time 10 "$emu_base/_emulator/stats"; }
# json_get FILE KEY: a top-level value of a JSON file, n/a if missing
json_get() {
	"$python" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], "n/a"))' \
		"$1" "$2" 2>/dev/null || echo n/a
}

# bench_createdb DB: a fresh database with pcqual 1.2 pointed at the emulator
# (test/emulator-settings.psql, then the benchmark's port and private files)
# and the measuring helpers bench_cpu(), bench_mem(), bench_tenants().
bench_createdb() {
	local db=$1
	PGOPTIONS='-c client_min_messages=warning' timeout 30 dropdb --if-exists "$db" &&
		timeout 30 createdb "$db" || return 1
	timeout 60 psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c 'CREATE EXTENSION pcqual' || return 1
	timeout 60 psql -X -q -v ON_ERROR_STOP=1 -v db="$db" -f "$bench_root/test/emulator-settings.psql" || return 1
	timeout 60 psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v db="$db" -v base="$emu_base" \
		-v ca="$BENCH_FILES/tls/ca.crt" -v secret="$BENCH_FILES/secrets/client_secret" <<'EOF' || return 1
ALTER DATABASE :"db" SET pcqual.base_url = :'base';
ALTER DATABASE :"db" SET pcqual.authority = :'base';
ALTER DATABASE :"db" SET pcqual.ca_file = :'ca';
ALTER DATABASE :"db" SET pcqual.client_secret_file = :'secret';
EOF
	bench_helpers "$db"
}

# bench_helpers DB: the measuring functions (any pcqual version).
bench_helpers() {
	timeout 60 psql -X -q -v ON_ERROR_STOP=1 -d "$1" <<'EOF'
-- n distinct customer GUIDs PREFIX-TTTT-4000-8000-NNNNNNNNNNNN (TTTT = tag in
-- hex, so no two runs share one); every fail_every-th one starts with fa11
-- (the emulator answers 404).  PREFIX be0cXXXX: generic answer;
-- 44444444: the emulator's sync population.
CREATE FUNCTION bench_tenants(tag int, n int, fail_every int DEFAULT 0,
                              prefix text DEFAULT 'be0c') RETURNS uuid[]
LANGUAGE sql AS $$
  SELECT coalesce(array_agg(format('%s%s-0000-4000-8000-%s',
           CASE WHEN fail_every > 0 AND i % fail_every = 0 THEN 'fa11' ELSE left(prefix, 4) END,
           CASE WHEN length(prefix) >= 8 THEN substr(prefix, 5, 4) ELSE lpad(to_hex(tag), 4, '0') END,
           lpad(to_hex(CASE WHEN length(prefix) >= 8 THEN tag * 16777216 + i ELSE i END), 12, '0'))::uuid),
         '{}')
  FROM generate_series(1, n) i
$$;

-- this backend's CPU: utime+stime in clock ticks, and schedstat run time in ns
CREATE FUNCTION bench_cpu(OUT ticks bigint, OUT ns bigint) LANGUAGE sql AS $$
  SELECT split_part(f, ' ', 12)::bigint + split_part(f, ' ', 13)::bigint,
         nullif(split_part(coalesce(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat',
                                                 0, 200, true), ''), ' ', 1), '')::bigint
  FROM (SELECT regexp_replace(pg_read_file('/proc/' || pg_backend_pid() || '/stat'),
                              '^.*\) ', '') AS f) s
$$;

-- this backend's voluntary context switches (each sleep in a wait is one)
CREATE FUNCTION bench_vcsw() RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       'voluntary_ctxt_switches:\s+(\d+)'))[1]::bigint
$$;

-- this backend's memory, kB
CREATE FUNCTION bench_mem(OUT rss_kb bigint, OUT hwm_kb bigint, OUT anon_kb bigint) LANGUAGE sql AS $$
  SELECT (regexp_match(s, 'VmRSS:\s+(\d+)'))[1]::bigint,
         (regexp_match(s, 'VmHWM:\s+(\d+)'))[1]::bigint,
         (regexp_match(s, 'RssAnon:\s+(\d+)'))[1]::bigint
  FROM pg_read_file('/proc/' || pg_backend_pid() || '/status') s
$$;

-- the pcqual.so this backend has mapped (which build runs)
CREATE FUNCTION bench_library() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce((regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/maps'),
                               '\s(/\S*pcqual\.so)'))[1], 'not loaded')
$$;
EOF
}

# ---------------------------------------------------------------------------
# report helpers
# ---------------------------------------------------------------------------
num() { [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
# calc EXPR FORMAT a [b [c [d]]]: awk over numeric a, b, c, d; n/a if one is missing
calc() {
	local expr=$1 fmt=$2 v
	shift 2
	for v in "$@"; do num "$v" || { echo n/a; return; }; done
	awk -v a="${1:-0}" -v b="${2:-0}" -v c="${3:-0}" -v d="${4:-0}" "BEGIN { printf \"$fmt\", $expr }"
}
# verdict VALUE OP TARGET (OP le, ge, lt; = compares strings): PASS, MISS or n/a
verdict() {
	if [ "$2" = "=" ]; then [ "$1" = "$3" ] && echo PASS || echo MISS; return; fi
	num "$1" || { echo "n/a"; return; }
	awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {
		ok = (op == "le") ? v <= t : (op == "ge") ? v >= t : v < t
		print ok ? "PASS" : "MISS" }'
}
# median of the numeric arguments (n/a if none)
median() {
	local v
	for v in "$@"; do num "$v" || { echo n/a; return; }; done
	[ $# -gt 0 ] || { echo n/a; return; }
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
bench_machine_line() {
	echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))," \
		"$(awk '/^MemTotal/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo);" \
		"the emulator (Python) and PostgreSQL share these $(nproc) CPUs"
	echo "load average at the end (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg) (anything above" \
		"what the benchmark itself runs is other work on this machine, and noise in the numbers)"
}

# target LABEL VALUE OP TARGET [NOTE]: records a one-line summary of a target
# (PASS/MISS/n/a) for targets_print.
bench_targets=()
target() {
	local sym
	case $3 in le) sym='<=' ;; ge) sym='>=' ;; lt) sym='<' ;; =) sym='=' ;; *) sym=$3 ;; esac
	bench_targets+=("$(printf '%-4s %s = %s (target %s %s)%s' "$(verdict "$2" "$3" "$4")" \
		"$1" "$2" "$sym" "$4" "${5:+; $5}")")
}
targets_print() {
	echo "targets (one line each):"
	printf '   %s\n' "${bench_targets[@]}"
}

# ---- the inner part of a benchmark (inside pg_virtualenv) ----

# A scratch directory in $work, the failures list, and clean-up on exit:
# background jobs, the emulator, the scratch directory (kept with
# BENCH_KEEP=1).
bench_inner_begin() {
	cd "$bench_root" || exit 1
	SECONDS=0
	set +e					# a failed run is recorded, the others still run
	work=$(mktemp -d)
	chmod 755 "$work"
	failures=()
	trap bench_inner_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_inner_cleanup() {
	local p
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	bench_stop_emulator
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

fail() { failures+=("$*"); echo "FAILED: $*" >&2; }

# The targets, the time taken, and the exit status: 1 when a run failed.
bench_finish() {
	targets_print
	echo
	echo "setup (deps, build) ${BENCH_SETUP_SECONDS:-?} s; cluster + benchmark $SECONDS s"
	if [ ${#failures[@]} -gt 0 ]; then
		echo "FAILED runs or counts:"
		printf '   %s\n' "${failures[@]}"
		exit 1
	fi
	echo "all runs completed"
	exit 0
}

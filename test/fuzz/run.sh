#!/bin/bash
#
# test/fuzz/run.sh [seconds]
#
# Fuzz src/parse.c (the response body parser) with libFuzzer under ASan and
# UBSan for a bounded time (default 60 s), then replay every input kept in
# test/fuzz/regressions/.  Exits non-zero on any crash, leak, timeout,
# out-of-memory or sanitizer report, in the fuzzing run or in a replay.
#
# parse.c is compiled unchanged; test/fuzz/shim.c stands in for the parts of
# the backend it calls (see the comment at its top).  The backend's date
# routines (ParseDateTime, DecodeDateTime, tm2timestamp) are only in the
# postgres executable, so their stand-ins parse nothing: the fuzzer checks
# what parse.c hands them and makes of their answers, not PostgreSQL's date
# rules.  test/fuzz/dates-in-server.sh puts this corpus's and the
# regressions' dates, and thousands of generated ones, through the real code
# in a running server.  The fuzzer works on a
# copy of test/fuzz/corpus/ in a temporary directory, so the seed corpus in
# the tree only changes by hand.  An input that fails is copied into
# test/fuzz/regressions/ (as crash-*, leak-*, timeout-* or oom-*): commit
# it with the fix, and the replay keeps it fixed.
#
# Environment:
#   PCQ_PARSE_C=path     fuzz this parse.c instead of src/parse.c (to try a
#                        patch before it lands)
#   FUZZ_CFLAGS=...      extra compiler flags, e.g.
#                        -DPCQ_FUZZ_NO_TOKEN_CONSUMER to skip the check that
#                        expires_in is usable the way token.c uses it
#   FUZZ_KEEP_GOING=1    keep fuzzing after a failure (-fork=1
#                        -ignore_crashes=1) and collect every failing input
#   FUZZ_KEEP_TMP=1      keep the temporary directory (binary, grown corpus,
#                        log) and print where it is
#   FUZZ_COVERAGE=1      afterwards, replay the grown corpus through a
#                        source-coverage build and print parse.c's line,
#                        function and branch coverage (needs llvm-14)
#
# Needs clang, libclang-rt-14-dev (the libFuzzer and sanitizer runtimes),
# libcjson-dev and postgresql-server-dev-15; installs what is missing with
# apt-get (run as root on Debian 12).

set -u -o pipefail

SECONDS_TO_FUZZ=${1:-60}
case "$SECONDS_TO_FUZZ" in
	''|*[!0-9]*)
		echo "usage: $0 [seconds]" >&2
		exit 2
		;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PARSE_C=${PCQ_PARSE_C:-$ROOT/src/parse.c}
REGRESSIONS=$HERE/regressions
PGINC=/usr/include/postgresql/15/server
PGLIB=/usr/lib/postgresql/15/lib
# src/pcqual.h takes the version from the build, as the Makefile passes it:
# pcqual.control's default_version.
FUZZ_CFLAGS="-DPCQUAL_VERSION=\"$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$ROOT/pcqual.control")\" ${FUZZ_CFLAGS:-}"

# ---- tools ----

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
packages=(clang libclang-rt-14-dev libcjson-dev postgresql-server-dev-15)
[ "${FUZZ_COVERAGE:-0}" = 1 ] && packages+=(llvm-14)
for pkg in "${packages[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null || {
		echo "run.sh: could not install ${missing[*]}" >&2
		exit 2
	}
fi

# ---- build ----

WORK=$(mktemp -d /tmp/pcqual-fuzz.XXXXXX)
if [ "${FUZZ_KEEP_TMP:-0}" = 1 ]; then
	trap 'echo "== kept $WORK"' EXIT
else
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/corpus" "$WORK/artifacts" "$REGRESSIONS"

# parse.c calls pcq_is_guid(), pcq_is_unreserved() and pcq_append_percent_encoded() of
# src/pcqual.c, whose other parts need the backend's GUC machinery: compile
# those functions, cut out as they are.
pcqual_parts=(pcq_is_guid pcq_is_unreserved pcq_append_percent_encoded)
{
	printf '#include "postgres.h"\n#include <ctype.h>\n#include "pcqual.h"\n\n'
	for f in "${pcqual_parts[@]}"; do
		awk -v f="$f" '$0 ~ "^" f "\\(" { print prev; on = 1 } on { print } on && /^}/ { exit } { prev = $0 }' \
			"$ROOT/src/pcqual.c"
	done
} >"$WORK/pcqual_parts.c"
for f in "${pcqual_parts[@]}"; do
	if ! grep -q "^$f(" "$WORK/pcqual_parts.c"; then
		echo "run.sh: could not find $f() in src/pcqual.c" >&2
		exit 2
	fi
done

echo "== building $WORK/fuzz_parse from $PARSE_C"
# shellcheck disable=SC2086
if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Wall -Wno-ignored-attributes -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
	-I"$PGINC" -I"$ROOT/src" \
	"$HERE/fuzz_parse.c" "$HERE/shim.c" "$WORK/pcqual_parts.c" "$PARSE_C" \
	-L"$PGLIB" -lpgcommon -lpgport -lcjson -lm \
	-o "$WORK/fuzz_parse" 2>"$WORK/build.log"; then
	cat "$WORK/build.log" >&2
	echo "run.sh: build failed" >&2
	exit 2
fi
grep -E 'warning|error' "$WORK/build.log" >&2 || true

# A dictionary of the tokens the parsers look for, so that mutations reach
# them sooner than byte flips would.
cat >"$WORK/json.dict" <<'EOF'
"{"
"}"
"["
"]"
":"
","
"\""
"null"
"true"
"false"
"-0"
"1e999"
"-1e999"
"1.5e308"
"0.0000001"
"\\u0000"
"\\u00e9"
"\\ud83d\\ude00"
"\\ud800"
"\\udc00"
"\\n"
"\\\""
"\xc3\xa9"
"\xe2\x82\xac"
"\xf0\x9d\x84\x9e"
"\xc0\xaf"
"\xed\xa0\x80"
"\xf4\x90\x80\x80"
"\xff"
"\"qualification\""
"\"qualifications\""
"\"items\""
"\"totalCount\""
"\"attributes\""
"\"vettingStatus\""
"\"vettingReason\""
"\"vettingCreatedDate\""
"\"vettingCreateDate\""
"\"Qualification\""
"\"VettingCreatedDate\""
"\"code\""
"\"description\""
"\"message\""
"\"statusCode\""
"\"error\""
"\"error_description\""
"\"access_token\""
"\"expires_in\""
"\"token_type\""
"\"refresh_token\""
"\"companyProfile\""
"\"tenantId\""
"\"id\""
"\"companyName\""
"\"domain\""
"\"relationshipToPartner\""
"\"links\""
"\"next\""
"\"headers\""
"\"key\""
"\"value\""
"\"MS-ContinuationToken\""
"\"validations\""
"\"validationId\""
"\"organizationName\""
"\"partnerId\""
"\"maxCreates\""
"\"remainingCreates\""
"\"b44bb1fb-9d67-4a53-8e5c-2f1f5e1c7a01\""
"2147483647"
"2147483648"
"-2147483648"
"-2147483649"
"\\u0085"
"\\u2028"
"\\u202e"
"\\u2066"
"\xc2\x85"
"\xc2\x9f"
"\xe2\x80\xa8"
"\xe2\x80\xae"
"\xe2\x81\xa6"
"\xe2\x81\xa9"
"\x7f"
"T"
"Z"
"+00:00"
"-05:00"
"+14:00"
"+14:59"
"-14:00"
".1234567"
".9999999"
".5"
"24:00:00"
"23:59:60"
"2024-02-29"
"2023-02-29"
"0000-01-01"
"9999-12-31"
"2021-01-01T00:00:00Z"
EOF

cp -R "$HERE/corpus/." "$WORK/corpus/"

# ---- fuzz ----

FORK=()
if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
	FORK=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

echo "== fuzzing for ${SECONDS_TO_FUZZ}s (one job)"
status=0
(cd "$WORK" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	./fuzz_parse "${FORK[@]}" \
		-max_total_time="$SECONDS_TO_FUZZ" -max_len=65536 -timeout=5 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-dict="$WORK/json.dict" -artifact_prefix="$WORK/artifacts/" \
		"$WORK/corpus") >"$WORK/fuzz.log" 2>&1 || status=$?

execs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$WORK/fuzz.log" | tail -1 | awk '{print $2}')
if [ -z "$execs" ]; then
	# fork mode reports progress lines "#N: cov: ..." instead
	execs=$(grep -aoE '^#[0-9]+' "$WORK/fuzz.log" | tail -1 | tr -d '#')
fi
last=$(grep -aE '^#[0-9]+' "$WORK/fuzz.log" | tail -1)
echo "executions: ${execs:-unknown}"
echo "last status: ${last:-none}"
grep -aE 'stat::(average_exec_per_sec|new_units_added|peak_rss_mb)' "$WORK/fuzz.log" || true

failed=0
if [ "$status" -ne 0 ] ||
	grep -aqE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|contract violated|fuzz shim:' "$WORK/fuzz.log"; then
	failed=1
	echo "== the fuzzing run FAILED (exit status $status); the report:"
	grep -aE -A40 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|contract violated|fuzz shim:' \
		"$WORK/fuzz.log" | head -80
fi

for artifact in "$WORK"/artifacts/crash-* "$WORK"/artifacts/leak-* \
	"$WORK"/artifacts/timeout-* "$WORK"/artifacts/oom-*; do
	[ -e "$artifact" ] || continue
	failed=1
	name=$(basename "$artifact")
	cp "$artifact" "$REGRESSIONS/$name"
	echo "== kept failing input as test/fuzz/regressions/$name ($(wc -c <"$artifact") bytes)"
done

# ---- coverage of parse.c by the grown corpus ----

if [ "${FUZZ_COVERAGE:-0}" = 1 ]; then
	echo "== parse.c coverage by the $(find "$WORK/corpus" -type f | wc -l) inputs of the grown corpus"
	# shellcheck disable=SC2086
	if clang -g -O0 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
		-Wno-ignored-attributes -D_GNU_SOURCE ${FUZZ_CFLAGS:-} -I"$PGINC" -I"$ROOT/src" \
		"$HERE/fuzz_parse.c" "$HERE/shim.c" "$WORK/pcqual_parts.c" "$PARSE_C" \
		-L"$PGLIB" -lpgcommon -lpgport -lcjson -lm -o "$WORK/fuzz_parse_cov" 2>>"$WORK/build.log" &&
		(cd "$WORK" && LLVM_PROFILE_FILE="$WORK/cov.profraw" \
			./fuzz_parse_cov -runs=0 -max_len=65536 "$WORK/corpus" >"$WORK/cov.log" 2>&1) &&
		llvm-profdata-14 merge -sparse "$WORK/cov.profraw" -o "$WORK/cov.profdata"; then
		llvm-cov-14 report "$WORK/fuzz_parse_cov" -instr-profile="$WORK/cov.profdata" \
			-show-region-summary=false "$PARSE_C" "$HERE/shim.c" "$HERE/fuzz_parse.c"
		llvm-cov-14 show "$WORK/fuzz_parse_cov" -instr-profile="$WORK/cov.profdata" \
			"$PARSE_C" >"$WORK/parse.c.cov.txt"
		echo "(line-by-line: $WORK/parse.c.cov.txt, kept with FUZZ_KEEP_TMP=1)"
	else
		echo "run.sh: the coverage build or replay failed; see $WORK/build.log" >&2
	fi
fi

# ---- replay the regression inputs ----

replayed=0
for input in "$REGRESSIONS"/*; do
	[ -f "$input" ] || continue
	replayed=$((replayed + 1))
	if ! (cd "$WORK" && ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		./fuzz_parse -timeout=5 -rss_limit_mb=2048 "$input") >"$WORK/replay.log" 2>&1; then
		failed=1
		echo "== regression input FAILS: test/fuzz/regressions/$(basename "$input")"
		grep -aE -A25 'ERROR: |runtime error:|contract violated|fuzz shim:' "$WORK/replay.log" | head -40
	fi
done
echo "regression inputs replayed: $replayed"

if [ "$failed" -ne 0 ]; then
	echo "== FAILED"
	exit 1
fi
echo "== passed"
exit 0

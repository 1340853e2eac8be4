#!/bin/bash
# test/matrix.sh [release ...]
#
# The release matrix: runs the README's two commands, ./test/demo.sh then
# ./test/check.sh, as root in a fresh Debian root file system per release,
# then ./test/installcheck-running.sh: `make installcheck` as a PGXS user
# runs it, as postgres against a pg_createcluster cluster that preloads
# pcqual, with the emulator started by the Makefile's own wrapper:
#   bookworm  Debian 12, PostgreSQL 15
#   trixie    Debian 13, PostgreSQL 17; then ./test/pg-upgrade.sh, a
#             pg_upgrade from 15 (bookworm's postgresql-15, kept as on a
#             machine upgraded from Debian 12) to 17
#   forky     Debian testing, PostgreSQL 18
# Then, per release, the package flow in a second fresh root, where nothing
# is built with `make install`: ./test/build-deb.sh (the Debian packages,
# built with pg_buildext, their pg_regress suites run in the build), apt
# installs them (./test/install-deb.sh, which also checks what each package
# holds), ./test/check.sh --installed runs every suite against the installed
# package, and examples/crm-view-test/run.sh, the README's "Testing your own
# queries" example, runs against the installed pcqual-emulator command. In
# trixie the packages are installed by a package upgrade instead:
# ./test/package-upgrade.sh installs the previous release's package (built
# from the last commit of the previous default_version in pcqual.control),
# syncs data, upgrades to this tree's package and runs ALTER EXTENSION
# pcqual UPDATE.
# All three by default, one after another. Prints a summary and exits
# non-zero if any release failed. Run as root on a Debian host.
#
# The commands run in a private network namespace with only a loopback
# interface: the emulator's fixed ports (127.0.0.1:18765...) then never clash
# with a check.sh or emulator on the host, and no test can reach the
# internet. The root needs no network: its packages are already installed
# (below). PCQUAL_MATRIX_NETWORK=host shares the host's network instead (then
# check.sh waits while the host holds the emulator's ports).
#
# What is tested is this repository's working tree (tracked files plus
# untracked ones that are not ignored), as it is when the run starts: one
# snapshot, copied to /root/pcqual in each root.
#
# Each release's base root is built once with mmdebstrap (minbase) and kept
# as a tarball; it already holds the build and test packages, installed by
# running test/install-deps.sh in it, so the chroot's own install-deps.sh
# (run by demo.sh as for any user) finds nothing missing. The tarball is
# rebuilt when install-deps.sh, pg-major.sh, build-deb.sh, debian/control.in
# or the mirror change, and daily.
# Every run unpacks a fresh root from it.
#
# Environment:
#   PCQUAL_MATRIX_CACHE    cache directory (default /var/cache/pcqual-matrix):
#                          base/ tarballs, debs/ apt's downloads per release,
#                          logs/ one log per release, roots/ roots under test,
#                          src/ the snapshot of the working tree
#   PCQUAL_MATRIX_MIRROR   Debian mirror (default: the host's, from /etc/apt)
#   PCQUAL_MATRIX_STAMP    rebuild the base roots when this changes
#                          (default: the date, i.e. daily; e.g. $(date +%G-W%V))
#   PCQUAL_MATRIX_TIMEOUT  seconds allowed for each command (default 1200)
#   PCQUAL_MATRIX_KEEP=1   keep each release's root after the run, to look
#                          into (until the next run)
#   PCQUAL_MATRIX_NETWORK  private (default) or host
#   PCQUAL_MATRIX_FLOWS    the flows to run per release: "source package"
#                          (default), "source" or "package"
set -euo pipefail
# The whole script is one { } block, parsed before it runs: editing or
# checking out another version of this file during a run cannot change it.
{

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${PCQUAL_MATRIX_CACHE:-/var/cache/pcqual-matrix}
stamp=${PCQUAL_MATRIX_STAMP:-$(date +%F)}
step_timeout=${PCQUAL_MATRIX_TIMEOUT:-1200}
network=${PCQUAL_MATRIX_NETWORK:-private}
all_releases=(bookworm trixie forky)
# Bump when the way base roots are built changes.
base_format=2

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit "${1:-0}"
}
case ${1:-} in -h | --help) usage ;; -*) usage 2 >&2 ;; esac
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=("${all_releases[@]}")
for r in "${releases[@]}"; do
	case " ${all_releases[*]} " in
	*" $r "*) ;;
	*) echo "matrix: unknown release $r (known: ${all_releases[*]})" >&2; exit 2 ;;
	esac
done
flows=${PCQUAL_MATRIX_FLOWS:-source package}
for f in $flows; do
	case $f in
	source | package) ;;
	*) echo "matrix: PCQUAL_MATRIX_FLOWS=$flows: expected source and/or package" >&2; exit 2 ;;
	esac
done
case $network in
private | host) ;;
*) echo "matrix: PCQUAL_MATRIX_NETWORK=$network: expected private or host" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "matrix: run as root (mmdebstrap, mount and chroot need it)" >&2
	exit 2
fi

# The host's Debian mirror: the first deb.debian.org-style URI in its apt
# sources (deb822 or one-line), for the archive and for security updates.
host_uri() {
	local suffix=$1
	{
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]\+\).*/\2/p'
	} | grep -E "/debian$suffix/?\$" | head -n 1 | sed 's:/$::' || true
}
mirror=${PCQUAL_MATRIX_MIRROR:-$(host_uri "")}
mirror=${mirror:-http://deb.debian.org/debian}
security_mirror=$(host_uri -security)
security_mirror=${security_mirror:-${mirror}-security}

# The apt sources of a release: stable ones as a Debian installation has
# them, testing without updates (it has none) and without its near-empty
# security suite.
sources_of() {
	case $1 in
	bookworm | trixie)
		echo "deb $mirror $1 main"
		echo "deb $mirror $1-updates main"
		echo "deb $security_mirror $1-security main"
		;;
	*) echo "deb $mirror $1 main" ;;
	esac
}

# upgrade_from_of RELEASE: "OLD_RELEASE MAJOR" where the release's root also
# holds an older PostgreSQL major for test/pg-upgrade.sh: the previous stable
# release's, from its suites (the mirror has one major per release), as it
# stays installed on a machine upgraded from that release. Nothing else.
upgrade_from_of() {
	case $1 in
	trixie) echo "bookworm 15" ;;
	esac
}

# package_upgrade_of RELEASE: non-empty where the package flow installs the
# packages by a package upgrade from the previous release's
# (test/package-upgrade.sh).
package_upgrade_of() {
	case $1 in
	trixie) echo yes ;;
	esac
}

# The mirror serves testing with a Release file whose Valid-Until has passed,
# and the -updates and -security suites' Release files are valid for a week
# only, so a mirror that lags would break them too: test roots do not check
# it. The option stays in the root (/etc/apt/apt.conf.d/99mmdebstrap), so
# that an apt-get update by install-deps.sh in it works as well.
aptopts=(--aptopt='Acquire::Check-Valid-Until "false"')

mkdir -p "$cache"/{base,debs,logs,roots,tmp}
# Canonical, as /proc/PID/root shows it (processes_in compares with it).
cache=$(realpath "$cache")

# One matrix run at a time (and one writer of the cache).
exec 9>"$cache/lock"
if ! flock -n 9; then
	echo "matrix: another test/matrix.sh run holds $cache/lock; waiting for it" >&2
	flock 9
fi

# What this script needs on the host: mmdebstrap, and ip (iproute2) for the
# loopback interface of the private network namespace.
host_missing=()
command -v mmdebstrap >/dev/null || host_missing+=(mmdebstrap)
command -v ip >/dev/null || host_missing+=(iproute2)
if [ ${#host_missing[@]} -gt 0 ]; then
	echo "matrix: installing ${host_missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${host_missing[@]}"
fi

# Mount points at or below $1 in this (the host's) mount namespace.
mounts_below() {
	findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1'
}

# Processes whose root directory is at or below $1 (a chroot of ours).
processes_in() {
	local pid r
	for pid in /proc/[0-9]*; do
		r=$(readlink "$pid/root" 2>/dev/null) || continue
		case $r in "$1" | "$1"/*) echo "${pid#/proc/}" ;; esac
	done
}

# Deletes a root (or mmdebstrap's temporary directory) only once nothing runs
# in it and nothing is mounted below it. Roots are mounted in private mount
# namespaces (test/matrix/in-root.sh), so the host should never see a mount
# here; if it does (a crash of an older run), unmount first, and refuse to
# delete if that fails.
remove_tree() {
	local dir=$1 pids
	[ -e "$dir" ] || return 0
	pids=$(processes_in "$dir")
	# shellcheck disable=SC2086 # $pids: one word per process
	if [ -n "$pids" ]; then
		kill -TERM $pids 2>/dev/null || true
		sleep 2
		pids=$(processes_in "$dir")
		[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
	fi
	if [ -n "$(mounts_below "$dir")" ]; then
		umount -R "$dir" 2>/dev/null || true
		mounts_below "$dir" | sort -r | xargs -r -n 1 umount -l 2>/dev/null || true
	fi
	if [ -n "$(mounts_below "$dir")" ]; then
		echo "matrix: NOT deleting $dir, still mounted:" >&2
		mounts_below "$dir" >&2
		return 1
	fi
	rm -rf --one-file-system "$dir"
}

# Long steps (mmdebstrap, a command in a root) run as background jobs, each
# in its own process group (started under set -m), and the script waits for
# them: a signal (Ctrl-C, a CI cancel) reaches this script alone and
# interrupts the wait at once; on_exit then sends SIGTERM to the step's whole
# process group and waits for it to end: in-root.sh stops what runs in the
# root and unmounts, mmdebstrap cleans up after itself.
current_root=
child=
stop_child() {
	[ -n "$child" ] || return 0
	# Its process group (the 3rd field after "pid (comm) "), never ours.
	if [ "$(sed 's/.*) //' "/proc/$child/stat" 2>/dev/null | cut -d' ' -f3)" = "$child" ]; then
		kill -TERM -- "-$child" 2>/dev/null
		for _ in $(seq 1 600); do
			kill -0 -- "-$child" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL -- "-$child" 2>/dev/null
	else
		kill -TERM "$child" 2>/dev/null
	fi
	wait "$child" 2>/dev/null
	child=
}
on_exit() {
	local status=$?
	set +e
	stop_child
	if [ -n "$current_root" ] && [ -z "${PCQUAL_MATRIX_KEEP:-}" ]; then
		remove_tree "$current_root"
	fi
	# mmdebstrap cleans its temporary directory itself, unless killed.
	for d in "$cache"/tmp/*; do remove_tree "$d"; done
	rm -rf "$cache/src" "$cache"/base/*.partial
	exit "$status"
}
trap on_exit EXIT
trap 'echo "matrix: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM HUP

# Leftovers of a run that was killed.
for d in "$cache"/roots/* "$cache"/tmp/*; do remove_tree "$d"; done
rm -f "$cache"/base/*.partial

# Sets $tarball to the base root's tarball for a release; builds it if missing.
# Its key: what decides its content (the package list is computed by
# install-deps.sh and pg-major.sh, so their text), and the date stamp so that
# package updates come in.
base_tarball() {
	local release=$1 key log debs status from list
	# The older major's packages (upgrade_from_of), installed after
	# install-deps.sh from the older release's suites, which the root then
	# forgets again (after autoclean, which keeps their downloads in $debs;
	# mmdebstrap drops the package lists at the end).
	local -a old_major_hooks=() old_sources_cleanup=()
	from=$(upgrade_from_of "$release")
	if [ -n "$from" ]; then
		# shellcheck disable=SC2086 # "OLD_RELEASE MAJOR": two words
		set -- $from
		list=/etc/apt/sources.list.d/pcqual-$1.list
		old_major_hooks=(
			--customize-hook="printf '%s\n' 'deb $mirror $1 main' 'deb $security_mirror $1-security main' > \"\$1\"$list"
			--customize-hook="chroot \"\$1\" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-$2 postgresql-server-dev-$2'"
		)
		old_sources_cleanup=(--customize-hook="rm \"\$1\"$list")
	fi
	key=$({
		echo "$base_format $release"
		sources_of "$release"
		printf '%s\n' "${aptopts[@]}" "${old_major_hooks[@]}"
		cat "$repo/test/install-deps.sh" "$repo/test/apt-install.sh" "$repo/test/pg-major.sh" "$repo/test/build-deb.sh" \
			"$repo/debian/control.in" "$repo/debian/pgversions"
	} | sha256sum | cut -c1-12)
	tarball=$cache/base/$release-$stamp-$key.tar
	[ ! -s "$tarball" ] || return 0
	log=$cache/logs/$release-base.log
	debs=$cache/debs/$release
	mkdir -p "$debs"
	echo "=== $release: building the base root (log: $log)"
	local -a sources
	mapfile -t sources < <(sources_of "$release")
	# In a private mount namespace, so that mmdebstrap's mounts (it mounts
	# /proc, /dev... to run the hooks) cannot outlive it.
	# Hooks, in order:
	# - apt's downloads are kept in $debs between builds (sync-in/-out;
	#   essential/unlink keeps them in the root until sync-out), and
	#   autoclean drops versions the mirror no longer has;
	# - policy-rc.d: no service starts in the root (the postgresql package
	#   would start its main cluster), as in Debian's container images;
	# - install-deps.sh installs the packages, exactly as in a test run;
	#   build-deb.sh --deps-only those that build the Debian packages
	#   (debhelper, pg_buildext, the Build-Depends), since a test root has
	#   no network; then the older major's, if any.
	set -m
	TMPDIR=$cache/tmp unshare --mount --propagation private -- \
		mmdebstrap --mode=root --variant=minbase --format=tar \
		"${aptopts[@]}" \
		--skip=essential/unlink \
		--setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
		--setup-hook="sync-in '$debs' /var/cache/apt/archives/" \
		--customize-hook='printf "#!/bin/sh\nexit 101\n" > "$1"/usr/sbin/policy-rc.d; chmod 755 "$1"/usr/sbin/policy-rc.d' \
		--customize-hook="mkdir -p \"\$1\"/tmp/pcqual/test; cp '$repo/test/install-deps.sh' '$repo/test/apt-install.sh' '$repo/test/pg-major.sh' '$repo/test/build-deb.sh' \"\$1\"/tmp/pcqual/test/; cp -r '$repo/debian' '$repo/pcqual.control' \"\$1\"/tmp/pcqual/" \
		--customize-hook='chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 /tmp/pcqual/test/install-deps.sh' \
		--customize-hook='chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 /tmp/pcqual/test/build-deb.sh --deps-only' \
		"${old_major_hooks[@]}" \
		--customize-hook='rm -rf "$1"/tmp/pcqual' \
		--customize-hook='chroot "$1" apt-get -qq autoclean' \
		"${old_sources_cleanup[@]}" \
		--customize-hook="find '$debs' -name '*.deb' -delete" \
		--customize-hook="sync-out /var/cache/apt/archives '$debs'" \
		"$release" "$tarball.partial" "${sources[@]}" \
		</dev/null > >(trap '' INT TERM; exec tee "$log") 2>&1 &
	child=$!
	set +m
	status=0
	wait $child || status=$?
	child=
	if [ "$status" != 0 ]; then
		rm -f "$tarball.partial"
		echo "=== $release: mmdebstrap failed (exit $status)"
		return 1
	fi
	mv "$tarball.partial" "$tarball"
	# Older tarballs of this release.
	find "$cache/base" -name "$release-*.tar" ! -path "$tarball" -delete
}

# A clean export of the repository's working tree into $1: tracked files
# (as they are on disk, uncommitted changes included) and untracked files that
# are not ignored; no build products, no .git. In CI, a fresh clone, that is
# HEAD.
export_repository() {
	local dest=$1
	rm -rf "$dest"
	mkdir -p "$dest"
	git -C "$repo" ls-files -z --cached --others --exclude-standard |
		(cd "$repo" && while IFS= read -r -d '' f; do
			# tracked files deleted in the working tree
			if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
		done) |
		tar -C "$repo" --null -T - --owner=root:0 --group=root:0 -cf - |
		tar -C "$dest" -xf -
}

# export_previous_release DEST: the source of the previous release into
# DEST: the parent of the commit that set pcqual.control's default_version
# to the working tree's (git archive; test/package-upgrade.sh builds its
# package). Needs the repository's history (not a shallow clone).
version_in() { # pcqual.control's text on stdin
	sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p"
}
export_previous_release() {
	local dest=$1 version c bump=
	version=$(version_in <"$repo/pcqual.control")
	for c in $(git -C "$repo" rev-list HEAD -- pcqual.control); do
		[ "$(git -C "$repo" show "$c:pcqual.control" | version_in)" = "$version" ] || break
		bump=$c
	done
	if [ -z "$bump" ]; then
		# The working tree's version is not committed yet: HEAD is the last
		# state of the previous release.
		bump=$(git -C "$repo" rev-parse HEAD)
		c=$bump
	else
		c=$bump^
	fi
	if ! git -C "$repo" rev-parse -q --verify "$c^{commit}" >/dev/null; then
		echo "matrix: the commit before $bump (the previous release) is not in this clone" \
			"(a shallow clone? git fetch --unshallow)" >&2
		return 1
	fi
	rm -rf "$dest"
	mkdir -p "$dest"
	git -C "$repo" archive "$c" | tar -C "$dest" -xf -
	echo "matrix: the previous release, pcqual $(version_in <"$dest/pcqual.control"), is $(git -C "$repo" rev-parse --short "$c")"
}

# run_step RELEASE ROOT LOG NAME COMMAND: runs COMMAND (a shell command line)
# in ROOT; output to the terminal and the log.
run_step() {
	local release=$1 root=$2 log=$3 name=$4 cmd=$5 status unshare=(unshare --mount --propagation private)
	echo "=== $release: $name" | tee -a "$log"
	if [ "$network" = private ]; then
		unshare+=(--net)
		set -- --lo-up
	else
		set --
	fi
	# --foreground: timeout passes its signal to in-root.sh only, whose trap
	# stops everything in the root.
	set -m
	timeout --foreground "$step_timeout" "${unshare[@]}" -- \
		"$here/matrix/in-root.sh" "$@" "$root" /bin/bash -lc "$cmd" \
		</dev/null > >(trap '' INT TERM; exec tee -a "$log") 2>&1 &
	child=$!
	set +m
	status=0
	wait $child || status=$?
	child=
	if [ "$status" = 124 ]; then
		echo "=== $release: $name timed out after $step_timeout s" | tee -a "$log"
	fi
	return "$status"
}

export_repository "$cache/src"
changes=$(git -C "$repo" status --porcelain | wc -l)
echo "matrix: testing $repo at $(git -C "$repo" rev-parse --short HEAD)" \
	"($changes changed or untracked paths in the working tree)," \
	"network: $network, releases: ${releases[*]}"

# new_root ROOT: a fresh root from $tarball at ROOT, with the snapshot of the
# working tree in /root/pcqual.
new_root() {
	local root=$1
	current_root=$root
	remove_tree "$root"
	mkdir -p "$root"
	# --numeric-owner: the root's users (postgres...) are not the host's.
	tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xf "$tarball"
	# The host's name resolution, as a container gets it.
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	cp -L /etc/hosts "$root/etc/hosts"
	cp -a "$cache/src" "$root/root/pcqual"
	major=$(chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /root/pcqual/test/pg-major.sh 2>/dev/null || echo '?')
}

# failure NAME STATUS: how a step failed, for the summary.
failure() {
	if [ "$2" = 124 ]; then
		echo "$1 timed out after $step_timeout s"
	else
		echo "$1 exited $2"
	fi
}

# step NAME COMMAND: runs COMMAND (in /root/pcqual) as a step of the
# current release in $root; records its time in $times and a failure in
# $failures; returns its status.
step() {
	local t=$SECONDS status=0
	run_step "$release" "$root" "$log" "$1" "cd /root/pcqual && $2" || status=$?
	[ "$status" = 0 ] || failures+=("$(failure "$1" "$status")")
	times+=", $1 $((SECONDS - t)) s"
	return "$status"
}

# The README's commands, built from source, in a fresh root.
source_flow() {
	local from
	root=$cache/roots/$release
	new_root "$root"
	step ./test/demo.sh ./test/demo.sh || true
	step ./test/check.sh ./test/check.sh || true
	step ./test/installcheck-running.sh ./test/installcheck-running.sh || true
	from=$(upgrade_from_of "$release")
	if [ -n "$from" ]; then
		step "./test/pg-upgrade.sh from ${from#* }" \
			"PCQUAL_UPGRADE_FROM=${from#* } ./test/pg-upgrade.sh" || true
	fi
	[ -n "${PCQUAL_MATRIX_KEEP:-}" ] || remove_tree "$root"
	current_root=
}

# The packages, in a second fresh root where nothing is built with make
# install: build them, install them (by a package upgrade where
# package_upgrade_of says so), test the installed package and the users'
# example against the installed pcqual-emulator.
package_flow() {
	root=$cache/roots/$release-package
	new_root "$root"
	if step ./test/build-deb.sh ./test/build-deb.sh; then
		local installed=0
		if [ -n "$(package_upgrade_of "$release")" ]; then
			if export_previous_release "$root/root/pcqual-previous" >>"$log" 2>&1; then
				step ./test/package-upgrade.sh './test/package-upgrade.sh /root/pcqual-previous' ||
					installed=1
			else
				failures+=("the previous release's source (see $log)")
				installed=1
			fi
		fi
		# After package-upgrade.sh the extension's package is this tree's
		# already: install-deb.sh adds the emulator's and checks both.
		[ "$installed" != 0 ] || step ./test/install-deb.sh ./test/install-deb.sh || installed=1
		if [ "$installed" = 0 ]; then
			step './test/check.sh --installed' './test/check.sh --installed' || true
			step examples/crm-view-test/run.sh \
				'pg_virtualenv -o shared_preload_libraries=pcqual examples/crm-view-test/run.sh' || true
		fi
	fi
	[ -n "${PCQUAL_MATRIX_KEEP:-}" ] || remove_tree "$root"
	current_root=
}

declare -A result
failed=0
for release in "${releases[@]}"; do
	log=$cache/logs/$release.log
	: >"$log"
	start=$SECONDS
	if ! base_tarball "$release"; then
		result[$release]="$release: FAILED to build the base root (log: $cache/logs/$release-base.log)"
		failed=1
		continue
	fi
	times="base root $((SECONDS - start)) s"
	failures=()
	major=?
	for flow in $flows; do
		"${flow}_flow"
	done
	name="$release (PostgreSQL $major)"
	total=$((SECONDS - start))
	if [ ${#failures[@]} -eq 0 ]; then
		result[$release]="$name: passed in $total s ($times)"
	else
		failed=1
		result[$release]="$name: FAILED in $total s: $(printf '%s, ' "${failures[@]}" | sed 's/, $//') ($times; log: $log)"
	fi
	echo "=== ${result[$release]}" | tee -a "$log"
done

echo
echo "Release matrix:"
for release in "${releases[@]}"; do
	echo "  ${result[$release]}"
done
[ -z "${PCQUAL_MATRIX_KEEP:-}" ] || echo "(roots kept in $cache/roots)"
exit $failed
}

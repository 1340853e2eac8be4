#!/bin/bash
# test/matrix/in-root.sh [--lo-up] ROOT COMMAND [ARG...]
#
# test/matrix.sh runs this under `unshare --mount --propagation private`
# (and `--net`, with --lo-up to bring up the new namespace's loopback): it
# mounts /proc, /sys, /dev, /dev/pts and a fresh /dev/shm (PostgreSQL's
# shared memory) in the root file system ROOT, runs COMMAND in it as root
# with chroot and a clean login environment, then stops whatever COMMAND
# left running in ROOT and unmounts.
#
# The mounts exist only in this private mount namespace: the host never sees
# them, so a `rm -rf ROOT` on the host cannot reach /dev or /proc, and they
# vanish with the namespace even if this script is killed. The trap unmounts
# them on every other exit (failure, Ctrl-C, timeout).
set -euo pipefail

lo_up=
if [ "${1:-}" = --lo-up ]; then
	lo_up=1
	shift
fi
root=$1
shift
[ -d "$root/usr" ] || { echo "in-root.sh: $root is not a root file system" >&2; exit 2; }

# The processes whose root directory is ROOT.
root_processes() {
	local pid
	for pid in /proc/[0-9]*; do
		[ "$(readlink "$pid/root" 2>/dev/null)" = "$root" ] && echo "${pid#/proc/}"
	done
	return 0
}
# Stops what COMMAND left running in ROOT (after Ctrl-C or a timeout: the
# PostgreSQL server, the emulator): it would keep the namespace, and so its
# mounts, alive. SIGTERM first, then SIGKILL after 5 s.
# shellcheck disable=SC2086 # $pids: one word per process
stop_root_processes() {
	local pids
	pids=$(root_processes)
	[ -n "$pids" ] || return 0
	kill -TERM $pids 2>/dev/null
	for _ in $(seq 1 50); do
		sleep 0.1
		pids=$(root_processes)
		[ -n "$pids" ] || return 0
	done
	kill -KILL $pids 2>/dev/null
	sleep 0.5
}

mounted=()
cleanup() {
	local i
	set +e
	stop_root_processes
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# mount_in PATH MOUNT-ARGS...: mounts on ROOT/PATH and remembers it.
mount_in() {
	local target=$root$1
	shift
	mkdir -p "$target"
	mount "$@" "$target"
	mounted+=("$target")
}
# A new network namespace has only a loopback interface, and it is down.
[ -z "$lo_up" ] || ip link set dev lo up

mount_in /proc -t proc proc
# Non-recursive binds: the host's submounts of /sys and /dev are not needed,
# and a recursive bind would be a recursive unmount to get wrong.
mount_in /sys --bind /sys
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
# The host's /dev/shm is its own tmpfs (not under the /dev bind); give the
# root a private one rather than share the host's.
mount_in /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs

# A root login shell's environment, nothing from the caller (no PG_MAJOR,
# no CI): the README's commands run as a user would run them.
# In the background, so that a signal (Ctrl-C, test/matrix.sh's timeout)
# interrupts `wait` and the traps run at once; they stop the command.
chroot "$root" /usr/bin/env -i \
	HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
	TERM="${TERM:-dumb}" LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	"$@" </dev/null &
status=0
wait $! || status=$?
exit $status

# shellcheck shell=bash
# Sourced by test/check.sh and test/demo.sh, as root: the set-up they share.
# Installs what is missing (test/install-deps.sh), builds and installs pcqual
# for the chosen PostgreSQL major with that major's pg_config (`pg_config` on
# the PATH may belong to another installed major), waits until the
# emulator's loopback ports are free, then prepares the test files. Sets
# $pg_major.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

test/install-deps.sh
pg_major=$(test/pg-major.sh)
pg_config=/usr/lib/postgresql/$pg_major/bin/pg_config

# test/check.sh --installed: the pcqual a Debian package installed
# (test/build-deb.sh, apt-get install ./build/postgresql-NN-pcqual_*.deb) is
# tested as it is; nothing is built or installed from this tree.
if [ -n "${PCQUAL_TEST_INSTALLED:-}" ]; then
	control=$("$pg_config" --sharedir)/extension/pcqual.control
	package=$(dpkg-query -S "$control" 2>/dev/null | cut -d: -f1 || true)
	if [ -z "$package" ]; then
		echo "--installed: no package provides $control; build and install" \
			"postgresql-$pg_major-pcqual first (test/build-deb.sh, then" \
			"apt-get install ./build/postgresql-$pg_major-pcqual_*.deb)" >&2
		exit 1
	fi
	echo "testing the installed package $package $(dpkg-query -W -f='${Version}' "$package")"
else
	# PGXS does not notice a change of major: objects compiled against another
	# major's headers (e.g. after PG_MAJOR=...) would be linked as they are.
	# The headers' directory is in each object's debug information; rebuild
	# from scratch unless every object names this major's.
	server_includes=$("$pg_config" --includedir-server)
	for o in src/*.o; do
		if [ -e "$o" ] && ! grep -qaF "$server_includes" "$o"; then
			make -s clean PG_CONFIG="$pg_config"
			break
		fi
	done
	make -s PG_CONFIG="$pg_config"
	make -s install PG_CONFIG="$pg_config"
fi

# The emulator listens on fixed loopback ports (18765 and up). Another
# check.sh or demo.sh on this machine, or one in a test/matrix.sh chroot
# (chroots share the network), may hold them: wait for it rather than fail
# with a confusing test error.
emulator_port_busy() {
	local first=${PCQUAL_EMULATOR_PORT:-18765} p
	for p in $(seq "$first" $((first + 5))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
waited=0
limit=${PCQUAL_PORT_WAIT:-900}
while busy=$(emulator_port_busy); do
	if [ "$waited" -ge "$limit" ]; then
		echo "127.0.0.1:$busy is still in use after $limit s;" \
			"see \`ss -ltnp 'sport = :$busy'\`" >&2
		exit 1
	fi
	if [ $((waited % 60)) -eq 0 ]; then
		echo "127.0.0.1:$busy is in use (another pcqual test run?); waiting up to $((limit - waited)) s" >&2
	fi
	sleep 5
	waited=$((waited + 5))
done

# TLS certificates and secret files for the suites, owned by postgres: made
# only once the ports are ours, so that a run still in progress keeps its own.
if [ -x test/prepare-test-files.sh ]; then
	test/prepare-test-files.sh
fi

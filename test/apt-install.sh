# shellcheck shell=bash
# Sourced by test/install-deps.sh and test/build-deb.sh, as root:
#   install_missing PACKAGE...   installs those not installed yet, with one
#                                `apt-get update` at most per script run
#   apt_update_once              that update, for other apt-get commands
# Messages start with $apt_who (the script's name).
export DEBIAN_FRONTEND=noninteractive
apt_updated=
apt_who=${apt_who:-$(basename "$0" .sh)}

apt_update_once() {
	[ -n "$apt_updated" ] && return 0
	apt-get update -qq
	apt_updated=1
}

install_missing() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' ok installed$' || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	echo "$apt_who: installing ${missing[*]}"
	apt_update_once
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

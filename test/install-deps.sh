#!/bin/bash
# Installs what pcqual needs to build and test on Debian 12, if missing.
# Run as root (or with sudo).
set -euo pipefail

packages=(
	make gcc libc6-dev curl python3
	postgresql-15 postgresql-server-dev-15 postgresql-contrib
	libcurl4-openssl-dev libcjson-dev
	postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

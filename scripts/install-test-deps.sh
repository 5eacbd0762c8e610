#!/usr/bin/env bash
# Installs what the test suite needs on a bare machine of the project's kind
# (Debian with Go). Idempotent: a machine that has everything skips the work.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive as real peers. Empty for now; promtool
# (prometheus), pebble and chromium join as the features that need them land.
apt_packages=()

missing=()
for pkg in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

go mod download

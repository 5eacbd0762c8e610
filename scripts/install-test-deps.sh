#!/usr/bin/env bash
# Installs what the test suite needs on a bare machine of the project's kind
# (Debian with Go). Idempotent: a machine that has everything skips the work.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive as real tools:
#   prometheus  for promtool, which checks the live /metrics exposition
#   pebble      a real ACME server for the automatic-HTTPS tests
#   chromium    a real headless browser for the dashboard test
#   redis-server  the shared store of global rate limits and shared breakers
apt_packages=(prometheus pebble chromium redis-server)

missing=()
for pkg in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# The tests need these packages' binaries, never their services: forbid
	# service starts during the install (Debian's policy-rc.d convention).
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

go mod download

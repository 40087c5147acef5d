#!/bin/sh
# Install a headless browser for the browser tests: Debian's chromium and
# chromium-driver (for Selenium). Does nothing when both are already there.
#
#   tests/install_chromium.sh
#
# Exits non-zero with the reason on stderr when it cannot work here (not root,
# no apt-get, no network to install from). Each apt-get step is bounded.
set -eu

SECONDS_A_STEP=${RUNSTORE_APT_SECONDS:-300}
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "chromium is missing and installing it needs root" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "chromium is missing and there is no apt-get" >&2; exit 2; }
log=$(mktemp -t chromium-apt.XXXXXX)
if ! { timeout "$SECONDS_A_STEP" apt-get update -q && DEBIAN_FRONTEND=noninteractive \
        timeout "$SECONDS_A_STEP" apt-get install -y -q chromium chromium-driver; } >"$log" 2>&1
then
    echo "could not install chromium and chromium-driver with apt-get (see $log)" >&2
    exit 2
fi
rm -f "$log"

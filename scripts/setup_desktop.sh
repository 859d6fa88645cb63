#!/usr/bin/env bash
# Install the desktop programs the SAMP and web page tests talk to, from Debian's
# packages, idempotently: Xvfb (a display without a screen), TOPCAT, Aladin, and
# Chromium (the web page's tests drive it headless through Python's playwright,
# which never downloads a browser of its own here).
#
#   sudo scripts/setup_desktop.sh          # first run: a minute or two
#   sudo scripts/setup_desktop.sh          # rerun: instant, installs nothing
#
# Environment:
#   VO_SIM_SKIP_APT=1       never call apt-get (packages must be there)
#
# Runs as root with no standard input (CI). Starts nothing: the tests start
# their own Xvfb, SAMP hub, TOPCAT, Aladin and Chromium and stop them
# (tests/desktop.py, tests/web/conftest.py).
set -euo pipefail
exec </dev/null
export DEBIAN_FRONTEND=noninteractive

log() { echo "[setup_desktop] $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup_desktop.sh: run as root (it installs packages)" >&2
  exit 1
fi

PACKAGES=(xvfb topcat aladin chromium)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || need+=("$pkg")
done

if ((${#need[@]})); then
  [[ "${VO_SIM_SKIP_APT:-0}" == 1 ]] && { log "missing packages: ${need[*]}"; exit 1; }
  log "installing ${need[*]} (first run only)"
  apt-get update -qq
  # Without recommends: no desktop environment, fonts or browser plug-ins; a
  # headless Java and the programs' own jars are all the tests use.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || { echo "setup_desktop.sh: package $pkg did not install" >&2; exit 1; }
done
for prog in Xvfb topcat aladin chromium; do
  command -v "$prog" >/dev/null || { echo "setup_desktop.sh: $prog not on PATH after install" >&2; exit 1; }
done
log "packages ready (${PACKAGES[*]})"

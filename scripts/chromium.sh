#!/usr/bin/env bash
# Makes sure headless Chromium is installed for the browser tests and prints
# the path of its binary on standard output (everything else goes to
# standard error). Installs Debian's chromium package with apt-get when it is
# missing and this runs as root; otherwise says how to install it and fails.
# Idempotent: an installed browser is only located.
#
#   export OIDCRP_CHROMIUM=$(scripts/chromium.sh)
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_chromium() {
  local name
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

if path=$(find_chromium); then
  echo "$path"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "chromium is not installed: install it (Debian: apt-get install chromium) or set OIDCRP_CHROMIUM to a Chromium binary"
  exit 1
fi
log "installing chromium with apt-get"
# apt's progress goes to /dev/null, its errors to standard error.
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
if ! path=$(find_chromium); then
  log "apt-get installed chromium but no chromium binary is on PATH"
  exit 1
fi
log "installed $("$path" --version 2>/dev/null || echo chromium)"
echo "$path"

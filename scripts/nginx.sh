#!/usr/bin/env bash
# Makes sure nginx is installed for the oidcrp-proxy auth_request test and
# prints the path of its binary on standard output (everything else goes to
# standard error). Installs Debian's nginx package with apt-get when it is
# missing and this runs as root; otherwise says how to install it and fails.
# The test starts its own nginx with its own configuration on loopback ports;
# the package's service is not started (or is stopped if the package started it).
#
#   export OIDCRP_NGINX=$(scripts/nginx.sh)
set -euo pipefail

log() { echo "nginx.sh: $*" >&2; }

find_nginx() {
  local p
  for p in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx; do
    if [ -n "$p" ] && [ -x "$p" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

if path=$(find_nginx); then
  echo "$path"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "nginx is not installed: install it (Debian: apt-get install nginx) or set OIDCRP_NGINX to an nginx binary"
  exit 1
fi
log "installing nginx with apt-get"
# Keep the package's service from starting where no policy says otherwise.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
# apt's progress goes to /dev/null, its errors to standard error.
status=0
{ apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } || status=$?
[ -z "$made_policy" ] || rm -f "$policy"
[ "$status" = 0 ] || exit "$status"
if ! path=$(find_nginx); then
  log "apt-get installed nginx but there is no nginx binary"
  exit 1
fi
log "installed $("$path" -v 2>&1 | head -n1)"
echo "$path"

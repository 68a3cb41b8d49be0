#!/usr/bin/env bash
# Runs the whole test suite: formatting, vet, and `go test -race` for every
# module, including the integration tests against a real OpenID Provider
# (panva's oidc-provider, pinned in internal/interop/package-lock.json), and
# `go test` of the core module with the oldest Go release its go.mod allows.
# Installs what is missing: Node.js and npm (apt-get, when root), npm packages,
# redis-server (apt-get), which it starts on a loopback port and stops,
# Chromium for the browser tests (scripts/chromium.sh), and nginx for
# oidcrp-proxy's auth_request test (scripts/nginx.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing ${need_apt[*]}: install Node.js 20+ and npm" >&2
    exit 1
  fi
fi

# The interop tests never install npm packages themselves: without these they
# skip (or fail under CI).
if [ ! -f internal/interop/node_modules/oidc-provider/package.json ]; then
  (cd internal/interop && npm ci --no-audit --no-fund --loglevel=error)
fi

# Redis for the redisstore tests and the example, unless the caller points at one.
if [ -z "${OIDCRP_REDIS_ADDR:-}" ]; then
  redis_env=$(scripts/redis.sh start)   # plain assignment so set -e catches a failure
  export "$redis_env"
  trap 'scripts/redis.sh stop' EXIT
fi

# Headless Chromium for the example's browser tests (installed when missing).
OIDCRP_CHROMIUM=${OIDCRP_CHROMIUM:-$(scripts/chromium.sh)}   # plain assignment so set -e catches a failure
export OIDCRP_CHROMIUM

# nginx for oidcrp-proxy's auth_request test, which starts its own (installed when missing).
OIDCRP_NGINX=${OIDCRP_NGINX:-$(scripts/nginx.sh)}   # plain assignment so set -e catches a failure
export OIDCRP_NGINX

modules=$(git ls-files '*go.mod' 2>/dev/null | xargs -n1 dirname 2>/dev/null || echo .)
[ -n "$modules" ] || modules=.

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi

status=0
for m in $modules; do
  echo "== module $m"
  (cd "$m" && go vet ./... && go test -race -count=1 -timeout 20m ./...) || status=1
done

# The core's go.mod promises that its go line's release builds it: test that
# (the Go command downloads the toolchain from the module proxy if needed).
oldest=go$(sed -n 's/^go //p' go.mod)
echo "== module . with $oldest"
GOTOOLCHAIN=$oldest go vet ./... && GOTOOLCHAIN=$oldest go test -count=1 -timeout 20m ./... || status=1
exit $status

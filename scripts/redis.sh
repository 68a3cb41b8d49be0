#!/usr/bin/env bash
# Starts and stops a throwaway redis-server for the redisstore tests.
#
#   scripts/redis.sh start   installs redis-server if missing (apt-get, when
#                            root), starts it on a free loopback port without
#                            persistence and prints OIDCRP_REDIS_ADDR=127.0.0.1:PORT
#   scripts/redis.sh stop    stops the server started by `start`
#
# Only the OIDCRP_REDIS_ADDR line goes to standard output; everything else
# goes to standard error. State (pid file, port, log) lives in .cache/redis of
# the repository, or in $OIDCRP_REDIS_DIR when set. `start` is idempotent: if
# the server it started is still answering, it prints its address again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${OIDCRP_REDIS_DIR:-$root/.cache/redis}
pidfile=$dir/redis.pid
portfile=$dir/port
logfile=$dir/redis.log

log() { echo "redis.sh: $*" >&2; }

running_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

pong() {
  [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "redis-server and redis-cli are not installed: install them (Debian: apt-get install redis-server)," \
      "or point OIDCRP_REDIS_ADDR at a Redis server"
    exit 1
  fi
  log "installing redis-server with apt-get"
  # apt's progress goes to /dev/null, its errors to standard error.
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

start() {
  install_redis
  mkdir -p "$dir"
  if running_pid >/dev/null && [ -f "$portfile" ] && pong "$(cat "$portfile")"; then
    echo "OIDCRP_REDIS_ADDR=127.0.0.1:$(cat "$portfile")"
    return 0
  fi
  rm -f "$pidfile" "$portfile"

  local port tries=0
  for port in $(seq 6390 6489); do
    port_busy "$port" && continue
    tries=$((tries + 1))
    [ "$tries" -le 5 ] || break
    : >"$logfile"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --daemonize yes --pidfile "$pidfile" --dir "$dir" --logfile "$logfile" >&2 || continue
    local i
    for i in $(seq 100); do # up to 10 s
      if pong "$port"; then
        echo "$port" >"$portfile"
        log "redis-server $(redis-server --version | grep -o 'v=[^ ]*') running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
        echo "OIDCRP_REDIS_ADDR=127.0.0.1:$port"
        return 0
      fi
      # The daemon exits at once when it cannot bind; try another port.
      if [ "$i" -ge 10 ] && ! running_pid >/dev/null; then
        break
      fi
      sleep 0.1
    done
    log "redis-server did not answer on port $port; log:"
    tail -n 20 "$logfile" >&2 || true
    if pid=$(running_pid); then kill "$pid" 2>/dev/null || true; fi
    rm -f "$pidfile"
  done
  log "could not start redis-server"
  exit 1
}

stop() {
  local pid i
  if ! pid=$(running_pid); then
    rm -f "$pidfile" "$portfile"
    return 0
  fi
  kill "$pid"
  for i in $(seq 100); do # up to 10 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "redis-server (pid $pid) did not exit; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile" "$portfile"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac

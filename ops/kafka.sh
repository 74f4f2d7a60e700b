#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) on 127.0.0.1:9092, fetched from Maven Central.
# Usage: ops/kafka.sh up|down|status|reset|fetch. `down` stops only a broker this script started;
# `fetch` only resolves the jars (tests/integration/secure_kafka.py starts its own broker from them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
libs="$root/.cache/kafka-libs"
state="$root/.local/kafka"
pidfile="$state/kafka.pid"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"

name=kafka
# shellcheck source=ops/pidfile.sh
. "$root/ops/pidfile.sh"
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

fetch() {
  if [ ! -f "$libs/.complete" ]; then
    echo "kafka: resolving broker jars from Maven Central into $libs"
    mvn -q -B -f "$root/ops/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs"
    touch "$libs/.complete"
  fi
}

java_run() { java -Xms256m -Xmx1g -Dlog4j.configuration="file:$state/log4j.properties" \
  -Dkafka.logs.dir="$state/logs" -cp "$libs/*" "$@"; }

up() {
  if running; then echo "kafka: already running (pid $(cat "$pidfile"))"; return; fi
  if answers; then echo "kafka: something already listens on 127.0.0.1:$port; using it"; return; fi
  fetch
  mkdir -p "$state/logs"
  sed -e "s#@DATA@#$state/data#" -e "s#@PORT@#$port#g" -e "s#@CPORT@#$controller_port#g" \
    "$root/ops/kafka-server.properties" > "$state/server.properties"
  cat > "$state/log4j.properties" <<L4J
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$state/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
L4J
  if [ ! -f "$state/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$state/server.properties" --ignore-formatted > "$state/logs/format.log"
  fi
  nohup java -Xms512m -Xmx1g -XX:+UseG1GC -Dlog4j.configuration="file:$state/log4j.properties" \
    -Dkafka.logs.dir="$state/logs" -cp "$libs/*" kafka.Kafka "$state/server.properties" \
    > "$state/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if answers; then echo "kafka: up on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return; fi
    running || { echo "kafka: failed to start; see $state/logs" >&2; tail -20 "$state/logs/stdout.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "kafka: did not answer within 60 s; see $state/logs" >&2; exit 1
}

case "${1:-}" in
  up) up ;;
  down) stop 30 ;;
  status) status ;;
  reset) down; rm -rf "$state/data" ;;
  fetch) fetch ;;
  *) echo "usage: $0 up|down|status|reset|fetch" >&2; exit 2 ;;
esac

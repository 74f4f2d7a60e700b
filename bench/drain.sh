#!/usr/bin/env bash
# Quick before/after check: one fresh worker drains a 60,000-event backlog (5,000 members, seed 3).
# Usage: bench/drain.sh LABEL   (needs `make up`; uses web port 6091 and its own topics, deleted at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=drain$RANDOM; work=$(mktemp -d)
cleanup() {
  kill "$worker" 2>/dev/null && wait "$worker" 2>/dev/null
  rm -rf "$work"
  .venv/bin/python -c "import asyncio; from bench.run import delete_topics; asyncio.run(delete_topics('127.0.0.1:9092', '$tag'))" > /dev/null
}
trap cleanup EXIT
LOYALTY_TOPIC_PREFIX=$tag. LOYALTY_APP_ID=$tag LOYALTY_DATA_DIR=$work LOYALTY_WEB_PORT=6091 \
  .venv/bin/loyalty worker -l warn > "$work/worker.log" 2>&1 &
worker=$!
for _ in $(seq 1 60); do curl -sf localhost:6091/ready >/dev/null && break; sleep 0.5; done
.venv/bin/loyalty produce --members 5000 --events 60000 --seed 3 --prefix "$tag." > /dev/null 2>&1
start=$(date +%s.%N)
for _ in $(seq 1 600); do
  n=$(curl -s localhost:6091/metrics | awk '/^loyalty_events_total/ && !/topic="(devices|due)"/ {s+=$2} END {print int(s)}')
  [ "$n" -ge 60000 ] && break
  sleep 0.5
done
end=$(date +%s.%N)
echo "${1:-run}: $(python3 -c "print(round($n/($end-$start)))") events/s ($n events drained from a full backlog)"

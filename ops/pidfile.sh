# Shared by ops/*.sh (sourced): a local server started in the background and tracked by a pid file.
# The sourcing script sets `name` and `pidfile` first.

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# Stop the server this script started: SIGTERM, up to $1 seconds (default 10) to exit, then SIGKILL.
stop() {
  if running; then
    local pid; pid="$(cat "$pidfile")"; kill "$pid"
    for _ in $(seq 1 $(( ${1:-10} * 5 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "$name: stopped"
  else
    echo "$name: not started by this script"
  fi
  rm -f "$pidfile"
}

status() { if running; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; exit 1; fi; }

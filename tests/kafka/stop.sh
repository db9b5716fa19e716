#!/usr/bin/env bash
# Stops the broker started by start.sh (TERM: a clean shutdown), waiting up to 60 s.
set -euo pipefail

STATE="${WEIR_KAFKA_DIR:-$HOME/.cache/weir/kafka-run}"
PID_FILE="$STATE/broker.pid"

log() { printf '[kafka] %s\n' "$*" >&2; }

main() {
  local pid
  if [ ! -f "$PID_FILE" ]; then
    log "no broker pid file in $STATE"
    return
  fi
  pid="$(cat "$PID_FILE")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 120); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "the broker did not stop within 60s; killing it"
      kill -KILL "$pid"
    fi
  fi
  rm -f "$PID_FILE"
}

main "$@"

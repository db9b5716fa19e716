#!/usr/bin/env bash
# Stop the registries that tests/registry/start.sh started (by the pids it recorded).
set -euo pipefail
RUN="${WEIR_REGISTRY_CACHE:-$HOME/.cache/weir/registry}/run"
shopt -s nullglob
for f in "$RUN"/registry-*.pid; do
    pid="$(cat "$f")"
    port="$(basename "$f" .pid)"
    port="${port#registry-}"
    if kill -0 "$pid" 2>/dev/null; then
        echo "registry: stopping port $port (pid $pid)" >&2
        kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "registry: pid $pid still running after 10 s; sending SIGKILL" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f" "$RUN/registry-$port.started"
done

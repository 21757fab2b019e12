#!/usr/bin/env bash
# `make stop`: the chatd that `make run` started, if it is still running
# (its pid file, .run/chatd.pid), then the private Redis and PostgreSQL.
# chatd gets SIGTERM, drains (drain_timeout_s, 10 s by default) and exits;
# after 30 s it is killed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
pidfile=.run/chatd.pid

if [[ -s $pidfile ]]; then
    pid=$(cat "$pidfile")
    # Only a chatd: the pid may have been reused since.
    if [[ $pid =~ ^[0-9]+$ ]] && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *bin/chatd* ]]; then
        echo "stop: chatd (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop: chatd (pid $pid) still running after 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
fi
exec scripts/services.sh stop

#!/usr/bin/env bash
# Starts the Socket.IO peer: one node process (server.js) per port given,
# all sharing the Redis of REDIS_URL through the adapter, and waits for
# them. SIGTERM or SIGINT stops them all; if one dies, the others are
# stopped and the script exits non-zero. Its pid is the root of the
# process tree chat-bench samples (--server-pid).
#
#   JWT_SECRET=s REDIS_URL=redis://127.0.0.1:16379 bench/peers/socketio/start.sh 18801 18802
#
# Environment: JWT_SECRET (required), REDIS_URL, SIO_KEY (adapter channel
# prefix; default socket.io-bench-<pid>), BIND, PING_INTERVAL_MS,
# PING_TIMEOUT_MS, MAX_TEXT_CHARS (see server.js). Installs the packages
# (npm ci, from package-lock.json) when node_modules is missing.
set -euo pipefail

DIR=$(cd "$(dirname "$0")" && pwd -P)
(($# >= 1)) || { echo "usage: $0 PORT [PORT...]" >&2; exit 2; }
[[ -n ${JWT_SECRET:-} ]] || { echo "start.sh: JWT_SECRET is required" >&2; exit 2; }
if [[ ! -d $DIR/node_modules/socket.io || ! -d $DIR/node_modules/@socket.io/redis-adapter ]]; then
    npm ci --prefix "$DIR" --no-audit --no-fund >&2
fi

export SIO_KEY=${SIO_KEY:-socket.io-bench-$$}
export PEER_COUNT=$# NODE_ENV=production
pids=()
stop() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop; exit 0' TERM INT
i=0
for port in "$@"; do
    PORT=$port PEER_INDEX=$i node "$DIR/server.js" &
    pids+=($!)
    i=$((i + 1))
done
# The first to end (crash, or killed alone) ends the group.
rc=0
wait -n || rc=$?
stop
exit $((rc ? rc : 1))

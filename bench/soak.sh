#!/usr/bin/env bash
# Soak: mixed traffic for a while, sampling every worker's RSS and open
# descriptors, to show that both stay flat after warm-up (no leak).
#
#   bench/soak.sh [MINUTES=10] [SAMPLE_S=30]
#
# Traffic, all at once: a steady load (400 connections in 40 rooms, 40
# senders at 2 messages/s, which also exercises typing-free fan-out and
# acks), connection churn (connect, welcome, leave in a loop) and REST
# history reads. Prints one line per sample and a verdict: RSS and
# descriptor counts of each worker at the first sample after warm-up
# against the last. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
SAMPLE_S=${2:-30}
PORT=${SOAK_PORT:-18811}
SECS=$((MINUTES * 60))

make -s all bin/chat-bench
scripts/services.sh start >/dev/null
eval "$(scripts/services.sh env)"
CHAT_PG_DSN=$CHATD_PG_DSN CHAT_JWT_SECRET=x bin/chatctl migrate >/dev/null

secret=soak-$RANDOM$RANDOM
log=$(mktemp /tmp/soak-chatd.XXXXXX)
env $(env | grep -o '^CHAT_[A-Z_]*' | sed 's/^/-u /') \
    CHAT_PORT=$PORT CHAT_WORKERS=2 CHAT_JWT_SECRET=$secret CHAT_REDIS_URL=$CHATD_REDIS_URL \
    CHAT_PG_DSN=$CHATD_PG_DSN CHAT_REDIS_PREFIX=soak: CHAT_RATE_PER_SEC=1000 CHAT_RATE_BURST=1000 \
    CHAT_LOG_LEVEL=warn bin/chatd >"$log" 2>&1 &
master=$!
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    kill -TERM "$master" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done

bin/chat-bench --url "ws://127.0.0.1:$PORT" --secret "$secret" --conns 400 --rooms 40 \
    --senders 40 --rate 2 --duration "$SECS" --warmup 5 --room-prefix soak- --json-only \
    >/tmp/soak-load.json 2>&1 &
pids+=($!)
bin/chat-bench --url "ws://127.0.0.1:$PORT" --secret "$secret" --mode churn --conns 4 \
    --duration "$SECS" --warmup 5 --room-prefix soakc- --json-only >/tmp/soak-churn.json 2>&1 &
pids+=($!)
token=$(CHAT_JWT_SECRET=$secret bin/chatctl token --sub soak-reader)
( while sleep 1; do
      curl -s -o /dev/null -H "Authorization: Bearer $token" \
          "http://127.0.0.1:$PORT/api/chat/messages?room=soak-0&limit=50"
  done ) &
pids+=($!)

workers() { pgrep -P "$master" | sort -n; }
sample() {
    local line="$(date +%T)"
    for w in $(workers); do
        local rss fds
        rss=$(awk '/VmRSS/{print $2}' "/proc/$w/status")
        fds=$(ls "/proc/$w/fd" | wc -l)
        line+="  worker $w rss ${rss} kB fds $fds"
    done
    echo "$line"
}

declare -A first_rss=() first_fds=()
baseline=0
echo "soak: $MINUTES min, sample every $SAMPLE_S s (chatd log: $log)"
end=$((SECONDS + SECS))
n=0
while ((SECONDS < end)); do
    sleep "$SAMPLE_S"
    sample
    n=$((n + 1))
    # The first sample after one minute is the baseline (warm-up done).
    if ((n * SAMPLE_S >= 60 && baseline == 0)); then
        baseline=1
        for w in $(workers); do
            first_rss[$w]=$(awk '/VmRSS/{print $2}' "/proc/$w/status")
            first_fds[$w]=$(ls "/proc/$w/fd" | wc -l)
        done
    fi
done
# The last samples while the traffic still runs; the load generators end
# a little after the window (warm-up, drain) and print their totals then.
verdict="verdict (after warm-up -> end):"
for w in $(workers); do
    rss=$(awk '/VmRSS/{print $2}' "/proc/$w/status")
    fds=$(ls "/proc/$w/fd" | wc -l)
    verdict+=$'\n'"  worker $w: rss ${first_rss[$w]:-?} -> $rss kB, fds ${first_fds[$w]:-?} -> $fds"
done
wait "${pids[0]}" "${pids[1]}" 2>/dev/null || true
echo "$verdict"
echo "  worker deaths: $(grep -c "worker died" "$log" || true)"
python3 -c "import json;d=json.load(open('/tmp/soak-load.json'));print('  load: sent %d acked %d delivered %d of %d'%(d['sent'],d['acked'],d['delivered'],d['expected']))" 2>/dev/null || true
python3 -c "import json;d=json.load(open('/tmp/soak-churn.json'));print('  churn: %d upgrades, %d failed'%(d['upgrades'],d['upgrade_failures']))" 2>/dev/null || true

#!/usr/bin/env bash
# durable: many small rooms, many senders: BENCH_DURABLE_ROOMS (500) rooms
# x BENCH_DURABLE_MEMBERS (2), every connection sending, the per-sender
# rate stepping through BENCH_DURABLE_RATES. Each message is a commit in
# PostgreSQL (synchronous_commit as configured: on by default); a step
# holds while acks stay >= BENCH_MIN_RATIO with p99 ack latency <=
# BENCH_P99_MS.
# Figures: acked messages per second at the highest rate that held, and
# the most acked per second seen in any step; messages per commit (group
# commit) and the p99 of a commit's time at that rate.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init durable

rooms=${BENCH_DURABLE_ROOMS:-500}
members=${BENCH_DURABLE_MEMBERS:-2}
rates=${BENCH_DURABLE_RATES:-1 2 4 6 8 16}
conns=$((rooms * members))

bench_server_start "${BENCH_WORKERS:-1}"
bench_step_up ack durable "$rates" --conns "$conns" --rooms "$rooms" --senders "$conns" \
    --procs "$(bench_procs "$conns")"
peak=$(while read -r j; do jnum "$j" acked_per_s; echo; done <"$BENCH_OUT/durable.jsonl" | sort -g | tail -n 1)
if [[ -n $BEST_RATE ]]; then
    bench_result "$(jnum "$BEST_JSON" acked_per_s) acked/s held ($rooms rooms x $members, all sending $BEST_RATE/s; ack p50 $(jnum "$BEST_JSON" ack_ms.p50 1) p99 $(jnum "$BEST_JSON" ack_ms.p99 1) ms); peak $peak acked/s; synchronous_commit=$BENCH_SYNC_COMMIT; $(jnum "$BEST_JSON" server_messages_per_commit 1) messages per commit, commit p99 <= $(jget "$BEST_JSON" server_commit_ms_p99) ms; server CPU $(jnum "$BEST_JSON" server.cpu_util 2), services CPU $(jnum "$BEST_JSON" services.cpu_util 2)${FAIL_RATE:+; at $FAIL_RATE/s: $(bench_brief "$FAIL_JSON")}"
else
    bench_result "no rate held; peak $peak acked/s; at ${FAIL_RATE:-?}/s: $(bench_brief "$FAIL_JSON")"
fi

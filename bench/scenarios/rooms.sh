#!/usr/bin/env bash
# rooms: BENCH_ROOMS_ROOMS (100) rooms x BENCH_ROOMS_MEMBERS (20) members,
# every connection sending; the per-sender rate steps through
# BENCH_ROOMS_RATES (1 msg/s first) until p99 delivery latency passes
# BENCH_P99_MS or deliveries fall below BENCH_MIN_RATIO.
# Figures: messages and deliveries per second at the highest rate that held.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init rooms

rooms=${BENCH_ROOMS_ROOMS:-100}
members=${BENCH_ROOMS_MEMBERS:-20}
rates=${BENCH_ROOMS_RATES:-1 1.25 1.5 2 3 4 8}
conns=$((rooms * members))

bench_server_start "${BENCH_WORKERS:-1}"
bench_step_up delivery rooms "$rates" --conns "$conns" --rooms "$rooms" --senders "$conns" \
    --procs "$(bench_procs "$conns")"
if [[ -n $BEST_RATE ]]; then
    bench_result "$(jnum "$BEST_JSON" acked_per_s) msgs/s, $(jnum "$BEST_JSON" delivered_per_s) delivered/s held: $rooms rooms x $members, all sending $BEST_RATE/s; delivery p99 $(jnum "$BEST_JSON" delivery_ms.p99 1) ms, ack p99 $(jnum "$BEST_JSON" ack_ms.p99 1) ms; server CPU $(jnum "$BEST_JSON" server.cpu_util 2), services CPU $(jnum "$BEST_JSON" services.cpu_util 2)${FAIL_RATE:+; at $FAIL_RATE/s: $(bench_brief "$FAIL_JSON")}"
else
    bench_result "no rate held; at ${FAIL_RATE:-?}/s: $(bench_brief "$FAIL_JSON")"
fi

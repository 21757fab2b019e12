#!/usr/bin/env bash
# fan-out: one room of BENCH_FANOUT_MEMBERS (1000) connections, of which
# BENCH_FANOUT_SENDERS (10) send; the per-sender rate steps through
# BENCH_FANOUT_RATES until p99 delivery latency passes BENCH_P99_MS (50)
# or deliveries fall below BENCH_MIN_RATIO (99.9 %).
# Figure: delivered messages per second at the highest rate that held.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init fanout

members=${BENCH_FANOUT_MEMBERS:-1000}
senders=${BENCH_FANOUT_SENDERS:-10}
rates=${BENCH_FANOUT_RATES:-1 2 5 10 15 20 30 50 100 150 200 300}

bench_server_start "${BENCH_WORKERS:-1}"
bench_step_up delivery fanout "$rates" --conns "$members" --rooms 1 --senders "$senders" \
    --procs "$(bench_procs "$members")"
if [[ -n $BEST_RATE ]]; then
    bench_result "$(jnum "$BEST_JSON" delivered_per_s) delivered/s held: 1 room x $members, $senders senders x $BEST_RATE/s; delivery p99 $(jnum "$BEST_JSON" delivery_ms.p99 1) ms, ratio $(jnum "$BEST_JSON" delivery_ratio 4); server CPU $(jnum "$BEST_JSON" server.cpu_util 2)${FAIL_RATE:+; at $FAIL_RATE/s: $(bench_brief "$FAIL_JSON")}"
else
    bench_result "no rate held; at ${FAIL_RATE:-?}/s: $(bench_brief "$FAIL_JSON")"
fi

#!/usr/bin/env bash
# churn: BENCH_CHURN_LOOPS (50) clients each connect, wait for the
# welcome, leave (close 1000) and start again, as fast as the server lets
# them, over BENCH_CHURN_ROOMS (10) rooms.
# Figure: upgrades (welcomes) per second, and connect->welcome latency.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init churn

loops=${BENCH_CHURN_LOOPS:-50}
rooms=${BENCH_CHURN_ROOMS:-10}

bench_server_start "${BENCH_WORKERS:-1}"
bench_run "churn-$loops" --mode churn --conns "$loops" --rooms "$rooms" --drain 1 \
    --source-addrs "${BENCH_CHURN_ADDRS:-4}"
j=$BENCH_JSON
bench_result "$(jnum "$j" upgrades_per_s) upgrades/s ($loops loops, $rooms rooms; connect->welcome p50 $(jnum "$j" connect_ms.p50 1) p99 $(jnum "$j" connect_ms.p99 1) ms; $(jget "$j" upgrade_failures) failures); server CPU $(jnum "$j" server.cpu_util 2), services CPU $(jnum "$j" services.cpu_util 2)"

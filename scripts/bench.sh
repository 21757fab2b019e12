#!/usr/bin/env bash
# `make bench`: the benchmark scenarios of bench/scenarios/ against a
# private chatd (docs/performance.md). Sets up once (services, Redis and
# PostgreSQL pinned to CPU 0 next to chatd, the load generator on CPU 1),
# runs each scenario on a fresh chat_bench database, prints the figures.
#
#   BENCH_SCENARIOS   which, in order (fanout rooms durable churn capacity)
#   BENCH_DURATION    measured window per run in seconds (10)
# More knobs: bench/scenarios/lib.sh and the head of each scenario.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
. bench/scenarios/lib.sh

scenarios=${BENCH_SCENARIOS:-fanout rooms durable churn capacity}
for s in $scenarios; do
    [[ -x bench/scenarios/$s.sh ]] || bench_die "no scenario '$s' (bench/scenarios/*.sh)"
done

trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_setup
start=$(date +%s)
failed=()
for s in $scenarios; do
    bench_say "---- $s"
    # Empty tables for each scenario: what the previous one stored would
    # change the next one's figures.
    bench_db_reset
    bench/scenarios/"$s".sh || failed+=("$s")
done

echo
echo "== chatd benchmark ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, chatd and services on CPU $BENCH_SERVER_CPUS, client on CPU $BENCH_CLIENT_CPUS, ${BENCH_DURATION}s windows, $(($(date +%s) - start)) s)"
cat "$BENCH_OUT/summary.txt" 2>/dev/null || true
echo "JSON lines: $BENCH_OUT/*.jsonl"
if ((${#failed[@]})); then
    echo "failed scenarios: ${failed[*]}" >&2
    exit 1
fi

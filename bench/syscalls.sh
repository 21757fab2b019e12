#!/usr/bin/env bash
# bench/syscalls.sh SCENARIO: runs bench/scenarios/SCENARIO.sh and, in the
# middle of its first run, counts the system calls chatd's workers make
# (perf's syscall tracepoints) over SYSCALLS_SECONDS (4), starting
# SYSCALLS_DELAY (6) seconds after the server answers. It prints them per
# WebSocket upgrade and per frame sent, from chatd's own /metrics read at
# both ends of the same window: what the kernel is asked to do for each
# unit of work, which is what bounds `churn` and `rooms`
# (docs/performance.md). Any BENCH_* setting passes on to the scenario.
#
#   bench/syscalls.sh churn
#   BENCH_ROOMS_RATES=1 bench/syscalls.sh rooms
#
# Needs perf with tracepoints (root, or perf_event_paranoid <= -1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
scenario=${1:?usage: bench/syscalls.sh SCENARIO (churn, rooms, fanout, durable)}
[ -x "$root/bench/scenarios/$scenario.sh" ] || { echo "syscalls: no scenario $scenario" >&2; exit 2; }
command -v perf >/dev/null || { echo "syscalls: perf is not installed" >&2; exit 1; }
: "${BENCH_PORT:=18765}" "${SYSCALLS_SECONDS:=4}" "${SYSCALLS_DELAY:=6}"
export BENCH_PORT
calls=(writev write readv read recvfrom sendto accept4 close shutdown epoll_ctl epoll_wait ioctl setsockopt)
events=$(printf 'syscalls:sys_enter_%s,' "${calls[@]}")

metric() { # name: summed over the host's workers, as /metrics reports it
    curl -sf "http://127.0.0.1:$BENCH_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

"$root/bench/scenarios/$scenario.sh" >"${TMPDIR:-/tmp}/syscalls-$scenario.out" 2>&1 &
bench=$!
chatd=$(basename "${BENCH_CHATD:-$root/bin/chatd}")
master=
for _ in $(seq 600); do
    master=$(pgrep -n -x "$chatd" -P "$bench" 2>/dev/null || true)
    [ -n "$master" ] && metric chatd_connections_open >/dev/null 2>&1 && break
    master=
    sleep 0.1
done
if [ -z "$master" ]; then
    echo "syscalls: the scenario's chatd did not come up; its output: ${TMPDIR:-/tmp}/syscalls-$scenario.out" >&2
    wait $bench || true
    exit 1
fi
sleep "$SYSCALLS_DELAY"
workers=$(pgrep -d, -P "$master")
up0=$(metric chatd_websocket_upgrades_total) out0=$(metric chatd_frames_out_total)
stat=$(perf stat -x, -e "${events%,}" -p "$workers" -- sleep "$SYSCALLS_SECONDS" 2>&1)
up1=$(metric chatd_websocket_upgrades_total) out1=$(metric chatd_frames_out_total)
ups=$((up1 - up0)) frames=$((out1 - out0))
printf '%s: %d upgrades, %d frames sent in %s s (workers %s)\n' "$scenario" "$ups" "$frames" "$SYSCALLS_SECONDS" "$workers"
printf '%-12s %12s %12s %12s\n' syscall count per_upgrade per_frame
echo "$stat" | awk -F, -v u="$ups" -v f="$frames" '$3 ~ /sys_enter_/ {
    name = $3; sub(/.*sys_enter_/, "", name)
    printf "%-12s %12d %12s %12s\n", name, $1, (u ? sprintf("%.2f", $1 / u) : "-"), (f ? sprintf("%.3f", $1 / f) : "-")
}'
wait $bench || true
grep '^RESULT' "${TMPDIR:-/tmp}/syscalls-$scenario.out" || true

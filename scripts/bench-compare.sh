#!/usr/bin/env bash
# `make bench-compare`: chatd against the Socket.IO peer
# (bench/peers/socketio: two Socket.IO 4 processes sharing one Redis through
# @socket.io/redis-adapter, no database) on the same scenarios and the same
# CPU budget (docs/performance.md, "Against Socket.IO").
#
# The set-up is `make bench`'s (bench/scenarios/lib.sh): private Redis and
# PostgreSQL pinned to BENCH_SERVER_CPUS (0) with the server under test
# (chatd's master and workers, or the two node processes), chat-bench on
# BENCH_CLIENT_CPUS (1); chatd's database is emptied before each of its
# scenarios (bench_db_reset). For each scenario, chatd runs its steps, then the
# peer runs the same steps; then both results are printed side by side with
# the ratios chatd / Socket.IO of
#   - delivered messages per second at the highest step that held
#     (delivery p99 <= BENCH_P99_MS and >= BENCH_MIN_RATIO delivered), and
#   - delivery p99 at the base rate (the first step).
#
# Knobs (environment), besides lib.sh's and the scenarios':
#   BENCH_COMPARE_SCENARIOS  fanout rooms
#   BENCH_COMPARE_TARGETS    chatd socketio
#   BENCH_DURATION 5, BENCH_RETRY 1 (a failed step is run once more),
#   BENCH_PRIME 1 (an unjudged run at the base rate first: node's JIT warm),
#   BENCH_WORKERS 1 (chatd's workers: one per core, as `make bench`; 2 is
#     the shape of the peer's two processes, and costs chatd about half of
#     its fan-out on the one core),
#   BENCH_FANOUT_RATES  1 2 3 4 5 6 7 8 10 12 14 16 18 20 25 30 40 50 60 70 80 100 120 150 200
#   BENCH_ROOMS_RATES   0.1 0.15 0.2 0.3 0.5 0.75 1 1.25 1.5 2 3 4 6 8
#   BENCH_PORT 18785 (chatd; the peer takes the next two ports),
#   BENCH_DB chat_bench_compare, BENCH_REDIS_PREFIX benchcmp: (apart from
#   a `make bench` running at the same time)
#   BENCH_OUT .run/bench/compare-<date> (one directory per target inside)
#
# `scripts/bench-compare.sh --table DIR` prints the table of an earlier run
# again from what it kept in DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
export BENCH_DURATION=${BENCH_DURATION:-5}
export BENCH_RETRY=${BENCH_RETRY:-1}
export BENCH_PRIME=${BENCH_PRIME:-1}
export BENCH_WORKERS=${BENCH_WORKERS:-1}
export BENCH_FANOUT_RATES=${BENCH_FANOUT_RATES:-1 2 3 4 5 6 7 8 10 12 14 16 18 20 25 30 40 50 60 70 80 100 120 150 200}
export BENCH_ROOMS_RATES=${BENCH_ROOMS_RATES:-0.1 0.15 0.2 0.3 0.5 0.75 1 1.25 1.5 2 3 4 6 8}
export BENCH_PORT=${BENCH_PORT:-18785}
export BENCH_DB=${BENCH_DB:-chat_bench_compare}
export BENCH_REDIS_PREFIX=${BENCH_REDIS_PREFIX:-benchcmp:}
table_only=
if [[ ${1:-} == --table ]]; then
    [[ -f ${2:-}/compare.env ]] || { echo "usage: $0 [--table DIR-of-an-earlier-run]" >&2; exit 2; }
    table_only=1
    BENCH_OUT=$(cd "$2" && pwd -P)
fi
export BENCH_OUT=${BENCH_OUT:-$ROOT/.run/bench/compare-$(date +%Y%m%d-%H%M%S)}
. bench/scenarios/lib.sh
export BENCH_SIO_PORTS

scenarios=${BENCH_COMPARE_SCENARIOS:-fanout rooms}
targets=${BENCH_COMPARE_TARGETS:-chatd socketio}
for s in $scenarios; do
    [[ $s == fanout || $s == rooms ]] || bench_die "bench-compare runs fanout and rooms, not '$s'"
done
for t in $targets; do
    [[ $t == chatd || $t == socketio ]] || bench_die "BENCH_COMPARE_TARGETS: chatd and socketio, not '$t'"
done

failed=()
if [[ -z $table_only ]]; then
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    bench_setup
    bench_sio_install
    # A private copy: a rebuild of bin/chatd during the run changes nothing.
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
    git diff --quiet HEAD -- master worker shared sql 2>/dev/null || rev+=+changes
    cp "$BENCH_CHATD" "$BENCH_OUT/chatd.bin"
    export BENCH_CHATD=$BENCH_OUT/chatd.bin
    start=$(date +%s)
    when=$(date -u +%Y-%m-%dT%H:%MZ)
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    bench_say "load average at the start: $load_start"
    for s in $scenarios; do
        for t in $targets; do
            mkdir -p "$BENCH_OUT/$t"
            bench_say "---- $s against $t"
            # Empty tables for each of chatd's scenarios: what the previous
            # one stored would change the next one's figures.
            if [[ $t == chatd ]]; then bench_db_reset; fi
            BENCH_TARGET=$t BENCH_OUT=$BENCH_OUT/$t bench/scenarios/"$s".sh || failed+=("$s/$t")
            # How PostgreSQL read chatd's tables: the plan of the store's
            # statements changes with the tables' size, and the figures with it.
            if [[ $t == chatd ]]; then
                psql -X -At -F ' ' "$BENCH_PG_DSN" -c "SELECT relname, seq_scan, seq_tup_read,
                        coalesce(idx_scan, 0), n_live_tup FROM pg_stat_user_tables
                        WHERE relname IN ('messages', 'rooms') ORDER BY 1" \
                    >"$BENCH_OUT/chatd/$s.pgstat" 2>/dev/null || true
            fi
        done
    done
    # What the table needs, kept for --table.
    {
        printf 'scenarios=%q targets=%q\n' "$scenarios" "$targets"
        printf 'load_start=%q load_end=%q\n' "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
        printf 'seconds=%q when=%q rev=%q\n' "$(($(date +%s) - start))" "$when" "$rev"
        printf 'BENCH_DURATION=%q BENCH_P99_MS=%q BENCH_MIN_RATIO=%q BENCH_SERVER_CPUS=%q BENCH_CLIENT_CPUS=%q\n' \
            "$BENCH_DURATION" "$BENCH_P99_MS" "$BENCH_MIN_RATIO" "$BENCH_SERVER_CPUS" "$BENCH_CLIENT_CPUS"
    } >"$BENCH_OUT/compare.env"
fi
rev='?' when='?' load_start='?' load_end='?' seconds='?'
# shellcheck source=/dev/null
. "$BENCH_OUT/compare.env"

# ---------------------------------------------------------------- the table

# val TARGET SCENARIO WHICH KEY [DIGITS|raw]: a figure of a kept step
# (first, best, fail), or null.
val() {
    local f=$BENCH_OUT/$1/$2.$3.json j
    j=$(cat "$f" 2>/dev/null || true)
    if [[ -z $j ]]; then
        echo null
    elif [[ ${5:-} == raw ]]; then
        jget "$j" "$4"
    else
        jnum "$j" "$4" "${5:-0}"
    fi
}
ratio() {
    if [[ $1 == null || $2 == null ]] || ! fcmp "$2" '>' 0; then echo '-'; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}
row() { printf '| %s | %s | %s | %s |\n' "$@"; }
cell() { # VALUE [SUFFIX]
    if [[ $1 == null ]]; then echo '-'; else echo "$1${2:-}"; fi
}
at() { # HELD-RATE FAILED-RATE: "(at 10/s; 12/s failed)"
    local t
    if [[ $1 == null ]]; then t="none held"; else t="at $1/s"; fi
    [[ $2 == null ]] || t+="; $2/s failed"
    echo "($t)"
}

{
    echo "chatd against Socket.IO ($rev, $(nproc) CPUs; servers, Redis and PostgreSQL on CPU $BENCH_SERVER_CPUS, chat-bench on CPU $BENCH_CLIENT_CPUS; ${BENCH_DURATION} s windows; started $when, took $seconds s; load average $load_start at the start, $load_end at the end)"
    echo
    row "" "chatd" "Socket.IO" "chatd / Socket.IO"
    row "---" "---:" "---:" "---:"
    for s in $scenarios; do
        declare -A held=() rate=() frate=() p99=() brate=() cpu=() svc=()
        for t in $targets; do
            if [[ -s $BENCH_OUT/$t/$s.best.json && -n $(cat "$BENCH_OUT/$t/$s.best.json") ]]; then
                held[$t]=$(val "$t" "$s" best delivered_per_s)
                rate[$t]=$(val "$t" "$s" best rate raw)
                cpu[$t]=$(val "$t" "$s" best server.cpu_util 2)
                svc[$t]=$(val "$t" "$s" best services.cpu_util 2)
            else
                held[$t]=0 rate[$t]=null cpu[$t]=null svc[$t]=null
            fi
            frate[$t]=$(val "$t" "$s" fail rate raw)
            p99[$t]=$(val "$t" "$s" first delivery_ms.p99 1)
            brate[$t]=$(val "$t" "$s" first rate raw)
        done
        c=chatd o=socketio
        row "$s: delivered/s held" "$(cell "${held[$c]:-null}") $(at "${rate[$c]:-null}" "${frate[$c]:-null}")" \
            "$(cell "${held[$o]:-null}") $(at "${rate[$o]:-null}" "${frate[$o]:-null}")" \
            "$(ratio "${held[$c]:-null}" "${held[$o]:-null}")"
        row "$s: delivery p99 at the base rate" "$(cell "${p99[$c]:-null}" " ms") (${brate[$c]:-?}/s)" \
            "$(cell "${p99[$o]:-null}" " ms") (${brate[$o]:-?}/s)" \
            "$(ratio "${p99[$c]:-null}" "${p99[$o]:-null}")"
        row "$s: CPU at the step held: server + services (cores)" \
            "$(cell "${cpu[$c]:-null}") + $(cell "${svc[$c]:-null}")" "$(cell "${cpu[$o]:-null}") + $(cell "${svc[$o]:-null}")" ""
        unset held rate frate p99 brate cpu svc
    done
    echo
    echo "delivered/s: the highest step with delivery p99 <= $BENCH_P99_MS ms, >= $BENCH_MIN_RATIO delivered and no failed or dropped connection (ratio > 1: chatd delivers more); p99: at the first step (ratio < 1: chatd is faster). CPU: the server's processes (chatd's master and workers; the two node processes), then the services' (chatd: Redis and PostgreSQL; Socket.IO: Redis), in cores over the window."
    for s in $scenarios; do
        [[ -s $BENCH_OUT/chatd/$s.pgstat ]] || continue
        echo
        echo -n "PostgreSQL after chatd's $s:"
        while read -r rel seq rows idx live; do
            echo -n " $rel $live rows, $seq sequential scans ($rows rows read), $idx index scans;"
        done <"$BENCH_OUT/chatd/$s.pgstat"
        echo
    done
    for t in $targets; do
        echo
        echo "$t:"
        sed 's/^/  /' "$BENCH_OUT/$t/summary.txt" 2>/dev/null || true
    done
} >"$BENCH_OUT/compare.md"

echo
cat "$BENCH_OUT/compare.md"
echo
echo "JSON lines: $BENCH_OUT/<target>/*.jsonl ($targets); this table: $BENCH_OUT/compare.md"
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi

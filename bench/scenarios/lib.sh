# shellcheck shell=bash disable=SC2016,SC2034
# Sourced by bench/scenarios/*.sh and scripts/bench.sh; not run directly.
#
# bench_setup (once per `make bench`, exported to the scenarios):
#   private Redis and PostgreSQL (scripts/services.sh), a fresh database
#   chat_bench (dropped and migrated again on every run, so runs compare),
#   Redis keys under bench: (cleared), a random JWT secret, Redis and
#   PostgreSQL pinned to BENCH_SERVER_CPUS (their affinity is put back on
#   exit).
# bench_server_start N: chatd with N workers pinned to BENCH_SERVER_CPUS,
#   rate limit raised out of the way; bench_server_stop. With
#   BENCH_TARGET=socketio, the Socket.IO peer instead (bench/peers/socketio:
#   one node process per port of BENCH_SIO_PORTS, sharing the same Redis
#   through the adapter; N is ignored), pinned the same way.
# bench_run LABEL ARGS...: chat-bench pinned to BENCH_CLIENT_CPUS, speaking
#   the target's protocol; the JSON line lands in
#   $BENCH_OUT/<scenario>.jsonl and in $BENCH_JSON. Against chatd it
#   carries two figures from /metrics as well: server_messages_per_commit
#   and server_commit_ms_p99.
#
# Knobs (environment):
#   BENCH_DURATION (10) measured window per run, s   BENCH_WARMUP (2)
#   BENCH_P99_MS (50)   latency limit of a passing step
#   BENCH_MIN_RATIO (0.999) delivery (or ack) ratio of a passing step
#   BENCH_PORT (18765)  BENCH_SERVER_CPUS (0)  BENCH_CLIENT_CPUS (1)
#   BENCH_PIN_SERVICES (1) pin Redis and PostgreSQL with chatd
#   BENCH_OUT           results directory (.run/bench/<date>)
#   BENCH_CHATD         the chatd binary to measure (bin/chatd)
#   BENCH_CHATD_ENV     more settings for it, "CHAT_NAME=VALUE ..." (word-split)
#   BENCH_TARGET (chatd) or socketio: the server the scenarios measure
#   BENCH_SIO_PORTS     the Socket.IO processes' ports ("BENCH_PORT+1 BENCH_PORT+2")
#   BENCH_MAX_STEAL (0.01) share of a window the hypervisor may take from
#                       a CPU before a failed step is run again
#   BENCH_STEAL_RETRY (3) how many times (bench_step_up)
# and per scenario, see each file.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BENCH_BIN=$BENCH_ROOT/bin
: "${BENCH_CHATD:=$BENCH_BIN/chatd}"
: "${BENCH_DURATION:=10}"
: "${BENCH_WARMUP:=2}"
: "${BENCH_DRAIN:=2}"
: "${BENCH_P99_MS:=50}"
: "${BENCH_MIN_RATIO:=0.999}"
: "${BENCH_PORT:=18765}"
: "${BENCH_SERVER_CPUS:=0}"
: "${BENCH_CLIENT_CPUS:=1}"
: "${BENCH_PIN_SERVICES:=1}"
: "${BENCH_REDIS_PREFIX:=bench:}"
: "${BENCH_DB:=chat_bench}"
: "${BENCH_TARGET:=chatd}"
: "${BENCH_CHATD_ENV:=}"
: "${BENCH_SIO_PORTS:=$((BENCH_PORT + 1)) $((BENCH_PORT + 2))}"
: "${BENCH_MAX_STEAL:=0.01}"
: "${BENCH_STEAL_RETRY:=3}"
case $BENCH_TARGET in
chatd | socketio) ;;
*) printf 'bench: BENCH_TARGET: chatd or socketio, not %s\n' "$BENCH_TARGET" >&2; exit 1 ;;
esac
BENCH_SIO_DIR=$BENCH_ROOT/bench/peers/socketio

bench_say() { printf 'bench: %s\n' "$*" >&2; }
bench_die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Runs "$@" pinned to the CPU list $1 when the machine has those CPUs.
bench_pinned() {
    local cpus=$1
    shift
    if [[ $BENCH_PIN_OK == 1 ]]; then
        taskset -c "$cpus" "$@"
    else
        "$@"
    fi
}

# jget JSON KEY.PATH -> the value (null when absent).
jget() {
    if command -v jq >/dev/null 2>&1; then
        jq -r ".$2 // \"null\"" <<<"$1"
    else
        node -e '
            let v = JSON.parse(process.argv[1]);
            for (const k of process.argv[2].split(".")) v = v == null ? null : v[k];
            console.log(v == null ? "null" : v);' "$1" "$2"
    fi
}

# jnum JSON KEY.PATH [DIGITS]: a number rounded to DIGITS (0) decimals.
jnum() {
    local v
    v=$(jget "$1" "$2")
    if [[ $v == null ]]; then echo null; else printf "%.${3:-0}f" "$v"; fi
}

# fcmp A OP B: floating-point comparison (null compares false).
fcmp() {
    [[ $1 != null && $3 != null ]] && awk -v a="$1" -v b="$3" "BEGIN { exit !(a $2 b) }"
}

# set_tree_affinity PID MASK|-c LIST: pid, its threads and descendants.
bench_tree_affinity() {
    local pid=$1 kid
    shift
    taskset -a -p "$@" "$pid" >/dev/null 2>&1 || true
    for kid in $(pgrep -P "$pid" 2>/dev/null); do
        bench_tree_affinity "$kid" "$@"
    done
}

# Pins a service and its descendants (PostgreSQL forks a backend per
# connection; new ones inherit the postmaster's affinity), remembering the
# mask it had.
bench_pin_tree() {
    local pid=$1 mask
    mask=$(taskset -p "$pid" 2>/dev/null | sed -n 's/.*: //p') || return 0
    [[ -n $mask ]] || return 0
    echo "$pid $mask" >>"$BENCH_AFFINITY_SAVED"
    bench_tree_affinity "$pid" -c "$BENCH_SERVER_CPUS"
}

# Puts the remembered masks back, on the services and on every process
# they forked meanwhile (backends of other clients included).
bench_restore_affinity() {
    local pid mask
    [[ -n ${BENCH_AFFINITY_SAVED:-} && -f $BENCH_AFFINITY_SAVED ]] || return 0
    while read -r pid mask; do
        bench_tree_affinity "$pid" "$mask"
    done <"$BENCH_AFFINITY_SAVED"
    rm -f "$BENCH_AFFINITY_SAVED"
}

bench_cleanup() {
    local rc=$?
    bench_server_stop
    if [[ ${BENCH_SETUP_OWNER:-} == "$$" ]]; then
        bench_restore_affinity
    fi
    return $rc
}

# Every scenario starts with this: the set-up when not done yet by
# scripts/bench.sh, and the clean-up of whatever the script starts.
bench_init() {
    BENCH_SCENARIO=$1
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    bench_setup
}

bench_setup() {
    if [[ -n ${BENCH_SETUP_DONE:-} ]]; then
        return 0
    fi
    cd "$BENCH_ROOT" || exit 1
    [[ -x $BENCH_CHATD && -x $BENCH_BIN/chat-bench && -x $BENCH_BIN/chatctl ]] ||
        bench_die "build first: make all bin/chat-bench"
    scripts/services.sh start >&2
    eval "$(scripts/services.sh env)"
    export CHATD_REDIS_URL CHATD_PG_PORT CHATD_REDIS_PORT
    export BENCH_PG_DSN="postgresql://chat@127.0.0.1:$CHATD_PG_PORT/$BENCH_DB"
    # A fresh database per run: every run starts from empty tables.
    bench_db_reset
    BENCH_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
    BENCH_SYNC_COMMIT=$(psql -X -At "$BENCH_PG_DSN" -c 'SHOW synchronous_commit' 2>/dev/null || echo '?')
    export BENCH_SECRET BENCH_SYNC_COMMIT
    : "${BENCH_OUT:=$BENCH_ROOT/.run/bench/$(date +%Y%m%d-%H%M%S)}"
    mkdir -p "$BENCH_OUT"
    export BENCH_OUT

    BENCH_PIN_OK=0
    if command -v taskset >/dev/null 2>&1 && (($(nproc) >= 2)); then
        BENCH_PIN_OK=1
    else
        bench_say "fewer than 2 CPUs or no taskset: nothing is pinned, figures are rough"
    fi
    export BENCH_PIN_OK
    BENCH_REDIS_PID=$(cat "$BENCH_ROOT/.run/redis/redis.pid" 2>/dev/null || true)
    BENCH_PG_PID=$(head -n 1 "$CHATD_PG_DATA/postmaster.pid" 2>/dev/null || true)
    export BENCH_REDIS_PID BENCH_PG_PID
    BENCH_SETUP_OWNER=$$
    if [[ $BENCH_PIN_OK == 1 && $BENCH_PIN_SERVICES == 1 ]]; then
        BENCH_AFFINITY_SAVED=$(mktemp)
        if [[ -n $BENCH_REDIS_PID ]]; then bench_pin_tree "$BENCH_REDIS_PID"; fi
        if [[ -n $BENCH_PG_PID ]]; then bench_pin_tree "$BENCH_PG_PID"; fi
        bench_say "Redis (pid $BENCH_REDIS_PID) and PostgreSQL (pid $BENCH_PG_PID) pinned to CPU $BENCH_SERVER_CPUS until the end"
    fi
    export BENCH_SETUP_DONE=1
    bench_say "results in $BENCH_OUT; PostgreSQL synchronous_commit=$BENCH_SYNC_COMMIT"
}

# Something accepts connections on 127.0.0.1:$1.
bench_port_busy() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# bench_db_reset: the database BENCH_DB dropped, created and migrated again
# (empty tables), and the Redis keys under BENCH_REDIS_PREFIX cleared. No
# server may be running on them. bench_setup does it once;
# scripts/bench-compare.sh before each of chatd's scenarios.
bench_db_reset() {
    psql -X -q -h 127.0.0.1 -p "$CHATD_PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" \
        -c "CREATE DATABASE $BENCH_DB OWNER chat" >/dev/null ||
        bench_die "could not create database $BENCH_DB"
    CHAT_PG_DSN=$BENCH_PG_DSN CHAT_JWT_SECRET=x "$BENCH_BIN/chatctl" migrate >&2 ||
        bench_die "migrate failed"
    redis-cli -h 127.0.0.1 -p "$CHATD_REDIS_PORT" --scan --pattern "${BENCH_REDIS_PREFIX}*" |
        xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$CHATD_REDIS_PORT" DEL >/dev/null
}

SERVER_PID=
# bench_server_start WORKERS [NAME=VALUE ...]: the server for one scenario:
# chatd, or with BENCH_TARGET=socketio the Socket.IO peer.
bench_server_start() {
    if [[ $BENCH_TARGET == socketio ]]; then
        bench_sio_start
        return
    fi
    local workers=$1
    shift
    bench_server_stop
    local log=$BENCH_OUT/chatd-${BENCH_SCENARIO:-x}.log
    # chatd listens with SO_REUSEPORT: a second server on a busy port would
    # silently share the connections with the first.
    if bench_port_busy "$BENCH_PORT"; then
        bench_die "127.0.0.1:$BENCH_PORT is in use; set BENCH_PORT"
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # The default rate limit (5/s, burst 10 per user) would throttle
    # benchmark users: raise it out of the way. BENCH_CHATD_ENV is a list
    # of NAME=VALUE words, split on purpose.
    # shellcheck disable=SC2086
    env CHAT_JWT_SECRET="$BENCH_SECRET" CHAT_BIND=127.0.0.1 CHAT_PORT="$BENCH_PORT" \
        CHAT_WORKERS="$workers" CHAT_REDIS_URL="$CHATD_REDIS_URL" CHAT_PG_DSN="$BENCH_PG_DSN" \
        CHAT_REDIS_PREFIX="$BENCH_REDIS_PREFIX" CHAT_RATE_PER_SEC=1000000 CHAT_RATE_BURST=1000000 \
        CHAT_MAX_CONNS_PER_IP=0 CHAT_LOG_LEVEL=warn CHAT_DRAIN_TIMEOUT_S=3 \
        CHAT_STATIC_DIR="$BENCH_ROOT/web" $BENCH_CHATD_ENV "$@" \
        setsid bash -c "$BENCH_PINNED_EXEC" _ \
        "$BENCH_PIN_OK" "$BENCH_SERVER_CPUS" "$BENCH_CHATD" >>"$log" 2>&1 &
    SERVER_PID=$!
    bench_wait_ready chatd 100 "$log" "$BENCH_PORT"
    bench_say "chatd up (pid $SERVER_PID, $workers workers, port $BENCH_PORT, CPU $BENCH_SERVER_CPUS)"
}

# For `bash -c` after setsid: $1 says whether to pin, $2 the CPU list, the
# rest is the command, exec'd (so SERVER_PID is the server itself).
BENCH_PINNED_EXEC='if [[ $1 == 1 ]]; then exec taskset -c "$2" "${@:3}"; else exec "${@:3}"; fi'

# bench_wait_ready WHAT TRIES LOG PORT...: until /readyz answers on every
# port (TRIES times 0.1 s); dies with the log's tail if SERVER_PID exits
# or time runs out.
bench_wait_ready() {
    local what=$1 tries=$2 log=$3 i p ok
    shift 3
    for ((i = 0; i < tries; i++)); do
        ok=1
        for p in "$@"; do
            curl -fsS -m 1 "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 || { ok=0; break; }
        done
        ((ok)) && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    bench_die "$what did not become ready (log: $log)"
}

# The Socket.IO peer: bench/peers/socketio/start.sh (its own session, so
# that its node processes can be stopped as a group), one process per port
# of BENCH_SIO_PORTS, the adapter's channels under BENCH_REDIS_PREFIX.
bench_sio_start() {
    local p log=$BENCH_OUT/socketio-${BENCH_SCENARIO:-x}.log
    bench_server_stop
    for p in $BENCH_SIO_PORTS; do
        if bench_port_busy "$p"; then bench_die "127.0.0.1:$p is in use; set BENCH_SIO_PORTS"; fi
    done
    bench_sio_install
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # shellcheck disable=SC2086 # the port list
    env JWT_SECRET="$BENCH_SECRET" REDIS_URL="$CHATD_REDIS_URL" SIO_KEY="${BENCH_REDIS_PREFIX}sio" \
        setsid bash -c "$BENCH_PINNED_EXEC" _ \
        "$BENCH_PIN_OK" "$BENCH_SERVER_CPUS" "$BENCH_SIO_DIR/start.sh" $BENCH_SIO_PORTS >>"$log" 2>&1 &
    SERVER_PID=$!
    # shellcheck disable=SC2086 # the port list
    bench_wait_ready "the Socket.IO peer" 300 "$log" $BENCH_SIO_PORTS
    bench_say "Socket.IO peer up (pid $SERVER_PID, ports $BENCH_SIO_PORTS, CPU $BENCH_SERVER_CPUS)"
}

# The peer's packages, from its package-lock.json, when missing.
bench_sio_install() {
    command -v node >/dev/null 2>&1 || bench_die "the Socket.IO peer needs node (and npm)"
    if [[ ! -d $BENCH_SIO_DIR/node_modules/socket.io || ! -d $BENCH_SIO_DIR/node_modules/@socket.io/redis-adapter ]]; then
        bench_say "installing the Socket.IO peer's packages (npm ci)"
        npm ci --prefix "$BENCH_SIO_DIR" --no-audit --no-fund >&2 || bench_die "npm ci failed"
    fi
}

bench_server_stop() {
    local i
    [[ -n $SERVER_PID ]] || return 0
    if kill -TERM "$SERVER_PID" 2>/dev/null; then
        for ((i = 0; i < 100; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    # The peer's node processes, should start.sh have gone without them
    # (its session: SERVER_PID leads it).
    if [[ $BENCH_TARGET == socketio ]]; then kill -KILL -- "-$SERVER_PID" 2>/dev/null || true; fi
    SERVER_PID=
}

# bench_target_args: chat-bench's --proto and --url for the target.
bench_target_args() {
    local p urls=
    if [[ $BENCH_TARGET == socketio ]]; then
        for p in $BENCH_SIO_PORTS; do urls+=${urls:+,}ws://127.0.0.1:$p; done
        printf '%s\n' --proto socketio --url "$urls"
    else
        printf '%s\n' --proto chatd --url "ws://127.0.0.1:$BENCH_PORT"
    fi
}

BENCH_JSON=

# bench_scrape: chatd's /metrics text, or nothing (the peer, or no answer).
bench_scrape() {
    [[ $BENCH_TARGET == chatd ]] || return 0
    curl -fsS -m 2 "http://127.0.0.1:$BENCH_PORT/metrics" 2>/dev/null || true
}

# bench_metric TEXT NAME: NAME's value (the sum of its samples) in a
# scrape; 0 when absent (a chatd from before the metric).
bench_metric() {
    awk -v n="$2" '$1 == n { s += $2 } END { printf "%d\n", s }' <<<"$1"
}

# bench_hist_p99_ms BEFORE AFTER NAME: the upper bound (ms) of the bucket
# holding the 99th percentile of histogram NAME between two scrapes, "inf"
# past the last bound, or nothing when it saw nothing.
bench_hist_p99_ms() {
    awk -v n="${3}_bucket" 'FNR == 1 { f++ }
        index($1, n "{le=\"") == 1 {
            le = substr($1, length(n) + 6); sub(/"}$/, "", le)
            if (f == 1) before[le] = $2; else { after[le] = $2; order[++k] = le }
        }
        END {
            total = after["+Inf"] - before["+Inf"]
            if (total <= 0) exit
            for (i = 1; i <= k; i++) {
                le = order[i]
                if (after[le] - before[le] >= 0.99 * total) {
                    if (le == "+Inf") print "inf"; else printf "%g\n", le * 1000
                    exit
                }
            }
        }' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# bench_run LABEL CHAT-BENCH-ARGS...
bench_run() {
    local label=$1 out svc=() target=() m0 m1 stored batches commit_p99
    shift
    [[ -n $BENCH_REDIS_PID ]] && svc+=(--service-pid "$BENCH_REDIS_PID")
    # The peer does not use PostgreSQL: its idle CPU would only add noise.
    [[ -n $BENCH_PG_PID && $BENCH_TARGET == chatd ]] && svc+=(--service-pid "$BENCH_PG_PID")
    mapfile -t target < <(bench_target_args)
    out=$(mktemp)
    m0=$(bench_scrape)
    if ! bench_pinned "$BENCH_CLIENT_CPUS" "$BENCH_BIN/chat-bench" \
            "${target[@]}" --secret "$BENCH_SECRET" \
            --server-pid "$SERVER_PID" "${svc[@]}" --label "$label" \
            --duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --drain "$BENCH_DRAIN" \
            "$@" >"$out"; then
        cat "$out" >&2
        rm -f "$out"
        bench_die "chat-bench failed ($label)"
    fi
    grep -v '^{' "$out" >&2 || true
    BENCH_JSON=$(grep '^{' "$out" | tail -n 1)
    rm -f "$out"
    # Group commit at work, over the whole run (warm-up and drain
    # included): messages stored per PostgreSQL transaction, and the p99 of
    # a commit's time (a bucket's upper bound), the database's share of an
    # ack's latency.
    m1=$(bench_scrape)
    if [[ -n $m0 && -n $m1 ]]; then
        stored=$(($(bench_metric "$m1" chatd_messages_stored_total) - $(bench_metric "$m0" chatd_messages_stored_total)))
        batches=$(($(bench_metric "$m1" chatd_message_batches_total) - $(bench_metric "$m0" chatd_message_batches_total)))
        if ((batches > 0)); then
            commit_p99=$(bench_hist_p99_ms "$m0" "$m1" chatd_message_commit_seconds)
            # Past the last bound (1 s): no number to give.
            [[ $commit_p99 == inf ]] && commit_p99=''
            BENCH_JSON="${BENCH_JSON%\}},\"server_messages_per_commit\":$(awk -v s=$stored -v b=$batches \
                'BEGIN { printf "%.2f", s / b }'),\"server_commit_ms_p99\":${commit_p99:-null}}"
            bench_say "$label: $(jget "$BENCH_JSON" server_messages_per_commit) messages stored per commit, commit p99 <= ${commit_p99:-?} ms"
        fi
    fi
    printf '%s\n' "$BENCH_JSON" >>"$BENCH_OUT/${BENCH_SCENARIO:-x}.jsonl"
    # Let the server settle (the leave storm of the closed connections).
    sleep 1
}

# Client processes for C connections: each holds at most 15000 (ulimit -n
# is often 20000).
bench_procs() { echo $((($1 + 14999) / 15000)); }

# bench_result TEXT: the scenario's figure, printed and collected.
bench_result() {
    local name=${BENCH_SCENARIO:-?} text=$*
    [[ $BENCH_TARGET == chatd ]] || name+=/$BENCH_TARGET
    case ${STEAL_RERUNS:-0} in
    0) ;;
    1) text+="; 1 run not judged for steal" ;;
    *) text+="; $STEAL_RERUNS runs not judged for steal" ;;
    esac
    # FAIL_RATE is set, to the empty string, only by a ladder that never
    # failed (bench_step_up); scenarios without steps leave it unset.
    [[ -n ${FAIL_RATE-x} ]] || text+="; every step held, the last included: the limit is higher"
    printf 'RESULT %-9s %s\n' "$name" "$text"
    printf '%-9s %s\n' "$name" "$text" >>"$BENCH_OUT/summary.txt"
}

# bench_step_ok [ack]: the last run held (ratio >= BENCH_MIN_RATIO, p99 <=
# BENCH_P99_MS, no failed or dropped connection). "ack" judges the ack
# ratio and ack latency instead of deliveries.
bench_step_ok() {
    local j=$BENCH_JSON ratio p99
    if [[ ${1:-} == ack ]]; then
        ratio=$(jget "$j" ack_ratio)
        p99=$(jget "$j" ack_ms.p99)
    else
        ratio=$(jget "$j" delivery_ratio)
        p99=$(jget "$j" delivery_ms.p99)
    fi
    [[ $(jget "$j" connections_failed) == 0 && $(jget "$j" conns_dropped) == 0 ]] &&
        fcmp "$ratio" '>=' "$BENCH_MIN_RATIO" && fcmp "$p99" '<=' "$BENCH_P99_MS"
}

# bench_step_up KIND PREFIX "RATES" CHAT-BENCH-ARGS...: runs at each
# per-sender rate in turn (--rate R appended) until a step fails
# (bench_step_ok KIND); with BENCH_RETRY=N (0) a failed step is run up to N
# more times first, and holds if one of them does (shared machines). With
# BENCH_PRIME=1 (0) one run at the first rate comes before the steps and is
# not judged (labelled PREFIX-prime in the JSON lines): a JIT-compiled
# server is then measured warm. Sets BEST_RATE/BEST_JSON (the last step that held,
# empty if none) and FAIL_RATE/FAIL_JSON (the step that did not), and
# FIRST_JSON (the first step, the base rate). The three JSON lines are also
# kept as $BENCH_OUT/<scenario>.{first,best,fail}.json (empty when none),
# for scripts/bench-compare.sh.
# A failed run whose window lost more than BENCH_MAX_STEAL of any CPU to
# the hypervisor (bench_stolen) is not judged: it is run again, up to
# BENCH_STEAL_RETRY times, besides BENCH_RETRY; the last such run is
# judged as it is. So is a stolen run of the first step even when it held,
# as its latency is reported (FIRST_JSON). STEAL_RERUNS counts them over
# the scenario. Below the core's capacity, stolen windows are what failed
# steps had in common (docs/performance.md, "A slowed machine").
bench_step_up() {
    local kind=$1 prefix=$2 rates=$3 r
    shift 3
    BEST_RATE='' BEST_JSON='' FAIL_RATE='' FAIL_JSON='' FIRST_JSON=''
    local try stolen held
    STEAL_RERUNS=0
    if [[ ${BENCH_PRIME:-0} == 1 ]]; then
        r=${rates%% *}
        bench_run "$prefix-prime" "$@" --rate "$r"
        bench_say "$prefix: primed at $r/s per sender (not judged)"
    fi
    for r in $rates; do
        stolen=0
        for ((try = 0; try <= ${BENCH_RETRY:-0}; try++)); do
            ((try == 0)) || bench_say "$prefix at $r/s per sender: again ($try of ${BENCH_RETRY:-0})"
            bench_run "$prefix-r$r" "$@" --rate "$r"
            held=0
            if bench_step_ok "$kind"; then held=1; fi
            if ((!held || ${#FIRST_JSON} == 0)) && ((stolen < BENCH_STEAL_RETRY)) &&
                bench_stolen "$BENCH_JSON"; then
                stolen=$((stolen + 1)) STEAL_RERUNS=$((STEAL_RERUNS + 1)) try=$((try - 1))
                bench_say "$prefix at $r/s per sender ran with $(jsteal "$BENCH_JSON") s of steal per CPU: not judged, again ($stolen of $BENCH_STEAL_RETRY)"
                continue
            fi
            if ((held)); then break; fi
        done
        [[ -n $FIRST_JSON ]] || FIRST_JSON=$BENCH_JSON
        if ((held)); then
            BEST_RATE=$r BEST_JSON=$BENCH_JSON
            bench_say "$prefix at $r/s per sender held"
        else
            FAIL_RATE=$r FAIL_JSON=$BENCH_JSON
            bench_say "$prefix at $r/s per sender did not hold: $(bench_brief "$BENCH_JSON")"
            break
        fi
    done
    local base=$BENCH_OUT/${BENCH_SCENARIO:-x}
    printf '%s\n' "$FIRST_JSON" >"$base.first.json"
    printf '%s\n' "$BEST_JSON" >"$base.best.json"
    printf '%s\n' "$FAIL_JSON" >"$base.fail.json"
}

# One line of the figures that decide a step.
bench_brief() {
    local j=$1
    printf 'delivered %s/s (ratio %s, p99 %s ms), acked %s/s (ratio %s, p99 %s ms), failed conns %s, dropped %s; busiest client process %s of a core, host steal %s s' \
        "$(jnum "$j" delivered_per_s)" "$(jnum "$j" delivery_ratio 4)" "$(jnum "$j" delivery_ms.p99 1)" \
        "$(jnum "$j" acked_per_s)" "$(jnum "$j" ack_ratio 4)" "$(jnum "$j" ack_ms.p99 1)" \
        "$(jget "$j" connections_failed)" "$(jget "$j" conns_dropped)" "$(jnum "$j" client_cpu_util_max 2)" \
        "$(jsteal "$j")"
}

# bench_stolen JSON: some CPU lost more than BENCH_MAX_STEAL of the run's
# window to the hypervisor. Both count: the server's CPU runs chatd,
# Redis and PostgreSQL, the other the clients, whose late reads are
# latency too.
bench_stolen() {
    jsteal "$1" | tr / '\n' |
        awk -v d="$BENCH_DURATION" -v m="$BENCH_MAX_STEAL" '$1 > d * m { s = 1 } END { exit !s }'
}

# jsteal JSON: the window's steal time per CPU (chat-bench's host_steal_s),
# as "CPU0/CPU1/...": a step that failed with a lot of it ran on a
# slowed machine.
jsteal() {
    if command -v jq >/dev/null 2>&1; then
        jq -r '(.host_steal_s // []) | map(tostring) | join("/")' <<<"$1"
    else
        node -e 'console.log((JSON.parse(process.argv[1]).host_steal_s || []).join("/"))' "$1"
    fi
}

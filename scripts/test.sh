#!/usr/bin/env bash
# What `make test` runs once everything is built: services, migrations,
# unit tests (and chat-bench's self-test), a short fuzz run, the Node
# integration tests, the fault suite (tests/faults). Keeps going after a failure and ends with the line
# "N passed, N failed".
#
#   CHATD_TEST_ONLY=REGEX    only the integration and fault test files whose
#                            path matches (grep -E); unit tests and fuzzing
#                            still run
#   CHATD_FUZZ_SECONDS=N     seconds per fuzz target (20; 0 skips fuzzing)
#   SAN=1                    sanitizer options for everything run here
#   Timeouts, seconds: CHATD_UNIT_TIMEOUT (300, one unit binary),
#   CHATD_TEST_FILE_TIMEOUT (600, one integration file), CHATD_NODE_TIMEOUT
#   (1800, one node --test run); fuzzing gets SECONDS + 180 per target.
#
# CHAT_* variables from the caller's shell are dropped: chatd and chatctl
# refuse unknown ones, and tests set their own.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT" || exit 1

while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^CHAT_' || true)

if [[ ${SAN:-} == 1 ]]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
# Marks every process started below, so leftovers can be found at the end.
CHATD_TEST_RUN_ID="$$-$(date +%s%N)"
export CHATD_TEST_RUN_ID

FUZZ_SECONDS=${CHATD_FUZZ_SECONDS:-20}
[[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || { echo "test: CHATD_FUZZ_SECONDS must be a number" >&2; exit 2; }
UNIT_TIMEOUT=${CHATD_UNIT_TIMEOUT:-300}
NODE_TIMEOUT=${CHATD_NODE_TIMEOUT:-1800}       # one node --test run, seconds
FILE_TIMEOUT=${CHATD_TEST_FILE_TIMEOUT:-600}   # one test file in it, seconds

passed=0
failed=0
failures=()

stage() { printf '\n=== %s\n' "$*"; }
pass() { passed=$((passed + ${2:-1})); }
fail() { failed=$((failed + ${2:-1})); failures+=("$1"); }
explain_rc() {   # $1: exit status from timeout(1)
    case $1 in
    124) echo " (timed out)" ;;
    137) echo " (killed after timing out)" ;;
    *) echo "" ;;
    esac
}

finish() {
    cleanup_leftovers
    echo
    if ((${#failures[@]})); then
        echo "failed: ${failures[*]}"
    fi
    echo "$passed passed, $failed failed"
    ((failed == 0))
    exit $?
}

# Processes that carry this run's marker and are still alive (a test file
# killed by its timeout cannot stop the chatd it started).
cleanup_leftovers() {
    local pids=() p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        ((p == $$ || p == BASHPID)) && continue
        if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "CHATD_TEST_RUN_ID=$CHATD_TEST_RUN_ID"; then
            pids+=("$p")
        fi
    done
    if ((${#pids[@]})); then
        echo "test: killing leftover processes of this run: ${pids[*]}"
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
}

trap 'cleanup_leftovers; exit 130' INT TERM

# ------------------------------------------------------------------------
stage "services"
if ! timeout -k 10 180 scripts/services.sh start; then
    fail services
    finish
fi
if ! envs=$(scripts/services.sh env); then
    fail services-env
    finish
fi
eval "$envs"

stage "migrate ($CHATD_PG_TEST_DSN)"
if [[ -x bin/chatctl ]]; then
    CHAT_PG_DSN=$CHATD_PG_TEST_DSN timeout -k 5 120 bin/chatctl migrate
    rc=$?
    if ((rc != 0)); then
        echo "test: chatctl migrate failed, exit $rc$(explain_rc "$rc")"
        fail migrate
    fi
else
    echo "test: WARNING: bin/chatctl does not exist; migrations not applied"
fi

# ------------------------------------------------------------------------
# run_unit NAME COMMAND...: one unit check, passed when it exits 0.
run_unit() {
    local name=$1 rc
    shift
    stage "unit: $name"
    timeout -k 5 "$UNIT_TIMEOUT" "$@"
    rc=$?
    if ((rc == 0)); then pass; else
        echo "test: $name failed, exit $rc$(explain_rc "$rc")"
        fail "$name"
    fi
}

for t in bin/tests/test_*; do
    [[ -f $t && -x $t ]] || continue
    name=${t##*/}
    if [[ ! -f tests/unit/$name.c ]]; then
        echo "test: skipping $t: no tests/unit/$name.c (stale binary)"
        continue
    fi
    run_unit "$name" "$t"
done

# The load generator's own checks (frame parsing, histograms, /proc
# readings): a benchmark is only as good as its instrument.
[[ -x bin/chat-bench ]] && run_unit "chat-bench --self-test" bin/chat-bench --self-test

# ------------------------------------------------------------------------
n=0   # fuzz targets, as scripts/fuzz.sh finds them
if [[ -f scripts/fuzz.sh ]] && ((FUZZ_SECONDS > 0)); then
    for f in fuzz/fuzz_*.c; do [[ -e $f ]] && n=$((n + 1)); done
fi
if ((n > 0)); then
    stage "fuzz: $n target(s), $FUZZ_SECONDS s each"
    out=$(mktemp)
    # Building one target with clang and the sanitizers takes a while on a
    # busy machine, hence the allowance beside the fuzzing time itself.
    timeout -k 10 $((n * (FUZZ_SECONDS + 180) + 60)) bash scripts/fuzz.sh "$FUZZ_SECONDS" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    if ((rc == 0)); then
        pass fuzz "$n"
    else
        # fuzz.sh prints one line per target ending in its result.
        ok=$(grep -cE '[[:space:]]ok$' "$out")
        ((ok < n)) || ok=$((n - 1))
        echo "test: fuzz.sh exit $rc$(explain_rc "$rc")"
        pass fuzz "$ok"
        fail fuzz $((n - ok))
    fi
    rm -f "$out"
fi

# ------------------------------------------------------------------------
# Runs node's test runner on the given files; adds its TAP summary to the
# totals. A run that dies without a summary counts as one failure.
run_node() {   # $1: label, $2: concurrency, files...
    local label=$1 conc=$2 out rc p f c
    shift 2
    stage "integration ($label): $*"
    out=$(mktemp)
    # Node 20 applies --test-timeout to each file as a whole (a hung file is
    # cancelled, the others still report); --test-force-exit ends a file
    # whose tests are done even if something it opened is still pending.
    timeout -k 10 "$NODE_TIMEOUT" node --test --test-reporter=tap --test-concurrency="$conc" \
        --test-timeout=$((FILE_TIMEOUT * 1000)) --test-force-exit "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    # The summary is the last "# pass N" etc. at the start of a line
    # (nested subtests' summaries are indented).
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -n 1)
    c=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$out" | tail -n 1)
    if [[ -z $p || -z $f ]]; then
        # Killed before its summary: count the top-level results it printed.
        p=$(grep -E '^ok [0-9]+ ' "$out" | grep -cvE '# (SKIP|TODO)')
        f=$(grep -cE '^not ok [0-9]+ ' "$out")
        rm -f "$out"
        echo "test: node ($label) ended without a summary, exit $rc$(explain_rc "$rc");" \
            "$p passed and $f failed before that"
        pass "integration-$label" "$p"
        fail "integration-$label" $((f + 1))
        return
    fi
    rm -f "$out"
    pass "integration-$label" "$p"
    ((f + ${c:-0} == 0)) || fail "integration-$label" $((f + ${c:-0}))
    if ((rc != 0 && f + ${c:-0} == 0)); then
        echo "test: node ($label) exit $rc$(explain_rc "$rc") with no failed test"
        fail "integration-$label"
    fi
}

select_files() {   # prints the files among $@ that CHATD_TEST_ONLY selects
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        if [[ -n ${CHATD_TEST_ONLY:-} ]] && ! grep -qE -- "$CHATD_TEST_ONLY" <<<"$f"; then
            continue
        fi
        printf '%s\n' "$f"
    done
}

if [[ ! -d tests/node_modules ]]; then
    echo "test: tests/node_modules missing (run scripts/deps.sh)"
    fail integration-deps
else
    mapfile -t par < <(select_files tests/integration/*.test.mjs)
    mapfile -t ser < <(select_files tests/integration/serial/*.test.mjs)
    mapfile -t flt < <(select_files tests/faults/*.test.mjs)
    if ((${#par[@]} == 0 && ${#ser[@]} == 0 && ${#flt[@]} == 0)); then
        echo "test: no integration test files${CHATD_TEST_ONLY:+ match \"$CHATD_TEST_ONLY\"}"
    fi
    ((${#par[@]} == 0)) || run_node parallel 2 "${par[@]}"
    # These stop and start Redis or PostgreSQL, so nothing runs beside them.
    if ((${#ser[@]})); then
        run_node serial 1 "${ser[@]}"
        # Leave the services up for whatever runs next, as `start` found them.
        timeout -k 10 180 scripts/services.sh start >/dev/null || fail services-after-serial
    fi
    # The fault suite (tests/faults/traffic.mjs says what it checks): it
    # stops Redis and PostgreSQL too, so it runs alone, one file at a time.
    if ((${#flt[@]})); then
        run_node faults 1 "${flt[@]}"
        timeout -k 10 180 scripts/services.sh start >/dev/null || fail services-after-faults
    fi
fi

finish

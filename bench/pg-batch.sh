#!/usr/bin/env bash
# chat_post_batch alone, under pgbench: what PostgreSQL pays per stored
# message, without chatd, Redis or WebSockets (docs/performance.md,
# "PostgreSQL").
#
#   bench/pg-batch.sh [BATCH [UPTO]]
#
# A scratch database (pg_batch) on the private PostgreSQL
# (scripts/services.sh), migrated with sql/*.sql in order up to and
# including the file whose name starts with UPTO (all by default), so two
# schema versions can be compared. PG_BATCH_CREATE is added to its CREATE
# DATABASE, to measure under another collation, for example
# "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'";
# PG_BATCH_EXTRA names an SQL file run after the migrations, to try a
# schema change before writing it as one. PG_BATCH_PREFILL (100000) messages in
# 100 rooms are loaded and analyzed first. Then pgbench, PG_BATCH_CLIENTS
# (4) clients on CPU 1 (PostgreSQL pinned to CPU 0 for the run), for
# PG_BATCH_SECONDS (15) s calls chat_post_batch (a prepared statement, as
# chatd) with BATCH (10) messages of 100 bytes, each to a random room of
# the 100 with a fresh ref. With BATCH 1 it calls chat_post_one instead,
# as chatd does for a lone message (PG_BATCH_ONE=0: chat_post_batch even
# then). PG_BATCH_FLOOR=1 measures the floor under any write function of
# this schema instead: each call is one plain INSERT of BATCH rows into
# messages and room_events (every index, an event payload of the usual
# length), with no room lock, no ref lookup and no seq to assign.
# Prints calls/s, messages/s, and PostgreSQL's CPU (read from
# /proc over the middle of the run) per message. With small
# batches the clients wait on commits (fsync) more than on the CPU: use
# more of them to find the CPU's limit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
batch=${1:-10}
upto=${2:-}
seconds=${PG_BATCH_SECONDS:-15}
clients=${PG_BATCH_CLIENTS:-4}
prefill=${PG_BATCH_PREFILL:-100000}
db=pg_batch

scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
su_psql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$(dirname "$CHATD_PG_DATA")/sock" -p "$CHATD_PG_PORT" "$@"; }
chat_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$CHATD_PG_PORT" -U chat "$@"; }

su_psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER chat ${PG_BATCH_CREATE:-}"
for f in sql/[0-9]*.sql; do
    chat_psql -d "$db" -f "$f" >/dev/null
    [[ -n $upto && $(basename "$f") == "$upto"* ]] && break
done
[[ -n ${PG_BATCH_EXTRA:-} ]] && chat_psql -d "$db" -f "$PG_BATCH_EXTRA" >/dev/null
chat_psql -d "$db" -v n="$prefill" >/dev/null <<'SQL'
INSERT INTO rooms SELECT 'r' || i, :n / 100 + 1 FROM generate_series(1, 100) i;
INSERT INTO messages (id, room, user_id, user_name, body, ref, created_at, seq, created_seq)
SELECT nextval('messages_id_seq'), 'r' || (1 + n % 100), 'u' || (n % 2000), 'name',
       repeat('x', 100), 'ref' || n, now(), n / 100 + 1, n / 100 + 1
  FROM generate_series(0, :n - 1) n;
SQL
su_psql -d "$db" -c "ANALYZE rooms" -c "ANALYZE messages" -c "ANALYZE room_events"

script=$(mktemp)
trap 'rm -f "$script"' EXIT
fn=chat_post_batch
if [[ ${PG_BATCH_FLOOR:-0} != 0 ]]; then
    fn="a plain INSERT"
    # seq is the id: unique and rising in each room, as the real ones are.
    cat >"$script" <<SQL
WITH m AS (
  INSERT INTO messages (id, room, user_id, user_name, body, ref, created_at, seq, created_seq)
  SELECT i, 'r' || (1 + (random() * 99)::int), 'u' || g, 'name', repeat('x', 100),
         'ref' || md5(random()::text), now(), i, i
    FROM (SELECT g, nextval('messages_id_seq') AS i FROM generate_series(1, $batch) g) s
  RETURNING room, seq)
INSERT INTO room_events (room, seq, payload) SELECT room, seq, repeat('y', 250) FROM m;
SQL
elif ((batch == 1)) && [[ ${PG_BATCH_ONE:-1} != 0 ]]; then
    fn=chat_post_one
    cat >"$script" <<SQL
SELECT count(*) FROM chat_post_one('r' || (1 + (random() * 99)::int), 'u1', 'name', repeat('x', 100),
                                   'ref' || md5(random()::text));
SQL
else
    cat >"$script" <<SQL
SELECT count(*) FROM chat_post_batch((SELECT json_agg(json_build_array(
    'r' || (1 + (random() * 99)::int), 'u' || g, 'name', repeat('x', 100), 'ref' || md5(random()::text)))
    FROM generate_series(1, $batch) g));
SQL
fi

pg_pid=$(head -n 1 "$CHATD_PG_DATA/postmaster.pid")
saved=$(taskset -p "$pg_pid" | sed -n 's/.*: //p')
# The backends pgbench opens inherit the postmaster's affinity.
taskset -p -c 0 "$pg_pid" >/dev/null
# CPU of the whole cluster (its backends included) in clock ticks.
pg_ticks() {
    local p s=0
    for p in "$pg_pid" $(pgrep -P "$pg_pid"); do
        s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$s"
}
out=$(mktemp)
taskset -c 1 pgbench -n -M prepared -h 127.0.0.1 -p "$CHATD_PG_PORT" -U chat -c "$clients" -j 1 \
    -T "$seconds" -f "$script" "$db" >"$out" 2>&1 &
bench=$!
# The CPU is read over the middle of the run, while the backends live.
sleep 2
t0=$(pg_ticks) s0=$(date +%s%N)
sleep $((seconds - 4))
t1=$(pg_ticks) s1=$(date +%s%N)
rc=0
wait "$bench" || rc=$?
taskset -p "$saved" "$pg_pid" >/dev/null
if ((rc)); then cat "$out" >&2; rm -f "$out"; exit "$rc"; fi
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out")
rm -f "$out"
awk -v tps="$tps" -v b="$batch" -v c="$clients" -v upto="${upto:-all}" -v fn="$fn" -v ticks="$((t1 - t0))" \
    -v hz="$(getconf CLK_TCK)" -v ns="$((s1 - s0))" 'BEGIN {
    util = ticks / hz / (ns / 1e9)
    printf "pg-batch: migrations up to %s, %s with %d messages a call, %d clients: %.0f calls/s, %.0f messages/s; PostgreSQL used %.2f of its core, %.0f us per message\n", upto, fn, b, c, tps, tps * b, util, util * 1e6 / (tps * b)
}'

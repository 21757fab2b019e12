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
# schema versions can be compared. PG_BATCH_PREFILL (100000) messages in
# 100 rooms are loaded and analyzed first. Then pgbench, 4 clients on
# CPU 1 (PostgreSQL pinned to CPU 0 for the run), for PG_BATCH_SECONDS
# (15) s calls chat_post_batch (a prepared statement, as chatd) with BATCH
# (10) messages of 100 bytes, each
# to a random room of the 100 with a fresh ref. PostgreSQL has the core
# to itself and the 4 clients keep it busy, so the time per message is
# its CPU per message. Prints batches/s and messages/s.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
batch=${1:-10}
upto=${2:-}
seconds=${PG_BATCH_SECONDS:-15}
prefill=${PG_BATCH_PREFILL:-100000}
db=pg_batch

scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
su_psql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$(dirname "$CHATD_PG_DATA")/sock" -p "$CHATD_PG_PORT" "$@"; }
chat_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$CHATD_PG_PORT" -U chat "$@"; }

su_psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER chat"
for f in sql/[0-9]*.sql; do
    chat_psql -d "$db" -f "$f" >/dev/null
    [[ -n $upto && $(basename "$f") == "$upto"* ]] && break
done
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
cat >"$script" <<SQL
SELECT count(*) FROM chat_post_batch((SELECT json_agg(json_build_array(
    'r' || (1 + (random() * 99)::int), 'u' || g, 'name', repeat('x', 100), 'ref' || md5(random()::text)))
    FROM generate_series(1, $batch) g));
SQL

pg_pid=$(head -n 1 "$CHATD_PG_DATA/postmaster.pid")
saved=$(taskset -p "$pg_pid" | sed -n 's/.*: //p')
# The backends pgbench opens inherit the postmaster's affinity.
taskset -p -c 0 "$pg_pid" >/dev/null
out=$(mktemp)
rc=0
taskset -c 1 pgbench -n -M prepared -h 127.0.0.1 -p "$CHATD_PG_PORT" -U chat -c 4 -j 1 -T "$seconds" \
    -f "$script" "$db" >"$out" 2>&1 || rc=$?
taskset -p "$saved" "$pg_pid" >/dev/null
if ((rc)); then cat "$out" >&2; rm -f "$out"; exit "$rc"; fi
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out")
rm -f "$out"
awk -v tps="$tps" -v b="$batch" -v upto="${upto:-all}" 'BEGIN {
    printf "pg-batch: migrations up to %s, %d messages a batch: %.0f batches/s, %.0f messages/s, %.0f us of PostgreSQL (one core) per message\n", upto, b, tps, tps * b, 1e6 / (tps * b)
}'

#!/usr/bin/env bash
# `make run`: private Redis and PostgreSQL (scripts/services.sh), the
# schema, a local secret and two demo tokens, then chatd in the
# foreground. A second run reuses all of it and is up in seconds.
#
#   CHATD_PORT      listen port (8080)
#   CHATD_WORKERS   worker processes (default: the number of CPUs)
# Any CHAT_* setting in the environment overrides .run/chatd.conf.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
RUN=$ROOT/.run
PORT=${CHATD_PORT:-8080}

scripts/services.sh start
eval "$(scripts/services.sh env)"

mkdir -p "$RUN"
if [ ! -s "$RUN/jwt_secret" ]; then
    # A secret of this checkout's own, kept so tokens survive restarts.
    head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$RUN/jwt_secret"
    chmod 600 "$RUN/jwt_secret"
fi

conf=$RUN/chatd.conf
cat > "$conf" <<CONF
# Written by scripts/run.sh for this checkout; see etc/chatd.conf for
# every setting.
bind = 127.0.0.1
port = $PORT
jwt_secret = $(cat "$RUN/jwt_secret")
redis_url = $CHATD_REDIS_URL
pg_dsn = $CHATD_PG_DSN
static_dir = $ROOT/web
pid_file = $RUN/chatd.pid
CONF
chmod 600 "$conf"
[ -n "${CHATD_WORKERS:-}" ] && echo "workers = $CHATD_WORKERS" >> "$conf"

bin/chatctl -c "$conf" migrate

member=$(bin/chatctl -c "$conf" token --sub alice --name Alice --role member --ttl 604800)
organizer=$(bin/chatctl -c "$conf" token --sub olivia --name Olivia --role organizer --ttl 604800)

cat <<MSG

chatd is starting on http://127.0.0.1:$PORT  (Ctrl-C stops it; make stop stops it, Redis and PostgreSQL)

Open these in a browser (the token stays in the URL fragment, never in a server log):
  member     http://127.0.0.1:$PORT/#token=$member
  organizer  http://127.0.0.1:$PORT/#token=$organizer

More tokens:  bin/chatctl -c .run/chatd.conf token --sub bob --name Bob
Admin:        bin/chatctl -c .run/chatd.conf online | kick USER | ban USER | notice ROOM TEXT

MSG
exec bin/chatd -c "$conf"

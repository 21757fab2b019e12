#!/usr/bin/env bash
# Private Redis and PostgreSQL for this checkout, under .run/ (git-ignored).
#
#   scripts/services.sh start|stop|status|env
#   scripts/services.sh start-redis|stop-redis|start-pg|stop-pg
#
# Ports: CHATD_REDIS_PORT (16379), CHATD_PG_PORT (15432), 127.0.0.1 only.
# `start` is idempotent and quick when both already answer. `env` prints
# shell exports (eval "$(scripts/services.sh env)").
#
# PostgreSQL refuses to run as root, so as root it runs as `postgres` on a
# data directory that user owns. When the postgres user cannot reach .run/
# (a parent directory not traversable by others), the data lives under
# /var/tmp/chatd-pg-<hash of the checkout path>/ instead; .run/pg-location
# always records where.
set -euo pipefail

# The servers outlive any test run; scripts/test.sh kills what carries its
# run marker at the end, so they must not inherit it.
unset CHATD_TEST_RUN_ID

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
RUN=$ROOT/.run
REDIS_PORT=${CHATD_REDIS_PORT:-16379}
PG_PORT=${CHATD_PG_PORT:-15432}
WAIT_S=${CHATD_SERVICES_WAIT_S:-30}   # bound of every wait for a server
REDIS_DIR=$RUN/redis
REDIS_CONF=$REDIS_DIR/redis.conf
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log

die() { echo "services: $*" >&2; exit 1; }
say() { echo "services: $*"; }

for p in "$REDIS_PORT" "$PG_PORT"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "bad port '$p'"; fi
done
[[ $REDIS_PORT != "$PG_PORT" ]] || die "CHATD_REDIS_PORT and CHATD_PG_PORT are both $PG_PORT"

# Something accepts connections on 127.0.0.1:$1.
port_busy() {
    # shellcheck disable=SC2016 # $1 is the inner shell's
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

lock() {
    [[ -d $RUN ]] || mkdir -m 755 "$RUN"
    exec 9>"$RUN/.lock"
    flock -w 120 9 || die "another services.sh still holds $RUN/.lock after 120 s"
}

# ---------------------------------------------------------------- Redis

redis_cli() { timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@" 2>/dev/null; }

# Pid of this checkout's redis-server if it is alive, else nothing.
redis_pid() {
    local pid=""
    [[ -s $REDIS_PIDFILE ]] && pid=$(<"$REDIS_PIDFILE")
    if [[ -z $pid ]]; then
        # Pid file lost (.run/ removed): a server on our port that was
        # started with our pid file path is still ours.
        [[ $(redis_cli config get pidfile | tr -d '\r' | sed -n 2p) == "$REDIS_PIDFILE" ]] || return 1
        pid=$(redis_cli info server | tr -d '\r' | sed -n 's/^process_id://p')
    fi
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
    echo "$pid"
}

# The redis answering on REDIS_PORT is the one from our pid file.
redis_serving() {
    local pid=$1 info
    info=$(redis_cli info server | tr -d '\r') || return 1
    grep -qx "process_id:$pid" <<<"$info"
}

redis_kill() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
}

start_redis() {
    local pid i
    command -v redis-server >/dev/null || die "redis-server not installed (run scripts/deps.sh)"
    mkdir -p "$REDIS_DIR"
    if pid=$(redis_pid); then
        if redis_serving "$pid"; then
            say "redis already up on 127.0.0.1:$REDIS_PORT (pid $pid)"
            return 0
        fi
        # Ours but on another port (CHATD_REDIS_PORT changed) or wedged.
        if [[ $(sed -n 's/^port //p' "$REDIS_CONF" 2>/dev/null) != "$REDIS_PORT" ]] &&
           port_busy "$REDIS_PORT"; then
            die "127.0.0.1:$REDIS_PORT is used by another process; set CHATD_REDIS_PORT to a free port"
        fi
        say "restarting redis (pid $pid) on port $REDIS_PORT"
        redis_kill "$pid"
    fi
    port_busy "$REDIS_PORT" &&
        die "127.0.0.1:$REDIS_PORT is used by another process; set CHATD_REDIS_PORT to a free port"
    rm -f "$REDIS_PIDFILE"
    cat >"$REDIS_CONF" <<EOF
# Written by scripts/services.sh on every start; edits are lost.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_PIDFILE
logfile $REDIS_LOG
dir $REDIS_DIR
save ""
appendonly no
EOF
    # 9>&- : the daemon must not inherit (and so hold) our lock.
    if ! timeout 10 redis-server "$REDIS_CONF" >>"$REDIS_LOG" 2>&1 9>&-; then
        tail -n 20 "$REDIS_LOG" >&2
        die "redis-server failed to start (log: $REDIS_LOG)"
    fi
    for ((i = 0; i < WAIT_S * 10; i++)); do
        if [[ $(redis_cli ping) == PONG ]] && pid=$(redis_pid); then
            say "redis up on 127.0.0.1:$REDIS_PORT (pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    pid=$(redis_pid) && redis_kill "$pid"
    tail -n 20 "$REDIS_LOG" >&2
    die "redis did not answer PING on 127.0.0.1:$REDIS_PORT within $WAIT_S s (log: $REDIS_LOG)"
}

stop_redis() {
    local pid
    if pid=$(redis_pid); then
        redis_kill "$pid"
        kill -0 "$pid" 2>/dev/null && die "redis (pid $pid) did not stop"
        say "redis stopped"
    else
        say "redis not running"
    fi
    rm -f "$REDIS_PIDFILE"
}

status_redis() {
    local pid
    if pid=$(redis_pid); then
        if redis_serving "$pid"; then
            echo "redis: up, 127.0.0.1:$REDIS_PORT, pid $pid"
            return 0
        fi
        echo "redis: running (pid $pid) but not answering on 127.0.0.1:$REDIS_PORT"
        return 1
    fi
    echo "redis: stopped"
    return 1
}

# ----------------------------------------------------------- PostgreSQL

if ((EUID == 0)); then
    PG_OS_USER=postgres
    # cd / : postgres may not be able to enter the caller's directory.
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
    PG_OS_USER=$(id -un)
    as_pg() { (cd / && "$@"); }
fi

pg_reachable() {   # can the server's OS user traverse to $1?
    as_pg test -x "$1" 2>/dev/null
}

# Sets PG_BASE (and the paths inside it); does not create anything.
pg_locate() {
    local recorded=""
    [[ -f $RUN/pg-location ]] && recorded=$(<"$RUN/pg-location")
    if [[ -n $recorded && -d $recorded ]]; then
        PG_BASE=$recorded
    elif ((EUID != 0)) || { [[ -d $RUN ]] && pg_reachable "$RUN"; } ||
         { [[ ! -d $RUN ]] && pg_reachable "$ROOT"; }; then
        PG_BASE=$RUN/pg
    else
        PG_BASE=/var/tmp/chatd-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    fi
    PG_DATA=$PG_BASE/data
    PG_SOCK=$PG_BASE/sock
    PG_LOG=$PG_BASE/postgres.log
}

pg_bindir() {
    local ver d
    if [[ -n ${CHATD_PG_BIN:-} ]]; then
        PG_BIN=$CHATD_PG_BIN
    elif [[ -f $PG_DATA/PG_VERSION ]] &&
         ver=$(<"$PG_DATA/PG_VERSION") && [[ -x /usr/lib/postgresql/$ver/bin/postgres ]]; then
        PG_BIN=/usr/lib/postgresql/$ver/bin
    else
        d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
        [[ -d $d ]] || die "PostgreSQL server binaries not found in /usr/lib/postgresql (run scripts/deps.sh)"
        PG_BIN=$d
    fi
    [[ -x $PG_BIN/pg_ctl ]] || die "no pg_ctl in $PG_BIN"
}

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_prepare_base() {
    if [[ $PG_BASE == /var/tmp/* && ( -L $PG_BASE || ( -e $PG_BASE &&
          $(stat -c %U "$PG_BASE") != "$PG_OS_USER" ) ) ]]; then
        die "$PG_BASE exists but is not a directory owned by $PG_OS_USER; remove it"
    fi
    mkdir -p "$PG_BASE" "$PG_SOCK"
    if ((EUID == 0)); then chown "$PG_OS_USER": "$PG_BASE" "$PG_SOCK"; fi
    chmod 700 "$PG_BASE" "$PG_SOCK"
    printf '%s\n' "$PG_BASE" >"$RUN/pg-location"
}

pg_initdb() {
    local tmp=$PG_DATA.init log=$PG_BASE/initdb.log
    [[ -f $PG_DATA/PG_VERSION ]] && return 0
    [[ -e $PG_DATA ]] && die "$PG_DATA exists but holds no cluster; remove it"
    say "initdb $PG_DATA"
    as_pg rm -rf "$tmp"
    if ! as_pg "$PG_BIN/initdb" -D "$tmp" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        as_pg rm -rf "$tmp"
        die "initdb failed (log: $log)"
    fi
    # Only the unix socket and 127.0.0.1; no other hosts, no passwords.
    if ! as_pg tee "$tmp/pg_hba.conf" >/dev/null <<'EOF' ||
# Written by scripts/services.sh: a private test server, trust on loopback.
local   all             all                     trust
host    all             all     127.0.0.1/32    trust
local   replication     all                     trust
host    replication     all     127.0.0.1/32    trust
EOF
       ! echo "include_if_exists = 'chatd.conf'" | as_pg tee -a "$tmp/postgresql.conf" >/dev/null ||
       ! as_pg mv "$tmp" "$PG_DATA"; then
        as_pg rm -rf "$tmp"
        die "could not set up $PG_DATA"
    fi
}

pg_write_conf() {
    # Durability settings stay at their defaults (fsync, synchronous_commit
    # on): benchmarks measure durable writes.
    as_pg tee "$PG_DATA/chatd.conf" >/dev/null <<EOF
# Written by scripts/services.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 300
shared_buffers = 128MB
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

pg_wait_ready() {
    local i
    for ((i = 0; i < WAIT_S * 5; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1 && return 0
        sleep 0.2
    done
    return 1
}

pg_ensure_db() {
    as_pg "$PG_BIN/psql" -X -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
SELECT 'CREATE ROLE chat LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chat')
\gexec
ALTER ROLE chat LOGIN;
SELECT 'CREATE DATABASE chat OWNER chat' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'chat')
\gexec
SELECT 'CREATE DATABASE chat_test OWNER chat' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'chat_test')
\gexec
-- The migrations tested on a cluster whose default collation is linguistic,
-- as most production ones are (tests/integration/migrate.test.mjs).
SELECT 'CREATE DATABASE chat_test_icu OWNER chat TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE ''en-US'''
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'chat_test_icu')
\gexec
EOF
}

pg_stop_server() {   # $1: pg_ctl shutdown mode
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$1" -w -t "$WAIT_S" -s stop >/dev/null 2>&1 ||
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t "$WAIT_S" -s stop >/dev/null 2>&1 ||
        true
}

start_pg() {
    local port
    if ((EUID == 0)); then
        id postgres >/dev/null 2>&1 || die "no postgres user (install the postgresql package)"
    fi
    pg_locate
    pg_bindir
    if pg_running; then
        port=$(pg_running_port)
        if [[ $port == "$PG_PORT" ]] && pg_wait_ready; then
            pg_ensure_db || die "could not create role/databases (log: $PG_LOG)"
            say "postgresql already up on 127.0.0.1:$PG_PORT"
            return 0
        fi
        [[ $port != "$PG_PORT" ]] && port_busy "$PG_PORT" &&
            die "127.0.0.1:$PG_PORT is used by another process; set CHATD_PG_PORT to a free port"
        say "restarting postgresql (was on port ${port:-?}) on port $PG_PORT"
        pg_stop_server fast
    fi
    port_busy "$PG_PORT" &&
        die "127.0.0.1:$PG_PORT is used by another process; set CHATD_PG_PORT to a free port"
    pg_prepare_base
    pg_initdb
    pg_write_conf
    local out
    if ! out=$(as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_S" -s start 2>&1 9>&-) ||
       ! pg_wait_ready; then
        pg_stop_server immediate
        [[ -z $out ]] || printf '%s\n' "$out" >&2
        tail -n 20 "$PG_LOG" >&2 2>/dev/null || true
        die "postgresql did not start on 127.0.0.1:$PG_PORT within $WAIT_S s (log: $PG_LOG)"
    fi
    pg_ensure_db || die "could not create role/databases (log: $PG_LOG)"
    say "postgresql up on 127.0.0.1:$PG_PORT (data $PG_DATA)"
}

stop_pg() {
    pg_locate
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        say "postgresql not running"
        return 0
    fi
    pg_bindir
    if pg_running; then
        pg_stop_server fast
        pg_running && die "postgresql did not stop (data $PG_DATA)"
        say "postgresql stopped"
    else
        say "postgresql not running"
    fi
}

status_pg() {
    pg_locate
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        pg_bindir
        if pg_running; then
            if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; then
                echo "postgresql: up, 127.0.0.1:$PG_PORT, data $PG_DATA"
                return 0
            fi
            echo "postgresql: running (port $(pg_running_port)) but not answering on 127.0.0.1:$PG_PORT"
            return 1
        fi
    fi
    echo "postgresql: stopped (data $PG_DATA)"
    return 1
}

print_env() {
    pg_locate
    printf 'export CHATD_REDIS_PORT=%s\n' "$REDIS_PORT"
    printf 'export CHATD_PG_PORT=%s\n' "$PG_PORT"
    printf 'export CHATD_REDIS_URL=%s\n' "redis://127.0.0.1:$REDIS_PORT/0"
    printf 'export CHATD_PG_DSN=%s\n' "postgresql://chat@127.0.0.1:$PG_PORT/chat"
    printf 'export CHATD_PG_TEST_DSN=%s\n' "postgresql://chat@127.0.0.1:$PG_PORT/chat_test"
    printf 'export CHATD_PG_ICU_DSN=%s\n' "postgresql://chat@127.0.0.1:$PG_PORT/chat_test_icu"
    printf 'export CHATD_PG_DATA=%q\n' "$PG_DATA"
}

usage() {
    echo "usage: $0 {start|stop|status|env|start-redis|stop-redis|start-pg|stop-pg}" >&2
    exit 2
}

(($# == 1)) || usage
case $1 in
start)       lock; start_redis; start_pg ;;
stop)        lock; rc=0; (stop_redis) || rc=1; (stop_pg) || rc=1; exit $rc ;;
start-redis) lock; start_redis ;;
stop-redis)  lock; stop_redis ;;
start-pg)    lock; start_pg ;;
stop-pg)     lock; stop_pg ;;
status)      rc=0; status_redis || rc=1; status_pg || rc=1; exit $rc ;;
env)         print_env ;;
*)           usage ;;
esac

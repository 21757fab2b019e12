#include "worker/pg_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 3000
/* Requests in flight on one connection; past this the pool says "full"
 * rather than queueing without bound. */
#define MAX_INFLIGHT 4096
/* Requests in flight with no result for this long mean a stalled server
 * or network: drop the connection so callers hear of it. */
#define STALL_MS 10000
/* A connection attempt (TCP and PostgreSQL's start-up) that has not come
 * up in this long is given up and tried again: libpq's connect_timeout
 * does not apply to PQconnectPoll, and a server that accepts and then
 * says nothing would otherwise hold the slot until TCP keepalive. */
#define CONNECT_TIMEOUT_MS 10000
#define WATCHDOG_MS 1000
/* Set on every connection so a runaway statement cannot hold a request. */
#define STATEMENT_TIMEOUT_SQL "SET statement_timeout = '8s'"

enum pgc_state { PGC_DOWN, PGC_CONNECTING, PGC_UP };

struct pg_req {
    struct pg_req *next;
    pg_done_fn done;          /* NULL for the pool's own set-up requests */
    void *arg;
    int n;                    /* statements */
    int at;                   /* statement whose results arrive now */
    int late_error;           /* 1: the commit failed (error at the Sync); 2: its NULL came */
    PGresult *results[];
};

struct pgc {
    struct pg_pool *pool;
    PGconn *conn;
    enum pgc_state state;
    struct event *io_ev;
    struct event *retry_ev;
    struct event *fail_ev;    /* fails the connection from the loop, not from a caller's stack */
    int io_fd;
    short io_what;
    int backoff_ms;
    struct pg_req *head, *tail;
    uint32_t inflight;
    int64_t last_progress_ms;
    int64_t connect_started_ms;
};

struct pg_pool {
    struct event_base *base;
    char *dsn;
    int size;
    int next;                 /* round-robin start */
    const struct pg_prepared *prepared;
    int nprepared;
    struct event *watchdog_ev;
    uint64_t errors, reconnects;
    struct pgc conns[];
};

static void pgc_connect(struct pgc *c);
static void pgc_on_io(evutil_socket_t fd, short what, void *arg);

static void req_free(struct pg_req *r)
{
    for (int i = 0; i < r->n; i++)
        if (r->results[i]) PQclear(r->results[i]);
    free(r);
}

static void pgc_watch(struct pgc *c, short what)
{
    int fd = PQsocket(c->conn);
    if (c->io_ev && c->io_fd == fd && c->io_what == what) return;
    if (c->io_ev) {
        event_free(c->io_ev);
        c->io_ev = NULL;
    }
    c->io_fd = fd;
    c->io_what = what;
    if (fd < 0) return;
    c->io_ev = event_new(c->pool->base, fd, what | EV_PERSIST, pgc_on_io, c);
    if (c->io_ev) event_add(c->io_ev, NULL);
}

/* Fails every request in flight and schedules a reconnect. */
static void pgc_fail(struct pgc *c, const char *reason)
{
    struct pg_pool *p = c->pool;
    /* reason is often PQerrorMessage(c->conn), which PQfinish frees
     * before the callbacks are told. */
    char why[256];
    snprintf(why, sizeof why, "%s", reason);
    if (c->state == PGC_UP) log_warn("postgresql connection lost: %s", why);
    else log_debug("postgresql connect failed: %s", why);
    p->errors++; metrics_add(METRIC_PG_ERRORS, 1);
    if (c->io_ev) {
        event_free(c->io_ev);
        c->io_ev = NULL;
    }
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->state = PGC_DOWN;
    struct pg_req *r = c->head;
    c->head = c->tail = NULL;
    c->inflight = 0;
    while (r) {
        struct pg_req *next = r->next;
        if (r->done) r->done(r->arg, NULL, 0, why);
        req_free(r);
        r = next;
    }
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void pgc_flush(struct pgc *c)
{
    int r = PQflush(c->conn);
    if (r < 0) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    pgc_watch(c, r == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static struct pg_req *req_new(int n, pg_done_fn done, void *arg)
{
    struct pg_req *r = calloc(1, sizeof *r + (size_t)n * sizeof(PGresult *));
    if (!r) return NULL;
    r->n = n;
    r->done = done;
    r->arg = arg;
    return r;
}

static void pgc_enqueue(struct pgc *c, struct pg_req *r)
{
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    if (c->inflight++ == 0) c->last_progress_ms = timefmt_mono_ms();
}

static int pgc_send(struct pgc *c, const struct pg_stmt *stmts, int n)
{
    const struct pg_pool *p = c->pool;
    for (int i = 0; i < n; i++) {
        const struct pg_stmt *s = &stmts[i];
        int ok;
        if (s->prepared >= 0)
            ok = PQsendQueryPrepared(c->conn, p->prepared[s->prepared].name, s->nparams,
                                     s->values, s->lengths, NULL, 0);
        else
            ok = PQsendQueryParams(c->conn, s->sql, s->nparams, NULL, s->values, s->lengths,
                                   NULL, 0);
        if (!ok) return -1;
    }
    return PQpipelineSync(c->conn) ? 0 : -1;
}

/* After connecting: pipeline mode, the session settings and the prepared
 * statements, all in the pipeline ahead of any user request. */
static void pgc_setup(struct pgc *c)
{
    struct pg_pool *p = c->pool;
    if (PQsetnonblocking(c->conn, 1) != 0 || !PQenterPipelineMode(c->conn)) {
        pgc_fail(c, "cannot enter pipeline mode");
        return;
    }
    struct pg_req *r = req_new(1 + p->nprepared, NULL, NULL);
    if (!r) {
        pgc_fail(c, "out of memory");
        return;
    }
    int ok = PQsendQueryParams(c->conn, STATEMENT_TIMEOUT_SQL, 0, NULL, NULL, NULL, NULL, 0);
    for (int i = 0; ok && i < p->nprepared; i++)
        ok = PQsendPrepare(c->conn, p->prepared[i].name, p->prepared[i].sql,
                           p->prepared[i].nparams, NULL);
    if (!ok || !PQpipelineSync(c->conn)) {
        req_free(r);
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    pgc_enqueue(c, r);
    /* Up for requests, which queue behind the set-up; but the back-off
     * is forgiven only once the set-up succeeds (pgc_complete_head): a
     * server that accepts and then refuses it (migrations missing, no
     * EXECUTE right) would otherwise be asked again ten times a second. */
    c->state = PGC_UP;
    pgc_flush(c);
}

static void pgc_connect_poll(struct pgc *c)
{
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING: pgc_watch(c, EV_READ); break;
    case PGRES_POLLING_WRITING: pgc_watch(c, EV_WRITE); break;
    case PGRES_POLLING_OK: pgc_setup(c); break;
    default: pgc_fail(c, PQerrorMessage(c->conn)); break;
    }
}

/* Completes the head request when its Sync arrives. */
static void pgc_complete_head(struct pgc *c, const char *err)
{
    struct pg_req *r = c->head;
    c->head = r->next;
    if (!c->head) c->tail = NULL;
    c->inflight--;
    c->last_progress_ms = timefmt_mono_ms();
    if (!r->done) {
        /* The set-up request: a failure there leaves the connection unfit. */
        for (int i = 0; i < r->n; i++) {
            ExecStatusType st = r->results[i] ? PQresultStatus(r->results[i]) : PGRES_FATAL_ERROR;
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                char why[256];
                snprintf(why, sizeof why, "set-up statement %d failed: %s", i,
                         r->results[i] ? PQresultErrorMessage(r->results[i]) : "no result");
                req_free(r);
                pgc_fail(c, why);
                return;
            }
        }
        c->backoff_ms = BACKOFF_MIN_MS;
        log_info("postgresql connection up");
    } else {
        r->done(r->arg, r->results, r->n, err);
    }
    req_free(r);
}

static void pgc_read(struct pgc *c)
{
    if (!PQconsumeInput(c->conn)) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    while (c->head && !PQisBusy(c->conn)) {
        PGresult *res = PQgetResult(c->conn);
        struct pg_req *r = c->head;
        if (!res) {
            /* End of one statement's results. Past the last statement
             * the Sync is owed, and libpq waits for it (busy) unless it
             * dropped the connection itself (a protocol error, no memory
             * for a result): then it only ever answers NULL. */
            if (PQstatus(c->conn) != CONNECTION_BAD) {
                if (r->at < r->n) {
                    r->at++;
                    continue;
                }
                if (r->late_error == 1) {
                    r->late_error = 2;
                    continue;
                }
            }
            pgc_fail(c, PQstatus(c->conn) == CONNECTION_BAD ? PQerrorMessage(c->conn)
                                                            : "results out of step");
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            pgc_complete_head(c, NULL);
            if (c->state != PGC_UP) return;
            continue;
        }
        if (r->at < r->n && !r->results[r->at]) {
            r->results[r->at] = res;
        } else if (r->at >= r->n && st == PGRES_FATAL_ERROR && !r->late_error) {
            /* Every statement ran, then the implicit transaction failed to
             * commit (a deferred check, a serialization failure): nothing
             * was stored, and the request's last result says so. */
            PQclear(r->results[r->n - 1]);
            r->results[r->n - 1] = res;
            r->late_error = 1;
        } else {
            PQclear(res);
        }
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) pgc_fail(c, PQerrorMessage(c->conn));
}

static void pgc_on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct pgc *c = arg;
    if (c->state == PGC_CONNECTING) {
        pgc_connect_poll(c);
        return;
    }
    if (c->state != PGC_UP) return;
    if (what & EV_WRITE) {
        pgc_flush(c);
        if (c->state != PGC_UP) return;
    }
    if (what & EV_READ) pgc_read(c);
}

static void pgc_connect(struct pgc *c)
{
    c->conn = PQconnectStart(c->pool->dsn);
    if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
        pgc_fail(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
        return;
    }
    c->state = PGC_CONNECTING;
    c->connect_started_ms = timefmt_mono_ms();
    c->pool->reconnects++; metrics_add(METRIC_PG_RECONNECTS, 1);
    pgc_connect_poll(c);
}

static void pgc_on_fail(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pgc *c = arg;
    if (c->state == PGC_UP) pgc_fail(c, c->conn ? PQerrorMessage(c->conn) : "connection lost");
}

static void pgc_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pgc_connect(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pg_pool *p = arg;
    int64_t now = timefmt_mono_ms();
    for (int i = 0; i < p->size; i++) {
        struct pgc *c = &p->conns[i];
        if (c->state == PGC_UP && c->inflight > 0 && now - c->last_progress_ms > STALL_MS)
            pgc_fail(c, "no answer in time");
        else if (c->state == PGC_CONNECTING && now - c->connect_started_ms > CONNECT_TIMEOUT_MS)
            pgc_fail(c, "connecting took too long");
    }
}

struct pg_pool *pg_pool_new(struct event_base *base, const char *dsn, int size,
                            const struct pg_prepared *prepared, int nprepared)
{
    struct pg_pool *p = calloc(1, sizeof *p + (size_t)size * sizeof(struct pgc));
    if (!p) return NULL;
    p->base = base;
    p->size = size;
    p->prepared = prepared;
    p->nprepared = nprepared;
    p->dsn = strdup(dsn);
    p->watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, p);
    if (!p->dsn || !p->watchdog_ev) goto fail;
    for (int i = 0; i < size; i++) {
        struct pgc *c = &p->conns[i];
        c->pool = p;
        c->io_fd = -1;
        c->backoff_ms = BACKOFF_MIN_MS;
        c->retry_ev = evtimer_new(base, pgc_on_retry, c);
        c->fail_ev = event_new(base, -1, 0, pgc_on_fail, c);
        if (!c->retry_ev || !c->fail_ev) goto fail;
    }
    struct timeval wd = {WATCHDOG_MS / 1000, (WATCHDOG_MS % 1000) * 1000};
    event_add(p->watchdog_ev, &wd);
    for (int i = 0; i < size; i++) pgc_connect(&p->conns[i]);
    return p;
fail:
    pg_pool_free(p);
    return NULL;
}

void pg_pool_free(struct pg_pool *p)
{
    if (!p) return;
    /* Every connection is closed before any caller hears of its request:
     * a callback that sends again then finds nothing up (-1), instead of
     * a connection already finished. */
    struct pg_req *pending = NULL, **tail = &pending;
    for (int i = 0; i < p->size; i++) {
        struct pgc *c = &p->conns[i];
        if (c->io_ev) event_free(c->io_ev);
        if (c->retry_ev) event_free(c->retry_ev);
        if (c->fail_ev) event_free(c->fail_ev);
        c->io_ev = c->retry_ev = c->fail_ev = NULL;
        if (c->conn) PQfinish(c->conn);
        c->conn = NULL;
        c->state = PGC_DOWN;
        *tail = c->head;
        if (c->tail) tail = &c->tail->next;
        c->head = c->tail = NULL;
        c->inflight = 0;
    }
    while (pending) {
        struct pg_req *next = pending->next;
        if (pending->done) pending->done(pending->arg, NULL, 0, "shutting down");
        req_free(pending);
        pending = next;
    }
    if (p->watchdog_ev) event_free(p->watchdog_ev);
    free(p->dsn);
    free(p);
}

bool pg_pool_up(const struct pg_pool *p)
{
    for (int i = 0; p && i < p->size; i++)
        if (p->conns[i].state == PGC_UP) return true;
    return false;
}

/* Up, and not at its bound of requests in flight. */
static bool pgc_takes(const struct pgc *c)
{
    return c->state == PGC_UP && c->inflight < MAX_INFLIGHT;
}

static struct pgc *pick(struct pg_pool *p)
{
    struct pgc *best = NULL;
    for (int k = 0; k < p->size; k++) {
        struct pgc *c = &p->conns[(p->next + k) % p->size];
        if (!pgc_takes(c)) continue;
        if (!best || c->inflight < best->inflight) best = c;
    }
    p->next = (p->next + 1) % p->size;
    return best;
}

static int exec_on(struct pg_pool *p, struct pgc *c, const struct pg_stmt *stmts, int n,
                   pg_done_fn done, void *arg);

int pg_pool_exec(struct pg_pool *p, const struct pg_stmt *stmts, int n, pg_done_fn done,
                 void *arg)
{
    return exec_on(p, pick(p), stmts, n, done, arg);
}

int pg_pool_exec_on(struct pg_pool *p, uint32_t shard, const struct pg_stmt *stmts, int n,
                    pg_done_fn done, void *arg)
{
    struct pgc *c = &p->conns[shard % (uint32_t)p->size];
    if (!pgc_takes(c)) c = pick(p);
    return exec_on(p, c, stmts, n, done, arg);
}

int pg_pool_exec_at(struct pg_pool *p, int index, const struct pg_stmt *stmts, int n,
                    pg_done_fn done, void *arg)
{
    if (index < 0 || index >= p->size) return -1;
    struct pgc *c = &p->conns[index];
    return pgc_takes(c) ? exec_on(p, c, stmts, n, done, arg) : -1;
}

/* Returns the index of the connection c, or -1. */
static int exec_on(struct pg_pool *p, struct pgc *c, const struct pg_stmt *stmts, int n,
                   pg_done_fn done, void *arg)
{
    if (n < 1 || n > PG_POOL_MAX_STMTS || !c) return -1;
    struct pg_req *r = req_new(n, done, arg);
    if (!r) return -1;
    /* Failures found here are acted on from the loop: callers' done()
     * must never run inside their own pg_pool_exec call. */
    if (pgc_send(c, stmts, n) < 0) {
        req_free(r);
        event_active(c->fail_ev, 0, 0);
        return -1;
    }
    pgc_enqueue(c, r);
    int fr = PQflush(c->conn);
    if (fr < 0) event_active(c->fail_ev, 0, 0);
    else pgc_watch(c, fr == 1 ? EV_READ | EV_WRITE : EV_READ);
    return (int)(c - p->conns);
}

int pg_pool_query(struct pg_pool *p, int prepared, const char *sql, int nparams,
                  const char *const *values, pg_done_fn done, void *arg)
{
    struct pg_stmt s = {.prepared = prepared, .sql = sql, .nparams = nparams, .values = values};
    return pg_pool_exec(p, &s, 1, done, arg) < 0 ? -1 : 0;
}

uint64_t pg_pool_errors(const struct pg_pool *p) { return p->errors; }
uint64_t pg_pool_reconnects(const struct pg_pool *p) { return p->reconnects; }

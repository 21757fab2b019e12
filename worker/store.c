#include "worker/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "shared/hash.h"
#include "shared/jsonw.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"
#include "worker/worker.h"

const struct pg_prepared store_prepared[STORE_NSTMTS] = {
    [STORE_POST] = {"chat_post_batch", "SELECT ord, id, seq, created_at, payload, duplicate FROM chat_post_batch($1::json)", 1},
    [STORE_POST_ONE] = {"chat_post_one", "SELECT ord, id, seq, created_at, payload, duplicate FROM chat_post_one($1, $2, $3, $4, $5)", 5},
    [STORE_EDIT] = {"chat_edit", "SELECT status, seq, edited_at, payload FROM chat_edit($1, $2::bigint, $3, $4, $5::integer, $6)", 6},
    [STORE_DELETE] = {"chat_delete", "SELECT status, seq, deleted_at, payload FROM chat_delete($1, $2::bigint, $3, $4::boolean, $5)", 5},
    [STORE_LAST_SEQ] = {"chat_last_seq", "SELECT coalesce((SELECT seq FROM rooms WHERE name = $1), 0)", 1},
    [STORE_EVENTS] = {"chat_events", "SELECT seq, payload FROM room_events WHERE room = $1 AND seq >= $2::bigint ORDER BY seq LIMIT $3::bigint", 3},
    [STORE_REPLAY] = {"chat_replay", "SELECT last_seq, seq, payload FROM chat_replay($1, $2::bigint, $3::integer)", 3},
    [STORE_HISTORY] = {"chat_history", "SELECT chat_history($1, $2::integer, $3::bigint, $4::bigint, $5::boolean)", 5},
    [STORE_ROOM_SEQS] = {"chat_room_seqs", "SELECT name, seq FROM rooms WHERE name = ANY($1::text[])", 1},
};

/* Most messages in one batch (one transaction). */
#define BATCH_MAX PG_POOL_MAX_STMTS
/* Batches up to this size go as chat_post_one calls, larger ones as one
 * chat_post_batch call (docs/performance.md, "One message, one call"). */
#define STORE_POST_ONE_MAX 8

struct post_req {
    struct post_req *next;
    store_change_fn fn;
    void *arg;
    const char *values[5];  /* room, user_id, user_name, text, ref: point into buf */
    char buf[];
};

struct batch {
    struct store *s;        /* NULL once the store is gone (shutdown) */
    struct batch *prev, *next;  /* the store's batches in flight */
    uint32_t conn;          /* the pool connection it is counted on */
    int via;                /* the one that carries it (the pool may take
                             * another when conn is down), -1 before */
    bool pinned;            /* must go on via itself: see resend_one_by_one */
    uint64_t lanes;         /* the lanes it holds (bit i: lane i) */
    int64_t sent_us;
    int n;
    struct post_req *reqs[BATCH_MAX];
};

/* New messages wait in lanes, a room always in the same one (of
 * STORE_LANES). A lane with a batch in flight sends nothing more until
 * that batch is answered: a room's messages commit in the order they were
 * sent, whichever pool connection carries them.
 *
 * Group commit: while batches commit (an fsync), new messages gather and
 * leave together as the next batch. Idle, a message leaves at the end of
 * its loop turn alone. Busy, one batch at a time is the cheapest: a call
 * costs PostgreSQL the CPU of about seven messages, and parallel calls on
 * a busy core make every one of them slower. So a second batch (on
 * another connection) leaves only for a backlog of STORE_SPREAD_AT ready
 * messages, and never more than STORE_MAX_INFLIGHT: two let one batch's
 * fsync overlap the other's work, more only add calls
 * (docs/performance.md, "Store batches"). */
#define STORE_LANES 64
#define STORE_MAX_CONNS 64
#define STORE_SPREAD_AT 32
#define STORE_MAX_INFLIGHT 2

struct lane {
    struct post_req *head, *tail;
    int npending;
    int inflight;           /* batches in flight holding it */
    int changes;            /* edits and deletes in flight */
    int change_conn;        /* the connection they travel on, while changes > 0 */
};

/* Edits and deletes are rarer and each its own transaction. */
struct change_req {
    struct change_req *prev, *next; /* in s->changes */
    struct store *s;                /* NULL once the store is gone */
    uint32_t lane;
    store_change_fn fn;
    void *arg;
    enum metric_id stored;
};

struct store {
    struct worker *w;
    int nconns;
    int inflight;           /* batches in flight */
    struct batch *flying;   /* the same, linked */
    struct change_req *changes; /* edits and deletes in flight, linked */
    uint32_t next_lane;     /* where the next batch starts taking: fairness */
    struct lane lanes[STORE_LANES];
    int conn_inflight[STORE_MAX_CONNS];
    struct event *flush_ev;
};

static uint32_t room_lane(const char *room)
{
    return fnv1a_str(room) % STORE_LANES;
}

static void dispatch(struct store *s);

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dispatch(arg);
}

/* Counts a batch in flight (delta 1) or out of it (-1): in all, on its
 * connection and in each of its lanes. */
static void count_in_flight(struct store *s, struct batch *b, int delta)
{
    if (delta > 0) {
        b->prev = NULL;
        b->next = s->flying;
        if (s->flying) s->flying->prev = b;
        s->flying = b;
    } else {
        if (b->prev) b->prev->next = b->next;
        else s->flying = b->next;
        if (b->next) b->next->prev = b->prev;
    }
    s->inflight += delta;
    s->conn_inflight[b->conn] += delta;
    for (uint32_t i = 0; i < STORE_LANES; i++)
        if (b->lanes & (UINT64_C(1) << i)) s->lanes[i].inflight += delta;
}

/* A batch is answered: the requests still in it are answered unavailable
 * (NULL slots were answered already), its lanes and connection are free
 * again, and what waited may leave. */
static void batch_done(struct batch *b)
{
    struct store *s = b->s;
    for (int i = 0; i < b->n; i++) {
        if (!b->reqs[i]) continue;
        b->reqs[i]->fn(b->reqs[i]->arg, NULL);
        free(b->reqs[i]);
    }
    if (!s) {
        /* Answered by the pool as it goes, after the store went. */
        free(b);
        return;
    }
    count_in_flight(s, b, -1);
    free(b);
    dispatch(s);
}

struct store *store_new(struct worker *w)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->w = w;
    s->nconns = w->cfg->pg_pool_size < STORE_MAX_CONNS ? w->cfg->pg_pool_size : STORE_MAX_CONNS;
    if (s->nconns < 1) s->nconns = 1;
    s->flush_ev = event_new(w->base, -1, 0, on_flush, s);
    if (!s->flush_ev) {
        free(s);
        return NULL;
    }
    return s;
}

bool store_idle(const struct store *s)
{
    if (!s) return true;
    /* A change sent is committed even if we go: it must be announced. */
    if (s->inflight > 0 || s->changes) return false;
    for (int i = 0; i < STORE_LANES; i++)
        if (s->lanes[i].head) return false;
    return true;
}

void store_free(struct store *s)
{
    if (!s) return;
    /* Batches in flight are answered when the pool goes, later: they
     * must not find the store then. */
    for (struct batch *b = s->flying; b; b = b->next) b->s = NULL;
    for (struct change_req *cr = s->changes; cr; cr = cr->next) cr->s = NULL;
    for (int i = 0; i < STORE_LANES; i++) {
        while (s->lanes[i].head) {
            struct post_req *r = s->lanes[i].head;
            s->lanes[i].head = r->next;
            r->fn(r->arg, NULL);
            free(r);
        }
    }
    event_free(s->flush_ev);
    free(s);
}

static bool result_ok(PGresult *r)
{
    return r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
}

static void resend_one_by_one(struct store *s, struct batch *b);

/* A batch's results: one chat_post_batch result with a row per message,
 * or (per_message) a chat_post_one result with one row per message. NULL
 * when they are not all there and well. */
static const char *batch_failure(const struct batch *b, PGresult *const *res, int n,
                                 bool *per_message)
{
    *per_message = n == b->n && n > 1;
    if (!*per_message && n != 1) return "unexpected results";
    for (int k = 0; k < n; k++) {
        if (!res[k] || PQresultStatus(res[k]) != PGRES_TUPLES_OK)
            return res[k] ? PQresultErrorMessage(res[k]) : "no result";
        if (PQntuples(res[k]) != (*per_message ? 1 : b->n)) return "missing rows";
    }
    return NULL;
}

static void on_batch(void *arg, PGresult *const *res, int n, const char *err)
{
    struct batch *b = arg;
    bool per_message = false;
    const char *failure = res ? batch_failure(b, res, n, &per_message) : err;
    if (failure) {
        /* The batch is one transaction: nothing of it was stored. When
         * the link still stands, one message was bad, not the database:
         * give every message its own transaction. */
        if (res && b->n > 1 && b->s) {
            log_warn("message batch of %d failed (%s); storing them one by one", b->n, failure);
            resend_one_by_one(b->s, b);
            return;
        }
        if (res) log_warn("storing a message failed: %s", failure);
        else if (err) log_debug("message batch lost: %s", err);
        batch_done(b);
        return;
    }
    metrics_add(METRIC_MESSAGE_BATCHES, 1);
    metrics_observe_us(METRIC_HIST_MESSAGE_COMMIT, (uint64_t)(timefmt_mono_us() - b->sent_us));
    for (int k = 0; k < n; k++) {
        PGresult *r = res[k];
        for (int row = 0; row < PQntuples(r); row++) {
            /* chat_post_one's row is always ord 1: its place is its result's. */
            long ord = per_message ? k + 1 : strtol(PQgetvalue(r, row, 0), NULL, 10);
            if (ord < 1 || ord > b->n || !b->reqs[ord - 1]) continue;
            struct store_change ch = {
                .status = "ok",
                .id = strtoll(PQgetvalue(r, row, 1), NULL, 10),
                .seq = strtoll(PQgetvalue(r, row, 2), NULL, 10),
                .at = PQgetvalue(r, row, 3),
                .payload = PQgetisnull(r, row, 4) ? NULL : PQgetvalue(r, row, 4),
                .duplicate = PQgetvalue(r, row, 5)[0] == 't',
            };
            if (!ch.duplicate) metrics_add(METRIC_MESSAGES_STORED, 1);
            struct post_req *req = b->reqs[ord - 1];
            b->reqs[ord - 1] = NULL;
            req->fn(req->arg, &ch);
            free(req);
        }
    }
    /* A row the functions did not return (they return every one) would
     * leave its request unanswered: batch_done answers it unavailable. */
    batch_done(b);
}

static void send_batch(struct store *s, struct batch *b);

/* The batch as chat_post_batch's argument: [[room, user, name, text,
 * ref], ...]. Returns a malloc'd string or NULL. */
static char *batch_json(const struct batch *b)
{
    /* Escaping grows a byte to at most 6 (\u00XX). */
    size_t cap = 16;
    for (int i = 0; i < b->n; i++)
        for (int k = 0; k < 5; k++)
            cap += (b->reqs[i]->values[k] ? strlen(b->reqs[i]->values[k]) * 6 : 0) + 8;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    struct jsonw w;
    jsonw_init(&w, buf, cap);
    jsonw_raw(&w, "[");
    for (int i = 0; i < b->n; i++) {
        jsonw_raw(&w, i ? ",[" : "[");
        for (int k = 0; k < 5; k++) {
            if (k) jsonw_raw(&w, ",");
            if (b->reqs[i]->values[k]) jsonw_cstr(&w, b->reqs[i]->values[k]);
            else jsonw_raw(&w, "null");
        }
        jsonw_raw(&w, "]");
    }
    jsonw_raw(&w, "]");
    if (jsonw_finish(&w) < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* On the connection b is counted on (or, while it is down, another the
 * pool picks; b->via says which), or, pinned, on b->via exactly. */
static int exec_batch(struct store *s, struct batch *b, const struct pg_stmt *stmts, int n)
{
    if (b->pinned) return pg_pool_exec_at(s->w->pg, b->via, stmts, n, on_batch, b);
    b->via = pg_pool_exec_on(s->w->pg, b->conn, stmts, n, on_batch, b);
    return b->via;
}

static void send_batch(struct store *s, struct batch *b)
{
    count_in_flight(s, b, 1);
    b->sent_us = timefmt_mono_us();
    if (b->n <= STORE_POST_ONE_MAX) {
        /* A small batch: a chat_post_one call per message, all in the
         * request's one transaction. They cost PostgreSQL less than
         * chat_post_batch up to about this size (less than half for one
         * or two messages), and need no JSON. The batch is sorted by
         * room, so its calls lock rooms in the order chat_post_batch
         * does (byte order, new rooms included: migration 006):
         * concurrent batches cannot deadlock. */
        struct pg_stmt stmts[STORE_POST_ONE_MAX];
        for (int i = 0; i < b->n; i++)
            stmts[i] = (struct pg_stmt){.prepared = STORE_POST_ONE, .nparams = 5, .values = b->reqs[i]->values};
        if (exec_batch(s, b, stmts, b->n) < 0) batch_done(b);
        return;
    }
    char *json = batch_json(b);
    if (!json) {
        batch_done(b);
        return;
    }
    const char *values[1] = {json};
    struct pg_stmt stmt = {.prepared = STORE_POST, .nparams = 1, .values = values};
    int r = exec_batch(s, b, &stmt, 1);
    free(json); /* libpq copied it into its output buffer */
    if (r < 0) batch_done(b);
}

static void resend_one_by_one(struct store *s, struct batch *b)
{
    for (int i = 0; i < b->n; i++) {
        struct batch *one = malloc(sizeof *one);
        if (!one) continue; /* batch_done answers it unavailable */
        /* On the connection that carried the batch, in order, each
         * holding its lane: the lanes stay closed until the last of them
         * is answered. Pinned: left to the pool, a down b->conn would
         * send each to whichever connection is least busy, and a room's
         * messages could commit out of order. */
        one->s = s;
        one->conn = b->conn;
        one->via = b->via;
        one->pinned = true;
        one->lanes = UINT64_C(1) << room_lane(b->reqs[i]->values[0]);
        one->n = 1;
        one->reqs[0] = b->reqs[i];
        b->reqs[i] = NULL;
        send_batch(s, one);
    }
    /* The failed batch is answered; its messages are in flight again. */
    batch_done(b);
}

/* Orders a batch by room, keeping each room's messages in arrival order
 * (insertion sort: stable, and batches are small). */
static void sort_by_room(struct batch *b)
{
    for (int i = 1; i < b->n; i++) {
        struct post_req *r = b->reqs[i];
        int j = i - 1;
        while (j >= 0 && strcmp(b->reqs[j]->values[0], r->values[0]) > 0) {
            b->reqs[j + 1] = b->reqs[j];
            j--;
        }
        b->reqs[j + 1] = r;
    }
}

/* Messages ready to leave: those of lanes with nothing in flight. */
static int ready_count(const struct store *s)
{
    int n = 0;
    for (int i = 0; i < STORE_LANES; i++)
        if (s->lanes[i].inflight == 0) n += s->lanes[i].npending;
    return n;
}

static int free_conn(const struct store *s)
{
    for (int i = 0; i < s->nconns; i++)
        if (s->conn_inflight[i] == 0) return i;
    return -1;
}

/* Takes up to BATCH_MAX ready messages, whole lanes first come (from a
 * rotating start, so that no lane waits behind the others for ever). */
static void take_ready(struct store *s, struct batch *b)
{
    for (uint32_t k = 0; k < STORE_LANES && b->n < BATCH_MAX; k++) {
        uint32_t i = (s->next_lane + k) % STORE_LANES;
        struct lane *q = &s->lanes[i];
        if (q->inflight > 0 || q->npending == 0) continue;
        b->lanes |= UINT64_C(1) << i;
        while (q->head && b->n < BATCH_MAX) {
            b->reqs[b->n++] = q->head;
            q->head = q->head->next;
            q->npending--;
        }
        if (!q->head) q->tail = NULL;
    }
    s->next_lane = (s->next_lane + 1) % STORE_LANES;
}

/* Out of memory with nothing in flight, nothing would try again: the
 * ready messages are answered unavailable (their senders may retry). */
static void fail_ready(struct store *s)
{
    for (int i = 0; i < STORE_LANES; i++) {
        struct lane *q = &s->lanes[i];
        if (q->inflight > 0) continue;
        while (q->head) {
            struct post_req *r = q->head;
            q->head = r->next;
            q->npending--;
            r->fn(r->arg, NULL);
            free(r);
        }
        q->tail = NULL;
    }
}

/* Sends what is ready: always when nothing is in flight, on more
 * connections only for a backlog (see STORE_SPREAD_AT). */
static void dispatch(struct store *s)
{
    for (;;) {
        int ready = ready_count(s);
        if (ready == 0 || s->inflight >= STORE_MAX_INFLIGHT) return;
        if (s->inflight > 0 && ready < STORE_SPREAD_AT) return;
        int conn = free_conn(s);
        if (conn < 0) return;
        struct batch *b = malloc(sizeof *b);
        if (!b) {
            /* A batch being answered tries again; with none in flight
             * nothing would. */
            if (s->inflight == 0) fail_ready(s);
            return;
        }
        b->s = s;
        b->conn = (uint32_t)conn;
        b->via = -1;
        b->pinned = false;
        b->lanes = 0;
        b->n = 0;
        take_ready(s, b);
        sort_by_room(b);
        send_batch(s, b);
    }
}

static char *copy_into(char *dst, const char *src, const char **slot)
{
    if (!src) {
        *slot = NULL;
        return dst;
    }
    size_t n = strlen(src) + 1;
    memcpy(dst, src, n);
    *slot = dst;
    return dst + n;
}

int store_post(struct store *s, const char *room, const char *user_id, const char *user_name,
               const char *text, const char *ref, store_change_fn fn, void *arg)
{
    if (!pg_pool_up(s->w->pg)) return -1;
    const char *src[5] = {room, user_id, user_name, text, ref};
    size_t size = 0;
    for (int i = 0; i < 5; i++) size += src[i] ? strlen(src[i]) + 1 : 0;
    struct post_req *r = malloc(sizeof *r + size);
    if (!r) return -1;
    r->next = NULL;
    r->fn = fn;
    r->arg = arg;
    char *p = r->buf;
    for (int i = 0; i < 5; i++) p = copy_into(p, src[i], &r->values[i]);
    struct lane *q = &s->lanes[room_lane(room)];
    if (q->tail) q->tail->next = r;
    else q->head = r;
    q->tail = r;
    q->npending++;
    /* Everything queued in this loop turn leaves together at its end; a
     * lane with a batch in flight sends the rest when that one is done
     * (batch_done). Activating an active event again is a no-op. */
    if (q->inflight == 0) event_active(s->flush_ev, 0, 0);
    return 0;
}

static void change_done(struct change_req *cr)
{
    struct store *s = cr->s;
    if (!s) return;
    s->lanes[cr->lane].changes--;
    if (cr->prev) cr->prev->next = cr->next;
    else s->changes = cr->next;
    if (cr->next) cr->next->prev = cr->prev;
}

static void on_change(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    struct change_req *cr = arg;
    change_done(cr);
    if (!res || n != 1 || !result_ok(res[0])) {
        if (res && n == 1 && res[0] && PQresultStatus(res[0]) == PGRES_FATAL_ERROR)
            log_warn("change failed: %s", PQresultErrorMessage(res[0]));
        cr->fn(cr->arg, NULL);
        free(cr);
        return;
    }
    PGresult *r = res[0];
    struct store_change ch = {
        .status = PQgetvalue(r, 0, 0),
        .seq = PQgetisnull(r, 0, 1) ? 0 : strtoll(PQgetvalue(r, 0, 1), NULL, 10),
        .at = PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2),
        .payload = PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3),
    };
    if (strcmp(ch.status, "ok") == 0) metrics_add(cr->stored, 1);
    cr->fn(cr->arg, &ch);
    free(cr);
}

/* values[0] is the room: a room's changes commit in the order they were
 * made. They travel on its lane's connection; while one is in flight the
 * next follows it on the same connection, even if the lane's own came
 * back meanwhile (it could overtake the one still queued elsewhere). */
static int exec_change(struct store *s, enum store_stmt stmt, int nparams, const char *const *values,
                       enum metric_id stored, store_change_fn fn, void *arg)
{
    struct change_req *cr = malloc(sizeof *cr);
    if (!cr) return -1;
    cr->s = s;
    cr->lane = room_lane(values[0]);
    cr->fn = fn;
    cr->arg = arg;
    cr->stored = stored;
    struct lane *q = &s->lanes[cr->lane];
    struct pg_stmt st = {.prepared = (int)stmt, .nparams = nparams, .values = values};
    int conn = q->changes > 0 ? pg_pool_exec_at(s->w->pg, q->change_conn, &st, 1, on_change, cr)
                              : pg_pool_exec_on(s->w->pg, cr->lane, &st, 1, on_change, cr);
    if (conn < 0) {
        free(cr);
        return -1;
    }
    q->change_conn = conn;
    q->changes++;
    cr->prev = NULL;
    cr->next = s->changes;
    if (s->changes) s->changes->prev = cr;
    s->changes = cr;
    return 0;
}

int store_edit(struct store *s, const char *room, int64_t id, const char *user_id,
               const char *text, int window_s, const char *ref, store_change_fn fn, void *arg)
{
    char id_s[24], window[16];
    snprintf(id_s, sizeof id_s, "%" PRId64, id);
    snprintf(window, sizeof window, "%d", window_s);
    const char *values[6] = {room, id_s, user_id, text, window, ref};
    return exec_change(s, STORE_EDIT, 6, values, METRIC_EDITS_STORED, fn, arg);
}

int store_delete(struct store *s, const char *room, int64_t id, const char *user_id, bool any,
                 const char *ref, store_change_fn fn, void *arg)
{
    char id_s[24];
    snprintf(id_s, sizeof id_s, "%" PRId64, id);
    const char *values[5] = {room, id_s, user_id, any ? "true" : "false", ref};
    return exec_change(s, STORE_DELETE, 5, values, METRIC_DELETES_STORED, fn, arg);
}

int store_last_seq(struct store *s, const char *room, pg_done_fn fn, void *arg)
{
    const char *values[1] = {room};
    return pg_pool_query(s->w->pg, STORE_LAST_SEQ, NULL, 1, values, fn, arg);
}

int store_events(struct store *s, const char *room, int64_t from_seq, int64_t limit, pg_done_fn fn,
                 void *arg)
{
    char from[24], lim[24];
    snprintf(from, sizeof from, "%" PRId64, from_seq);
    snprintf(lim, sizeof lim, "%" PRId64, limit);
    const char *values[3] = {room, from, lim};
    return pg_pool_query(s->w->pg, STORE_EVENTS, NULL, 3, values, fn, arg);
}

int store_replay(struct store *s, const char *room, int64_t since, int max, pg_done_fn fn,
                 void *arg)
{
    char since_s[24], max_s[16];
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    snprintf(max_s, sizeof max_s, "%d", max);
    const char *values[3] = {room, since_s, max_s};
    return pg_pool_query(s->w->pg, STORE_REPLAY, NULL, 3, values, fn, arg);
}

int store_history(struct store *s, const char *room, int limit, const int64_t *before,
                  const int64_t *after, bool with_deleted, pg_done_fn fn, void *arg)
{
    char lim[16], bef[24], aft[24];
    snprintf(lim, sizeof lim, "%d", limit);
    if (before) snprintf(bef, sizeof bef, "%" PRId64, *before);
    if (after) snprintf(aft, sizeof aft, "%" PRId64, *after);
    const char *values[5] = {room, lim, before ? bef : NULL, after ? aft : NULL,
                             with_deleted ? "true" : "false"};
    return pg_pool_query(s->w->pg, STORE_HISTORY, NULL, 5, values, fn, arg);
}

int store_room_seqs(struct store *s, const char *rooms_array, pg_done_fn fn, void *arg)
{
    const char *values[1] = {rooms_array};
    return pg_pool_query(s->w->pg, STORE_ROOM_SEQS, NULL, 1, values, fn, arg);
}

#include "worker/chat_session.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "shared/jsonw.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"
#include "shared/utf8.h"
#include "worker/chat_request.h"
#include "worker/conn.h"
#include "worker/hub.h"
#include "worker/presence.h"
#include "worker/store.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"
#include "worker/ws_frame.h"

/* ---- connection ids ----------------------------------------------------
 * A conn_id is a version 4 UUID whose first half is random per worker
 * process and whose second half is the connection's number in it. So a
 * worker tells its own connections from the id alone (typing skips its
 * sender without any lookup table). */

static uint64_t worker_half;

static void ensure_worker_half(void)
{
    while (worker_half == 0) {
        uint64_t v;
        if (getrandom(&v, sizeof v, 0) != sizeof v) v = (uint64_t)timefmt_now_ms() ^ (uint64_t)getpid();
        /* Version 4 in the high nibble of the third group. */
        worker_half = (v & ~0xF000ull) | 0x4000ull;
    }
}

static void format_conn_id(uint64_t local, char out[37])
{
    ensure_worker_half();
    /* Variant bits 10 in the first two bits of the fourth group. */
    uint64_t lo = (local & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
    snprintf(out, 37, "%08" PRIx32 "-%04" PRIx32 "-%04" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
             (uint32_t)(worker_half >> 32), (uint32_t)(worker_half >> 16) & 0xFFFF,
             (uint32_t)worker_half & 0xFFFF, (uint32_t)(lo >> 48), (uint64_t)(lo & 0xFFFFFFFFFFFFull));
}

uint64_t chat_conn_id_local(struct worker *w, const char *id)
{
    (void)w;
    ensure_worker_half();
    unsigned a, b, c, d;
    unsigned long long e;
    if (strlen(id) != 36 || sscanf(id, "%8x-%4x-%4x-%4x-%12llx", &a, &b, &c, &d, &e) != 5) return 0;
    uint64_t hi = ((uint64_t)a << 32) | ((uint64_t)b << 16) | c;
    if (hi != worker_half) return 0;
    return (((uint64_t)d << 48) | e) & 0x3FFFFFFFFFFFFFFFull;
}

/* ---- life -------------------------------------------------------------- */

struct chat_queued {
    struct chat_queued *next;
    int64_t seq;
    struct ws_shared *frame;
};

struct chat_session *chat_session_new(const struct jwt_claims *claims, const char *room,
                                      bool has_since, int64_t since)
{
    size_t lr = strlen(room) + 1, li = strlen(claims->sub) + 1, ln = strlen(claims->name) + 1;
    struct chat_session *s = calloc(1, sizeof *s + lr + li + ln);
    if (!s) return NULL;
    s->role = (uint8_t)claims->role;
    s->has_since = has_since;
    s->since = since;
    char *p = s->strings;
    s->room_name = memcpy(p, room, lr);
    s->user_id = memcpy(p + lr, claims->sub, li);
    s->user_name = memcpy(p + lr + li, claims->name, ln);
    return s;
}

/* A replay's events, sent as fast as the connection drains: at once, a
 * replay_max of long messages (up to 8 KB each) can be more than
 * max_outbuf_bytes, and a client reading as fast as it can would be
 * closed with 1013, to reconnect into the same replay. What waits here
 * is bounded by replay_max. */
struct chat_replay {
    uint32_t n, next;
    struct ws_shared *frames[];
};

static void drop_replay(struct chat_session *s)
{
    struct chat_replay *rp = s->replay;
    if (!rp) return;
    s->replay = NULL;
    for (uint32_t i = rp->next; i < rp->n; i++) ws_shared_release(rp->frames[i]);
    free(rp);
}

static void drop_queue(struct chat_session *s)
{
    drop_replay(s);
    while (s->queue) {
        struct chat_queued *q = s->queue;
        s->queue = q->next;
        ws_shared_release(q->frame);
        free(q);
    }
    s->queue_tail = NULL;
    s->queued = 0;
}

void chat_session_free(struct chat_session *s)
{
    if (!s) return;
    drop_queue(s);
    free(s->online);
    free(s);
}

void chat_session_conn_id(const struct chat_session *s, char out[37])
{
    format_conn_id(ws_conn_id(s->c), out);
}

void chat_session_open(struct conn *c)
{
    struct chat_session *s = ws_conn_chat(c);
    s->c = c;
    metrics_gauge(METRIC_WS_OPEN, 1);
    if (hub_join(c->w->hub, s, s->room_name) < 0) {
        ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "out of memory");
        return;
    }
    chat_session_listening(s);
}

void chat_session_listening(struct chat_session *s)
{
    /* The join reads the room's online list: read before the room
     * listens, the joins and leaves between the two would never reach
     * this client. Otherwise the hub calls again once it listens. */
    if (s->state != CHAT_WAITING || s->join_pending || s->online_known) return;
    if (hub_room_listening(s->room)) presence_join(s->c->w, s);
}

void chat_session_closing(struct conn *c)
{
    struct chat_session *s = ws_conn_chat(c);
    if (!s || s->state == CHAT_CLOSED) return;
    s->state = CHAT_CLOSED;
    metrics_gauge(METRIC_WS_OPEN, -1);
    drop_queue(s);
    presence_leave(c->w, s);
    hub_leave(c->w->hub, s);
}

static void replay_pump(struct chat_session *s);
static void go_live(struct chat_session *s);

void chat_session_on_drain(struct conn *c)
{
    struct chat_session *s = ws_conn_chat(c);
    if (!s || s->state != CHAT_REPLAYING) return;
    if (s->replay) replay_pump(s);
    /* Not before the replay was read: the live events wait behind it. */
    else if ((!s->has_since || s->replay_read) && (s->queue || s->replay_overflow)) go_live(s);
}

/* ---- welcome and catching up ------------------------------------------ */

static void send_json(struct chat_session *s, const char *json, size_t len)
{
    ws_conn_send_text(s->c, json, len);
}

static void send_welcome(struct chat_session *s, int64_t last_seq)
{
    char conn_id[37];
    chat_session_conn_id(s, conn_id);
    const char *online = s->online ? s->online : "[]";
    size_t online_len = strlen(online);
    /* The strings as escaped, and 256 for the keys, conn_id, role and
     * last_seq. */
    size_t cap = online_len + jsonw_str_len(s->room_name, strlen(s->room_name)) +
                 jsonw_str_len(s->user_id, strlen(s->user_id)) +
                 jsonw_str_len(s->user_name, strlen(s->user_name)) + 256;
    char *text = malloc(cap);
    if (!text) {
        ws_conn_close(s->c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    struct jsonw jw;
    jsonw_init(&jw, text, cap);
    jsonw_raw(&jw, "{\"type\":\"welcome\",\"conn_id\":");
    jsonw_cstr(&jw, conn_id);
    jsonw_raw(&jw, ",\"room\":");
    jsonw_cstr(&jw, s->room_name);
    jsonw_raw(&jw, ",\"user\":{\"id\":");
    jsonw_cstr(&jw, s->user_id);
    jsonw_raw(&jw, ",\"name\":");
    jsonw_cstr(&jw, s->user_name);
    jsonw_raw(&jw, ",\"role\":");
    jsonw_cstr(&jw, jwt_role_name((enum jwt_role)s->role));
    jsonw_raw(&jw, "},\"online\":");
    jsonw_rawn(&jw, online, online_len);
    jsonw_raw(&jw, ",\"last_seq\":");
    jsonw_i64(&jw, last_seq);
    jsonw_raw(&jw, "}");
    long n = jsonw_finish(&jw);
    free(s->online);
    s->online = NULL;
    if (n < 0) { /* cannot happen: cap holds it all */
        free(text);
        ws_conn_close(s->c, WS_CLOSE_INTERNAL, "welcome too large");
        return;
    }
    ws_conn_send_welcome(s->c, text, (size_t)n);
    free(text);
}

/* Sends the live events held for the welcome or the replay, as fast as
 * the connection drains (up to CHAT_REPLAY_QUEUE_MAX of them could be too
 * many at once for max_outbuf_bytes), then the session is live. Until
 * then it is CHAT_REPLAYING: new events join the end of the queue, and
 * chat_session_on_drain comes back here. */
static void go_live(struct chat_session *s)
{
    s->state = CHAT_REPLAYING;
    if (s->replay_overflow) {
        /* Some were dropped: a join or leave missed would leave the
         * client's online list wrong for good. Sending the rest first
         * would only delay that. */
        ws_conn_close(s->c, WS_CLOSE_TRY_AGAIN_LATER, "fell behind while catching up; reconnect");
        return;
    }
    while (s->queue) {
        /* Either may end the session, which empties the queue. */
        if (ws_conn_backlogged(s->c) || s->state != CHAT_REPLAYING) return;
        struct chat_queued *q = s->queue;
        s->queue = q->next;
        if (!s->queue) s->queue_tail = NULL;
        s->queued--;
        /* Changes up to replay_upto are folded into the replay already. */
        int r = q->seq == 0 || q->seq > s->replay_upto ? ws_conn_send_shared(s->c, q->frame) : 0;
        ws_shared_release(q->frame);
        free(q);
        if (r < 0 || s->state != CHAT_REPLAYING) return;
    }
    /* No overflow can have come meanwhile: sends deliver nothing here. */
    s->state = CHAT_LIVE;
}

static void send_resync(struct chat_session *s, int64_t last_seq)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "{\"type\":\"resync\",\"last_seq\":%" PRId64 "}", last_seq);
    send_json(s, buf, (size_t)n);
}

/* Sends replay events while the connection keeps up; the rest waits for
 * chat_session_on_drain. Then the live events held meanwhile. */
static void replay_pump(struct chat_session *s)
{
    struct chat_replay *rp = s->replay;
    while (rp->next < rp->n) {
        /* Either may end the session, which frees rp: not touched after. */
        if (ws_conn_backlogged(s->c) || s->state != CHAT_REPLAYING) return;
        struct ws_shared *f = rp->frames[rp->next++];
        int r = ws_conn_send_shared(s->c, f);
        ws_shared_release(f);
        if (r < 0 || s->state != CHAT_REPLAYING) return;
    }
    drop_replay(s);
    go_live(s);
}

/* Rows 1.. of r are the replay's events as JSON text (column 2). */
static int start_replay(struct chat_session *s, PGresult *r, int rows)
{
    uint32_t n = (uint32_t)(rows - 1);
    struct chat_replay *rp = malloc(sizeof *rp + n * sizeof rp->frames[0]);
    if (!rp) return -1;
    rp->n = rp->next = 0;
    for (int i = 1; i < rows; i++) {
        struct ws_shared *f = ws_shared_new_text(PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
        if (!f) {
            while (rp->n > 0) ws_shared_release(rp->frames[--rp->n]);
            free(rp);
            return -1;
        }
        rp->frames[rp->n++] = f;
    }
    s->replay = rp;
    replay_pump(s);
    return 0;
}

static void on_replay(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    struct conn *c = arg;
    struct chat_session *s = ws_conn_chat(c);
    if (c->closed || !s || s->state != CHAT_REPLAYING) {
        conn_unref(c);
        return;
    }
    if (!res || n != 1 || !res[0] || PQresultStatus(res[0]) != PGRES_TUPLES_OK ||
        PQntuples(res[0]) < 1) {
        ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "history unavailable; reconnect later");
        conn_unref(c);
        return;
    }
    PGresult *r = res[0];
    int rows = PQntuples(r);
    int64_t last = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    s->replay_upto = last;
    s->replay_read = true;
    /* Row 0 only carries last_seq; the rest are events in seq order. */
    if (s->replay_overflow) {
        /* Live events were dropped while we read: only a fresh start is
         * correct now. */
        ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "fell behind while catching up; reconnect");
        conn_unref(c);
        return;
    }
    if (s->since > last || rows - 1 > c->w->cfg->replay_max) {
        send_resync(s, last);
        if (s->state == CHAT_REPLAYING) go_live(s);
    } else if (start_replay(s, r, rows) < 0) {
        ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "out of memory; reconnect");
    }
    conn_unref(c);
}

static void welcome_when_known(struct chat_session *s);

void chat_session_ready(struct chat_session *s)
{
    if (s->pos_known || s->state != CHAT_WAITING) return;
    s->pos_known = true;
    welcome_when_known(s);
}

void chat_session_online_ready(struct chat_session *s, char *online)
{
    if (s->online_known || s->state != CHAT_WAITING) {
        free(online);
        return;
    }
    s->online_known = true;
    s->online = online;
    welcome_when_known(s);
}

static void welcome_when_known(struct chat_session *s)
{
    if (!s->pos_known || !s->online_known || !s->room) return;
    /* The room's position now, not when the hub first told us: changes
     * delivered meanwhile did not reach this waiting session, and the
     * welcome must not promise them. */
    int64_t last_seq = hub_room_last_seq(s->room);
    s->last_typing_ms = 0; /* was waiting_since_ms */
    send_welcome(s, last_seq);
    if (s->c->closed || s->state == CHAT_CLOSED) return;
    if (!s->has_since) {
        /* What waited with the welcome (joins, leaves and notices that
         * raced its online list) goes out now, after it. */
        s->replay_upto = last_seq;
        go_live(s);
        ws_conn_resume_read(s->c);
        return;
    }
    s->state = CHAT_REPLAYING;
    s->replay_upto = last_seq;
    ws_conn_resume_read(s->c);
    conn_ref(s->c);
    if (store_replay(s->c->w->store, s->room_name, s->since, s->c->w->cfg->replay_max, on_replay,
                     s->c) < 0) {
        conn_unref(s->c);
        ws_conn_close(s->c, WS_CLOSE_TRY_AGAIN_LATER, "history unavailable; reconnect later");
    }
}

void chat_session_deliver(struct chat_session *s, int64_t seq, struct ws_shared *frame,
                          bool optional)
{
    switch (s->state) {
    case CHAT_LIVE:
        /* The client has every change up to replay_upto already: the
         * welcome's last_seq, or what a replay read from PostgreSQL, which
         * may be ahead of what the hub has delivered so far. */
        if (seq > 0 && seq <= s->replay_upto) return;
        if (optional && ws_conn_congested(s->c)) return;
        ws_conn_send_shared(s->c, frame);
        return;
    case CHAT_WAITING:
        /* Changes before the welcome are covered by its last_seq; but a
         * join or leave racing the welcome's online list must not be lost
         * (sent twice is harmless: clients keep a set). */
        if (seq > 0) return;
        /* fall through */
    case CHAT_REPLAYING: {
        if (optional) return;
        if (s->queued >= CHAT_REPLAY_QUEUE_MAX) {
            s->replay_overflow = true;
            return;
        }
        struct chat_queued *q = malloc(sizeof *q);
        if (!q) {
            s->replay_overflow = true;
            return;
        }
        q->next = NULL;
        q->seq = seq;
        q->frame = frame;
        frame->refs++;
        if (s->queue_tail) s->queue_tail->next = q;
        else s->queue = q;
        s->queue_tail = q;
        s->queued++;
        return;
    }
    default: return;
    }
}

/* ---- client frames ----------------------------------------------------- */

void chat_session_on_text(struct conn *c, const char *data, size_t len)
{
    struct chat_session *s = ws_conn_chat(c);
    if (!s || s->state == CHAT_CLOSED) return;
    chat_request_handle(c, s, data, len);
}

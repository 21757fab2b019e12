#include "worker/hub.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "shared/hash.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/room.h"
#include "shared/timefmt.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/redis_link.h"
#include "worker/store.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"
#include "worker/ws_frame.h"

#define HUB_BUCKETS 4096
/* After this many repair reads that did not fill a gap, give up on the
 * missing seq rather than stall the room (it is logged; it would mean
 * a change is missing from room_events). */
#define REPAIR_MAX_TRIES 5
/* A lost PUBLISH of a room's latest change leaves no later change to
 * reveal the gap, and the room could wait for ever. So this often the
 * rooms with local members compare their position with PostgreSQL's (one
 * query for all of them), and a room still behind what the previous sweep
 * saw, and that heard nothing since, reads what it missed. Waiting one
 * sweep leaves alone the changes whose PUBLISH is merely on its way; a
 * room still hearing changes is alive, and a change missing in the middle
 * of them shows as a gap in the reorder buffer. Under overload PUBLISHes
 * can lag a sweep or more, and reading them from PostgreSQL as well would
 * only add load where there is too much. A lost last change arrives
 * within three sweeps. */
#define HUB_SWEEP_MS 1000

struct buffered {
    struct buffered *next;
    int64_t seq;
    int64_t arrived_us;     /* the latency histogram counts the wait too */
    size_t len;
    char json[];
};

struct hub_room {
    struct hub_room *hnext;
    struct hub *hub;
    struct chat_session *members;
    uint32_t nmembers;
    bool subscribed;       /* SUBSCRIBE confirmed on the current link */
    bool sub_sent;         /* SUBSCRIBE sent on the current link, not confirmed yet */
    bool unsubscribing;    /* UNSUBSCRIBE sent, its reply not seen yet */
    bool querying;         /* a position or repair read is in flight */
    bool reread;           /* resubscribed during that read: read again after it */
    bool heard;            /* a change arrived since the last sweep */
    uint8_t repair_tries;
    int64_t next_seq;      /* next change to deliver; 0 = position unknown */
    int64_t sweep_seq;     /* PostgreSQL's seq at the last sweep if ahead of us, else 0 */
    struct buffered *buffered; /* changes ahead of next_seq, ascending */
    uint32_t nbuffered;
    struct event *gap_ev;
    struct event *idle_ev;
    char name[ROOM_NAME_MAX + 1];
};

/* A room without local members stays subscribed this long, so people
 * leaving and coming back (a page reload) cost no SUBSCRIBE round trip. */
#define ROOM_IDLE_MS 10000

/* A sweep in flight; hub_free detaches it, so its answer finds no hub. */
struct sweep_call {
    struct hub *hub;
};

struct hub {
    struct worker *w;
    struct hub_room *buckets[HUB_BUCKETS];
    struct event *sweep_ev;
    struct sweep_call *sweep;
    struct room_read *reads;   /* position and repair reads in flight */
    bool control_subscribed;
    bool control_sub_sent;
    hub_control_fn control_fn;
    hub_control_resumed_fn control_resumed_fn;
    uint64_t publishes;
    char control_channel[128];
};

static struct hub_room *find_room(const struct hub *h, const char *name)
{
    for (struct hub_room *r = h->buckets[fnv1a_str(name) % HUB_BUCKETS]; r; r = r->hnext)
        if (strcmp(r->name, name) == 0) return r;
    return NULL;
}

static void channel_of(const struct hub *h, const char *room, char *out, size_t n)
{
    snprintf(out, n, "%sroom:%s", h->w->cfg->redis_prefix, room);
}

/* The room name of one of our channels, or NULL. */
static const char *room_of_channel(const struct hub *h, const char *channel)
{
    const char *prefix = h->w->cfg->redis_prefix;
    size_t pl = strlen(prefix);
    if (strncmp(channel, prefix, pl) != 0 || strncmp(channel + pl, "room:", 5) != 0) return NULL;
    return channel + pl + 5;
}

/* ---- delivery ---------------------------------------------------------- */

static void deliver_frame(struct hub_room *r, int64_t seq, struct ws_shared *f,
                          uint64_t skip_conn, bool optional)
{
    struct chat_session *next;
    for (struct chat_session *s = r->members; s; s = next) {
        next = s->room_next;
        if (skip_conn && ws_conn_id(s->c) == skip_conn) continue;
        chat_session_deliver(s, seq, f, optional);
    }
}

static bool deliver_ex(struct hub_room *r, int64_t seq, const char *json, size_t len,
                       uint64_t skip_conn, int64_t started_us, bool optional);

/* Returns false when the frame could not be allocated: nobody has the
 * change, and a numbered one must not be counted as delivered. */
static bool deliver(struct hub_room *r, int64_t seq, const char *json, size_t len,
                    uint64_t skip_conn, int64_t started_us)
{
    return deliver_ex(r, seq, json, len, skip_conn, started_us, false);
}

static bool deliver_ex(struct hub_room *r, int64_t seq, const char *json, size_t len,
                       uint64_t skip_conn, int64_t started_us, bool optional)
{
    struct ws_shared *f = ws_shared_new_text(json, len);
    if (!f) {
        log_error("out of memory for an event of room %s", r->name);
        return false;
    }
    /* The room may lose members (slow consumers closed) while we go. */
    deliver_frame(r, seq, f, skip_conn, optional);
    ws_shared_release(f);
    if (started_us) metrics_observe_us(METRIC_HIST_BROADCAST, (uint64_t)(timefmt_mono_us() - started_us));
    return true;
}

static void start_repair(struct hub_room *r);
static void retry_later(struct hub_room *r);
static void subscribe_room(struct hub *h, struct hub_room *r);

/* Delivers what the buffer holds from next_seq on, in order. A change
 * whose frame could not be allocated stays first in the buffer, and the
 * gap timer below comes back for it. */
static void drain_buffered(struct hub_room *r)
{
    while (r->buffered && r->buffered->seq <= r->next_seq) {
        struct buffered *b = r->buffered;
        if (b->seq == r->next_seq) {
            if (!deliver(r, b->seq, b->json, b->len, 0, b->arrived_us)) break;
            r->next_seq++;
        }
        r->buffered = b->next;
        r->nbuffered--;
        free(b);
    }
    if (r->buffered && !r->querying && !evtimer_pending(r->gap_ev, NULL)) {
        struct timeval tv = {0, HUB_GAP_WAIT_MS * 1000};
        evtimer_add(r->gap_ev, &tv);
    }
}

static void buffer_change(struct hub_room *r, int64_t seq, const char *json, size_t len)
{
    struct buffered **pp = &r->buffered;
    while (*pp && (*pp)->seq < seq) pp = &(*pp)->next;
    if (*pp && (*pp)->seq == seq) return; /* already have it */
    if (r->nbuffered >= HUB_REORDER_MAX) {
        /* Too far behind to wait: read the gap now. */
        start_repair(r);
        return;
    }
    struct buffered *b = malloc(sizeof *b + len + 1);
    if (!b) return; /* the gap repair will read it back */
    b->seq = seq;
    b->arrived_us = timefmt_mono_us();
    b->len = len;
    memcpy(b->json, json, len);
    b->json[len] = '\0';
    b->next = *pp;
    *pp = b;
    r->nbuffered++;
}

static void on_change(struct hub_room *r, int64_t seq, const char *json, size_t len)
{
    r->heard = true;
    if (r->next_seq == 0 || seq > r->next_seq) {
        buffer_change(r, seq, json, len);
        if (r->next_seq) drain_buffered(r);
        return;
    }
    if (seq < r->next_seq) return; /* seen already (a repair got there first) */
    if (!deliver(r, seq, json, len, 0, timefmt_mono_us())) {
        /* Out of memory: kept for a retry if it can be, else the gap
         * repair or the sweep reads it back from PostgreSQL. */
        buffer_change(r, seq, json, len);
        retry_later(r);
        return;
    }
    r->next_seq++;
    drain_buffered(r);
}

/* ---- position and repair reads ----------------------------------------- */

/* Reads keep the room's name, not its pointer: the room may be gone when
 * the answer comes. The hub lists them, so that hub_free can detach them:
 * the pool answers reads in flight when it is freed, after the hub. */
struct room_read {
    struct room_read *prev, *next;
    struct hub *hub;
    char name[ROOM_NAME_MAX + 1];
};

static struct room_read *room_read_new(struct hub_room *r)
{
    struct room_read *rr = malloc(sizeof *rr);
    if (!rr) return NULL;
    rr->hub = r->hub;
    memcpy(rr->name, r->name, sizeof rr->name);
    rr->prev = NULL;
    rr->next = r->hub->reads;
    if (rr->next) rr->next->prev = rr;
    r->hub->reads = rr;
    return rr;
}

/* Ends a read: frees it and returns its room, NULL if that or the hub is gone. */
static struct hub_room *room_read_end(struct room_read *rr)
{
    struct hub *h = rr->hub;
    struct hub_room *r = NULL;
    if (h) {
        if (rr->prev) rr->prev->next = rr->next;
        else h->reads = rr->next;
        if (rr->next) rr->next->prev = rr->prev;
        r = find_room(h, rr->name);
    }
    free(rr);
    return r;
}

static void welcome_waiting(struct hub_room *r)
{
    struct chat_session *next;
    for (struct chat_session *s = r->members; s; s = next) {
        next = s->room_next;
        if (s->state == CHAT_WAITING) chat_session_ready(s);
    }
}

static void retry_later(struct hub_room *r)
{
    if (!evtimer_pending(r->gap_ev, NULL)) {
        struct timeval tv = {0, 200 * 1000};
        evtimer_add(r->gap_ev, &tv);
    }
}

/* A session waits for its room's subscription and position before its
 * welcome. While they cannot be had (PostgreSQL, the subscription link
 * down), a session that has waited this long is told to come back (close
 * 1013) instead of being left in silence; the room keeps trying. */
#define POSITION_PATIENCE_MS 2000

static void close_stale_waiting(struct hub_room *r)
{
    int64_t now = timefmt_mono_ms();
    struct chat_session *next;
    for (struct chat_session *s = r->members; s; s = next) {
        next = s->room_next;
        if (s->state == CHAT_WAITING && now - s->waiting_since_ms >= POSITION_PATIENCE_MS)
            ws_conn_close(s->c, WS_CLOSE_TRY_AGAIN_LATER, "room unavailable; reconnect later");
    }
}

static void position_unavailable(struct hub_room *r)
{
    close_stale_waiting(r);
    retry_later(r);
}

/* A read came back: the room it was for (NULL if gone since), and its
 * single result when that result has rows, else NULL (retry later). */
static struct hub_room *read_done(struct room_read *rr, PGresult *const *res, int n,
                                  PGresult **out)
{
    struct hub_room *r = room_read_end(rr);
    *out = NULL;
    if (!r) return NULL;
    r->querying = false;
    if (res && n == 1 && res[0] && PQresultStatus(res[0]) == PGRES_TUPLES_OK) *out = res[0];
    return r;
}

/* A read that was in flight when the room subscribed again saw the
 * database before the new SUBSCRIBE: what was published between the two
 * is read now, not when a later change shows the gap. */
static void reread_if_resubscribed(struct hub_room *r)
{
    if (!r->reread) return;
    r->reread = false;
    start_repair(r);
}

static void on_position(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    PGresult *pr;
    struct hub_room *r = read_done(arg, res, n, &pr);
    if (!r) return;
    /* Known already: this read was sent for an earlier room of the same
     * name (freed, then made again while it travelled), and another read
     * answered first. Taken now, it could move the position back. */
    if (r->next_seq != 0) return;
    if (!pr || PQntuples(pr) != 1) {
        log_warn("cannot read the position of room %s; retrying", r->name);
        position_unavailable(r);
        return;
    }
    int64_t last = strtoll(PQgetvalue(pr, 0, 0), NULL, 10);
    r->next_seq = last + 1;
    welcome_waiting(r);
    drain_buffered(r);
    reread_if_resubscribed(r);
}

static void on_repair(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    PGresult *pr;
    struct hub_room *r = read_done(arg, res, n, &pr);
    if (!r) return;
    if (!pr) {
        retry_later(r);
        return;
    }
    int rows = PQntuples(pr);
    int64_t before = r->next_seq;
    for (int i = 0; i < rows; i++) {
        int64_t seq = strtoll(PQgetvalue(pr, i, 0), NULL, 10);
        if (seq != r->next_seq) continue;
        if (!deliver(r, seq, PQgetvalue(pr, i, 1), (size_t)PQgetlength(pr, i, 1), 0, 0)) {
            retry_later(r); /* out of memory: read it again */
            return;
        }
        r->next_seq++;
    }
    if (r->next_seq > before) {
        metrics_add(METRIC_GAP_REPAIRS, 1);
        r->repair_tries = 0;
    }
    if (rows == HUB_REPAIR_BATCH) {
        /* There may be more after this page. */
        start_repair(r);
        return;
    }
    if (r->buffered && r->buffered->seq > r->next_seq && r->next_seq == before &&
        ++r->repair_tries >= REPAIR_MAX_TRIES) {
        log_error("room %s: changes %" PRId64 "..%" PRId64 " not found in room_events; skipping them",
                  r->name, r->next_seq, r->buffered->seq - 1);
        r->next_seq = r->buffered->seq;
        r->repair_tries = 0;
    }
    drain_buffered(r);
    reread_if_resubscribed(r);
}

/* Reads what is missing from next_seq on (after a gap, or after the
 * subscription link came back). */
static void start_repair(struct hub_room *r)
{
    if (r->querying || r->next_seq == 0) return;
    struct room_read *rr = room_read_new(r);
    if (!rr) {
        retry_later(r);
        return;
    }
    if (store_events(r->hub->w->store, r->name, r->next_seq, HUB_REPAIR_BATCH, on_repair, rr) < 0) {
        room_read_end(rr);
        retry_later(r);
        return;
    }
    r->querying = true;
}

static void read_position(struct hub_room *r)
{
    if (r->querying) return;
    struct room_read *rr = room_read_new(r);
    if (!rr) {
        position_unavailable(r);
        return;
    }
    if (store_last_seq(r->hub->w->store, r->name, on_position, rr) < 0) {
        room_read_end(rr);
        position_unavailable(r);
        return;
    }
    r->querying = true;
}

static void on_sweep(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    struct sweep_call *sc = arg;
    struct hub *h = sc->hub;
    free(sc);
    if (!h) return;
    h->sweep = NULL;
    if (!res || n != 1 || !res[0] || PQresultStatus(res[0]) != PGRES_TUPLES_OK) return;
    PGresult *pr = res[0];
    for (int i = 0; i < PQntuples(pr); i++) {
        struct hub_room *r = find_room(h, PQgetvalue(pr, i, 0));
        if (!r || r->next_seq == 0) continue;
        int64_t seq = strtoll(PQgetvalue(pr, i, 1), NULL, 10);
        if (r->sweep_seq >= r->next_seq && !r->heard) start_repair(r);
        r->sweep_seq = seq >= r->next_seq ? seq : 0;
        r->heard = false;
    }
}

static void subscribe_control(struct hub *h)
{
    h->control_sub_sent = redis_link_subscribe(h->w->redis_sub, h->control_channel) == 0;
}

static void on_sweep_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub *h = arg;
    /* A control SUBSCRIBE that could not be sent (out of memory) would
     * leave this worker deaf to kicks while the link lives. */
    if (!h->control_subscribed && !h->control_sub_sent && redis_link_up(h->w->redis_sub))
        subscribe_control(h);
    for (int i = 0; i < HUB_BUCKETS; i++)
        for (struct hub_room *r = h->buckets[i]; r; r = r->hnext)
            if (r->nmembers > 0 && !r->subscribed) close_stale_waiting(r);
    if (h->sweep) return; /* the previous one has not answered yet */
    /* A text[] literal of the room names; they need no escaping
     * ([A-Za-z0-9_.-]), quoting keeps a room named NULL a name. */
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return;
    buf[len++] = '{';
    int n = 0;
    for (int i = 0; i < HUB_BUCKETS; i++) {
        for (struct hub_room *r = h->buckets[i]; r; r = r->hnext) {
            if (r->nmembers == 0 || !r->subscribed || r->next_seq == 0 || r->querying) continue;
            if (len + ROOM_NAME_MAX + 8 > cap) {
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    free(buf);
                    return;
                }
                buf = nb;
                cap *= 2;
            }
            len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", n++ ? "," : "", r->name);
        }
    }
    buf[len++] = '}';
    buf[len] = '\0';
    struct sweep_call *sc = n ? malloc(sizeof *sc) : NULL;
    if (sc) {
        sc->hub = h;
        if (store_room_seqs(h->w->store, buf, on_sweep, sc) == 0) h->sweep = sc;
        else free(sc);
    }
    free(buf);
}

static void on_gap_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_room *r = arg;
    if (!r->subscribed) {
        /* Its SUBSCRIBE could not be sent; the resubscribe will read. */
        if (!r->sub_sent && redis_link_up(r->hub->w->redis_sub)) subscribe_room(r->hub, r);
        return;
    }
    /* Armed for a gap in the buffer, or to retry a read or a delivery
     * that failed: deliver what the buffer can give now, then read on
     * from next_seq. */
    if (r->next_seq == 0) {
        read_position(r);
        return;
    }
    drain_buffered(r);
    start_repair(r);
}

/* ---- subscriptions ----------------------------------------------------- */

static void on_room_unsubscribed(struct hub *h, struct hub_room *r);

static void subscribe_room(struct hub *h, struct hub_room *r)
{
    if (r->unsubscribing) return; /* resubscribed when the reply comes */
    char channel[160];
    channel_of(h, r->name, channel, sizeof channel);
    r->subscribed = false;
    r->sub_sent = redis_link_subscribe(h->w->redis_sub, channel) == 0;
    if (r->sub_sent) return;
    /* Down, it is subscribed again when the link comes back. Up, the
     * command could not be queued (out of memory): the gap timer tries
     * again, or the room would stay deaf while the link lives. */
    if (redis_link_up(h->w->redis_sub)) retry_later(r);
    else log_debug("room %s waits for the subscription link", r->name);
}

static void on_room_subscribed(struct hub *h, const char *name)
{
    struct hub_room *r = find_room(h, name);
    if (!r) return;
    r->subscribed = true;
    r->sub_sent = false;
    /* Sessions that waited for the subscription may now join: the
     * online list their join reads is kept current by what the room
     * hears from here on. */
    struct chat_session *next;
    for (struct chat_session *s = r->members; s; s = next) {
        next = s->room_next;
        chat_session_listening(s);
    }
    /* Whatever was published while we were not listening is in
     * PostgreSQL: learn the position, or read what we missed. */
    if (r->querying) r->reread = true;
    if (r->next_seq == 0) read_position(r);
    else start_repair(r);
}

/* An event of this room that could not be given to its members (out of
 * memory): a join, leave or notice they never get would leave them wrong
 * for good (an online list). They reconnect and are welcomed afresh. */
static void close_members(struct hub_room *r)
{
    log_error("out of memory for an event of room %s; closing its connections", r->name);
    struct chat_session *next;
    for (struct chat_session *s = r->members; s; s = next) {
        next = s->room_next;
        ws_conn_close(s->c, WS_CLOSE_TRY_AGAIN_LATER, "out of memory; reconnect");
    }
}

static void parse_message(struct hub *h, struct hub_room *r, const char *msg, size_t len)
{
    const char *nl = memchr(msg, '\n', len);
    if (!nl || len < 2) return;
    const char *json = nl + 1;
    size_t jlen = len - (size_t)(json - msg);
    switch (msg[0]) {
    case 'c': {
        int64_t seq = strtoll(msg + 2, NULL, 10);
        if (seq > 0) on_change(r, seq, json, jlen);
        break;
    }
    case 't': {
        /* Typing skips its sender, by connection id, on the sender's worker. */
        uint64_t skip = 0;
        char id[37];
        size_t idlen = (size_t)(nl - (msg + 2));
        if (nl > msg + 2 && idlen < sizeof id) {
            memcpy(id, msg + 2, idlen);
            id[idlen] = '\0';
            skip = chat_conn_id_local(h->w, id);
        }
        deliver_ex(r, 0, json, jlen, skip, 0, true);
        break;
    }
    case 'e':
        if (!deliver(r, 0, json, jlen, 0, 0)) close_members(r);
        break;
    case 'p': {
        /* join/leave: not to the user's own connections, whose welcome
         * already counts them. */
        size_t idlen = (size_t)(nl - (msg + 2));
        if (nl <= msg + 2 || idlen > JWT_SUB_MAX_BYTES) break;
        struct ws_shared *f = ws_shared_new_text(json, jlen);
        if (!f) {
            close_members(r);
            break;
        }
        struct chat_session *next;
        for (struct chat_session *s = r->members; s; s = next) {
            next = s->room_next;
            if (strlen(s->user_id) == idlen && memcmp(s->user_id, msg + 2, idlen) == 0) continue;
            chat_session_deliver(s, 0, f, false);
        }
        ws_shared_release(f);
        break;
    }
    default: break;
    }
}

static void on_subscription(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct hub *h = privdata;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    redisReply *kind = rep->element[0], *chan = rep->element[1], *val = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING) return;
    bool is_control = strcmp(chan->str, h->control_channel) == 0;
    if (strcmp(kind->str, "subscribe") == 0) {
        if (is_control) {
            h->control_subscribed = true;
            h->control_sub_sent = false;
            if (h->control_resumed_fn) h->control_resumed_fn(h->w);
            return;
        }
        const char *name = room_of_channel(h, chan->str);
        if (name) on_room_subscribed(h, name);
        return;
    }
    if (strcmp(kind->str, "unsubscribe") == 0) {
        const char *name = room_of_channel(h, chan->str);
        struct hub_room *r = name ? find_room(h, name) : NULL;
        if (r) on_room_unsubscribed(h, r);
        return;
    }
    if (strcmp(kind->str, "message") != 0 || val->type != REDIS_REPLY_STRING) return;
    if (is_control) {
        if (h->control_fn) h->control_fn(h->w, val->str, val->len);
        return;
    }
    const char *name = room_of_channel(h, chan->str);
    struct hub_room *r = name ? find_room(h, name) : NULL;
    if (r) parse_message(h, r, val->str, val->len);
}

static void room_free(struct hub *h, struct hub_room *r);

/* hiredis 0.14 drops a channel's callback when the UNSUBSCRIBE reply
 * comes, even if SUBSCRIBE was sent again meanwhile: so a room is only
 * subscribed again once its unsubscribe is confirmed. */
static void on_room_unsubscribed(struct hub *h, struct hub_room *r)
{
    r->unsubscribing = false;
    r->subscribed = false;
    if (r->nmembers == 0) room_free(h, r);
    else subscribe_room(h, r);
}

static void on_sub_link(struct redis_link *l, bool up, void *arg)
{
    (void)l;
    struct hub *h = arg;
    if (!up) {
        h->control_subscribed = false;
        h->control_sub_sent = false;
        for (int i = 0; i < HUB_BUCKETS; i++) {
            struct hub_room *next;
            for (struct hub_room *r = h->buckets[i]; r; r = next) {
                next = r->hnext;
                r->subscribed = false;
                r->sub_sent = false;
                r->unsubscribing = false;
                if (r->nmembers == 0) room_free(h, r);
            }
        }
        return;
    }
    subscribe_control(h);
    for (int i = 0; i < HUB_BUCKETS; i++)
        for (struct hub_room *r = h->buckets[i]; r; r = r->hnext) subscribe_room(h, r);
}

/* ---- rooms and members ------------------------------------------------- */

static void on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_room *r = arg;
    struct hub *h = r->hub;
    if (r->nmembers > 0 || r->unsubscribing) return;
    char channel[160];
    channel_of(h, r->name, channel, sizeof channel);
    if (redis_link_unsubscribe(h->w->redis_sub, channel) == 0) r->unsubscribing = true;
    else room_free(h, r);
}

static struct hub_room *room_new(struct hub *h, const char *name)
{
    struct hub_room *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->hub = h;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->gap_ev = evtimer_new(h->w->base, on_gap_timer, r);
    r->idle_ev = evtimer_new(h->w->base, on_idle_timer, r);
    if (!r->gap_ev || !r->idle_ev) {
        if (r->gap_ev) event_free(r->gap_ev);
        if (r->idle_ev) event_free(r->idle_ev);
        free(r);
        return NULL;
    }
    uint32_t b = fnv1a_str(name) % HUB_BUCKETS;
    r->hnext = h->buckets[b];
    h->buckets[b] = r;
    subscribe_room(h, r);
    return r;
}

static void room_free(struct hub *h, struct hub_room *r)
{
    uint32_t b = fnv1a_str(r->name) % HUB_BUCKETS;
    struct hub_room **pp = &h->buckets[b];
    while (*pp != r) pp = &(*pp)->hnext;
    *pp = r->hnext;
    while (r->buffered) {
        struct buffered *next = r->buffered->next;
        free(r->buffered);
        r->buffered = next;
    }
    event_free(r->gap_ev);
    event_free(r->idle_ev);
    free(r);
}

int hub_join(struct hub *h, struct chat_session *s, const char *room)
{
    struct hub_room *r = find_room(h, room);
    if (!r && !(r = room_new(h, room))) return -1;
    s->room = r;
    s->room_prev = NULL;
    s->room_next = r->members;
    if (r->members) r->members->room_prev = s;
    r->members = s;
    r->nmembers++;
    s->state = CHAT_WAITING;
    s->waiting_since_ms = timefmt_mono_ms();
    evtimer_del(r->idle_ev);
    if (r->next_seq > 0) chat_session_ready(s);
    return 0;
}

void hub_leave(struct hub *h, struct chat_session *s)
{
    (void)h; /* the room knows its hub; kept for symmetry with hub_join */
    struct hub_room *r = s->room;
    if (!r) return;
    if (s->room_prev) s->room_prev->room_next = s->room_next;
    else r->members = s->room_next;
    if (s->room_next) s->room_next->room_prev = s->room_prev;
    s->room_prev = s->room_next = NULL;
    s->room = NULL;
    if (--r->nmembers == 0) {
        struct timeval tv = {ROOM_IDLE_MS / 1000, (ROOM_IDLE_MS % 1000) * 1000};
        evtimer_add(r->idle_ev, &tv);
    }
}

bool hub_position_known(const struct hub *h, const char *room)
{
    const struct hub_room *r = find_room(h, room);
    return r && r->next_seq > 0;
}

bool hub_room_listening(const struct hub_room *r)
{
    return r->subscribed && !r->unsubscribing;
}

int64_t hub_room_last_seq(const struct hub_room *r) { return r->next_seq > 0 ? r->next_seq - 1 : 0; }
const char *hub_room_name(const struct hub_room *r) { return r->name; }

struct chat_session *hub_room_members(struct hub *h, const char *room)
{
    struct hub_room *r = find_room(h, room);
    return r ? r->members : NULL;
}

/* ---- publishing -------------------------------------------------------- */

static int publish(struct hub *h, const char *room, const char *head, size_t hlen,
                   const char *json, size_t len)
{
    char channel[160];
    channel_of(h, room, channel, sizeof channel);
    size_t total = hlen + len;
    char stackbuf[4096];
    char *msg = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (!msg) return -1;
    memcpy(msg, head, hlen);
    memcpy(msg + hlen, json, len);
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t argvlen[3] = {7, strlen(channel), total};
    int rc = redis_link_commandargv(h->w->redis, NULL, NULL, 3, argv, argvlen);
    if (msg != stackbuf) free(msg);
    return rc;
}

int hub_publish_change(struct hub *h, const char *room, int64_t seq, const char *payload)
{
    int every = h->w->cfg->test_drop_publish_every;
    if (every > 0 && ++h->publishes % (uint64_t)every == 0) {
        /* Fault injection for tests: the change is stored, its PUBLISH is
         * not, and the gap repair has to find it. */
        metrics_add(METRIC_PUBLISH_DROPPED, 1);
        return 0;
    }
    char head[32];
    int hl = snprintf(head, sizeof head, "c %" PRId64 "\n", seq);
    return publish(h, room, head, (size_t)hl, payload, strlen(payload));
}

int hub_publish_typing(struct hub *h, const char *room, const char *conn_id, const char *json,
                       size_t len)
{
    char head[48];
    int hl = snprintf(head, sizeof head, "t %s\n", conn_id);
    return publish(h, room, head, (size_t)hl, json, len);
}

int hub_publish_event(struct hub *h, const char *room, const char *json, size_t len)
{
    return publish(h, room, "e\n", 2, json, len);
}

void hub_deliver_local(struct hub *h, const char *room, const char *json, size_t len)
{
    struct hub_room *r = find_room(h, room);
    if (r) deliver(r, 0, json, len, 0, 0);
}

bool hub_subscriptions_up(const struct hub *h)
{
    return redis_link_up(h->w->redis_sub) && h->control_subscribed;
}

void hub_set_control_handler(struct hub *h, hub_control_fn fn) { h->control_fn = fn; }
void hub_set_control_resumed(struct hub *h, hub_control_resumed_fn fn) { h->control_resumed_fn = fn; }

struct hub *hub_new(struct worker *w)
{
    struct hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->w = w;
    snprintf(h->control_channel, sizeof h->control_channel, "%scontrol", w->cfg->redis_prefix);
    h->sweep_ev = event_new(w->base, -1, EV_PERSIST, on_sweep_timer, h);
    struct timeval every = {HUB_SWEEP_MS / 1000, (HUB_SWEEP_MS % 1000) * 1000};
    if (!h->sweep_ev || event_add(h->sweep_ev, &every) < 0) {
        if (h->sweep_ev) event_free(h->sweep_ev);
        free(h);
        return NULL;
    }
    w->redis_sub = redis_link_new(w->base, w->cfg->redis_url, "subscribe", on_sub_link, h);
    if (!w->redis_sub) {
        event_free(h->sweep_ev);
        free(h);
        return NULL;
    }
    redis_link_set_subscriber(w->redis_sub, on_subscription, h);
    /* Without it, a silently lost connection would leave this worker deaf
     * to every room and to the control channel until its next SUBSCRIBE. */
    char probe[CONFIG_PREFIX_MAX + 16];
    snprintf(probe, sizeof probe, "%sprobe", w->cfg->redis_prefix);
    redis_link_set_probe(w->redis_sub, probe);
    return h;
}

void hub_free(struct hub *h)
{
    if (!h) return;
    if (h->sweep) h->sweep->hub = NULL;
    for (struct room_read *rr = h->reads; rr; rr = rr->next) rr->hub = NULL;
    event_free(h->sweep_ev);
    for (int i = 0; i < HUB_BUCKETS; i++) {
        while (h->buckets[i]) {
            struct hub_room *r = h->buckets[i];
            while (r->members) {
                struct chat_session *s = r->members;
                r->members = s->room_next;
                s->room = NULL;
                s->room_prev = s->room_next = NULL;
                s->state = CHAT_CLOSED;
            }
            r->nmembers = 0;
            room_free(h, r);
        }
    }
    redis_link_free(h->w->redis_sub);
    h->w->redis_sub = NULL;
    free(h);
}

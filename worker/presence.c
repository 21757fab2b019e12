#include "worker/presence.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "shared/jsonw.h"
#include "shared/log.h"
#include "shared/presence_lua.h"
#include "shared/utf8.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/redis_link.h"
#include "worker/redis_script.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"
#include "worker/ws_frame.h"


/* ARGV: prefix, instance, alive_ms, reconcile (0/1), then groups of room,
 * user, name, role, delta (reconcile: the count), list, the user's JSON
 * object ('': none). list is '0' (leaves, reconciles) or 'b', an
 * upgrade's join: it first checks the ban set and, for a banned user,
 * changes nothing and returns 0; otherwise it returns the room's online
 * users as they are after this group. The verdict comes with the join,
 * in the same call. With reconcile the
 * instance's counts become exactly the given ones and its heartbeat is
 * renewed; otherwise the heartbeat script renews it. Returns one entry
 * per group that asked, in order: a list as id, name, id, name, ..., or 0. */
static struct redis_script apply_script = {
    .body = PRESENCE_LUA_CHANGE
    "local p, inst = ARGV[1], ARGV[2]\n"
    "local reconcile = ARGV[4] == '1'\n"
    "if reconcile then redis.call('SET', p .. 'alive:' .. inst, '1', 'PX', ARGV[3]) end\n"
    /* Before any count: the counts of an instance missing from the set
     * would never be reaped. */
    "redis.call('SADD', p .. 'instances', inst)\n"
    "local ikey = p .. 'inst:' .. inst\n"
    "local seen, lists = {}, {}\n"
    "for i = 5, #ARGV, 7 do\n"
    "  local room, user, name, role = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]\n"
    "  local d, list, uj = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]\n"
    "  if list == 'b' and redis.call('SISMEMBER', p .. 'banned', user) == 1 then\n"
    "    lists[#lists + 1] = 0\n"
    "  else\n"
    "    if uj == '' then uj = nil end\n"
    "    local n = tonumber(d)\n"
    "    local field = room .. '\\31' .. user\n"
    "    local delta = n\n"
    "    if reconcile then\n"
    "      delta = n - tonumber(redis.call('HGET', ikey, field) or '0'); seen[field] = true\n"
    "      d = nil\n"
    "    end\n"
    "    local now = redis.call('HINCRBY', ikey, field, d or delta)\n"
    /* Never below zero: a leave these counts never saw (this instance
     * was reaped meanwhile, or its join was refused) changes nothing. */
    "    if now < 0 then delta = delta - now; now = 0; d = nil end\n"
    "    if now <= 0 then redis.call('HDEL', ikey, field) end\n"
    "    change(p, room, user, name, role, delta, d, uj)\n"
    /* One HGETALL, not a lookup per member: a room filling up would
     * cost O(n^2) lookups otherwise. */
    "    if list ~= '0' then\n"
    "      lists[#lists + 1] = redis.call('HGETALL', p .. 'room_names:' .. room)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if reconcile then\n"
    "  local all = redis.call('HGETALL', ikey)\n"
    "  for i = 1, #all, 2 do\n"
    "    if not seen[all[i]] then\n"
    "      local sep = string.find(all[i], '\\31', 1, true)\n"
    "      redis.call('HDEL', ikey, all[i])\n"
    "      change(p, string.sub(all[i], 1, sep - 1), string.sub(all[i], sep + 1), nil, nil,\n"
    "             -tonumber(all[i + 1]))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return lists\n",
};

static struct redis_script reap_script = {.body = PRESENCE_LUA_REAP};

/* ARGV: prefix, room ('' = every online user). Returns id, name, ... */
static struct redis_script list_script = {
    .body =
    "local p = ARGV[1]\n"
    "if ARGV[2] ~= '' then return redis.call('HGETALL', p .. 'room_names:' .. ARGV[2]) end\n"
    "local out = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', p .. 'online')) do\n"
    "  out[#out + 1] = id\n"
    "  out[#out + 1] = redis.call('HGET', p .. 'user:' .. id, 'name') or id\n"
    "end\n"
    "return out\n",
};

/* A join or leave waiting for the end of the loop turn, when all of them
 * go to Redis as one script call: Redis's cost per call (parsing,
 * dispatch, the script's set-up) is paid once a turn, not per connection. */
struct presence_op {
    struct presence_op *next;
    struct conn *c;         /* a join waiting for its room's list (ref held); NULL for a leave */
    const char *argv[7];    /* room, user, name, role, delta, list, user JSON: point into buf */
    char buf[];
};

/* Groups per script call: bounds its arguments (4 + 7 each). */
#define PRESENCE_BATCH_MAX 128

struct presence {
    struct worker *w;
    struct event *beat_ev;
    struct event *flush_ev;
    struct presence_op *head, *tail;
    char predecessor[128];    /* a dead instance of our slot to reap once */
    char alive_ms[24];
    bool reconcile_owed;      /* the last reconcile failed: the heartbeat tries again */
    uint64_t reconciles;      /* reconciles sent so far */
};

static void on_flush(evutil_socket_t fd, short what, void *arg);

/* The joins of one script call, in order: each gets its list. */
struct presence_call {
    struct presence *p;
    uint64_t reconciles;    /* p's count of reconciles when it was sent */
    int n;
    struct conn *joins[];
};

static void heartbeat(struct presence *p);
static void reconcile(struct presence *p);

static void on_reaped(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct presence *p = privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        if (r->element[0]->integer > 0)
            log_info("presence: reaped %lld dead instance(s)", r->element[0]->integer);
        p->predecessor[0] = '\0';
        if (r->element[1]->integer) {
            /* Our users were announced gone while still connected. */
            log_warn("presence: this worker was reaped as dead (stalled past its heartbeat); "
                     "restoring its connections");
            reconcile(p);
        }
    }
}

static void heartbeat(struct presence *p)
{
    struct worker *w = p->w;
    const char *argv[4] = {w->cfg->redis_prefix, w->instance_id, p->alive_ms, p->predecessor};
    redis_script_run(w->redis, &reap_script, on_reaped, p, 0, 4, argv, NULL);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct presence *p = arg;
    heartbeat(p);
    if (p->reconcile_owed && redis_link_up(p->w->redis)) reconcile(p);
}

/* A reconcile Redis refused (still loading after a restart, out of
 * memory) or never answered leaves the counts as they were: wrong after
 * an outage, until the next reconcile. */
static void on_reconciled(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct presence *p = privdata;
    const redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ARRAY) return;
    if (!p->reconcile_owed)
        log_warn("presence: a reconcile failed (%s); trying again with the heartbeat",
                 r && r->type == REDIS_REPLY_ERROR ? r->str : "no answer");
    p->reconcile_owed = true;
}

/* Entries that are not strings of valid UTF-8 (written by hand into
 * Redis) are left out of online lists. */
static bool user_entry_ok(const redisReply *id, const redisReply *name)
{
    return id->type == REDIS_REPLY_STRING && name->type == REDIS_REPLY_STRING &&
           utf8_is_complete_valid((const uint8_t *)id->str, id->len) &&
           utf8_is_complete_valid((const uint8_t *)name->str, name->len);
}

/* A room's online users as the welcome's JSON array, rendered straight
 * from the reply into a buffer of the exact size: a tree of jansson
 * objects per user only to print it once cost the welcome more than the
 * rest of it. NULL when out of memory; *len is the text's length, *count
 * the users in it. */
static char *users_json(const redisReply *r, size_t *len, size_t *count)
{
    bool array = r && r->type == REDIS_REPLY_ARRAY;
    size_t cap = sizeof "[]";
    for (size_t i = 0; array && i + 1 < r->elements; i += 2) {
        const redisReply *id = r->element[i], *name = r->element[i + 1];
        if (user_entry_ok(id, name)) cap += jsonw_user_len(id->str, id->len, name->str, name->len) + 1;
    }
    char *text = malloc(cap);
    if (!text) return NULL;
    struct jsonw jw;
    jsonw_init(&jw, text, cap);
    jsonw_raw(&jw, "[");
    const char *sep = "";
    *count = 0;
    for (size_t i = 0; array && i + 1 < r->elements; i += 2) {
        const redisReply *id = r->element[i], *name = r->element[i + 1];
        if (!user_entry_ok(id, name)) continue;
        jsonw_raw(&jw, sep);
        jsonw_user(&jw, id->str, id->len, name->str, name->len);
        sep = ",";
        ++*count;
    }
    jsonw_raw(&jw, "]");
    long n = jsonw_finish(&jw);
    if (n < 0) { /* cannot happen: cap is exact */
        free(text);
        return NULL;
    }
    *len = (size_t)n;
    return text;
}

static int by_room_user(const void *a, const void *b)
{
    const struct chat_session *x = *(struct chat_session *const *)a;
    const struct chat_session *y = *(struct chat_session *const *)b;
    int r = strcmp(x->room_name, y->room_name);
    return r ? r : strcmp(x->user_id, y->user_id);
}

/* Makes Redis hold exactly this worker's connections: after a reconnect
 * (the instance may have been reaped, or Redis restarted empty). */
static void reconcile(struct presence *p)
{
    struct worker *w = p->w;
    /* Joins and leaves queued this turn go first: sent after, they would
     * count again what the reconcile counts, or take off what it left
     * out. (One in flight already is applied before it: same link.) */
    on_flush(-1, 0, p);
    p->reconcile_owed = true; /* until it is sent */
    uint32_t n = 0;
    struct chat_session **all = calloc(w->ws_conns.count + 1, sizeof *all);
    if (!all) return;
    for (struct conn *c = w->ws_conns.head; c; c = c->next) {
        struct chat_session *s = ws_conn_chat(c);
        if (!s || s->state == CHAT_CLOSED) continue;
        /* One still waiting for its room to listen has not joined: its
         * join, sent later, counts it (chat_session_listening). */
        if (s->state == CHAT_WAITING && !s->join_pending && !s->online_known) continue;
        all[n++] = s;
    }
    qsort(all, n, sizeof *all, by_room_user);
    const char **argv = calloc(4 + (size_t)n * 7, sizeof *argv);
    char (*counts)[16] = calloc(n + 1, sizeof *counts);
    if (!argv || !counts) goto out;
    argv[0] = w->cfg->redis_prefix;
    argv[1] = w->instance_id;
    argv[2] = p->alive_ms;
    argv[3] = "1";
    size_t k = 4;
    for (uint32_t i = 0, groups = 0; i < n; groups++) {
        uint32_t j = i;
        while (j < n && by_room_user(&all[i], &all[j]) == 0) all[j++]->presence_added = true;
        snprintf(counts[groups], sizeof counts[groups], "%u", j - i);
        argv[k++] = all[i]->room_name;
        argv[k++] = all[i]->user_id;
        argv[k++] = all[i]->user_name;
        argv[k++] = jwt_role_name(all[i]->role);
        argv[k++] = counts[groups];
        argv[k++] = "0";
        argv[k++] = "";
        i = j;
    }
    if (redis_script_run(w->redis, &apply_script, on_reconciled, p, 0, (int)k, argv, NULL) == 0) {
        p->reconcile_owed = false;
        p->reconciles++;
    }
out:
    free(argv);
    free(counts);
    free(all);
}

void presence_on_link(struct presence *p, bool up)
{
    if (!up) return;
    heartbeat(p);
    reconcile(p);
}

struct presence *presence_new(struct worker *w, const char *predecessor)
{
    struct presence *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->w = w;
    snprintf(p->predecessor, sizeof p->predecessor, "%s", predecessor ? predecessor : "");
    /* The heartbeat lives 60% of presence_ttl_s and is renewed every
     * quarter: two beats may be missed before others reap us, and a dead
     * instance is reaped within 0.6 + 0.25 of the ttl. */
    int64_t alive = (int64_t)w->cfg->presence_ttl_s * 600;
    snprintf(p->alive_ms, sizeof p->alive_ms, "%lld", (long long)alive);
    p->beat_ev = event_new(w->base, -1, EV_PERSIST, on_beat, p);
    p->flush_ev = event_new(w->base, -1, 0, on_flush, p);
    if (!p->beat_ev || !p->flush_ev) {
        if (p->beat_ev) event_free(p->beat_ev);
        if (p->flush_ev) event_free(p->flush_ev);
        free(p);
        return NULL;
    }
    int64_t every_ms = (int64_t)w->cfg->presence_ttl_s * 250;
    struct timeval tv = {every_ms / 1000, (every_ms % 1000) * 1000};
    event_add(p->beat_ev, &tv);
    return p;
}

bool presence_idle(const struct presence *p)
{
    return !p || !p->head;
}

void presence_free(struct presence *p)
{
    if (!p) return;
    /* Going away: what waits is dropped (the janitors reap our records). */
    while (p->head) {
        struct presence_op *op = p->head;
        p->head = op->next;
        if (op->c) conn_unref(op->c);
        free(op);
    }
    event_free(p->flush_ev);
    event_free(p->beat_ev);
    free(p);
}

/* Hands a join the verdict on its upgrade, and drops the join's
 * reference: its room's online list (counted), 0 for a banned user
 * (nothing counted), an error (counted or not: a leave is sent, which
 * never takes a count below zero), or NULL when the link went down (the
 * reconcile after the reconnect recounts the live sessions). Until now
 * no leave was sent for the session, since nobody knew what to undo; a
 * session that closed meanwhile sends it here. A reconcile sent after the
 * join (reconciled) made the counts exact after it: it counted the
 * session (presence_added) if the session was still open then, whatever
 * the verdict, and otherwise left it out, so no leave is owed. */
static void join_answered(struct conn *c, const redisReply *list, bool reconciled)
{
    struct chat_session *s = ws_conn_chat(c);
    if (!s) {
        conn_unref(c);
        return;
    }
    bool banned = list && list->type == REDIS_REPLY_INTEGER;
    bool joined = list && list->type == REDIS_REPLY_ARRAY;
    s->join_pending = false;
    /* After a reconcile, presence_added is the reconcile's. */
    if (!reconciled && !list) s->presence_added = false;
    else if (!reconciled && !banned) s->presence_added = true;
    if (list && !banned && !joined)
        log_warn("presence: a join got %s", list->type == REDIS_REPLY_ERROR ? list->str : "an odd reply");
    if (c->closed || s->state == CHAT_CLOSED) {
        presence_leave(c->w, s);
    } else if (s->state == CHAT_WAITING) {
        size_t len, count;
        char *online;
        if (banned)
            ws_conn_refuse(c, 403, "forbidden", "user is banned", WS_CLOSE_KICKED);
        else if (!joined)
            ws_conn_refuse(c, 503, "unavailable", "redis did not answer", WS_CLOSE_TRY_AGAIN_LATER);
        else if ((online = users_json(list, &len, &count)))
            chat_session_online_ready(s, online);
        else
            ws_conn_refuse(c, 503, "unavailable", "out of memory", WS_CLOSE_TRY_AGAIN_LATER);
    }
    conn_unref(c);
}

static void on_applied(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct presence_call *call = privdata;
    const redisReply *r = reply;
    bool lists = r && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)call->n;
    /* Anything but one entry per join (an error) goes to every join. */
    bool reconciled = call->reconciles != call->p->reconciles;
    for (int i = 0; i < call->n; i++)
        join_answered(call->joins[i], lists ? r->element[i] : r, reconciled);
    free(call);
}

/* Sends up to PRESENCE_BATCH_MAX waiting joins and leaves as one call.
 * Returns false when nothing more should be tried this turn. */
static bool flush_some(struct presence *p)
{
    struct worker *w = p->w;
    int n = 0, njoins = 0;
    for (struct presence_op *op = p->head; op && n < PRESENCE_BATCH_MAX; op = op->next, n++)
        if (op->c) njoins++;
    const char **argv = malloc((4 + (size_t)n * 7) * sizeof *argv);
    struct presence_call *call = malloc(sizeof *call + (size_t)njoins * sizeof call->joins[0]);
    if (!argv || !call) {
        free(argv);
        free(call);
        /* Tried again shortly: made active from its own callback, the
         * event would run again in this same pass, never letting the loop
         * poll while memory is short. */
        struct timeval soon = {0, 10 * 1000};
        event_add(p->flush_ev, &soon);
        return false;
    }
    argv[0] = w->cfg->redis_prefix;
    argv[1] = w->instance_id;
    argv[2] = p->alive_ms;
    argv[3] = "0";
    size_t k = 4;
    call->n = 0;
    call->reconciles = p->reconciles;
    call->p = p;
    struct presence_op *taken = p->head;
    for (int i = 0; i < n; i++) {
        struct presence_op *op = p->head;
        p->head = op->next;
        for (int j = 0; j < 7; j++) argv[k++] = op->argv[j];
        if (op->c) call->joins[call->n++] = op->c;
    }
    if (!p->head) p->tail = NULL;
    int r = redis_script_run(w->redis, &apply_script, on_applied, call, 0, (int)k, argv, NULL);
    free(argv);
    /* redis_script_run copied the arguments: the ops may go. */
    for (int i = 0; i < n; i++) {
        struct presence_op *next = taken->next;
        free(taken);
        taken = next;
    }
    if (r < 0) {
        /* Redis is down: the joins are refused; the reconcile after the
         * reconnect recounts. */
        for (int i = 0; i < call->n; i++) join_answered(call->joins[i], NULL, false);
        free(call);
    }
    return true;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct presence *p = arg;
    while (p->head && flush_some(p)) {
    }
}

/* Queues a change for the end of the loop turn. Returns -1 when out of
 * memory. */
static int enqueue(struct presence *p, struct conn *c, const struct chat_session *s, const char *delta,
                   const char *list)
{
    const char *src[6] = {s->room_name, s->user_id, s->user_name, jwt_role_name(s->role), delta, list};
    size_t id_len = strlen(s->user_id), name_len = strlen(s->user_name);
    size_t user_json = jsonw_user_len(s->user_id, id_len, s->user_name, name_len) + 1;
    size_t size = user_json;
    for (int i = 0; i < 6; i++) size += strlen(src[i]) + 1;
    struct presence_op *op = malloc(sizeof *op + size);
    if (!op) return -1;
    char *dst = op->buf;
    for (int i = 0; i < 6; i++) {
        size_t len = strlen(src[i]) + 1;
        memcpy(dst, src[i], len);
        op->argv[i] = dst;
        dst += len;
    }
    struct jsonw jw;
    jsonw_init(&jw, dst, user_json);
    jsonw_user(&jw, s->user_id, id_len, s->user_name, name_len);
    if (jsonw_finish(&jw) < 0) { /* cannot happen: the size is exact */
        free(op);
        return -1;
    }
    op->argv[6] = dst;
    op->next = NULL;
    op->c = c;
    if (c) conn_ref(c);
    if (p->tail) p->tail->next = op;
    else p->head = op;
    p->tail = op;
    event_active(p->flush_ev, 0, 0);
    return 0;
}

void presence_join(struct worker *w, struct chat_session *s)
{
    if (!redis_link_up(w->redis)) {
        ws_conn_refuse(s->c, 503, "unavailable", "redis is down", WS_CLOSE_TRY_AGAIN_LATER);
        return;
    }
    if (enqueue(w->presence, s->c, s, "1", "b") < 0) {
        ws_conn_refuse(s->c, 503, "unavailable", "out of memory", WS_CLOSE_TRY_AGAIN_LATER);
        return;
    }
    s->join_pending = true;
}

void presence_leave(struct worker *w, struct chat_session *s)
{
    if (s->join_pending || !s->presence_added) return;
    s->presence_added = false;
    if (enqueue(w->presence, NULL, s, "-1", "0") < 0)
        log_warn("presence: out of memory; a leave waits for the next reconcile or reap");
}

struct list_call {
    presence_list_fn fn;
    void *arg;
};

static void on_list(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct list_call *lc = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        lc->fn(lc->arg, PRESENCE_LIST_UNAVAILABLE, NULL, 0, 0);
    } else {
        size_t len = 0, count = 0;
        char *users = users_json(r, &len, &count);
        lc->fn(lc->arg, users ? PRESENCE_LIST_OK : PRESENCE_LIST_NO_MEMORY, users, len, count);
        free(users);
    }
    free(lc);
}

int presence_list(struct worker *w, const char *room, presence_list_fn fn, void *arg)
{
    struct list_call *lc = malloc(sizeof *lc);
    if (!lc) return -1;
    lc->fn = fn;
    lc->arg = arg;
    const char *argv[2] = {w->cfg->redis_prefix, room ? room : ""};
    if (redis_script_run(w->redis, &list_script, on_list, lc, 0, 2, argv, NULL) < 0) {
        free(lc);
        return -1;
    }
    return 0;
}

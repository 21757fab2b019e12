#include "worker/rest.h"

#include <stdlib.h>
#include <string.h>

#include "shared/jsonw.h"
#include "shared/metrics.h"
#include "shared/room.h"
#include "worker/chat_admit.h"
#include "worker/conn.h"
#include "worker/http_conn.h"
#include "worker/http_query.h"
#include "worker/presence.h"
#include "worker/store.h"
#include "worker/worker.h"

#define HISTORY_LIMIT_DEFAULT 50
#define HISTORY_LIMIT_MAX 200

static const char no_store[] = "Cache-Control: no-store\r\n";

/* A REST request between its token check and its answer: first the ban
 * set (Redis), then the read itself. */
struct rest_call {
    struct conn *c;
    char room[ROOM_NAME_MAX + 1];
    bool has_room;
    bool organizer;
    int limit;
    bool has_before, has_after;
    int64_t before, after;
};

static void on_history(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    struct rest_call *rc = arg;
    struct conn *c = rc->c;
    free(rc);
    if (!res || n != 1 || !res[0] || PQresultStatus(res[0]) != PGRES_TUPLES_OK ||
        PQntuples(res[0]) != 1) {
        http_reply_error(c, 503, "unavailable", "database unavailable");
    } else {
        http_reply(c, 200, "application/json", PQgetvalue(res[0], 0, 0),
                   (size_t)PQgetlength(res[0], 0, 0), no_store);
    }
    http_end_async(c);
}

static void history_after_ban(struct rest_call *rc)
{
    struct conn *c = rc->c;
    if (store_history(c->w->store, rc->room, rc->limit, rc->has_before ? &rc->before : NULL,
                      rc->has_after ? &rc->after : NULL, rc->organizer, on_history, rc) < 0) {
        free(rc);
        http_reply_error(c, 503, "unavailable", "database unavailable");
        http_end_async(c);
    }
}

typedef void (*rest_next_fn)(struct rest_call *rc);

struct ban_wait {
    struct rest_call *rc;
    rest_next_fn next;
};

static void on_ban_checked(void *arg, int status)
{
    struct ban_wait *bw = arg;
    struct rest_call *rc = bw->rc;
    struct conn *c = rc->c;
    rest_next_fn next = bw->next;
    free(bw);
    if (c->closed || status != 0) {
        if (status == 403) http_reply_error(c, 403, "forbidden", "user is banned");
        else if (status) http_reply_error(c, 503, "unavailable", "redis did not answer");
        free(rc);
        http_end_async(c);
        return;
    }
    next(rc);
}

/* The token (401), its rooms claim (403), then, asynchronously, the ban
 * set (403/503); next runs when all of them allow the request. Takes rc. */
static void begin_checked(struct http_req *req, struct rest_call *rc, bool room_required,
                          rest_next_fn next)
{
    struct conn *c = req->c;
    struct jwt_claims claims;
    if (chat_admit_token(req, &claims) < 0) {
        free(rc);
        return;
    }
    /* Without a room, the answer spans every room: only a token that
     * is not limited to some rooms may have it. */
    bool one_room = room_required || rc->has_room;
    bool allowed = one_room ? jwt_claims_allow_room(&claims, rc->room) : claims.rooms == NULL;
    rc->organizer = claims.role == JWT_ROLE_ORGANIZER;
    struct ban_wait *bw = allowed ? malloc(sizeof *bw) : NULL;
    if (!allowed || !bw) {
        const char *why = one_room ? "token does not allow this room"
                                   : "token is limited to some rooms: name one";
        jwt_claims_clear(&claims);
        free(rc);
        if (!allowed) http_reply_error(c, 403, "forbidden", why);
        else http_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    bw->rc = rc;
    bw->next = next;
    http_begin_async(c);
    int r = chat_admit_check_ban(c->w, claims.sub, on_ban_checked, bw);
    jwt_claims_clear(&claims);
    if (r < 0) {
        free(bw);
        free(rc);
        http_reply_error(c, 503, "unavailable", "redis is down");
        http_end_async(c);
    }
}

void rest_history(struct http_req *req)
{
    struct conn *c = req->c;
    struct http_str q = req->head->query;
    char room[ROOM_NAME_MAX + 1];
    if (chat_admit_origin(req) < 0 || chat_admit_room(req, room, true) < 0) return;
    int64_t limit = HISTORY_LIMIT_DEFAULT, before = 0, after = 0;
    int has_limit = http_query_get_i64(q, "limit", 1, HISTORY_LIMIT_MAX, &limit);
    int has_before = http_query_get_i64(q, "before", 0, INT64_MAX, &before);
    int has_after = http_query_get_i64(q, "after", 0, INT64_MAX, &after);
    if (has_limit < 0 || has_before < 0 || has_after < 0) {
        http_reply_error(c, 400, "bad_request",
                         "limit must be an integer 1..200; before and after integers >= 0");
        return;
    }
    if (has_before && has_after) {
        http_reply_error(c, 400, "bad_request", "give before or after, not both");
        return;
    }
    struct rest_call *rc = calloc(1, sizeof *rc);
    if (!rc) {
        http_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    rc->c = c;
    memcpy(rc->room, room, sizeof rc->room);
    rc->limit = (int)limit;
    rc->has_before = has_before == 1;
    rc->has_after = has_after == 1;
    rc->before = before;
    rc->after = after;
    begin_checked(req, rc, true, history_after_ban);
}

static void on_users(void *arg, enum presence_list_status status, const char *users, size_t len,
                     size_t count)
{
    struct rest_call *rc = arg;
    struct conn *c = rc->c;
    /* The room as escaped, and 64 for the keys and the count. */
    size_t cap = len + jsonw_str_len(rc->room, strlen(rc->room)) + 64;
    char *body = status == PRESENCE_LIST_OK ? malloc(cap) : NULL;
    if (status == PRESENCE_LIST_UNAVAILABLE) {
        http_reply_error(c, 503, "unavailable", "redis unavailable");
    } else if (!body) {
        http_reply_error(c, 503, "unavailable", "out of memory");
    } else {
        struct jsonw jw;
        jsonw_init(&jw, body, cap);
        jsonw_raw(&jw, "{\"room\":");
        if (rc->has_room) jsonw_cstr(&jw, rc->room);
        else jsonw_raw(&jw, "null");
        jsonw_raw(&jw, ",\"users\":");
        jsonw_rawn(&jw, users, len);
        jsonw_raw(&jw, ",\"count\":");
        jsonw_i64(&jw, (int64_t)count);
        jsonw_raw(&jw, "}");
        long n = jsonw_finish(&jw);
        if (n >= 0) http_reply(c, 200, "application/json", body, (size_t)n, no_store);
        else http_reply_error(c, 503, "unavailable", "reply too large"); /* cap holds it all */
    }
    free(body);
    http_end_async(c);
    free(rc);
}

static void users_after_ban(struct rest_call *rc)
{
    struct conn *c = rc->c;
    if (presence_list(c->w, rc->has_room ? rc->room : NULL, on_users, rc) < 0) {
        free(rc);
        http_reply_error(c, 503, "unavailable", "redis unavailable");
        http_end_async(c);
    }
}

void rest_users(struct http_req *req)
{
    struct conn *c = req->c;
    struct rest_call *rc = calloc(1, sizeof *rc);
    if (!rc) {
        http_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    size_t n;
    int has = http_query_get(req->head->query, "room", rc->room, sizeof rc->room, &n);
    if (has < 0 || (has == 1 && !room_name_valid(rc->room, n))) {
        free(rc);
        http_reply_error(c, 400, "bad_request", "bad room name: [A-Za-z0-9_.-]{1,64}");
        return;
    }
    rc->has_room = has == 1;
    if (chat_admit_origin(req) < 0) {
        free(rc);
        return;
    }
    rc->c = c;
    begin_checked(req, rc, false, users_after_ban);
}

void rest_metrics(struct http_req *req)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    if (!text) {
        http_reply_error(req->c, 503, "unavailable", "out of memory");
        return;
    }
    http_reply(req->c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, no_store);
    free(text);
}

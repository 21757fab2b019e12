#include "worker/rest.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static void on_history(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    struct conn *c = arg;
    if (!res || n != 1 || !res[0] || PQresultStatus(res[0]) != PGRES_TUPLES_OK ||
        PQntuples(res[0]) != 1) {
        http_reply_error(c, 503, "unavailable", "database unavailable");
    } else {
        http_reply(c, 200, "application/json", PQgetvalue(res[0], 0, 0),
                   (size_t)PQgetlength(res[0], 0, 0), no_store);
    }
    http_end_async(c);
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
    struct jwt_claims claims;
    if (chat_admit_token(req, &claims) < 0) return;
    bool allowed = jwt_claims_allow_room(&claims, room);
    bool organizer = claims.role == JWT_ROLE_ORGANIZER;
    jwt_claims_clear(&claims);
    if (!allowed) {
        http_reply_error(c, 403, "forbidden", "token does not allow this room");
        return;
    }
    http_begin_async(c);
    if (store_history(c->w->store, room, (int)limit, has_before ? &before : NULL,
                      has_after ? &after : NULL, organizer, on_history, c) < 0) {
        http_reply_error(c, 503, "unavailable", "database unavailable");
        http_end_async(c);
    }
}

struct users_call {
    struct conn *c;
    char room[ROOM_NAME_MAX + 1];
    bool has_room;
};

static void on_users(void *arg, json_t *users)
{
    struct users_call *uc = arg;
    struct conn *c = uc->c;
    if (!users) {
        http_reply_error(c, 503, "unavailable", "redis unavailable");
    } else {
        json_t *body = json_pack("{s:o, s:O, s:I}", "room",
                                 uc->has_room ? json_string(uc->room) : json_null(), "users", users,
                                 "count", (json_int_t)json_array_size(users));
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        if (text) http_reply(c, 200, "application/json", text, strlen(text), no_store);
        else http_reply_error(c, 503, "unavailable", "out of memory");
        free(text);
        json_decref(body);
        json_decref(users);
    }
    http_end_async(c);
    free(uc);
}

void rest_users(struct http_req *req)
{
    struct conn *c = req->c;
    struct users_call *uc = calloc(1, sizeof *uc);
    if (!uc) {
        http_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    size_t n;
    int has = http_query_get(req->head->query, "room", uc->room, sizeof uc->room, &n);
    if (has < 0 || (has == 1 && !room_name_valid(uc->room, n))) {
        free(uc);
        http_reply_error(c, 400, "bad_request", "bad room name: [A-Za-z0-9_.-]{1,64}");
        return;
    }
    uc->has_room = has == 1;
    if (chat_admit_origin(req) < 0) {
        free(uc);
        return;
    }
    struct jwt_claims claims;
    if (chat_admit_token(req, &claims) < 0) {
        free(uc);
        return;
    }
    bool allowed = !uc->has_room || jwt_claims_allow_room(&claims, uc->room);
    jwt_claims_clear(&claims);
    if (!allowed) {
        free(uc);
        http_reply_error(c, 403, "forbidden", "token does not allow this room");
        return;
    }
    uc->c = c;
    http_begin_async(c);
    if (presence_list(c->w, uc->has_room ? uc->room : NULL, on_users, uc) < 0) {
        http_reply_error(c, 503, "unavailable", "redis unavailable");
        http_end_async(c);
        free(uc);
    }
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

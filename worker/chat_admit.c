#include "worker/chat_admit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "shared/log.h"
#include "shared/room.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/http_conn.h"
#include "worker/http_query.h"
#include "worker/hub.h"
#include "worker/pg_pool.h"
#include "worker/redis_link.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"

int chat_admit_origin(struct http_req *req)
{
    const struct http_str *origin = http_head_get(req->head, "Origin");
    /* No Origin: not a browser, so no cross-site hijacking to fear. */
    if (!origin) return 0;
    /* chatd's own page is no exception: its origin is listed like any
     * other (PROTOCOL.md: an Origin outside the list gets 403). */
    if (config_origin_allowed(req->c->w->cfg, origin->p, origin->n)) return 0;
    http_reply_error(req->c, 403, "forbidden", "origin not allowed");
    return -1;
}

int chat_admit_room(struct http_req *req, char room[65], bool required)
{
    size_t n = 0;
    int r = http_query_get(req->head->query, "room", room, ROOM_NAME_MAX + 1, &n);
    if (r == 0) {
        if (required) {
            http_reply_error(req->c, 400, "bad_request", "room is required");
            return -1;
        }
        snprintf(room, ROOM_NAME_MAX + 1, "general");
        return 0;
    }
    if (r < 0 || !room_name_valid(room, n)) {
        http_reply_error(req->c, 400, "bad_request", "bad room name: [A-Za-z0-9_.-]{1,64}");
        return -1;
    }
    return 0;
}

int chat_admit_token(struct http_req *req, struct jwt_claims *claims)
{
    const struct chat_config *cfg = req->c->w->cfg;
    const struct http_str *auth = http_head_get(req->head, "Authorization");
    static char token[JWT_MAX_TOKEN_LEN + 1];
    size_t len = 0;
    if (auth) {
        /* RFC 9110 11.4: the scheme, any case, then one or more spaces. */
        size_t at = 7;
        while (at < auth->n && auth->p[at] == ' ') at++;
        if (auth->n < 7 || strncasecmp(auth->p, "Bearer ", 7) != 0 || at == auth->n ||
            auth->n - at > JWT_MAX_TOKEN_LEN) {
            http_reply_error(req->c, 401, "unauthorized", "Authorization must be 'Bearer <token>'");
            return -1;
        }
        len = auth->n - at;
        memcpy(token, auth->p + at, len);
        token[len] = '\0';
    } else {
        int r = http_query_get(req->head->query, "token", token, sizeof token, &len);
        if (r <= 0) {
            http_reply_error(req->c, 401, "unauthorized",
                             r < 0 ? "malformed token parameter" : "token missing");
            return -1;
        }
    }
    struct jwt_secrets secrets = {.secrets = {cfg->jwt_secret, cfg->jwt_secret_previous},
                                  .count = cfg->jwt_secret_previous[0] ? 2 : 1};
    char err[128];
    if (jwt_verify(&secrets, token, len, (int64_t)time(NULL), claims, err, sizeof err) < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "invalid token: %s", err);
        http_reply_error(req->c, 401, "unauthorized", msg);
        return -1;
    }
    return 0;
}

struct ban_check {
    chat_ban_fn done;
    void *arg;
};

static void on_ban_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct ban_check *b = privdata;
    redisReply *r = reply;
    int status = !r || r->type != REDIS_REPLY_INTEGER ? 503 : r->integer == 1 ? 403 : 0;
    b->done(b->arg, status);
    free(b);
}

int chat_admit_check_ban(struct worker *w, const char *user_id, chat_ban_fn done, void *arg)
{
    struct ban_check *b = malloc(sizeof *b);
    if (!b) return -1;
    b->done = done;
    b->arg = arg;
    char key[CONFIG_PREFIX_MAX + 16];
    snprintf(key, sizeof key, "%sbanned", w->cfg->redis_prefix);
    const char *argv[3] = {"SISMEMBER", key, user_id};
    if (redis_link_commandargv(w->redis, on_ban_reply, b, 3, argv, NULL) < 0) {
        free(b);
        return -1;
    }
    return 0;
}

/* What a welcome (and catching up) would wait for and cannot have now,
 * or NULL: every room needs the subscription link, for the changes and
 * the joins and leaves that keep its welcome true; a room this worker
 * does not follow needs PostgreSQL for its position; catching up reads
 * PostgreSQL; the join (which brings the ban verdict) needs the command
 * link. Refused before the upgrade, the client gets a
 * 503 at once, where it would otherwise wait in silence. */
static const char *missing_for_welcome(struct worker *w, const struct chat_session *s)
{
    bool followed = hub_position_known(w->hub, s->room_name);
    if (!redis_link_up(w->redis)) return "redis is down";
    if (!pg_pool_up(w->pg) && (s->has_since || !followed)) return "postgresql is down";
    /* Every welcome waits for its room to listen (chat_session_listening). */
    if (!hub_subscriptions_up(w->hub)) return "redis is down";
    return NULL;
}

void chat_admit(struct http_req *req, const char *accept_key)
{
    struct conn *c = req->c;
    if (chat_admit_origin(req) < 0) return;
    char room[ROOM_NAME_MAX + 1];
    if (chat_admit_room(req, room, false) < 0) return;
    int64_t since = 0;
    int has_since = http_query_get_i64(req->head->query, "since", 0, INT64_MAX, &since);
    if (has_since < 0) {
        http_reply_error(c, 400, "bad_request", "since must be an integer >= 0");
        return;
    }
    struct jwt_claims claims;
    if (chat_admit_token(req, &claims) < 0) return;
    if (!jwt_claims_allow_room(&claims, room)) {
        jwt_claims_clear(&claims);
        http_reply_error(c, 403, "forbidden", "token does not allow this room");
        return;
    }
    struct chat_session *s = chat_session_new(&claims, room, has_since == 1, since);
    jwt_claims_clear(&claims);
    if (!s) {
        http_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    const char *missing = missing_for_welcome(c->w, s);
    if (missing) {
        chat_session_free(s);
        http_reply_error(c, 503, "unavailable", missing);
        return;
    }
    /* The ban set is read by the presence join, in the same Redis call:
     * the 101 waits in the connection's queue until then, and a banned
     * user still gets the 403 (ws_conn_refuse). */
    ws_conn_accept(c, accept_key, s);
}

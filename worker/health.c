#include "worker/health.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "worker/conn.h"
#include "worker/http_conn.h"
#include "worker/hub.h"
#include "worker/pg_pool.h"
#include "worker/redis_link.h"
#include "worker/worker.h"

/* One readiness probe. It lives until its answer is sent AND every
 * callback it started has fired, because the Redis and PostgreSQL
 * callbacks always come back, possibly after the timer answered 503. */
struct readyz {
    struct conn *c;
    struct event *timer;
    int pending;
    bool answered;
    bool redis_ok, pg_ok;
};

static void answer(struct readyz *r, bool ready, const char *why)
{
    if (r->answered) return;
    r->answered = true;
    struct conn *c = r->c;
    if (ready) {
        static const char body[] = "{\"status\":\"ready\"}";
        http_reply(c, 200, "application/json", body, sizeof body - 1, "Cache-Control: no-store\r\n");
    } else {
        http_reply_error(c, 503, "unavailable", why);
    }
    http_end_async(c);
    r->c = NULL;
}

static void maybe_free(struct readyz *r)
{
    if (r->pending > 0 || !r->answered) return;
    event_free(r->timer);
    free(r);
}

static void settle(struct readyz *r)
{
    if (r->pending == 0) {
        if (!r->redis_ok) answer(r, false, "redis did not answer");
        else if (!r->pg_ok) answer(r, false, "postgresql did not answer");
        else answer(r, true, NULL);
    }
    maybe_free(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct readyz *r = arg;
    answer(r, false, !r->redis_ok ? "redis did not answer in time" : "postgresql did not answer in time");
    maybe_free(r);
}

static void on_redis(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    struct readyz *r = arg;
    redisReply *rep = reply;
    r->redis_ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    r->pending--;
    settle(r);
}

static void on_pg(void *arg, PGresult *const *res, int n, const char *err)
{
    (void)err;
    struct readyz *r = arg;
    r->pg_ok = res && n == 1 && res[0] && PQresultStatus(res[0]) == PGRES_TUPLES_OK;
    r->pending--;
    settle(r);
}

void health_readyz(struct http_req *req)
{
    struct conn *c = req->c;
    struct worker *w = c->w;
    if (w->draining) {
        http_reply_error(c, 503, "unavailable", "draining");
        return;
    }
    /* The subscription link counts once its control channel is
     * subscribed: what upgrades wait for, and what kicks arrive on. */
    if (!redis_link_up(w->redis) || !hub_subscriptions_up(w->hub)) {
        http_reply_error(c, 503, "unavailable", "redis is down");
        return;
    }
    if (!pg_pool_up(w->pg)) {
        http_reply_error(c, 503, "unavailable", "postgresql is down");
        return;
    }
    struct readyz *r = calloc(1, sizeof *r);
    if (!r || !(r->timer = evtimer_new(w->base, on_timeout, r))) {
        free(r);
        http_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    r->c = c;
    http_begin_async(c);
    struct timeval tv = {READYZ_TIMEOUT_MS / 1000, (READYZ_TIMEOUT_MS % 1000) * 1000};
    evtimer_add(r->timer, &tv);
    r->pending = 2;
    if (redis_link_command(w->redis, on_redis, r, "PING") < 0) r->pending--;
    if (pg_pool_query(w->pg, -1, "SELECT 1", 0, NULL, on_pg, r) < 0) r->pending--;
    settle(r);
}

#include "worker/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"
#include "worker/http_conn.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"

void conn_list_add(struct conn_list *l, struct conn *c)
{
    c->prev = NULL;
    c->next = l->head;
    if (l->head) l->head->prev = c;
    else l->tail = c;
    l->head = c;
    l->count++;
}

void conn_list_remove(struct conn_list *l, struct conn *c)
{
    if (c->prev) c->prev->next = c->next;
    else l->head = c->next;
    if (c->next) c->next->prev = c->prev;
    else l->tail = c->prev;
    c->prev = c->next = NULL;
    l->count--;
}

static struct conn_list *list_of(struct conn *c)
{
    return c->kind == CONN_WS ? &c->w->ws_conns : &c->w->http_conns;
}

static bool input_pending(struct conn *c)
{
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) return true;
    int queued = 0;
    return ioctl(bufferevent_getfd(c->bev), FIONREAD, &queued) == 0 && queued > 0;
}

/* Input after our FIN is dropped unread; a peer that keeps sending is
 * closed on at the deadline all the same. */
static void linger_read(struct conn *c)
{
    conn_discard_input(c);
    int64_t left_ms = c->linger_by_ms - timefmt_mono_ms();
    if (left_ms <= 0) {
        conn_close(c);
        return;
    }
    /* The read timeout restarts with each read: what is left of the
     * linger time, not a fresh one. */
    struct timeval wait = {(time_t)(left_ms / 1000), (suseconds_t)(left_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &wait, NULL);
}

/* The final answer is out (conn_close_after_flush). */
static void close_flushed(struct conn *c)
{
    if (c->peer_done || (!c->peer_may_send && !input_pending(c)) ||
        shutdown(bufferevent_getfd(c->bev), SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    c->linger_by_ms = timefmt_mono_ms() + CONN_LINGER_MS;
    linger_read(c);
    if (!c->closed && bufferevent_enable(c->bev, EV_READ) < 0) conn_close(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    conn_ref(c);
    if (c->lingering) linger_read(c);
    else if (c->kind == CONN_WS) ws_conn_on_read(c);
    else http_conn_on_read(c);
    conn_unref(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    conn_ref(c);
    if (c->lingering) {
        /* Nothing more is written after our FIN. */
    } else if (c->close_after_flush && conn_unsent(c) == 0) {
        close_flushed(c);
    } else if (c->kind == CONN_WS) {
        ws_conn_on_drain(c);
    } else {
        http_conn_on_drain(c);
    }
    conn_unref(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    conn_ref(c);
    if (c->lingering) {
        conn_close(c);
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (c->kind == CONN_WS) ws_conn_on_timeout(c, what);
        else conn_close(c);
    } else if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->kind == CONN_HTTP) {
        /* A client may half-close once its requests are sent: they
         * still get their answers (http_conn_on_eof). */
        http_conn_on_eof(c);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        conn_close(c);
    }
    conn_unref(c);
}

struct conn *conn_new(struct worker *w, int fd, const struct ip_addr *peer, bool ip_counted)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        free(c);
        close(fd);
        return NULL;
    }
    c->w = w;
    c->kind = CONN_HTTP;
    c->peer = *peer;
    c->ip_counted = ip_counted;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    /* The input never holds more than one request head, or one largest
     * frame once upgraded: reading pauses at the mark until we consume. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, HTTP_CONN_READ_HIGH);
    /* Until its first request a connection gets the short deadline; then
     * idle keep-alive clients, and clients that stop taking an answer,
     * are dropped after the idle time (http_conn.c). */
    bufferevent_set_timeouts(c->bev, w->http_first_timeout, w->http_idle_timeout);
    if (bufferevent_enable(c->bev, EV_READ) < 0) {
        bufferevent_free(c->bev);
        free(c);
        return NULL;
    }
    conn_list_add(&w->http_conns, c);
    metrics_gauge(METRIC_CONNS_OPEN, 1);
    return c;
}

void conn_close(struct conn *c)
{
    if (c->closed) return;
    c->closed = true;
    conn_ref(c);
    if (c->kind == CONN_WS) ws_conn_on_close(c);
    conn_list_remove(list_of(c), c);
    metrics_gauge(METRIC_CONNS_OPEN, -1);
    if (c->ip_counted) ip_limit_release(c->w->ip_limit, &c->peer);
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    conn_unref(c);
}

void conn_close_after_flush(struct conn *c)
{
    if (c->closed || c->lingering) return;
    c->close_after_flush = true;
    if (conn_unsent(c) == 0) {
        close_flushed(c);
        return;
    }
    /* Read no more: the answer is final. */
    bufferevent_disable(c->bev, EV_READ);
}

void conn_ref(struct conn *c) { c->refs++; }

void conn_unref(struct conn *c)
{
    if (--c->refs > 0 || !c->closed) return;
    if (c->ws) ws_session_free(c->ws);
    free(c);
}

void conn_discard_input(struct conn *c)
{
    if (!c->bev) return;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

size_t conn_unsent(const struct conn *c)
{
    if (!c->bev) return 0;
    return evbuffer_get_length(bufferevent_get_output(c->bev)) + ws_conn_queued(c);
}

void conn_become_ws(struct conn *c)
{
    conn_list_remove(&c->w->http_conns, c);
    c->kind = CONN_WS;
    conn_list_add(&c->w->ws_conns, c);
}

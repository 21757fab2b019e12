#include "worker/http_conn.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "shared/log.h"
#include "shared/timefmt.h"
#include "worker/conn.h"
#include "worker/http_routes.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"

/* A client must finish a request head this soon after its first byte:
 * a trickle of bytes cannot hold a connection for ever. */
#define HTTP_HEAD_DEADLINE_MS 10000

const char *http_status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static int add_cors(struct conn *c, struct evbuffer *out)
{
    const struct chat_config *cfg = c->w->cfg;
    if (c->cors_origin == CONN_CORS_NONE) return 0;
    if (c->cors_origin == CONN_CORS_ANY)
        return evbuffer_add_printf(out, "Access-Control-Allow-Origin: *\r\n") < 0 ? -1 : 0;
    return evbuffer_add_printf(out, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n",
                               cfg->origins[c->cors_origin]) < 0
               ? -1
               : 0;
}

/* Writes the status line and headers. Returns -1 when memory ran out. */
static int write_head(struct conn *c, int status, const char *content_type, size_t len,
                      const char *extra_headers, bool keep)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status)) < 0)
        return -1;
    /* A 204 has no body and must not say how long it is (RFC 9110 8.6). */
    if (status != 204 && evbuffer_add_printf(out, "Content-Length: %zu\r\n", len) < 0) return -1;
    if (content_type && evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type) < 0)
        return -1;
    if (add_cors(c, out) < 0) return -1;
    if (extra_headers && evbuffer_add(out, extra_headers, strlen(extra_headers)) < 0) return -1;
    /* A 426 names the protocol to upgrade to, and Upgrade is a
     * connection option (RFC 9110 7.8, 15.5.22). */
    if (evbuffer_add_printf(out, "Connection: %s%s\r\n\r\n", status == 426 ? "upgrade, " : "",
                            keep ? "keep-alive" : "close") < 0)
        return -1;
    return 0;
}

void http_reply(struct conn *c, int status, const char *content_type, const char *body,
                size_t len, const char *extra_headers)
{
    if (c->closed) return;
    bool keep = c->keep_alive && !c->w->draining;
    /* A HEAD answer says how long the body would be, and sends none. */
    if (write_head(c, status, content_type, len, extra_headers, keep) < 0 ||
        (len && !c->head_only && evbuffer_add(bufferevent_get_output(c->bev), body, len) < 0)) {
        /* Half an answer would be read as a whole one: the client is
         * better served by a closed connection it can retry. */
        log_error("out of memory for an HTTP answer; closing the connection");
        conn_close(c);
        return;
    }
    if (!keep) conn_close_after_flush(c);
}

void http_reply_error(struct conn *c, int status, const char *code, const char *message)
{
    /* A 401 names the scheme it wants (RFC 9110 11.6.1, RFC 6750 3). */
    const char *extra = status == 426   ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                        : status == 401 ? "WWW-Authenticate: Bearer\r\n"
                                        : NULL;
    http_reply_error_with(c, status, code, message, extra);
}

void http_reply_error_with(struct conn *c, int status, const char *code, const char *message,
                           const char *extra_headers)
{
    char body[512];
    /* Codes and messages are our own literals: no JSON escaping needed. */
    int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                     message);
    if (n < 0 || (size_t)n >= sizeof body) n = 0;
    http_reply(c, status, "application/json", body, (size_t)n, extra_headers);
}

void http_begin_async(struct conn *c)
{
    c->busy = true;
    conn_ref(c);
}

void http_end_async(struct conn *c)
{
    c->busy = false;
    if (!c->closed && c->kind == CONN_HTTP && c->bev &&
        (c->peer_done || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0))
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    conn_unref(c);
}

static bool wants_keep_alive(const struct http_head *h)
{
    if (h->minor_version == 0) return http_head_has_token(h, "Connection", "keep-alive");
    return !http_head_has_token(h, "Connection", "close");
}

static bool all_digits(struct http_str s)
{
    if (s.n == 0) return false;
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] < '0' || s.p[i] > '9') return false;
    return true;
}

/* Why the head cannot be framed or addressed without guessing, or NULL.
 * A request whose length two readers could see differently is how
 * requests are smuggled past a proxy: a second Content-Length, or one
 * that is not a number, is refused (RFC 9112 6.3), and so is an
 * HTTP/1.1 request without exactly one Host (RFC 9112 3.2). */
static const char *head_error(const struct http_head *h)
{
    int hosts = http_head_count(h, "Host");
    if (hosts > 1 || (hosts == 0 && h->minor_version == 1))
        return "an HTTP/1.1 request needs exactly one Host header";
    const struct http_str *first = http_head_get(h, "Content-Length");
    if (!first) return NULL;
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (!http_str_ieq(hd->name, "Content-Length")) continue;
        if (!all_digits(hd->value) || hd->value.n != first->n || memcmp(hd->value.p, first->p, first->n))
            return "invalid or conflicting Content-Length";
    }
    return NULL;
}

/* Bodies are never read: a request with one is answered, then closed. */
static bool has_body(const struct http_head *h)
{
    if (http_head_get(h, "Transfer-Encoding")) return true;
    const struct http_str *cl = http_head_get(h, "Content-Length");
    for (size_t i = 0; cl && i < cl->n; i++)
        if (cl->p[i] != '0') return true;
    return false;
}

/* Remembers which allowed origin the request came from, so that an answer
 * written later (asynchronously) still carries the right CORS header. */
static void set_cors_origin(struct conn *c, const struct http_head *h)
{
    const struct chat_config *cfg = c->w->cfg;
    const struct http_str *origin = http_head_get(h, "Origin");
    c->cors_origin = CONN_CORS_NONE;
    if (!origin) return;
    if (cfg->origins_count == 0) {
        c->cors_origin = CONN_CORS_ANY;
        return;
    }
    for (int i = 0; i < cfg->origins_count && i < 127; i++) {
        if (strlen(cfg->origins[i]) == origin->n &&
            strncasecmp(cfg->origins[i], origin->p, origin->n) == 0) {
            c->cors_origin = (int8_t)i;
            return;
        }
    }
}

/* A head we will not serve ends the connection, with the rest of it
 * (or a body) perhaps still coming. */
static void refuse_head(struct conn *c)
{
    c->keep_alive = false;
    c->peer_may_send = true;
}

/* Handles one complete head; returns false when the connection may not
 * go on to the next pipelined request. */
static bool handle_request(struct conn *c, const struct http_head *h, size_t head_len)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const char *bad = head_error(h);
    if (bad) {
        c->head_only = false;
        set_cors_origin(c, h);
        refuse_head(c);
        http_reply_error(c, 400, "bad_request", bad);
        return false;
    }
    struct http_req req = {.c = c, .head = h, .has_body = has_body(h)};
    c->keep_alive = wants_keep_alive(h) && !req.has_body;
    /* Bodies are never read: the answer closes, while the body may
     * still be on its way. */
    c->peer_may_send = req.has_body;
    c->head_only = http_str_eq(h->method, "HEAD");
    if (!c->served) {
        c->served = true;
        bufferevent_set_timeouts(c->bev, c->w->http_idle_timeout, c->w->http_idle_timeout);
    }
    set_cors_origin(c, h);
    c->head_started_ms = 0;
    http_routes_dispatch(&req);
    /* The head lives in the input buffer until here. After an upgrade the
     * bytes behind it are the first WebSocket frames. */
    if (c->closed) return false;
    evbuffer_drain(in, head_len);
    if (c->kind == CONN_WS) {
        if (evbuffer_get_length(in) > 0) ws_conn_on_read(c);
        return false;
    }
    return !c->close_after_flush;
}

void http_conn_on_eof(struct conn *c)
{
    c->peer_done = true;
    if (!c->busy) http_conn_on_read(c);
}

void http_conn_on_read(struct conn *c)
{
    for (int handled = 0; handled < HTTP_CONN_REQS_PER_TURN; handled++) {
        if (c->closed || c->busy || c->close_after_flush || c->kind != CONN_HTTP) return;
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t len = evbuffer_get_length(in);
        if (len == 0) {
            /* A peer that half-closed has had all its answers. */
            if (c->peer_done) conn_close_after_flush(c);
            return;
        }
        if (conn_unsent(c) > HTTP_CONN_OUTPUT_PAUSE) return; /* resumed by on_drain */
        size_t n = len < HTTP_HEAD_MAX_BYTES + 1 ? len : HTTP_HEAD_MAX_BYTES + 1;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
        if (!p) {
            conn_close(c);
            return;
        }
        static struct http_head head; /* large; one request at a time per worker */
        int r = http_head_parse(p, n, &head);
        if (r == HTTP_HEAD_AGAIN) {
            if (c->peer_done) {
                /* The rest of this head will never come. */
                conn_close_after_flush(c);
                return;
            }
            int64_t now = timefmt_mono_ms();
            if (!c->head_started_ms) c->head_started_ms = now;
            else if (now - c->head_started_ms > HTTP_HEAD_DEADLINE_MS) {
                refuse_head(c);
                http_reply_error(c, 408, "timeout", "request head not completed in time");
            }
            return;
        }
        if (r == HTTP_HEAD_TOO_LARGE) {
            refuse_head(c);
            http_reply_error(c, 431, "too_large",
                             "request head over 8192 bytes or over 100 header lines");
            return;
        }
        if (r < 0) {
            refuse_head(c);
            http_reply_error(c, 400, "bad_request", "malformed request head");
            return;
        }
        if (!handle_request(c, &head, (size_t)r)) return;
    }
    /* More pipelined requests may wait: come back on a later turn. */
    if (!c->closed && c->kind == CONN_HTTP)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void http_conn_on_drain(struct conn *c)
{
    if (!c->busy && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) http_conn_on_read(c);
}

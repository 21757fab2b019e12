#include "worker/ws_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "shared/log.h"
#include "shared/timefmt.h"
#include "worker/chat_admit.h"
#include "worker/chat_request.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/http_conn.h"
#include "shared/metrics.h"
#include "worker/worker.h"
#include "worker/ws_frame.h"
#include "worker/ws_handshake.h"
#include "worker/ws_out.h"

/* After we sent a close frame, the peer has this long to answer it (and
 * to take what we still had to send) before the socket is dropped: idle
 * that long (the bufferevent's timeouts), or, sending other frames
 * meanwhile, that long in all (close_by_ms). */
#define CLOSE_WAIT_S 5
/* Frames handled per connection per loop turn, so one fast sender cannot
 * hold the loop; the rest waits for the next turn. */
#define FRAMES_PER_TURN 64

enum ws_state { WS_OPEN, WS_CLOSE_SENT };

struct ws_session {
    struct ws_decoder dec;
    struct ws_out out;
    struct evbuffer *frag;       /* a fragmented message so far; NULL until needed */
    struct chat_session *chat;   /* owned */
    uint64_t id;
    uint8_t state;
    int64_t close_by_ms;         /* WS_CLOSE_SENT: the peer's close is due by then */
    struct ws_shared *welcome;   /* a welcome over the output limit, until written (a reference) */
    bool ping_outstanding;
    bool upgrade_unsent;         /* the 101 waits in out: the upgrade can be taken back */
};

static uint64_t next_conn_id = 1;

struct chat_session *ws_conn_chat(const struct conn *c) { return c->ws ? c->ws->chat : NULL; }
uint64_t ws_conn_id(const struct conn *c) { return c->ws ? c->ws->id : 0; }

struct ws_out *ws_conn_out(struct conn *c) { return c->ws ? &c->ws->out : NULL; }

size_t ws_conn_queued(const struct conn *c) { return c->ws ? c->ws->out.bytes : 0; }

void ws_session_free(struct ws_session *s)
{
    if (!s) return;
    ws_out_clear(&s->out);
    ws_shared_release(s->welcome);
    if (s->frag) evbuffer_free(s->frag);
    chat_session_free(s->chat);
    free(s);
}

void ws_conn_upgrade(struct http_req *req)
{
    struct conn *c = req->c;
    const struct http_head *h = req->head;
    const struct http_str *version = http_head_get(h, "Sec-WebSocket-Version");
    const struct http_str *key = http_head_get(h, "Sec-WebSocket-Key");
    c->keep_alive = c->keep_alive && !req->has_body;
    if (c->peer_done) {
        /* Read after the client's FIN (behind an answer it waited for):
         * such a WebSocket could never send a frame, nor its close. */
        c->keep_alive = false;
        http_reply_error(c, 400, "bad_request", "the client closed its side before the upgrade");
        return;
    }
    if (!http_head_has_token(h, "Upgrade", "websocket") || !http_head_has_token(h, "Connection", "upgrade")) {
        http_reply_error_with(c, 400, "bad_request",
                              "a WebSocket upgrade needs 'Upgrade: websocket' and "
                              "'Connection: Upgrade'",
                              NULL);
        return;
    }
    if (h->minor_version < 1 || req->has_body) {
        http_reply_error(c, 400, "bad_request", "a WebSocket upgrade needs HTTP/1.1 and no body");
        return;
    }
    if (!version || !http_str_eq(*version, "13")) {
        http_reply_error(c, 426, "bad_request", "unsupported Sec-WebSocket-Version; use 13");
        return;
    }
    char accept[WS_ACCEPT_LEN + 1];
    if (!key || http_head_count(h, "Sec-WebSocket-Key") != 1 ||
        ws_handshake_accept(key->p, key->n, accept) < 0) {
        http_reply_error(c, 400, "bad_request", "missing or malformed Sec-WebSocket-Key");
        return;
    }
    if (c->w->draining) {
        http_reply_error(c, 503, "unavailable", "server is shutting down");
        return;
    }
    chat_admit(req, accept);
}

static struct ws_shared *bytes_new(const void *head, size_t head_len, const void *body,
                                   size_t body_len);

/* The 101 waits in the connection's queue for the welcome and leaves with
 * it in one writev: the client can do nothing before its welcome, and a
 * write of its own costs a system call and a wakeup of the client on
 * every upgrade. Whatever is sent first (the welcome, a ping, a close)
 * carries it. -1: out of memory. */
static int send_switching(struct conn *c, const char *accept_key)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept_key);
    if (n < 0 || (size_t)n >= sizeof head) n = 0; /* cannot happen: the key is 28 characters */
    struct ws_shared *f = bytes_new(head, (size_t)n, NULL, 0);
    if (!f) return -1;
    /* Behind earlier answers still unsent it goes to the bufferevent,
     * which writes it on its own: then it cannot be taken back. */
    bool held = evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
    int r = ws_out_hold(c, &c->ws->out, f);
    ws_shared_release(f);
    if (r == 0 && held) c->ws->upgrade_unsent = true;
    else if (r == 0) metrics_add(METRIC_WS_UPGRADES, 1);
    return r;
}

/* The first frame carries the 101 out: the upgrade is final. */
static void upgrade_final(struct ws_session *s)
{
    if (!s->upgrade_unsent) return;
    s->upgrade_unsent = false;
    metrics_add(METRIC_WS_UPGRADES, 1);
}

int ws_conn_accept(struct conn *c, const char *accept_key, struct chat_session *session)
{
    if (c->closed) {
        chat_session_free(session);
        return -1;
    }
    struct ws_session *s = calloc(1, sizeof *s);
    if (!s) {
        chat_session_free(session);
        http_reply_error(c, 503, "unavailable", "out of memory");
        return -1;
    }
    ws_decoder_init(&s->dec);
    s->id = next_conn_id++;
    s->chat = session;
    c->ws = s;
    if (send_switching(c, accept_key) < 0) {
        /* Never opened: closing it would count a close without an open. */
        s->chat = NULL;
        chat_session_free(session);
        conn_close(c);
        return -1;
    }
    conn_become_ws(c);
    const struct chat_config *cfg = c->w->cfg;
    /* One whole largest frame must fit, or the decoder could never see it. */
    bufferevent_setwatermark(c->bev, EV_READ, 0,
                             (size_t)cfg->max_frame_bytes + WS_FRAME_HEADER_MAX + 4);
    /* Silent peers are pinged, then dropped (ws_conn_on_timeout); a peer
     * that takes none of our bytes for as long is dropped too. */
    bufferevent_set_timeouts(c->bev, c->w->ws_ping_timeout, c->w->ws_ping_timeout);
    bufferevent_enable(c->bev, EV_READ);
    chat_session_open(c);
    /* Frames the client sent right behind its upgrade request. */
    if (!c->closed && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    return 0;
}

static struct ws_shared *frame_new(uint8_t opcode, const void *payload, size_t len);

struct ws_shared *ws_shared_new_text(const char *payload, size_t len)
{
    return frame_new(WS_OP_TEXT, payload, len);
}

void ws_shared_release(struct ws_shared *f)
{
    if (f && --f->refs == 0) free(f);
}

bool ws_conn_congested(const struct conn *c)
{
    return conn_unsent(c) > (size_t)c->w->cfg->max_outbuf_bytes / 2;
}

static void close_slow(struct conn *c)
{
    metrics_add(METRIC_SLOW_CLOSES, 1);
    log_debug("closing a slow consumer: %zu bytes unsent", conn_unsent(c));
    ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "too slow: output buffer full");
}

/* An oversized welcome is let go once written: the queue and the
 * bufferevent hold no reference to it any more. */
static void welcome_written(struct ws_session *s)
{
    if (s->welcome && s->welcome->refs == 1) {
        ws_shared_release(s->welcome);
        s->welcome = NULL;
    }
}

/* Unsent output is what the kernel has not taken. Frames of this turn
 * have not been offered to it yet: a burst queued in one callback (a
 * room's repair, a replay) is written out before it is judged. */
static bool over_limit(struct conn *c, size_t len, size_t limit)
{
    /* A welcome larger than the limit is not held against what follows
     * it (joins, acks) while it is on its way: it is written once the
     * queue and the bufferevent have let go of it. */
    struct ws_session *s = c->ws;
    welcome_written(s);
    if (s->welcome) limit += s->welcome->len;
    if (conn_unsent(c) + len <= limit) return false;
    ws_out_write_now(c, &c->ws->out);
    return c->closed || conn_unsent(c) + len > limit;
}

/* Returns false when the frame may not be queued. */
static bool make_room(struct conn *c, size_t len)
{
    if (c->closed || !c->ws || c->ws->state != WS_OPEN) return false;
    if (over_limit(c, len, (size_t)c->w->cfg->max_outbuf_bytes)) {
        if (!c->closed) close_slow(c);
        return false;
    }
    return true;
}

bool ws_conn_backlogged(struct conn *c)
{
    if (c->closed || !c->ws || c->ws->state != WS_OPEN) return true;
    return over_limit(c, 0, (size_t)c->w->cfg->max_outbuf_bytes / 2);
}

/* A frame that could not be queued (out of memory) would leave a hole in
 * what the client saw: it is closed instead, and catches up when it
 * reconnects. */
static int frame_lost(struct conn *c)
{
    if (!c->closed && c->ws && c->ws->state == WS_OPEN)
        ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "out of memory; reconnect");
    return -1;
}

/* head then body (body_len may be 0), with one reference. */
static struct ws_shared *bytes_new(const void *head, size_t head_len, const void *body,
                                   size_t body_len)
{
    if (body_len > UINT32_MAX - head_len) return NULL;
    struct ws_shared *f = malloc(sizeof *f + head_len + body_len);
    if (!f) return NULL;
    f->refs = 1;
    f->len = (uint32_t)(head_len + body_len);
    memcpy(f->data, head, head_len);
    if (body_len) memcpy(f->data + head_len, body, body_len);
    return f;
}

static struct ws_shared *frame_new(uint8_t opcode, const void *payload, size_t len)
{
    uint8_t head[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header_encode(head, opcode, len);
    return bytes_new(head, hl, payload, len);
}

/* A frame for this connection alone (control frames, acks, errors). */
static int send_frame(struct conn *c, uint8_t opcode, const void *payload, size_t len)
{
    struct ws_shared *f = frame_new(opcode, payload, len);
    if (!f) return -1;
    upgrade_final(c->ws);
    int r = ws_out_push(c, &c->ws->out, f);
    ws_shared_release(f);
    return r;
}

/* Queues a frame the caller made room for. */
static int push_shared(struct conn *c, struct ws_shared *f)
{
    upgrade_final(c->ws);
    return ws_out_push(c, &c->ws->out, f) < 0 ? frame_lost(c) : 0;
}

int ws_conn_send_text(struct conn *c, const char *payload, size_t len)
{
    if (!make_room(c, len + WS_FRAME_HEADER_MAX)) return -1;
    return send_frame(c, WS_OP_TEXT, payload, len) < 0 ? frame_lost(c) : 0;
}

int ws_conn_send_welcome(struct conn *c, const char *payload, size_t len)
{
    if (c->closed || !c->ws || c->ws->state != WS_OPEN) return -1;
    struct ws_shared *f = frame_new(WS_OP_TEXT, payload, len);
    if (!f) return frame_lost(c);
    int r = push_shared(c, f);
    /* Kept (our reference) while it is larger than the limit. */
    if (r == 0 && len > (size_t)c->w->cfg->max_outbuf_bytes && !c->ws->welcome) c->ws->welcome = f;
    else ws_shared_release(f);
    return r;
}

int ws_conn_send_shared(struct conn *c, struct ws_shared *f)
{
    if (!make_room(c, f->len)) return -1;
    return push_shared(c, f);
}

/* The chat is over, and the peer has CLOSE_WAIT_S in all to finish. */
static void enter_close_sent(struct conn *c)
{
    c->ws->state = WS_CLOSE_SENT;
    c->ws->close_by_ms = timefmt_mono_ms() + CLOSE_WAIT_S * 1000;
    chat_session_closing(c);
}

/* Our half of the close handshake: the frame, and the chat is over. */
static void send_close(struct conn *c, uint16_t code, const char *reason)
{
    uint8_t payload[WS_CONTROL_MAX];
    size_t n = ws_close_payload_encode(payload, code, reason);
    send_frame(c, WS_OP_CLOSE, payload, n);
    /* Told of every write from now on (ws_conn_on_drain), not only when
     * the output empties: a peer reading a trickle of what is left must
     * not hold the connection past close_by_ms either. */
    if (c->bev) bufferevent_setwatermark(c->bev, EV_WRITE, SIZE_MAX / 2, 0);
    enter_close_sent(c);
}

void ws_conn_refuse(struct conn *c, int status, const char *code, const char *message,
                    uint16_t close_code)
{
    struct ws_session *s = c->ws;
    if (c->closed || !s || s->state != WS_OPEN) return;
    if (!s->upgrade_unsent) {
        ws_conn_close(c, close_code, message);
        return;
    }
    ws_out_clear(&s->out);
    s->upgrade_unsent = false;
    enter_close_sent(c);
    c->keep_alive = false;
    struct timeval wait = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wait);
    http_reply_error(c, status, code, message);
}

void ws_conn_close(struct conn *c, uint16_t code, const char *reason)
{
    if (c->closed || !c->ws || c->ws->state != WS_OPEN) return;
    send_close(c, code, reason);
    struct timeval wait = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, &wait, &wait);
    /* Frames held while the session waited for its welcome may have
     * filled the input to its limit, which stopped reading (and its
     * timeout): the close is waited for from here on. */
    ws_conn_resume_read(c);
}

/* Reads no more and closes the TCP side once what was sent is out, which
 * a peer that stopped reading does not get to put off for long. */
static void close_once_sent(struct conn *c)
{
    struct timeval wait = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wait);
    conn_close_after_flush(c);
}

/* A protocol error: say why and stop reading; no need to wait for the
 * peer, whose next bytes we would not trust anyway. */
static void fail(struct conn *c, uint16_t code, const char *reason)
{
    c->peer_may_send = true;
    if (c->ws->state == WS_OPEN) send_close(c, code, reason);
    close_once_sent(c);
}

static const char *fail_reason(uint16_t code)
{
    switch (code) {
    case WS_CLOSE_UNSUPPORTED: return "binary frames are not accepted";
    case WS_CLOSE_INVALID_DATA: return "invalid UTF-8";
    case WS_CLOSE_TOO_BIG: return "message too big";
    default: return "protocol error";
    }
}

static void on_text(struct conn *c, const struct ws_event *ev)
{
    struct ws_session *s = c->ws;
    if (ev->first && ev->fin) {
        if (s->state == WS_OPEN) chat_session_on_text(c, (const char *)ev->data, ev->len);
        return;
    }
    if (!s->frag && !(s->frag = evbuffer_new())) {
        fail(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (evbuffer_add(s->frag, ev->data, ev->len) < 0) {
        fail(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (!ev->fin) return;
    size_t len = evbuffer_get_length(s->frag);
    /* An empty buffer pulls up to NULL: the empty message gets its
     * answer like any other. */
    const char *msg = len ? (const char *)evbuffer_pullup(s->frag, -1) : "";
    if (!msg) {
        fail(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (s->state == WS_OPEN) chat_session_on_text(c, msg, len);
    /* The accumulation buffer is rare; give it back rather than keep
     * its memory in an idle connection. */
    evbuffer_free(s->frag);
    s->frag = NULL;
}

/* Handles one decoded event; returns false when reading must stop. */
static bool on_event(struct conn *c, struct ws_event *ev)
{
    struct ws_session *s = c->ws;
    switch (ev->type) {
    case WS_EV_TEXT:
        on_text(c, ev);
        return !c->closed;
    case WS_EV_PING:
        /* A pong counts against the output limit like any frame: a peer
         * that pings and never reads is a slow consumer (1013). */
        if (s->state == WS_OPEN && make_room(c, ev->len + WS_FRAME_HEADER_MAX))
            send_frame(c, WS_OP_PONG, ev->data, ev->len);
        return !c->closed;
    case WS_EV_PONG:
        s->ping_outstanding = false;
        return true;
    case WS_EV_CLOSE:
        /* Echo the peer's code (RFC 6455 5.5.1); none given: none back. */
        if (s->state == WS_OPEN)
            send_close(c, ev->close_code == WS_CLOSE_NO_STATUS ? 0 : ev->close_code, NULL);
        /* The handshake is complete: the server closes the TCP side.
         * The peer sends nothing after its close frame (RFC 6455 5.5.1),
         * so the close need not linger, nor ask the kernel whether more
         * input waits: that ioctl was 2% of a worker's time in churn. */
        c->peer_done = true;
        conn_discard_input(c);
        close_once_sent(c);
        return false;
    case WS_EV_FAIL:
        fail(c, ev->close_code, fail_reason(ev->close_code));
        return false;
    default:
        return false;
    }
}

void ws_conn_on_read(struct conn *c)
{
    struct ws_session *s = c->ws;
    /* The welcome is the first thing a client gets, so nothing it sends
     * is answered before it (a ping neither): its frames wait in the
     * input, which stops filling at the read watermark, until
     * chat_session has sent the welcome and calls ws_conn_resume_read. */
    if (s->chat && s->chat->state == CHAT_WAITING) return;
    /* Frames other than the close answer do not keep a closing
     * connection open past its time. */
    if (s->state == WS_CLOSE_SENT && timefmt_mono_ms() >= s->close_by_ms) {
        conn_close(c);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max = (size_t)c->w->cfg->max_frame_bytes;
    for (int i = 0; i < FRAMES_PER_TURN; i++) {
        if (c->closed || c->close_after_flush) return;
        size_t len = evbuffer_get_length(in);
        if (len == 0) return;
        /* At its limit of requests in flight (chat_request.h) the rest
         * waits; the answer that frees a place resumes reading. */
        if (c->requests >= CHAT_REQUESTS_MAX) {
            if (!c->reads_paused) metrics_add(METRIC_READS_PAUSED, 1);
            c->reads_paused = true;
            return;
        }
        c->reads_paused = false;
        size_t want = len < max + WS_FRAME_HEADER_MAX + 4 ? len : max + WS_FRAME_HEADER_MAX + 4;
        uint8_t *p = evbuffer_pullup(in, (ssize_t)want);
        if (!p) {
            conn_close(c);
            return;
        }
        struct ws_event ev;
        int r = ws_frame_decode(&s->dec, p, want, max, &ev);
        if (r == 0) return;
        if (r > 0) {
            metrics_add(METRIC_FRAMES_IN, 1);
            metrics_add(METRIC_BYTES_IN, (uint64_t)r);
        }
        bool go_on = on_event(c, &ev);
        if (c->closed) return;
        if (r > 0) evbuffer_drain(in, (size_t)r);
        if (!go_on) {
            conn_discard_input(c);
            return;
        }
    }
    if (!c->closed && evbuffer_get_length(in) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void ws_conn_resume_read(struct conn *c)
{
    if (!c->closed && c->bev && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void ws_conn_on_drain(struct conn *c)
{
    if (!c->ws) return;
    welcome_written(c->ws);
    if (c->ws->state == WS_OPEN) chat_session_on_drain(c);
    else if (timefmt_mono_ms() >= c->ws->close_by_ms) conn_close(c);
}

void ws_conn_on_timeout(struct conn *c, short what)
{
    struct ws_session *s = c->ws;
    if (s) welcome_written(s); /* an idle connection keeps no copy of it */
    if (!s || s->state != WS_OPEN || (what & BEV_EVENT_WRITING)) {
        /* The close handshake or a slow reader ran out of time. */
        conn_close(c);
        return;
    }
    if (c->requests >= CHAT_REQUESTS_MAX) {
        /* Not silent: paused at its limit of requests in flight, with
         * its frames (a pong, perhaps) unread until one is answered. */
        s->ping_outstanding = false;
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    if (s->ping_outstanding) {
        log_debug("closing a silent websocket peer");
        conn_close(c);
        return;
    }
    /* Silent for one interval: ask. Another silent interval closes it. */
    s->ping_outstanding = true;
    send_frame(c, WS_OP_PING, NULL, 0);
    bufferevent_enable(c->bev, EV_READ);
}

void ws_conn_on_close(struct conn *c)
{
    if (c->ws) chat_session_closing(c);
}

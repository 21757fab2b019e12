#ifndef CHATD_WORKER_CONN_H
#define CHATD_WORKER_CONN_H

/* One client connection, HTTP first and WebSocket after an upgrade.
 *
 * Ownership: the worker owns every conn through its lists. conn_close()
 * frees the bufferevent at once (no callback of it fires again; libevent
 * closes the socket later in the same loop round) and unlinks the conn; the struct itself lives on while
 * asynchronous operations hold references (conn_ref/conn_unref) and is
 * freed by the last conn_unref. A callback that finds c->closed set must
 * drop its reference and do nothing else. Event handlers take a reference
 * for their own duration, so nothing is ever freed inside its own
 * callback. */

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/ip_limit.h"
#include "worker/worker.h"

struct bufferevent;
struct worker;
struct ws_session;

enum conn_kind { CONN_HTTP = 0, CONN_WS = 1 };

#define CONN_CORS_NONE (-1) /* no Origin, or one not allowed: no CORS headers */
#define CONN_CORS_ANY (-2)  /* allowed_origins is empty: any origin */

struct conn {
    struct conn *prev, *next;  /* in w->http_conns or w->ws_conns */
    struct worker *w;
    struct bufferevent *bev;   /* NULL once closed */
    uint8_t kind;              /* enum conn_kind */
    bool closed;
    bool close_after_flush;    /* close once the output has been written */
    bool peer_may_send;        /* closing before the peer is done: close gently */
    bool lingering;            /* our FIN is sent; its late input is dropped */
    bool peer_done;            /* the peer sends no more (HTTP half-close, WebSocket close frame) */
    bool busy;                 /* HTTP: a request is being answered asynchronously */
    bool keep_alive;           /* HTTP: the request being answered allows another */
    bool head_only;            /* HTTP: answering a HEAD request: headers, no body */
    bool served;               /* HTTP: a request has been read (idle timeout, not first) */
    uint16_t refs;
    int8_t cors_origin;        /* HTTP: CONN_CORS_* or an index into allowed_origins */
    uint8_t requests;          /* WebSocket: chat requests awaiting their reply */
    bool reads_paused;         /* WebSocket: frames left unread at CHAT_REQUESTS_MAX */
    int64_t head_started_ms;   /* HTTP: when the unfinished head began, 0 when idle */
    int64_t linger_by_ms;      /* lingering: closed by then whatever the peer does */
    bool ip_counted;           /* counted in the worker's ip_limit */
    struct ws_session *ws;     /* after the upgrade; owned */
    struct ip_addr peer;
};

/* Adopts an accepted, non-blocking socket. Returns NULL (socket closed)
 * when memory runs out. */
struct conn *conn_new(struct worker *w, int fd, const struct ip_addr *peer, bool ip_counted);

void conn_close(struct conn *c);

/* Closes once the output is written. If the peer may still be sending
 * (peer_may_send, or input we have not read), the close lingers: our
 * FIN goes first and what arrives is dropped until the peer closes too,
 * for CONN_LINGER_MS at most. A plain close with unread input answers
 * with RST, and a peer's stack that sees the RST before its application
 * read may discard the answer we just sent (a 431, a 1009 close frame). */
void conn_close_after_flush(struct conn *c);
#define CONN_LINGER_MS 5000
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

/* Drops what the peer sent that we have read but not consumed. */
void conn_discard_input(struct conn *c);

/* Bytes waiting in our output buffer, i.e. not yet taken by the kernel. */
size_t conn_unsent(const struct conn *c);

/* Moves the connection from the HTTP list to the WebSocket list. */
void conn_become_ws(struct conn *c);

void conn_list_add(struct conn_list *l, struct conn *c);
void conn_list_remove(struct conn_list *l, struct conn *c);

#endif

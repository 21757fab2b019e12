#ifndef CHATD_WORKER_WS_CONN_H
#define CHATD_WORKER_WS_CONN_H

/* The WebSocket side of a connection: the upgrade, reading frames,
 * writing text frames (copied, or shared between many connections),
 * liveness pings and the close handshake. What the messages mean is the
 * chat layer's business (chat_session_*). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct http_req;
struct ws_session;
struct chat_session;
struct ws_out;

/* GET /api/chat: checks the handshake headers (400/426), then asks the
 * admission policy (chat_admit), which answers with an HTTP error or
 * calls ws_conn_accept, possibly later. */
void ws_conn_upgrade(struct http_req *req);

/* Completes the upgrade: queues the 101 with the accept key (it leaves
 * with the first frame), switches the connection to WebSocket framing and
 * hands it the chat session (owned by the connection from here on). */
int ws_conn_accept(struct conn *c, const char *accept_key, struct chat_session *session);

/* Kicked by an admin, or found banned (PROTOCOL.md section 5). */
#define WS_CLOSE_KICKED 4003

/* Takes back an upgrade whose 101 has not left yet: the client gets the
 * HTTP error it would have had before the upgrade (JSON, CORS headers),
 * and the connection closes. Once the 101 is out, closes with
 * close_code instead. */
void ws_conn_refuse(struct conn *c, int status, const char *code, const char *message,
                    uint16_t close_code);

/* A frame encoded once and shared, read-only, by every connection it is
 * queued on. Reference-counted: ws_shared_new returns it with one
 * reference, each queueing adds one, the output buffer drops its own when
 * the kernel has taken the bytes, ws_shared_release drops the caller's. */
struct ws_shared {
    uint32_t refs;
    uint32_t len;
    uint8_t data[];
};
struct ws_shared *ws_shared_new_text(const char *payload, size_t len);
void ws_shared_release(struct ws_shared *f);

/* Queues a text frame. Returns -1 when the connection is closing, and
 * when it is closed with 1013 because the frame cannot be sent: its
 * unsent output (once what this turn queued was offered to the kernel)
 * would pass max_outbuf_bytes, or memory ran out. A frame is never
 * skipped on a connection that stays open. */
int ws_conn_send_text(struct conn *c, const char *payload, size_t len);
int ws_conn_send_shared(struct conn *c, struct ws_shared *f);

/* The welcome, the first frame a client gets, whatever its size:
 * max_outbuf_bytes bounds output held for a reader that fell behind, and
 * this one has had nothing to read yet. A room with more online users
 * than the limit holds (about 15,000 at 1 MiB) could not be joined.
 * Until it is written, the limit for later frames is raised by its size. */
int ws_conn_send_welcome(struct conn *c, const char *payload, size_t len);

/* Over half of max_outbuf_bytes waits: optional traffic (typing) is not
 * sent until it drains. */
bool ws_conn_congested(const struct conn *c);

/* Like ws_conn_congested, after offering the kernel what this turn
 * queued: for a sender that paces itself (a replay), resuming from
 * chat_session_on_drain. True for a connection that is closing. */
bool ws_conn_backlogged(struct conn *c);

/* Starts the close handshake with code (0: no code). The connection is
 * gone after the peer answers or CLOSE_WAIT_MS. */
void ws_conn_close(struct conn *c, uint16_t code, const char *reason);

/* Handles frames ws_conn_on_read left in the input: those the client
 * sent while its session waited for the welcome, or while it had
 * CHAT_REQUESTS_MAX requests awaiting replies. */
void ws_conn_resume_read(struct conn *c);

/* Hooks called by conn.c. */
void ws_conn_on_read(struct conn *c);
void ws_conn_on_drain(struct conn *c);
void ws_conn_on_timeout(struct conn *c, short what);
void ws_conn_on_close(struct conn *c);
void ws_session_free(struct ws_session *s);

struct chat_session *ws_conn_chat(const struct conn *c);

/* The connection's output queue (ws_out.h), NULL before the upgrade;
 * and how many bytes wait in it. */
struct ws_out *ws_conn_out(struct conn *c);
size_t ws_conn_queued(const struct conn *c);
uint64_t ws_conn_id(const struct conn *c);

#endif

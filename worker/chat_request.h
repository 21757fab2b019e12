#ifndef CHATD_WORKER_CHAT_REQUEST_H
#define CHATD_WORKER_CHAT_REQUEST_H

/* One client frame of a chat socket: parsed, then typing is forwarded and
 * message/edit/delete go through rate check, validation, storage,
 * publication and exactly one reply (ack or error), in that order. */

#include <stddef.h>

/* Requests of one connection awaiting their reply (rate check, storage).
 * At this many, its further frames stay unread until one is answered, so
 * a client that sends faster than it is answered is held back by TCP
 * instead of queueing without bound: each request holds its frame and a
 * reference to the connection (conn.requests, conn.refs). */
#define CHAT_REQUESTS_MAX 64

struct conn;
struct chat_session;

void chat_request_handle(struct conn *c, struct chat_session *s, const char *data, size_t len);

#endif

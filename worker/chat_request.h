#ifndef CHATD_WORKER_CHAT_REQUEST_H
#define CHATD_WORKER_CHAT_REQUEST_H

/* One client frame of a chat socket: parsed, then typing is forwarded and
 * message/edit/delete go through rate check, validation, storage,
 * publication and exactly one reply (ack or error), in that order. */

#include <stddef.h>

struct conn;
struct chat_session;

void chat_request_handle(struct conn *c, struct chat_session *s, const char *data, size_t len);

#endif

#ifndef CHATD_WORKER_CHAT_ADMIT_H
#define CHATD_WORKER_CHAT_ADMIT_H

/* Who may open a chat socket, decided before the upgrade (PROTOCOL.md
 * sections 1-3): Origin allow-list (403), room name and since (400),
 * token from the Authorization header or the token parameter (401), the
 * token's rooms claim (403), and what the welcome needs (503). Then it
 * calls ws_conn_accept; the ban set in Redis is read with the presence
 * join, before the 101 leaves (403; 503 when Redis does not answer). */

#include <stdbool.h>

#include "shared/jwt.h"

struct http_req;
struct conn;
struct worker;

void chat_admit(struct http_req *req, const char *accept_key);

/* Shared with the REST endpoints: reads and verifies the request's token.
 * On failure it has answered (401) and returns -1. */
int chat_admit_token(struct http_req *req, struct jwt_claims *claims);

/* The Origin rule for browsers (403 answered, returns -1). */
int chat_admit_origin(struct http_req *req);

/* Asks Redis whether user_id is banned. done(arg, 0) when not, 403 when
 * banned, 503 when Redis did not answer; it is called exactly once, maybe
 * after the connection closed (check c->closed). Returns -1 when Redis is
 * down (no call). */
typedef void (*chat_ban_fn)(void *arg, int status);
int chat_admit_check_ban(struct worker *w, const char *user_id, chat_ban_fn done, void *arg);

/* Reads the room parameter (default "general"); 400 answered on a bad
 * name, returns -1. */
int chat_admit_room(struct http_req *req, char room[65], bool required);

#endif

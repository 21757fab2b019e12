#ifndef CHATD_WORKER_PRESENCE_H
#define CHATD_WORKER_PRESENCE_H

/* Who is online, kept in Redis so that every host sees the same (keys in
 * docs/redis.md). Each worker process is an instance with a heartbeat
 * key; its connections are counted per (room, user) under the instance,
 * and per room and user across instances. One Lua script applies count
 * changes atomically and PUBLISHes `join` when a user's first connection
 * to a room opens and `leave` when the last one closes, on any host. A
 * janitor in every worker reaps instances whose heartbeat expired (a
 * dead process or host) with the same logic, so their users leave within
 * presence_ttl_s. */

#include <stdbool.h>
#include <stddef.h>

struct worker;
struct chat_session;
struct presence;

struct presence *presence_new(struct worker *w, const char *predecessor);
void presence_free(struct presence *p);

/* No join or leave waits to be sent (they leave at the end of the loop
 * turn): a draining worker may go once the link has them answered too. */
bool presence_idle(const struct presence *p);

/* The command link came up: heartbeat, reap, and reconcile our counts. */
void presence_on_link(struct presence *p, bool up);

/* A connection opened / closed. The join also reads the room's online
 * list for the welcome (chat_session_online_ready is called). */
void presence_join(struct worker *w, struct chat_session *s);
void presence_leave(struct worker *w, struct chat_session *s);

/* Online users of a room (room NULL: everywhere), delivered to fn once:
 * with PRESENCE_LIST_OK, users is a JSON array of {"id","name"} (len
 * bytes, count users; fn must not keep it). */
enum presence_list_status {
    PRESENCE_LIST_OK,
    PRESENCE_LIST_UNAVAILABLE, /* Redis is down */
    PRESENCE_LIST_NO_MEMORY,
};
typedef void (*presence_list_fn)(void *arg, enum presence_list_status status, const char *users,
                                 size_t len, size_t count);
int presence_list(struct worker *w, const char *room, presence_list_fn fn, void *arg);

#endif

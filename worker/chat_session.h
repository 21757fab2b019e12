#ifndef CHATD_WORKER_CHAT_SESSION_H
#define CHATD_WORKER_CHAT_SESSION_H

/* The chat on one WebSocket connection: who the user is, the room, and
 * the life of the connection in it: waiting for the room's position,
 * sending the welcome, catching up after `since`, then live. It turns
 * client frames into requests (validate, rate-check, store, publish, ack)
 * and hub deliveries into frames.
 *
 * Ownership: created by chat_admit, owned by the connection's ws_session
 * from ws_conn_accept on, freed with it. Requests in flight hold a
 * reference to the connection, never to the session alone. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/jwt.h"
#include "shared/room.h"

struct conn;
struct hub_room;
struct ws_shared;

enum chat_state {
    CHAT_WAITING,    /* the room's position is not known yet */
    CHAT_REPLAYING,  /* welcome sent; catching up after since; live events queue */
    CHAT_LIVE,
    CHAT_CLOSED,     /* left the room */
};

struct chat_queued;
struct chat_replay;

struct chat_session {
    struct conn *c;
    struct chat_session *room_prev, *room_next; /* the room's members */
    struct hub_room *room;
    struct chat_queued *queue;    /* events held before the welcome and during replay */
    struct chat_queued *queue_tail;
    char *online;                 /* the welcome's online list as JSON text, once known; owned */
    struct chat_replay *replay;   /* CHAT_REPLAYING: the events still to send; owned */
    int64_t since;
    int64_t replay_upto;          /* the client has every change up to here */
    union {
        int64_t waiting_since_ms; /* CHAT_WAITING: when it began to wait for its welcome */
        int64_t last_typing_ms;   /* later: nothing is read before the welcome */
    };
    uint32_t queued;
    uint8_t state;                /* enum chat_state */
    uint8_t role;                 /* enum jwt_role */
    bool has_since;
    bool replay_read;             /* has_since: the replay's rows came back (on_replay) */
    bool replay_overflow;
    bool presence_added;          /* counted in Redis (or will be by a reconcile) */
    bool join_pending;            /* the join's verdict has not come back: no leave yet */
    bool pos_known;               /* the hub told us the room's position */
    bool online_known;
    /* Point into strings[], which holds them exactly sized: an idle
     * connection's memory is mostly this struct. */
    const char *room_name;
    const char *user_id;
    const char *user_name;
    char strings[];
};

/* Live events held per connection while it catches up; past this the
 * connection is closed with 1013 and reconnects with since. */
#define CHAT_REPLAY_QUEUE_MAX 10000

struct chat_session *chat_session_new(const struct jwt_claims *claims, const char *room,
                                      bool has_since, int64_t since);
void chat_session_free(struct chat_session *s);

/* From ws_conn. */
void chat_session_open(struct conn *c);
void chat_session_on_text(struct conn *c, const char *data, size_t len);
void chat_session_on_drain(struct conn *c);
/* The connection is closing (close frame sent or socket gone): leave the
 * room. Idempotent. */
void chat_session_closing(struct conn *c);

/* From the hub: the session's room listens (its SUBSCRIBE confirmed);
 * a session still to join does so now. Also called at open. */
void chat_session_listening(struct chat_session *s);

/* The welcome goes out once both are known: the room's position (the hub
 * calls chat_session_ready) and its online users (from presence: a JSON
 * array, NUL-terminated, taken over; NULL for none known). */
void chat_session_ready(struct chat_session *s);
void chat_session_online_ready(struct chat_session *s, char *online);
/* seq 0: an event outside the seq order (typing, join, leave, notice).
 * optional events (typing) are skipped for congested connections and
 * while catching up. */
void chat_session_deliver(struct chat_session *s, int64_t seq, struct ws_shared *frame,
                          bool optional);

struct worker;
/* The local number of a connection of this worker from its conn_id, or 0
 * when the id is not one of ours. */
uint64_t chat_conn_id_local(struct worker *w, const char *id);

/* The connection's conn_id (a UUID, 36 characters). */
void chat_session_conn_id(const struct chat_session *s, char out[37]);

#endif

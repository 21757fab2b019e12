#ifndef CHATD_WORKER_HUB_H
#define CHATD_WORKER_HUB_H

/* This worker's view of the distributed hub: the rooms it has members in,
 * one Redis subscription per such room, and delivery of each room's
 * changes to the local members in seq order, once, whatever order Redis
 * brings them in or whether it brings them at all.
 *
 * Channel payloads (docs/redis.md):
 *   "c <seq>\n<event json>"   a stored change; delivered in seq order
 *   "t <conn_id>\n<json>"     typing; to everyone but that connection
 *   "p <user_id>\n<json>"     join, leave: to all but that user's own connections
 *   "e\n<json>"               other events: delivered as they come
 *
 * Ordering: a room's next expected seq is learnt from PostgreSQL after its
 * SUBSCRIBE is confirmed; later changes wait in a small reorder buffer; a
 * gap that does not fill within HUB_GAP_WAIT_MS is read from the
 * room_events table. After the subscription link comes back, every room
 * reads what it missed the same way. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct hub;
struct hub_room;
struct chat_session;

#define HUB_GAP_WAIT_MS 25
#define HUB_REORDER_MAX 4096
#define HUB_REPAIR_BATCH 500

struct hub *hub_new(struct worker *w);
void hub_free(struct hub *h);

/* Adds the session to its room (creating and subscribing the room if it
 * is new here). chat_session_ready is called once the room's position is
 * known, possibly at once. Returns -1 on out of memory. */
int hub_join(struct hub *h, struct chat_session *s, const char *room);
/* Whether a welcome to this room could go out without PostgreSQL: the
 * worker already follows it. */
bool hub_position_known(const struct hub *h, const char *room);
void hub_leave(struct hub *h, struct chat_session *s);

/* The room's last delivered seq (what a welcome reports). */
int64_t hub_room_last_seq(const struct hub_room *r);
const char *hub_room_name(const struct hub_room *r);

/* Publishing on the room's channel. Return -1 when Redis is down. */
int hub_publish_change(struct hub *h, const char *room, int64_t seq, const char *payload);
int hub_publish_typing(struct hub *h, const char *room, const char *conn_id, const char *json,
                       size_t len);
int hub_publish_event(struct hub *h, const char *room, const char *json, size_t len);

/* Delivers an ephemeral event to the local members of a room now (used
 * for events this worker makes for its own members). */
void hub_deliver_local(struct hub *h, const char *room, const char *json, size_t len);

/* True while the subscription link is up and the control channel is
 * subscribed. */
bool hub_subscriptions_up(const struct hub *h);

/* The room's SUBSCRIBE is confirmed (and no UNSUBSCRIBE under way): what
 * it hears from now on keeps an online list read now current. */
bool hub_room_listening(const struct hub_room *r);

/* Called for each message on the control channel. */
typedef void (*hub_control_fn)(struct worker *w, const char *json, size_t len);
void hub_set_control_handler(struct hub *h, hub_control_fn fn);
/* Called each time the control channel is subscribed (again). */
typedef void (*hub_control_resumed_fn)(struct worker *w);
void hub_set_control_resumed(struct hub *h, hub_control_resumed_fn fn);

/* Iterates the local members of a room (NULL when none). */
struct chat_session *hub_room_members(struct hub *h, const char *room);

#endif

#ifndef CHATD_WORKER_REDIS_LINK_H
#define CHATD_WORKER_REDIS_LINK_H

/* One asynchronous hiredis connection on the worker's loop that stays up:
 * it reconnects with backoff after any loss, and a watchdog drops a link
 * whose replies stall (hiredis 0.14 has no command timeout), so callers
 * are never left waiting for ever.
 *
 * Contract for callers: redis_link_command returns -1 when the link is
 * down (nothing was sent; answer "unavailable"); otherwise the callback
 * fires exactly once, with reply NULL if the link is lost first. Replies
 * are valid only during the callback. */

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/async.h>

struct event_base;
struct redis_link;

/* Called with up=true after each (re)connect, before any queued user
 * command could be answered, and with up=false on each loss. */
typedef void (*redis_link_state_fn)(struct redis_link *l, bool up, void *arg);

struct redis_link *redis_link_new(struct event_base *base, const char *url, const char *name,
                                  redis_link_state_fn on_state, void *arg);
void redis_link_free(struct redis_link *l);

bool redis_link_up(const struct redis_link *l);

int redis_link_command(struct redis_link *l, redisCallbackFn *fn, void *privdata,
                       const char *fmt, ...);
int redis_link_commandargv(struct redis_link *l, redisCallbackFn *fn, void *privdata, int argc,
                           const char **argv, const size_t *argvlen);

/* Subscriptions. Every reply of every channel the link subscribes to (the
 * subscribe confirmations and each message) goes to the one handler set
 * here, until unsubscribed, or with NULL when the link drops. Each reply
 * also counts as life for the stall watchdog: replies come in order, so a
 * probe's confirmation waits behind every message already on its way, and
 * a busy link, read more slowly than Redis fills it, would otherwise look
 * stalled, each reconnection subscribing every channel again and adding
 * load exactly where there is too much. */
void redis_link_set_subscriber(struct redis_link *l, redisCallbackFn *fn, void *privdata);
/* Return -1 when down. */
int redis_link_subscribe(struct redis_link *l, const char *channel);
int redis_link_unsubscribe(struct redis_link *l, const char *channel);

/* A link that only listens sends nothing of its own, so a connection lost
 * without a FIN or RST (a dead host, a NAT or proxy that forgot it) would
 * leave it deaf for ever, its watchdog seeing nothing outstanding. With a
 * probe channel, a link without a reply for a second subscribes to that
 * channel again and waits for the confirmation like any command. */
void redis_link_set_probe(struct redis_link *l, const char *channel);

/* Commands sent whose replies have not come yet. */
uint32_t redis_link_pending(const struct redis_link *l);

/* Counters for /metrics. */
uint64_t redis_link_errors(const struct redis_link *l);
uint64_t redis_link_reconnects(const struct redis_link *l);

#endif

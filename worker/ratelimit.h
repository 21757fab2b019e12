#ifndef CHATD_WORKER_RATELIMIT_H
#define CHATD_WORKER_RATELIMIT_H

/* The per-user token bucket (rate_per_sec, rate_burst), kept in Redis so
 * that every connection of a user on every host draws from one bucket.
 * One round trip: a Lua script run with EVALSHA (EVAL when Redis lost its
 * script cache), using Redis's clock so hosts' clocks do not matter. */

#include <stdbool.h>
#include <stdint.h>

struct worker;

/* allowed: take the request; otherwise retry_after_ms says when one token
 * will be there. unavailable: Redis did not answer (reply "unavailable"). */
typedef void (*ratelimit_fn)(void *arg, bool unavailable, bool allowed, int64_t retry_after_ms);

/* True when Redis said a moment ago that this user has no token left
 * and none can have come since, or one can and another request (a probe)
 * is asking for it: the request is refused with retry_after_ms without
 * asking again. When false, *probe says whether this request is the
 * probe, to be passed to ratelimit_take. Call before ratelimit_take. */
bool ratelimit_refused(const char *user_id, bool *probe, int64_t *retry_after_ms);

/* The probe ratelimit_refused chose will not be sent (out of memory): the
 * next request may probe. */
void ratelimit_probe_lost(const char *user_id);

/* Returns -1 when Redis is down (no callback). */
int ratelimit_take(struct worker *w, const char *user_id, bool probe, ratelimit_fn fn, void *arg);

#endif

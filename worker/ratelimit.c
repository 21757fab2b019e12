#include "worker/ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "shared/hash.h"
#include "shared/jwt.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"
#include "worker/redis_link.h"
#include "worker/redis_script.h"
#include "worker/worker.h"

/* KEYS[1] bucket; ARGV rate per second, burst. The bucket is a hash of
 * tokens and the time they were counted; it expires once it would be
 * full again anyway, so idle users cost no memory. Returns {allowed,
 * wait}: wait is how many ms until a token can be taken, after this take
 * (0: one is there now). */
static const char script[] =
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(b[1])\n"
    "local ts = tonumber(b[2])\n"
    "if tokens == nil or ts == nil then tokens = burst; ts = now end\n"
    "if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end\n"
    "local allowed = 0\n"
    "local wait = 0\n"
    "if tokens >= 1 then\n"
    "  tokens = tokens - 1\n"
    "  allowed = 1\n"
    "end\n"
    "if tokens < 1 then wait = math.ceil((1 - tokens) * 1000 / rate) end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)\n"
    "return {allowed, wait}\n";

static struct redis_script bucket = {.body = script};

/* The users for whom Redis last said that no token is left (a refusal,
 * or a take of the last one), and until when none can be there (this
 * process's monotonic clock). While a bucket holds less than one token
 * nobody can take from it, on any host, and refused takes do not change
 * it, so until then Redis would refuse again: the answer is given here
 * without a script call. The deadline counts from when the take was
 * sent, before Redis looked, so it ends no later than Redis's own (to the
 * millisecond). A flooding client otherwise cost Redis a script run per
 * frame: 100,000 frames in 1.9 s took 1.5 s of the CPU of the Redis that
 * every host shares (bench/flood.mjs, docs/security.md). One slot per
 * hash, overwritten on collision: a forgotten window only means asking
 * Redis.
 *
 * After the window the bucket holds at most 1 + (now - until) x rate
 * tokens, so fewer than two for one refill interval: then one request
 * (the probe) goes to Redis and the others are refused here, until its
 * answer sets the next window (or, a token left, ends them). A flooding
 * connection so costs Redis about one call per interval, where it cost
 * one per request it had in flight (up to CHAT_REQUESTS_MAX) whenever a
 * window ended. Any answer that says a token is there ends the window: a
 * bucket reset (a failover) or refilled faster elsewhere (a host on a
 * higher rate_per_sec) is believed at once. */
#define WINDOW_SLOTS 256

struct window {
    int64_t until_ms;
    int64_t interval_ms; /* one token's refill, rounded down */
    bool probing;        /* a take is with Redis in the probe interval */
    char user_id[JWT_SUB_MAX_BYTES + 1];
};

static struct window windows[WINDOW_SLOTS];

static struct window *window_slot(const char *user_id)
{
    return &windows[fnv1a_str(user_id) % WINDOW_SLOTS];
}

/* The user's window, or NULL when the slot holds another user's. */
static struct window *window_of(const char *user_id)
{
    struct window *r = window_slot(user_id);
    return strcmp(r->user_id, user_id) == 0 ? r : NULL;
}

/* Redis's answer to a take of this user: no token until until_ms, or
 * (until_ms 0) one is there now. */
static void remember_answer(const char *user_id, int64_t until_ms, int64_t interval_ms)
{
    if (!user_id[0]) return; /* an id too long to keep (ratelimit_take) */
    struct window *r = until_ms ? window_slot(user_id) : window_of(user_id);
    if (!r) return;
    r->until_ms = until_ms;
    r->interval_ms = until_ms ? interval_ms : 0;
    r->probing = false;
    strcpy(r->user_id, user_id);
}

void ratelimit_probe_lost(const char *user_id)
{
    struct window *r = window_of(user_id);
    if (r) r->probing = false;
}

bool ratelimit_refused(const char *user_id, bool *probe, int64_t *retry_after_ms)
{
    struct window *r = window_of(user_id);
    int64_t now = timefmt_mono_ms();
    *probe = false;
    if (!r) return false;
    if (now >= r->until_ms + r->interval_ms) return false; /* two tokens may be there */
    if (now < r->until_ms) {
        *retry_after_ms = r->until_ms - now;
    } else if (!r->probing) {
        r->probing = true;
        *probe = true;
        return false;
    } else {
        *retry_after_ms = r->until_ms + r->interval_ms - now;
    }
    metrics_add(METRIC_RATE_REFUSED_LOCALLY, 1);
    return true;
}

struct take {
    ratelimit_fn fn;
    void *arg;
    int64_t sent_ms;
    int64_t interval_ms;
    bool probe;
    char user_id[JWT_SUB_MAX_BYTES + 1];
};

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct take *t = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        if (t->probe) ratelimit_probe_lost(t->user_id);
        t->fn(t->arg, true, false, 0);
    } else {
        bool allowed = r->element[0]->integer == 1;
        int64_t wait = r->element[1]->integer;
        remember_answer(t->user_id, wait > 0 ? t->sent_ms + wait : 0, t->interval_ms);
        t->fn(t->arg, false, allowed, allowed ? 0 : wait);
    }
    free(t);
}

int ratelimit_take(struct worker *w, const char *user_id, bool probe, ratelimit_fn fn, void *arg)
{
    struct take *t = malloc(sizeof *t);
    if (!t) {
        if (probe) ratelimit_probe_lost(user_id);
        return -1;
    }
    t->fn = fn;
    t->arg = arg;
    t->sent_ms = timefmt_mono_ms();
    t->probe = probe;
    /* Rounded down: the second token is never promised later than it
     * comes. rate_per_sec > 0 (config.c), but may be tiny: a day at most
     * keeps the conversion defined. */
    double interval_ms = 1000.0 / w->cfg->rate_per_sec;
    t->interval_ms = interval_ms > 86400000.0 ? 86400000 : (int64_t)interval_ms;
    /* Ids are tokens' subs, at most JWT_SUB_MAX_BYTES; one that is not
     * is never remembered rather than remembered cut short. */
    snprintf(t->user_id, sizeof t->user_id, "%s", strlen(user_id) > JWT_SUB_MAX_BYTES ? "" : user_id);
    char key[CONFIG_PREFIX_MAX + 8 + 65], rate[32], burst[16];
    snprintf(key, sizeof key, "%srate:%s", w->cfg->redis_prefix, user_id);
    /* Every significant digit: "%f" would print a rate under 5e-7 as
     * zero, and the script divides by it. */
    snprintf(rate, sizeof rate, "%.17g", w->cfg->rate_per_sec);
    snprintf(burst, sizeof burst, "%d", w->cfg->rate_burst);
    const char *argv[3] = {key, rate, burst};
    if (redis_script_run(w->redis, &bucket, on_reply, t, 1, 3, argv, NULL) < 0) {
        if (probe) ratelimit_probe_lost(user_id);
        free(t);
        return -1;
    }
    return 0;
}

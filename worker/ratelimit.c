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
 * full again anyway, so idle users cost no memory. */
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
    "else\n"
    "  wait = math.ceil((1 - tokens) * 1000 / rate)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)\n"
    "return {allowed, wait}\n";

static struct redis_script bucket = {.body = script};

/* The users Redis last refused, and until when no token can be there for
 * them (this process's monotonic clock). While a bucket holds less than
 * one token nobody can take from it, on any host, and refused takes do
 * not change it, so until then Redis would refuse again: the answer is
 * given here without a script call. The deadline counts from when the
 * take was sent, before Redis looked, so it ends no later than Redis's
 * own (up to the jitter of one round trip). A flooding client otherwise
 * cost Redis a script run per frame: 100,000 frames in 1.9 s took 1.5 s
 * of the CPU of the Redis that every host shares (bench/flood.mjs,
 * docs/security.md). One slot per hash, overwritten on collision: a
 * forgotten refusal only means asking Redis.
 *
 * After the window the bucket holds at most 1 + (now - until) x rate
 * tokens, less one for each take since that Redis allowed. So while
 * fewer than two can be there (one refill interval past until_ms), one
 * request (the probe) goes to Redis and the others are refused here; a
 * probe allowed took the one token, which moves the window on by an
 * interval. A flooding connection so costs Redis about one call per
 * interval, where it cost one per request it had in flight (up to
 * CHAT_REQUESTS_MAX) whenever a window ended. A probe refused opens a new
 * window; one with no verdict lets the next request probe. */
#define REFUSED_SLOTS 256

struct refused {
    int64_t until_ms;
    int64_t interval_ms; /* one token's refill, rounded down */
    bool probing;        /* a take is with Redis in the probe interval */
    char user_id[JWT_SUB_MAX_BYTES + 1];
};

static struct refused refused[REFUSED_SLOTS];

static struct refused *refused_slot(const char *user_id)
{
    return &refused[fnv1a_str(user_id) % REFUSED_SLOTS];
}

static void remember_refusal(const char *user_id, int64_t until_ms, int64_t interval_ms)
{
    if (!user_id[0]) return; /* an id too long to keep (ratelimit_take) */
    struct refused *r = refused_slot(user_id);
    r->until_ms = until_ms;
    r->interval_ms = interval_ms;
    r->probing = false;
    strcpy(r->user_id, user_id);
}

/* The probe's verdict: allowed, it took the token the window waited for;
 * none (Redis did not answer), another request may ask. */
static void probe_answered(const char *user_id, bool allowed)
{
    struct refused *r = refused_slot(user_id);
    if (!r->probing || strcmp(r->user_id, user_id) != 0) return;
    r->probing = false;
    if (allowed) r->until_ms += r->interval_ms;
}

bool ratelimit_refused(const char *user_id, bool *probe, int64_t *retry_after_ms)
{
    struct refused *r = refused_slot(user_id);
    int64_t now = timefmt_mono_ms();
    *probe = false;
    if (strcmp(r->user_id, user_id) != 0) return false;
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
        if (t->probe) probe_answered(t->user_id, false);
        t->fn(t->arg, true, false, 0);
    } else {
        bool allowed = r->element[0]->integer == 1;
        if (!allowed && r->element[1]->integer > 0)
            remember_refusal(t->user_id, t->sent_ms + r->element[1]->integer, t->interval_ms);
        else if (t->probe)
            probe_answered(t->user_id, allowed);
        t->fn(t->arg, false, allowed, r->element[1]->integer);
    }
    free(t);
}

int ratelimit_take(struct worker *w, const char *user_id, bool probe, ratelimit_fn fn, void *arg)
{
    struct take *t = malloc(sizeof *t);
    if (!t) return -1;
    t->fn = fn;
    t->arg = arg;
    t->sent_ms = timefmt_mono_ms();
    t->probe = probe;
    /* Rounded down: the second token is never promised later than it
     * comes. A rate of 0 never refills: no probe window. */
    double per_sec = w->cfg->rate_per_sec;
    t->interval_ms = per_sec > 0 ? (int64_t)(1000.0 / per_sec) : 0;
    /* Ids are tokens' subs, at most JWT_SUB_MAX_BYTES; one that is not
     * is never remembered rather than remembered cut short. */
    snprintf(t->user_id, sizeof t->user_id, "%s", strlen(user_id) > JWT_SUB_MAX_BYTES ? "" : user_id);
    char key[CONFIG_PREFIX_MAX + 8 + 65], rate[32], burst[16];
    snprintf(key, sizeof key, "%srate:%s", w->cfg->redis_prefix, user_id);
    snprintf(rate, sizeof rate, "%.6f", w->cfg->rate_per_sec);
    snprintf(burst, sizeof burst, "%d", w->cfg->rate_burst);
    const char *argv[3] = {key, rate, burst};
    if (redis_script_run(w->redis, &bucket, on_reply, t, 1, 3, argv, NULL) < 0) {
        if (probe) probe_answered(t->user_id, false);
        free(t);
        return -1;
    }
    return 0;
}

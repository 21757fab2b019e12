#include "worker/ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

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

struct take {
    ratelimit_fn fn;
    void *arg;
};

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct take *t = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        t->fn(t->arg, true, false, 0);
    } else {
        t->fn(t->arg, false, r->element[0]->integer == 1, r->element[1]->integer);
    }
    free(t);
}

int ratelimit_take(struct worker *w, const char *user_id, ratelimit_fn fn, void *arg)
{
    struct take *t = malloc(sizeof *t);
    if (!t) return -1;
    t->fn = fn;
    t->arg = arg;
    char key[CONFIG_PREFIX_MAX + 8 + 65], rate[32], burst[16];
    snprintf(key, sizeof key, "%srate:%s", w->cfg->redis_prefix, user_id);
    snprintf(rate, sizeof rate, "%.6f", w->cfg->rate_per_sec);
    snprintf(burst, sizeof burst, "%d", w->cfg->rate_burst);
    const char *argv[3] = {key, rate, burst};
    if (redis_script_run(w->redis, &bucket, on_reply, t, 1, 3, argv, NULL) < 0) {
        free(t);
        return -1;
    }
    return 0;
}

/* The worker's memory of rate-limit refusals, with Redis stubbed at its
 * edge (redis_script_run and the clock, wrapped at link time): a refusal
 * is remembered until the take's send time plus Redis's wait, and only
 * for that user; an allowed take, an error or a refusal without a wait
 * remembers nothing; a user sharing the slot replaces the memory, so the
 * first is asked about again and never refused in the other's place;
 * after the window, one probe per refill interval goes to Redis; taking
 * the last token opens a window, and a token left ends one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "shared/config.h"
#include "shared/hash.h"
#include "worker/ratelimit.h"
#include "worker/redis_script.h"
#include "worker/worker.h"

static int64_t now_ms;
static redisCallbackFn *pending_fn;
static void *pending_arg;
static char pending_key[256];

int64_t __wrap_timefmt_mono_ms(void);
int __wrap_redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                            void *privdata, int nkeys, int nargs, const char *const *argv,
                            const size_t *argvlen);

int64_t __wrap_timefmt_mono_ms(void) { return now_ms; }

int __wrap_redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                            void *privdata, int nkeys, int nargs, const char *const *argv,
                            const size_t *argvlen)
{
    (void)l;
    (void)s;
    (void)nargs;
    (void)argvlen;
    assert_null(pending_fn);
    assert_int_equal(nkeys, 1);
    snprintf(pending_key, sizeof pending_key, "%s", argv[0]);
    pending_fn = fn;
    pending_arg = privdata;
    return 0;
}

struct answer {
    int calls;
    bool unavailable, allowed;
    int64_t retry_after_ms;
};

static void on_take(void *arg, bool unavailable, bool allowed, int64_t retry_after_ms)
{
    struct answer *a = arg;
    a->calls++;
    a->unavailable = unavailable;
    a->allowed = allowed;
    a->retry_after_ms = retry_after_ms;
}

static struct chat_config cfg;
static struct worker w;

static bool last_probe;

/* Sends a take for user at the current time, as the probe if the last
 * refused() said so; Redis's answer comes later. */
static void take(const char *user, struct answer *a)
{
    memset(a, 0, sizeof *a);
    assert_int_equal(ratelimit_take(&w, user, last_probe, on_take, a), 0);
    last_probe = false;
    assert_non_null(pending_fn);
}

/* Redis answers the pending take: {allowed, wait}, or no reply at all. */
static void redis_answers(long long allowed, long long wait, bool reply)
{
    redisReply e0 = {.type = REDIS_REPLY_INTEGER, .integer = allowed};
    redisReply e1 = {.type = REDIS_REPLY_INTEGER, .integer = wait};
    redisReply *elems[2] = {&e0, &e1};
    redisReply r = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = elems};
    redisCallbackFn *fn = pending_fn;
    pending_fn = NULL;
    fn(NULL, reply ? &r : NULL, pending_arg);
}

static bool refused(const char *user, int64_t *retry)
{
    *retry = -1;
    return ratelimit_refused(user, &last_probe, retry);
}

static int setup(void **state)
{
    (void)state;
    snprintf(cfg.redis_prefix, sizeof cfg.redis_prefix, "chat:");
    cfg.rate_per_sec = 5;
    cfg.rate_burst = 10;
    w.cfg = &cfg;
    pending_fn = NULL;
    last_probe = false;
    /* Each test starts later than anything an earlier one remembered. */
    now_ms += 1000000;
    return 0;
}

static void test_refusal_lasts_from_the_send_until_redis_wait(void **state)
{
    (void)state;
    struct answer a;
    int64_t retry;
    int64_t sent = now_ms;
    take("ann", &a);
    assert_string_equal(pending_key, "chat:rate:ann");
    assert_false(refused("ann", &retry)); /* nothing known while it is asked */
    now_ms = sent + 80;                   /* Redis's answer takes 80 ms */
    redis_answers(0, 150, true);
    assert_int_equal(a.calls, 1);
    assert_false(a.allowed);
    assert_int_equal(a.retry_after_ms, 150);
    /* Counted from the send: 70 ms left, not 150. */
    assert_true(refused("ann", &retry));
    assert_int_equal(retry, 70);
    now_ms = sent + 149;
    assert_true(refused("ann", &retry));
    assert_int_equal(retry, 1);
    now_ms = sent + 150;
    assert_false(refused("ann", &retry));
    /* Only her. */
    now_ms = sent + 100;
    assert_false(refused("bob", &retry));
    assert_false(refused("an", &retry));
    assert_false(refused("ann2", &retry));
}

static void test_nothing_remembered_without_a_wait(void **state)
{
    (void)state;
    struct answer a;
    int64_t retry;
    take("cat", &a);
    redis_answers(1, 0, true);
    assert_true(a.allowed);
    assert_false(refused("cat", &retry));
    take("cat", &a);
    redis_answers(0, 0, true);
    assert_false(a.allowed);
    assert_false(refused("cat", &retry));
    take("cat", &a);
    redis_answers(0, 0, false); /* the link gave up */
    assert_true(a.unavailable);
    assert_false(refused("cat", &retry));
}

/* Another user whose id falls in the same slot (fnv1a_str, 256 slots). */
static void same_slot_as(const char *user, char *out, size_t size)
{
    for (int i = 0;; i++) {
        snprintf(out, size, "u%d", i);
        if (strcmp(out, user) != 0 && fnv1a_str(out) % 256 == fnv1a_str(user) % 256) return;
    }
}

static void test_a_user_in_the_same_slot_replaces_the_memory(void **state)
{
    (void)state;
    struct answer a;
    int64_t retry;
    char other[32];
    same_slot_as("dan", other, sizeof other);
    take("dan", &a);
    redis_answers(0, 500, true);
    assert_true(refused("dan", &retry));
    assert_false(refused(other, &retry)); /* never refused in dan's place */
    take(other, &a);
    redis_answers(0, 300, true);
    assert_true(refused(other, &retry));
    assert_int_equal(retry, 300);
    /* dan is forgotten: his next request is asked about again. */
    assert_false(refused("dan", &retry));
}

/* When the window ends, fewer than two tokens can be there for a refill
 * interval (rate 5/s: 200 ms): one request (the probe) asks Redis and
 * the others are refused here. Its answer sets what follows: the last
 * token taken, a new window from its send; a token left, no window; a
 * refusal, a new window; no verdict, the next request may ask. */
static void test_one_probe_per_interval_after_a_window(void **state)
{
    (void)state;
    struct answer a, probe;
    int64_t retry;
    int64_t sent = now_ms;
    take("eve", &a);
    redis_answers(0, 150, true); /* window until sent+150 */
    now_ms = sent + 150;
    assert_false(refused("eve", &retry));
    assert_true(last_probe);
    take("eve", &probe);
    now_ms = sent + 160;
    assert_true(refused("eve", &retry)); /* while the probe asks */
    assert_int_equal(retry, 190);        /* when a second token can be there */
    redis_answers(1, 195, true);         /* it took the last token */
    assert_true(probe.allowed);
    assert_int_equal(probe.retry_after_ms, 0);
    assert_true(refused("eve", &retry)); /* the next one: 195 ms from the probe's send */
    assert_int_equal(retry, 185);
    now_ms = sent + 345;
    assert_false(refused("eve", &retry));
    assert_true(last_probe);
    take("eve", &probe);
    /* Past the probe's interval two tokens may be there: not refused,
     * though the probe has not answered. */
    now_ms = sent + 545;
    assert_false(refused("eve", &retry));
    assert_false(last_probe);
    redis_answers(1, 0, true); /* tokens left: no window */
    assert_false(refused("eve", &retry));
    assert_false(last_probe);

    /* A refused probe opens a new window, counted from its send. */
    sent = now_ms;
    take("fay", &a);
    redis_answers(0, 100, true);
    now_ms = sent + 100;
    assert_false(refused("fay", &retry));
    take("fay", &probe);
    now_ms = sent + 110;
    redis_answers(0, 190, true);
    assert_true(refused("fay", &retry));
    assert_int_equal(retry, 180); /* until sent+100+190 */

    /* A probe that gets no verdict lets the next request ask. */
    sent = now_ms;
    take("gus", &a);
    redis_answers(0, 50, true);
    now_ms = sent + 60;
    assert_false(refused("gus", &retry));
    take("gus", &probe);
    assert_true(refused("gus", &retry));
    redis_answers(0, 0, false);
    assert_true(probe.unavailable);
    assert_false(refused("gus", &retry));
    assert_true(last_probe);
    take("gus", &probe);
    assert_true(refused("gus", &retry));
    redis_answers(1, 0, true);
}

/* A bucket fuller than the window assumed (reset by a failover, refilled
 * faster by a host on a higher rate): the first answer that says a token
 * is left ends the window, so nothing more is refused here. */
static void test_a_token_left_ends_the_window(void **state)
{
    (void)state;
    struct answer a, probe;
    int64_t retry;
    int64_t sent = now_ms;
    take("ida", &a);
    redis_answers(0, 100, true);
    now_ms = sent + 100;
    assert_false(refused("ida", &retry));
    take("ida", &probe);
    redis_answers(1, 0, true); /* nine more where the window assumed none */
    for (int i = 0; i < 5; i++) assert_false(refused("ida", &retry));
}

/* Taking the last token opens a window too: the next request before the
 * refill is refused here, as Redis would. */
static void test_the_last_token_taken_opens_a_window(void **state)
{
    (void)state;
    struct answer a;
    int64_t retry;
    int64_t sent = now_ms;
    take("jon", &a);
    now_ms = sent + 20;
    redis_answers(1, 120, true);
    assert_true(a.allowed);
    assert_true(refused("jon", &retry));
    assert_int_equal(retry, 100);
    assert_false(refused("joe", &retry));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_refusal_lasts_from_the_send_until_redis_wait, setup),
        cmocka_unit_test_setup(test_nothing_remembered_without_a_wait, setup),
        cmocka_unit_test_setup(test_a_user_in_the_same_slot_replaces_the_memory, setup),
        cmocka_unit_test_setup(test_one_probe_per_interval_after_a_window, setup),
        cmocka_unit_test_setup(test_a_token_left_ends_the_window, setup),
        cmocka_unit_test_setup(test_the_last_token_taken_opens_a_window, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Lua scripts by SHA-1 (worker/redis_script.c), with the link stubbed at
 * its edge: the first call on each connection of a link sends the body
 * (EVAL), the later ones the SHA-1 (EVALSHA), so no call can meet
 * NOSCRIPT and be resent behind calls sent after it; a new connection
 * (or another link) gets the body again; a NOSCRIPT (a flush) is answered
 * with a resend of the body, and the next new call sends the body too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "worker/redis_link.h"
#include "worker/redis_script.h"

#define MAX_SENT 16

static uint64_t conn_gen = 1;
static int nsent;
static char sent_cmd[MAX_SENT][8];
static redisCallbackFn *sent_fn[MAX_SENT];
static void *sent_priv[MAX_SENT];

bool __wrap_redis_link_up(const struct redis_link *l);
uint64_t __wrap_redis_link_reconnects(const struct redis_link *l);
int __wrap_redis_link_commandargv(struct redis_link *l, redisCallbackFn *fn, void *privdata,
                                  int argc, const char **argv, const size_t *argvlen);

bool __wrap_redis_link_up(const struct redis_link *l)
{
    (void)l;
    return true;
}

uint64_t __wrap_redis_link_reconnects(const struct redis_link *l)
{
    (void)l;
    return conn_gen;
}

int __wrap_redis_link_commandargv(struct redis_link *l, redisCallbackFn *fn, void *privdata,
                                  int argc, const char **argv, const size_t *argvlen)
{
    (void)l;
    (void)argvlen;
    assert_true(argc >= 3);
    assert_true(nsent < MAX_SENT);
    strncpy(sent_cmd[nsent], argv[0], sizeof sent_cmd[nsent] - 1);
    sent_fn[nsent] = fn;
    sent_priv[nsent] = privdata;
    nsent++;
    return 0;
}

static int replies;

static void on_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)reply;
    (void)privdata;
    replies++;
}

static struct redis_script script = {.body = "return 1"};
static struct redis_link *link_a = (struct redis_link *)&conn_gen; /* never dereferenced */
static struct redis_link *link_b = (struct redis_link *)&nsent;

static void run(struct redis_link *l)
{
    const char *argv[1] = {"x"};
    assert_int_equal(redis_script_run(l, &script, on_done, NULL, 0, 1, argv, NULL), 0);
}

/* Answers call i (frees it) with an integer, or NOSCRIPT. */
static void answer(int i, bool noscript)
{
    redisReply ok = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    char msg[] = "NOSCRIPT No matching script.";
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = msg, .len = sizeof msg - 1};
    sent_fn[i](NULL, noscript ? &err : &ok, sent_priv[i]);
}

static void test_body_first_on_each_connection(void **state)
{
    (void)state;
    run(link_a);
    run(link_a);
    run(link_a);
    assert_string_equal(sent_cmd[0], "EVAL");
    assert_string_equal(sent_cmd[1], "EVALSHA");
    assert_string_equal(sent_cmd[2], "EVALSHA");
    conn_gen++; /* the link reconnected */
    run(link_a);
    run(link_a);
    assert_string_equal(sent_cmd[3], "EVAL");
    assert_string_equal(sent_cmd[4], "EVALSHA");
    run(link_b); /* another link */
    run(link_a);
    assert_string_equal(sent_cmd[5], "EVAL");
    assert_string_equal(sent_cmd[6], "EVAL");
    for (int i = 0; i < 7; i++) answer(i, false);
    assert_int_equal(replies, 7);

    /* A flush while connected: the NOSCRIPT call is resent whole, and so
     * is the next new call. */
    nsent = 0;
    replies = 0;
    run(link_a);
    assert_string_equal(sent_cmd[0], "EVALSHA");
    answer(0, true);
    assert_int_equal(replies, 0);
    assert_string_equal(sent_cmd[1], "EVAL");
    run(link_a);
    assert_string_equal(sent_cmd[2], "EVAL");
    answer(1, false);
    answer(2, false);
    assert_int_equal(replies, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_first_on_each_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

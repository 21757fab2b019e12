/* Lua scripts by SHA-1 (worker/redis_script.c), with the link stubbed at
 * its edge: the first call on each connection of a link sends the body
 * (EVAL), the later ones the SHA-1 (EVALSHA), so no call can meet
 * NOSCRIPT and be resent behind calls sent after it; a new connection
 * (or another link) gets the body again. A flush while connected: the
 * calls that meet NOSCRIPT and the calls made meanwhile wait until every
 * call sent before the flush was noticed has answered, then go out in the
 * order they were made, the first whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "worker/redis_link.h"
#include "worker/redis_script.h"

#define MAX_SENT 16

static uint64_t conn_gen = 1;
static bool link_down;
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
    if (link_down) return -1;
    assert_true(argc >= 3);
    assert_true(nsent < MAX_SENT);
    strncpy(sent_cmd[nsent], argv[0], sizeof sent_cmd[nsent] - 1);
    sent_fn[nsent] = fn;
    sent_priv[nsent] = privdata;
    nsent++;
    return 0;
}

static int replies;
static intptr_t answered[MAX_SENT]; /* the privdata of each answered call, in order */
static char answered_what[MAX_SENT][32]; /* and what it got */

static void on_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    const redisReply *r = reply;
    char *what = answered_what[replies];
    if (!r) snprintf(what, sizeof answered_what[0], "null");
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        snprintf(what, sizeof answered_what[0], "list:%s,%s", r->element[0]->str, r->element[1]->str);
    else snprintf(what, sizeof answered_what[0], "type %d", r->type);
    answered[replies] = (intptr_t)privdata;
    replies++;
}

static struct redis_script script = {.body = "return 1"};
static struct redis_link *link_a = (struct redis_link *)&conn_gen; /* never dereferenced */
static struct redis_link *link_b = (struct redis_link *)&nsent;

static void run_tagged(struct redis_link *l, intptr_t tag)
{
    const char *argv[1] = {"x"};
    assert_int_equal(redis_script_run(l, &script, on_done, (void *)tag, 0, 1, argv, NULL), 0);
}

static void run(struct redis_link *l) { run_tagged(l, 0); }

static void reset(void)
{
    nsent = 0;
    replies = 0;
}

/* Answers call i (frees it) with an integer, or NOSCRIPT. */
static void answer(int i, bool noscript)
{
    redisReply ok = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    char msg[] = "NOSCRIPT No matching script.";
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = msg, .len = sizeof msg - 1};
    sent_fn[i](NULL, noscript ? &err : &ok, sent_priv[i]);
}

/* A new connection of link_a, where the body has gone whole and is
 * cached: the calls after this go by SHA-1. */
static void cached_on_new_connection(void)
{
    conn_gen++;
    reset();
    run(link_a);
    answer(0, false);
    reset();
}

/* Answers call i with a list, as the presence join gets, and scribbles
 * over it afterwards as hiredis frees it. */
static void answer_list(int i)
{
    char id[] = "alice", name[] = "Alice";
    redisReply e0 = {.type = REDIS_REPLY_STRING, .str = id, .len = 5};
    redisReply e1 = {.type = REDIS_REPLY_STRING, .str = name, .len = 5};
    redisReply *elems[2] = {&e0, &e1};
    redisReply list = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = elems};
    sent_fn[i](NULL, &list, sent_priv[i]);
    memset(id, 'x', 5);
    memset(name, 'x', 5);
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

    /* A flush while connected, nothing else in flight: the NOSCRIPT call
     * is resent whole, and the next new call follows it by SHA-1. */
    reset();
    run(link_a);
    assert_string_equal(sent_cmd[0], "EVALSHA");
    answer(0, true);
    assert_int_equal(replies, 0);
    assert_int_equal(nsent, 2);
    assert_string_equal(sent_cmd[1], "EVAL");
    run(link_a);
    assert_string_equal(sent_cmd[2], "EVALSHA");
    answer(1, false);
    answer(2, false);
    assert_int_equal(replies, 2);
}

/* Calls 1, 2, 3 in flight when Redis is flushed; 1 and 3 meet NOSCRIPT,
 * 2 runs (another client sent the body meanwhile). Call 4 is made after
 * 1's NOSCRIPT. Nothing is sent until 3 has answered; then 1, 3, 4 go
 * out in that order, 1 whole, and the callbacks come as 1, 2, 3, 4: 2's
 * answer is held, copied, until 1's. */
static void test_flush_keeps_order(void **state)
{
    (void)state;
    conn_gen++;
    reset();
    run_tagged(link_a, 1);
    answer(0, false); /* the body is cached on this connection */
    reset();
    run_tagged(link_a, 1);
    run_tagged(link_a, 2);
    run_tagged(link_a, 3);
    assert_int_equal(nsent, 3);
    answer(0, true);
    assert_int_equal(nsent, 3); /* 1 waits */
    run_tagged(link_a, 4);
    assert_int_equal(nsent, 3); /* 4 waits behind it */
    answer_list(1);
    assert_int_equal(replies, 0); /* 2 ran, but 1 has not */
    answer(2, true);
    assert_int_equal(nsent, 6);
    assert_string_equal(sent_cmd[3], "EVAL");
    assert_string_equal(sent_cmd[4], "EVALSHA");
    assert_string_equal(sent_cmd[5], "EVALSHA");
    assert_int_equal((intptr_t)sent_priv[3] != 0, 1);
    answer(3, false);
    assert_int_equal(replies, 2);
    assert_int_equal(answered[0], 1);
    assert_int_equal(answered[1], 2);
    assert_string_equal(answered_what[1], "list:alice,Alice");
    answer(4, false);
    answer(5, false);
    assert_int_equal(replies, 4);
    assert_int_equal(answered[2], 3);
    assert_int_equal(answered[3], 4);
    /* Waiting is over: a new call goes straight out. */
    run_tagged(link_a, 5);
    assert_int_equal(nsent, 7);
    assert_string_equal(sent_cmd[6], "EVALSHA");
    answer(6, false);
    assert_int_equal(answered[4], 5);
}

/* A second flush while answers are held from the first: calls 1 to 6 in
 * flight, the odd ones meet NOSCRIPT, the even ones run. 1, 3, 5 go out
 * again (1 whole); 1 runs, then Redis is flushed again and 3 and 5 meet
 * NOSCRIPT once more. The callbacks still come as 1 to 6. */
static void test_second_flush_keeps_held_answers(void **state)
{
    (void)state;
    cached_on_new_connection();
    for (int i = 1; i <= 6; i++) run_tagged(link_a, i);
    for (int i = 0; i < 6; i++) answer(i, i % 2 == 0);
    assert_int_equal(nsent, 9); /* 1, 3, 5 again */
    assert_string_equal(sent_cmd[6], "EVAL");
    assert_string_equal(sent_cmd[7], "EVALSHA");
    assert_int_equal(replies, 0);
    answer(6, false);
    assert_int_equal(replies, 2); /* 1, and 2 held behind it */
    answer(7, true);
    answer(8, true);
    assert_int_equal(nsent, 11); /* 3, 5 again */
    assert_string_equal(sent_cmd[9], "EVAL");
    assert_string_equal(sent_cmd[10], "EVALSHA");
    assert_int_equal(replies, 2);
    answer(9, false);
    answer(10, false);
    assert_int_equal(replies, 6);
    for (int i = 0; i < 6; i++) assert_int_equal(answered[i], i + 1);
}

/* The link drops while calls wait out a flush: the call still in flight
 * is answered NULL by the link, and the waiting ones, which can no longer
 * be sent, NULL too, all in the order made. */
static void test_flush_then_drop(void **state)
{
    (void)state;
    cached_on_new_connection();
    run_tagged(link_a, 1);
    run_tagged(link_a, 2);
    answer(0, true);
    run_tagged(link_a, 3);
    link_down = true;
    sent_fn[1](NULL, NULL, sent_priv[1]); /* the link drops: 2 gets NULL */
    link_down = false;
    assert_int_equal(nsent, 2);
    assert_int_equal(replies, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(answered[i], i + 1);
        assert_string_equal(answered_what[i], "null");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_first_on_each_connection),
        cmocka_unit_test(test_flush_keeps_order),
        cmocka_unit_test(test_second_flush_keeps_held_answers),
        cmocka_unit_test(test_flush_then_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

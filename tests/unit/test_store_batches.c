/* The store's batching of new messages, with the PostgreSQL pool stubbed
 * at its edge (pg_pool_exec_on and pg_pool_up, wrapped at link time): a
 * message leaves alone when nothing is in flight; while a batch is in
 * flight the rest gather; a second batch leaves only for a backlog, never
 * holds a room whose batch is in flight, and a third never leaves; a
 * room's held message leaves once its batch is answered; a refused batch
 * goes again one message at a time, in order, on the connection that
 * carried it; a small batch travels as a call per message and each call's
 * row answers its own message; batches the pool answers after the store
 * is gone (shutdown) are answered and go no further. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "shared/config.h"
#include "worker/pg_pool.h"
#include "worker/store.h"
#include "worker/worker.h"

#define MAX_SENT 32

/* A batch the store handed to the pool, not yet answered. */
struct sent {
    uint32_t conn;          /* the connection asked for (pg_pool_exec_on) */
    int via;                /* the one the stub says carries it */
    int pinned;             /* sent with pg_pool_exec_at */
    pg_done_fn done;
    void *arg;
    json_t *rows;           /* [[room, user, name, text, ref], ...] */
    int answered;
};

static struct sent sent[MAX_SENT];
static int nsent;
static int replies;         /* store_post callbacks seen */
/* A connection the stub takes for down: pg_pool_exec_on carries what is
 * asked of it on the next one, as the pool falls back to another. */
static int down_conn = -1;

int __wrap_pg_pool_exec_on(struct pg_pool *p, uint32_t shard, const struct pg_stmt *stmts, int n,
                           pg_done_fn done, void *arg);
int __wrap_pg_pool_exec_at(struct pg_pool *p, int index, const struct pg_stmt *stmts, int n,
                           pg_done_fn done, void *arg);
bool __wrap_pg_pool_up(const struct pg_pool *p);

static int record(uint32_t shard, int via, int pinned, const struct pg_stmt *stmts, int n,
                  pg_done_fn done, void *arg)
{
    assert_true(nsent < MAX_SENT);
    json_t *rows;
    if (stmts[0].prepared == STORE_POST_ONE) {
        /* Up to eight messages: a chat_post_one call each, its five
         * parameters, in one request (one transaction). */
        assert_true(n >= 1 && n <= 8);
        rows = json_array();
        for (int k = 0; k < n; k++) {
            assert_int_equal(stmts[k].prepared, STORE_POST_ONE);
            assert_int_equal(stmts[k].nparams, 5);
            json_t *row = json_array();
            for (int i = 0; i < 5; i++)
                json_array_append_new(row, stmts[k].values[i] ? json_string(stmts[k].values[i]) : json_null());
            json_array_append_new(rows, row);
        }
    } else {
        /* More: one chat_post_batch call with the batch as JSON. */
        assert_int_equal(n, 1);
        assert_int_equal(stmts[0].prepared, STORE_POST);
        json_error_t err;
        rows = json_loads(stmts[0].values[0], 0, &err);
        assert_non_null(rows);
        assert_true(json_array_size(rows) > 8);
    }
    sent[nsent++] = (struct sent){.conn = shard, .via = via, .pinned = pinned, .done = done,
                                  .arg = arg, .rows = rows};
    return via;
}

int __wrap_pg_pool_exec_on(struct pg_pool *p, uint32_t shard, const struct pg_stmt *stmts, int n,
                           pg_done_fn done, void *arg)
{
    (void)p;
    int via = (int)shard == down_conn ? (int)(shard + 1) % 4 : (int)shard;
    return record(shard, via, 0, stmts, n, done, arg);
}

int __wrap_pg_pool_exec_at(struct pg_pool *p, int index, const struct pg_stmt *stmts, int n,
                           pg_done_fn done, void *arg)
{
    (void)p;
    return record(UINT32_MAX, index, 1, stmts, n, done, arg);
}

bool __wrap_pg_pool_up(const struct pg_pool *p)
{
    (void)p;
    return true;
}

static void on_reply(void *arg, const struct store_change *r)
{
    (void)arg;
    (void)r;
    replies++;
}

struct fixture {
    struct event_base *base;
    struct chat_config cfg;
    struct worker w;
    struct store *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->cfg.pg_pool_size = 4;
    f->w.base = f->base;
    f->w.cfg = &f->cfg;
    f->s = store_new(&f->w);
    assert_non_null(f->s);
    nsent = 0;
    replies = 0;
    down_conn = -1;
    *state = f;
    return 0;
}

static void answer(int i);

static int teardown(void **state)
{
    struct fixture *f = *state;
    /* The pool would answer what it holds when it goes; answering lets
     * what waited leave, to be answered in turn. */
    for (int i = 0; i < nsent; i++)
        if (!sent[i].answered) answer(i);
    for (int i = 0; i < nsent; i++) json_decref(sent[i].rows);
    store_free(f->s);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void post(struct fixture *f, const char *room, const char *text)
{
    assert_int_equal(store_post(f->s, room, "u1", "User", text, text, on_reply, NULL), 0);
}

/* Messages t<from>..t<to - 1>, each in its own room <prefix><i>. */
static void post_others(struct fixture *f, const char *prefix, int from, int to)
{
    char room[16], text[16];
    for (int i = from; i < to; i++) {
        snprintf(room, sizeof room, "%s%d", prefix, i);
        snprintf(text, sizeof text, "t%d", i);
        post(f, room, text);
    }
}

/* The end of the loop turn: what is ready leaves. */
static void end_turn(struct fixture *f)
{
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* Answers batch i (as a lost batch: its messages are answered
 * unavailable, which frees its lanes as a commit does). */
static void answer(int i)
{
    assert_false(sent[i].answered);
    sent[i].answered = 1;
    sent[i].done(sent[i].arg, NULL, 0, "stub: answered");
}

/* Answers batch i of n calls as PostgreSQL refuses one: the first call
 * fails, the others are not run (aborted with the pipeline). */
static void refuse(int i, int n)
{
    PGresult *refused = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    PGresult *aborted = PQmakeEmptyPGresult(NULL, PGRES_PIPELINE_ABORTED);
    assert_non_null(refused);
    assert_non_null(aborted);
    PGresult *res[8] = {refused};
    assert_true(n >= 1 && n <= 8);
    for (int k = 1; k < n; k++) res[k] = aborted;
    assert_false(sent[i].answered);
    sent[i].answered = 1;
    sent[i].done(sent[i].arg, res, n, NULL);
    PQclear(refused);
    PQclear(aborted);
}

static int batch_size(int i)
{
    return (int)json_array_size(sent[i].rows);
}

/* Where text appears in batch i, or -1. */
static int position_in(int i, const char *text)
{
    for (size_t k = 0; k < json_array_size(sent[i].rows); k++) {
        const char *t = json_string_value(json_array_get(json_array_get(sent[i].rows, k), 3));
        if (t && strcmp(t, text) == 0) return (int)k;
    }
    return -1;
}

static void test_idle_message_leaves_alone(void **state)
{
    struct fixture *f = *state;
    post(f, "general", "m0");
    assert_int_equal(nsent, 0);
    end_turn(f);
    assert_int_equal(nsent, 1);
    assert_int_equal(batch_size(0), 1);
    answer(0);
    assert_int_equal(replies, 1);
    assert_int_equal(nsent, 1);
}

static void test_messages_gather_behind_a_batch(void **state)
{
    struct fixture *f = *state;
    post(f, "r0", "first");
    end_turn(f);
    assert_int_equal(nsent, 1);
    /* Fewer than a backlog, in other rooms: they wait for the batch. */
    post_others(f, "x", 0, 10);
    end_turn(f);
    assert_int_equal(nsent, 1);
    answer(0);
    assert_int_equal(nsent, 2);
    assert_int_equal(batch_size(1), 10);
}

static void test_backlog_spreads_but_never_holds_a_busy_room(void **state)
{
    struct fixture *f = *state;
    post(f, "busy", "b0");
    end_turn(f);
    assert_int_equal(nsent, 1);
    /* The busy room's next message, then a backlog in many other rooms. */
    post(f, "busy", "b1");
    post_others(f, "o", 0, 80);
    end_turn(f);
    /* A second batch left, on another connection, without b1: b1 may
     * not overtake b0 (nor may the few rooms sharing b0's lane). */
    assert_int_equal(nsent, 2);
    assert_int_not_equal(sent[1].conn, sent[0].conn);
    assert_true(batch_size(1) >= 70 && batch_size(1) < 80);
    assert_int_equal(position_in(1, "b1"), -1);
    /* More, in rooms of lanes that neither batch holds too: never a
     * third batch. */
    post_others(f, "o", 80, 480);
    end_turn(f);
    assert_int_equal(nsent, 2);
    /* b0 is answered: b1 may leave now. */
    answer(0);
    assert_int_equal(nsent, 3);
    assert_true(position_in(2, "b1") >= 0);
}

static void test_a_room_keeps_its_order_in_a_batch(void **state)
{
    struct fixture *f = *state;
    post(f, "r", "lead");
    end_turn(f);
    post(f, "zz", "z0");
    post(f, "r", "a");
    post(f, "aa", "y0");
    post(f, "r", "b");
    post(f, "r", "c");
    end_turn(f);
    answer(0);
    assert_int_equal(nsent, 2);
    int a = position_in(1, "a"), b = position_in(1, "b"), c = position_in(1, "c");
    assert_true(a >= 0 && a < b && b < c);
    /* Sorted by room (the lock order): "aa" before "r" before "zz". */
    assert_true(position_in(1, "y0") < a);
    assert_true(position_in(1, "z0") > c);
}

/* A batch PostgreSQL refused (one bad message) goes again one message a
 * transaction, on the same connection in order; its rooms stay held until
 * the last of them is answered. */
static void test_refused_batch_goes_again_one_by_one(void **state)
{
    struct fixture *f = *state;
    post(f, "r", "lead");
    end_turn(f);
    post(f, "r", "a");
    post(f, "r", "b");
    end_turn(f);
    answer(0);
    assert_int_equal(nsent, 2);
    assert_int_equal(batch_size(1), 2);
    /* Two calls in one transaction: the first refused. */
    refuse(1, 2);
    assert_int_equal(nsent, 4);
    assert_true(sent[2].pinned && sent[3].pinned);
    assert_int_equal(sent[2].via, sent[1].via);
    assert_int_equal(sent[3].via, sent[1].via);
    assert_int_equal(position_in(2, "a"), 0);
    assert_int_equal(position_in(3, "b"), 0);
    /* The room's next message waits for both, while a backlog in other
     * rooms leaves as soon as one of them is answered. */
    post(f, "r", "c");
    post_others(f, "o", 0, 40);
    end_turn(f);
    assert_int_equal(nsent, 4);
    answer(2);
    assert_int_equal(nsent, 5);
    assert_int_equal(position_in(4, "c"), -1);
    answer(3);
    answer(4);
    assert_int_equal(nsent, 6);
    assert_true(position_in(5, "c") >= 0);
}

/* The connection the store asked for is down and the pool carried the
 * batch on another: its messages go again on that other one, every one
 * of them, not wherever the pool would put each. */
static void test_refused_batch_goes_again_where_it_went(void **state)
{
    struct fixture *f = *state;
    post(f, "r", "lead");
    end_turn(f);
    post(f, "r", "a");
    post(f, "r", "b");
    post(f, "r", "c");
    end_turn(f);
    /* With nothing in flight the next batch asks for the first connection. */
    down_conn = 0;
    answer(0);
    assert_int_equal(nsent, 2);
    assert_int_equal((int)sent[1].conn, down_conn);
    assert_int_not_equal(sent[1].via, down_conn);
    refuse(1, 3);
    assert_int_equal(nsent, 5);
    for (int i = 2; i < 5; i++) {
        assert_true(sent[i].pinned);
        assert_int_equal(sent[i].via, sent[1].via);
    }
    assert_int_equal(position_in(2, "a"), 0);
    assert_int_equal(position_in(3, "b"), 0);
    assert_int_equal(position_in(4, "c"), 0);
}

/* Shutdown: the store goes first (answering what waits), the pool after,
 * answering the batch still in flight then. That batch's messages are
 * answered once, and nothing is sent after the store is gone. */
static void test_pool_answers_after_the_store_is_gone(void **state)
{
    struct fixture *f = *state;
    post(f, "r", "in flight");
    end_turn(f);
    assert_int_equal(nsent, 1);
    post(f, "s", "waiting");
    store_free(f->s);
    f->s = NULL;
    assert_int_equal(replies, 1);
    answer(0);
    assert_int_equal(replies, 2);
    assert_int_equal(nsent, 1);
}

static int64_t replied_id[3];

static void on_reply_id(void *arg, const struct store_change *r)
{
    replied_id[(intptr_t)arg] = r->id;
    replies++;
}

/* chat_post_one's result: one row, ord always 1. */
static PGresult *post_one_result(int64_t id)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    assert_non_null(r);
    static const char *const names[6] = {"ord", "id", "seq", "created_at", "payload", "duplicate"};
    PGresAttDesc attrs[6];
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < 6; i++) {
        attrs[i].name = (char *)names[i];
        attrs[i].format = 0;
    }
    assert_true(PQsetResultAttrs(r, 6, attrs));
    char id_s[24];
    snprintf(id_s, sizeof id_s, "%lld", (long long)id);
    const char *values[6] = {"1", id_s, "7", "2026-01-01T00:00:00.000Z", "{}", "f"};
    for (int i = 0; i < 6; i++) assert_true(PQsetvalue(r, 0, i, (char *)values[i], (int)strlen(values[i])));
    return r;
}

static void test_small_batch_is_answered_per_message(void **state)
{
    struct fixture *f = *state;
    post(f, "r", "lead");
    end_turn(f);
    /* Three rooms, posted out of order: the batch is sorted a, b, c. */
    const char *rooms[3] = {"c", "a", "b"};
    for (intptr_t i = 0; i < 3; i++)
        assert_int_equal(store_post(f->s, rooms[i], "u1", "User", "t", NULL, on_reply_id, (void *)i), 0);
    end_turn(f);
    answer(0);
    assert_int_equal(nsent, 2);
    assert_int_equal(batch_size(1), 3);
    PGresult *res[3] = {post_one_result(100), post_one_result(101), post_one_result(102)};
    sent[1].answered = 1;
    sent[1].done(sent[1].arg, res, 3, NULL);
    for (int i = 0; i < 3; i++) PQclear(res[i]);
    /* Each row went to its own message, though every row says ord 1. */
    assert_int_equal(replied_id[1], 100); /* a */
    assert_int_equal(replied_id[2], 101); /* b */
    assert_int_equal(replied_id[0], 102); /* c */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idle_message_leaves_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_gather_behind_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog_spreads_but_never_holds_a_busy_room, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_room_keeps_its_order_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_batch_goes_again_one_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_batch_is_answered_per_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_batch_goes_again_where_it_went, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_answers_after_the_store_is_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

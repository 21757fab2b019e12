/* The PostgreSQL pool against the real test database
 * ($CHATD_PG_TEST_DSN, started by `make test`): a request whose statements
 * all run but whose implicit transaction then fails to commit (a deferred
 * foreign key, checked at the Sync) is answered as failed, nothing of it
 * stays, and the connection goes on serving the next request. Before, the
 * commit's error came after the last statement's results and was dropped:
 * the request was answered as if it had been stored. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "worker/pg_pool.h"

struct answer {
    int calls;
    int n;
    ExecStatusType status[4];
    char value[64];          /* the last result's first value, if any */
};

static struct event_base *base;
static struct pg_pool *pool;

static void on_answer(void *arg, PGresult *const *res, int n, const char *err)
{
    struct answer *a = arg;
    a->calls++;
    a->n = res ? n : -1;
    for (int i = 0; res && i < n && i < 4; i++) a->status[i] = res[i] ? PQresultStatus(res[i]) : PGRES_FATAL_ERROR;
    if (res && n > 0 && res[n - 1] && PQresultStatus(res[n - 1]) == PGRES_TUPLES_OK && PQntuples(res[n - 1]) > 0)
        snprintf(a->value, sizeof a->value, "%s", PQgetvalue(res[n - 1], 0, 0));
    if (err) fprintf(stderr, "pg_pool: %s\n", err);
    event_base_loopbreak(base);
}

/* Sends the statements as one request and runs the loop until it is
 * answered (10 s at most). */
static void run(const char *const *sql, int n, struct answer *a)
{
    struct pg_stmt st[4];
    for (int i = 0; i < n; i++) st[i] = (struct pg_stmt){.prepared = -1, .sql = sql[i]};
    memset(a, 0, sizeof *a);
    assert_true(pg_pool_exec(pool, st, n, on_answer, a) >= 0);
    struct timeval limit = {10, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    assert_int_equal(a->calls, 1);
}

static bool wait_up(void)
{
    for (int i = 0; i < 200 && !pg_pool_up(pool); i++) {
        struct timeval tick = {0, 50 * 1000};
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
    return pg_pool_up(pool);
}

static void test_failed_commit_is_a_failed_request(void **state)
{
    (void)state;
    char parent[64], child[64], sql[4][256];
    snprintf(parent, sizeof parent, "pgpool_parent_%d", (int)getpid());
    snprintf(child, sizeof child, "pgpool_child_%d", (int)getpid());
    struct answer a;

    snprintf(sql[0], sizeof sql[0], "CREATE TABLE %s (id int PRIMARY KEY)", parent);
    snprintf(sql[1], sizeof sql[1],
             "CREATE TABLE %s (id int, p int REFERENCES %s DEFERRABLE INITIALLY DEFERRED)", child, parent);
    snprintf(sql[2], sizeof sql[2], "INSERT INTO %s VALUES (2)", parent);
    run((const char *[]){sql[0], sql[1], sql[2]}, 3, &a);
    assert_int_equal(a.n, 3);

    /* Both statements succeed; the commit fails (no parent 999). */
    snprintf(sql[0], sizeof sql[0], "INSERT INTO %s VALUES (1, 999)", child);
    run((const char *[]){sql[0], "SELECT 1"}, 2, &a);
    assert_int_equal(a.n, 2);
    assert_int_equal(a.status[0], PGRES_COMMAND_OK);
    assert_int_equal(a.status[1], PGRES_FATAL_ERROR);

    /* The same connection serves the next request; the failed one left
     * nothing behind. */
    snprintf(sql[0], sizeof sql[0], "INSERT INTO %s VALUES (2, 2)", child);
    snprintf(sql[1], sizeof sql[1], "SELECT string_agg(id::text, ',' ORDER BY id) FROM %s", child);
    run((const char *[]){sql[0], sql[1]}, 2, &a);
    assert_int_equal(a.status[0], PGRES_COMMAND_OK);
    assert_int_equal(a.status[1], PGRES_TUPLES_OK);
    assert_string_equal(a.value, "2");
    assert_int_equal((int)pg_pool_errors(pool), 0);

    snprintf(sql[0], sizeof sql[0], "DROP TABLE %s, %s", child, parent);
    run((const char *[]){sql[0]}, 1, &a);
}

int main(void)
{
    const char *dsn = getenv("CHATD_PG_TEST_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "test_pg_pool: CHATD_PG_TEST_DSN is not set (make test sets it)\n");
        return 1;
    }
    base = event_base_new();
    pool = pg_pool_new(base, dsn, 1, NULL, 0);
    if (!base || !pool || !wait_up()) {
        fprintf(stderr, "test_pg_pool: no connection to %s within 10 s\n", dsn);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_commit_is_a_failed_request),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    pg_pool_free(pool);
    event_base_free(base);
    return failed;
}

#ifndef CHATD_WORKER_PG_POOL_H
#define CHATD_WORKER_PG_POOL_H

/* A few non-blocking libpq connections driven by the worker's loop, in
 * pipeline mode: requests are sent as soon as they are made and their
 * results come back in order, so many travel in one round trip.
 *
 * A request is one or more statements followed by one Sync: PostgreSQL
 * runs them as one implicit transaction, so a request is all-or-nothing.
 *
 * Contract: pg_pool_exec returns -1 when no connection is up or every one
 * is full (nothing was sent; answer "unavailable"), else the index of the
 * connection that carries the request. Then done() fires
 * exactly once: with every statement's result, or with results NULL and
 * err set when the connection was lost first (the transaction may or may
 * not have committed: callers make their writes idempotent). Results are
 * valid only during the callback. */

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

struct event_base;
struct pg_pool;

#define PG_POOL_MAX_STMTS 256

/* Statements every connection prepares once after connecting. */
struct pg_prepared {
    const char *name;
    const char *sql;
    int nparams;
};

struct pg_stmt {
    int prepared;             /* index into the pool's prepared table, or -1 */
    const char *sql;          /* when prepared < 0 */
    int nparams;
    const char *const *values;
    const int *lengths;       /* NULL: all text, NUL-terminated */
};

typedef void (*pg_done_fn)(void *arg, PGresult *const *results, int n, const char *err);

struct pg_pool *pg_pool_new(struct event_base *base, const char *dsn, int size,
                            const struct pg_prepared *prepared, int nprepared);
void pg_pool_free(struct pg_pool *p);

bool pg_pool_up(const struct pg_pool *p);

int pg_pool_exec(struct pg_pool *p, const struct pg_stmt *stmts, int n, pg_done_fn done,
                 void *arg);

/* The same on connection (shard % size) while it is up and not full, else
 * on the least busy one. Requests sent on one connection commit in the
 * order they were sent: callers that need an order (a room's writes) give
 * them one shard. */
int pg_pool_exec_on(struct pg_pool *p, uint32_t shard, const struct pg_stmt *stmts, int n,
                    pg_done_fn done, void *arg);

/* The same on connection index exactly (an index pg_pool_exec_on
 * returned), or -1 when it is not up or full: for requests that must
 * follow earlier ones in order, which another connection could overtake. */
int pg_pool_exec_at(struct pg_pool *p, int index, const struct pg_stmt *stmts, int n,
                    pg_done_fn done, void *arg);

/* One statement, for convenience. */
int pg_pool_query(struct pg_pool *p, int prepared, const char *sql, int nparams,
                  const char *const *values, pg_done_fn done, void *arg);

uint64_t pg_pool_errors(const struct pg_pool *p);
uint64_t pg_pool_reconnects(const struct pg_pool *p);

#endif

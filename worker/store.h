#ifndef CHATD_WORKER_STORE_H
#define CHATD_WORKER_STORE_H

/* The chat's PostgreSQL operations on the worker's pg_pool (SQL in
 * sql/002_functions.sql). Every call either returns -1 (unavailable now:
 * nothing was sent, no callback) or 0 and calls back exactly once, with
 * NULL for "unavailable" (nothing the caller can rely on was stored:
 * messages are idempotent by ref, edits and deletes are judged again by
 * the database on a retry).
 *
 * New messages are batched: those that gather while a batch commits
 * travel together as the next one (one transaction), sorted by room so
 * that concurrent batches take room locks in one order and cannot
 * deadlock. A room's next batch leaves only once its previous one is
 * answered, so a room's messages commit in the order they were made: one
 * user's quick succession of messages keeps its order. That is where
 * durable throughput comes from; when idle a batch is one message and
 * leaves at the end of the turn, adding no latency. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/pg_pool.h"

struct worker;
struct store;

enum store_stmt {
    STORE_POST,
    STORE_POST_ONE,
    STORE_EDIT,
    STORE_DELETE,
    STORE_LAST_SEQ,
    STORE_EVENTS,
    STORE_REPLAY,
    STORE_HISTORY,
    STORE_ROOM_SEQS,
    STORE_NSTMTS
};

/* The statements every pool connection prepares, indexed by store_stmt. */
extern const struct pg_prepared store_prepared[STORE_NSTMTS];

struct store *store_new(struct worker *w);
void store_free(struct store *s);

/* Nothing waiting to be stored and nothing in flight: a draining worker
 * waits for this, so that what is committed is also announced. */
bool store_idle(const struct store *s);

struct store_change {
    const char *status;     /* "ok", or for edit/delete an error code */
    int64_t id;
    int64_t seq;
    const char *at;         /* created_at, edited_at or deleted_at */
    const char *payload;    /* the event to broadcast; NULL for a repeated ref */
    bool duplicate;
};

/* r is NULL when unavailable; valid only during the call. */
typedef void (*store_change_fn)(void *arg, const struct store_change *r);

int store_post(struct store *s, const char *room, const char *user_id, const char *user_name,
               const char *text, const char *ref, store_change_fn fn, void *arg);
int store_edit(struct store *s, const char *room, int64_t id, const char *user_id,
               const char *text, int window_s, const char *ref, store_change_fn fn, void *arg);
int store_delete(struct store *s, const char *room, int64_t id, const char *user_id, bool any,
                 const char *ref, store_change_fn fn, void *arg);

/* Reads, straight on the pool (see pg_pool_exec for the callback). */
int store_last_seq(struct store *s, const char *room, pg_done_fn fn, void *arg);
int store_events(struct store *s, const char *room, int64_t from_seq, int64_t limit, pg_done_fn fn,
                 void *arg);
int store_replay(struct store *s, const char *room, int64_t since, int max, pg_done_fn fn,
                 void *arg);
int store_history(struct store *s, const char *room, int limit, const int64_t *before,
                  const int64_t *after, bool with_deleted, pg_done_fn fn, void *arg);
/* name, seq of each of the rooms (a text[] literal) that has had a change. */
int store_room_seqs(struct store *s, const char *rooms_array, pg_done_fn fn, void *arg);

#endif

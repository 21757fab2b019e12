#ifndef CHATD_WORKER_WS_OUT_H
#define CHATD_WORKER_WS_OUT_H

/* What a WebSocket connection has to send: a queue of references to
 * frames (struct ws_shared), written with one writev per connection at
 * the end of the loop turn. A broadcast thus costs each recipient one
 * queue slot and one reference count, no allocation and no copy, and a
 * connection gets everything of a turn in one system call, without
 * arming a write event when the kernel takes it all (the usual case).
 *
 * Only what the kernel does not take moves into the bufferevent's output
 * buffer (by reference), which then writes it when the socket is
 * writable. While that buffer holds anything, new frames go behind it
 * there, so order is kept; once it drains, the fast path resumes.
 *
 * Ownership: the queue holds one reference to each frame; they are
 * released when written, moved, or when the queue is freed. */

#include <stddef.h>
#include <stdint.h>

struct conn;
struct worker;
struct ws_shared;

struct ws_out_item {
    struct ws_shared *f;
    uint32_t off;            /* bytes of f already written */
};

struct ws_out {
    struct ws_out_item *items;  /* items[0..len); allocated on first use */
    uint16_t len, cap;
    uint32_t bytes;             /* unwritten bytes in the queue */
    struct conn *next_dirty;    /* in the worker's list of queues to write */
    uint8_t dirty;
};

/* Queues f (taking a reference) on the connection's output, or appends it
 * to the bufferevent's output when that is not empty. Returns -1 when out
 * of memory (the frame is not sent). */
int ws_out_push(struct conn *c, struct ws_out *o, struct ws_shared *f);

/* Queues f like ws_out_push but schedules no write: it leaves with the
 * next pushed frame, in the same system call. For the upgrade's 101,
 * whose client can do nothing before the welcome anyway. */
int ws_out_hold(struct conn *c, struct ws_out *o, struct ws_shared *f);

/* Writes every queue that got frames in this loop turn (the worker's
 * flush event). */
void ws_out_flush_dirty(struct worker *w);

/* Offers what is queued to the kernel now rather than at the end of the
 * turn; what it does not take moves to the bufferevent, as at the end of
 * a turn. May close the connection (the peer is gone). */
void ws_out_write_now(struct conn *c, struct ws_out *o);

/* Drops what is queued (the connection is going). */
void ws_out_clear(struct ws_out *o);

#endif

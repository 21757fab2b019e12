#include "worker/ws_out.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "shared/metrics.h"
#include "worker/conn.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"

/* iovecs per writev: a connection's frames of one turn usually fit. */
#define IOV_BATCH 64
/* A queue that grew past this is given back once empty; smaller ones are
 * kept, so steady traffic allocates nothing. */
#define KEEP_CAP 8

static void on_moved_done(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    ws_shared_release(arg);
}

/* Appends f[off..] to the bufferevent's output by reference. */
static int to_evbuffer(struct conn *c, struct ws_shared *f, uint32_t off)
{
    f->refs++;
    if (evbuffer_add_reference(bufferevent_get_output(c->bev), f->data + off, f->len - off,
                               on_moved_done, f) < 0) {
        f->refs--;
        return -1;
    }
    return 0;
}

static void mark_dirty(struct conn *c, struct ws_out *o)
{
    if (o->dirty) return;
    struct worker *w = c->w;
    o->dirty = 1;
    o->next_dirty = w->dirty_head;
    conn_ref(c);
    if (!w->dirty_head) event_active(w->flush_ev, 0, 0);
    w->dirty_head = c;
}

static int enqueue(struct conn *c, struct ws_out *o, struct ws_shared *f)
{
    metrics_add(METRIC_BYTES_OUT, f->len);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) return to_evbuffer(c, f, 0);
    if (o->len == o->cap) {
        uint16_t cap = o->cap ? (uint16_t)(o->cap * 2) : 4;
        if (cap < o->cap) return -1; /* 65535 frames queued: the outbuf limit stops far earlier */
        struct ws_out_item *items = realloc(o->items, cap * sizeof *items);
        if (!items) return -1;
        o->items = items;
        o->cap = cap;
    }
    f->refs++;
    o->items[o->len++] = (struct ws_out_item){.f = f, .off = 0};
    o->bytes += f->len;
    return 0;
}

int ws_out_push(struct conn *c, struct ws_out *o, struct ws_shared *f)
{
    metrics_add(METRIC_FRAMES_OUT, 1);
    if (enqueue(c, o, f) < 0) return -1;
    mark_dirty(c, o);
    return 0;
}

int ws_out_hold(struct conn *c, struct ws_out *o, struct ws_shared *f)
{
    return enqueue(c, o, f);
}

/* Forgets the first n bytes of the queue: they were written. */
static void consume(struct ws_out *o, size_t n)
{
    uint16_t done = 0;
    o->bytes -= (uint32_t)n;
    while (n > 0) {
        struct ws_out_item *it = &o->items[done];
        size_t left = it->f->len - it->off;
        if (n < left) {
            it->off += (uint32_t)n;
            break;
        }
        n -= left;
        ws_shared_release(it->f);
        done++;
    }
    if (done) {
        for (uint16_t i = done; i < o->len; i++) o->items[i - done] = o->items[i];
        o->len -= done;
    }
}

void ws_out_clear(struct ws_out *o)
{
    for (uint16_t i = 0; i < o->len; i++) ws_shared_release(o->items[i].f);
    free(o->items);
    o->items = NULL;
    o->len = o->cap = 0;
    o->bytes = 0;
}

/* What the kernel did not take goes to the bufferevent, which writes it
 * when the socket is writable again. */
static void move_rest(struct conn *c, struct ws_out *o)
{
    for (uint16_t i = 0; i < o->len; i++) {
        if (to_evbuffer(c, o->items[i].f, o->items[i].off) < 0) {
            conn_close(c);
            return;
        }
    }
    for (uint16_t i = 0; i < o->len; i++) ws_shared_release(o->items[i].f);
    o->len = 0;
    o->bytes = 0;
}

static void flush_one(struct conn *c, struct ws_out *o)
{
    int fd = bufferevent_getfd(c->bev);
    while (o->len > 0) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        size_t want = 0;
        for (uint16_t i = 0; i < o->len && n < IOV_BATCH; i++, n++) {
            iov[n].iov_base = o->items[i].f->data + o->items[i].off;
            iov[n].iov_len = o->items[i].f->len - o->items[i].off;
            want += iov[n].iov_len;
        }
        ssize_t wrote = writev(fd, iov, n);
        if (wrote < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            conn_close(c); /* the peer is gone; the read side will say so too */
            return;
        }
        consume(o, (size_t)wrote);
        if ((size_t)wrote < want) break;
    }
    if (o->len > 0) move_rest(c, o);
    if (o->cap > KEEP_CAP && o->len == 0) {
        free(o->items);
        o->items = NULL;
        o->cap = 0;
    }
    if (!c->closed && c->close_after_flush && conn_unsent(c) == 0) conn_close_after_flush(c);
}

void ws_out_flush_dirty(struct worker *w)
{
    while (w->dirty_head) {
        struct conn *c = w->dirty_head;
        struct ws_out *o = ws_conn_out(c);
        w->dirty_head = o ? o->next_dirty : NULL;
        if (o) {
            o->dirty = 0;
            o->next_dirty = NULL;
            if (!c->closed) flush_one(c, o);
        }
        conn_unref(c);
    }
}

void ws_out_write_now(struct conn *c, struct ws_out *o)
{
    /* Only a queue on the dirty list: its reference keeps the connection
     * alive should the write close it, and the end-of-turn flush then
     * finds it empty. A held 101 alone waits for its welcome. */
    if (!c->closed && o->dirty && o->len > 0) flush_one(c, o);
}

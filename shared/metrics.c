#include "shared/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const uint64_t metrics_latency_bounds_us[METRICS_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,
};

struct metrics_block {
    uint64_t v[METRIC_COUNT];
    uint64_t hist[METRIC_HIST_COUNT][METRICS_LATENCY_BUCKETS + 1]; /* last: +Inf */
    uint64_t hist_sum_us[METRIC_HIST_COUNT];
};

struct metrics_region {
    struct metrics_block retired;
    struct metrics_block procs[METRICS_MAX_PROCS];
};

static struct metrics_block private_block;
static struct metrics_region *region;
static struct metrics_block *mine = &private_block;

int metrics_init_shared(void)
{
    void *p = mmap(NULL, sizeof *region, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    region = p;
    return 0;
}

void metrics_attach(int proc_index)
{
    if (region && proc_index >= 0 && proc_index < METRICS_MAX_PROCS)
        mine = &region->procs[proc_index];
}

void metrics_retire(int proc_index)
{
    if (!region || proc_index < 0 || proc_index >= METRICS_MAX_PROCS) return;
    struct metrics_block *b = &region->procs[proc_index];
    for (int i = 0; i < METRIC_COUNTERS_END; i++)
        __atomic_fetch_add(&region->retired.v[i], __atomic_exchange_n(&b->v[i], 0, __ATOMIC_RELAXED),
                           __ATOMIC_RELAXED);
    for (int i = METRIC_COUNTERS_END; i < METRIC_COUNT; i++)
        __atomic_store_n(&b->v[i], 0, __ATOMIC_RELAXED);
    for (int h = 0; h < METRIC_HIST_COUNT; h++) {
        for (int i = 0; i <= METRICS_LATENCY_BUCKETS; i++)
            __atomic_fetch_add(&region->retired.hist[h][i],
                               __atomic_exchange_n(&b->hist[h][i], 0, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
        __atomic_fetch_add(&region->retired.hist_sum_us[h],
                           __atomic_exchange_n(&b->hist_sum_us[h], 0, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    }
}

/* A block has one writer (its process), so a plain load and store is
 * enough; relaxed atomics only keep readers from seeing torn values. A
 * locked add per frame cost 14% of a fan-out's CPU. */
void metrics_add(enum metric_id id, uint64_t n)
{
    __atomic_store_n(&mine->v[id], __atomic_load_n(&mine->v[id], __ATOMIC_RELAXED) + n,
                     __ATOMIC_RELAXED);
}

void metrics_gauge(enum metric_id id, int64_t delta)
{
    metrics_add(id, (uint64_t)delta);
}

void metrics_observe_us(enum metric_hist h, uint64_t us)
{
    int b = 0;
    while (b < METRICS_LATENCY_BUCKETS && us > metrics_latency_bounds_us[b]) b++;
    __atomic_store_n(&mine->hist[h][b], __atomic_load_n(&mine->hist[h][b], __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&mine->hist_sum_us[h],
                     __atomic_load_n(&mine->hist_sum_us[h], __ATOMIC_RELAXED) + us, __ATOMIC_RELAXED);
}

static void sum(struct metrics_block *out)
{
    memset(out, 0, sizeof *out);
    const struct metrics_block *blocks = region ? region->procs : &private_block;
    int n = region ? METRICS_MAX_PROCS : 1;
    for (int k = -1; k < n; k++) {
        const struct metrics_block *b = k < 0 ? (region ? &region->retired : NULL) : &blocks[k];
        if (!b) continue;
        for (int i = 0; i < METRIC_COUNT; i++) out->v[i] += __atomic_load_n(&b->v[i], __ATOMIC_RELAXED);
        for (int h = 0; h < METRIC_HIST_COUNT; h++) {
            for (int i = 0; i <= METRICS_LATENCY_BUCKETS; i++)
                out->hist[h][i] += __atomic_load_n(&b->hist[h][i], __ATOMIC_RELAXED);
            out->hist_sum_us[h] += __atomic_load_n(&b->hist_sum_us[h], __ATOMIC_RELAXED);
        }
    }
}

struct metric_desc {
    enum metric_id id;
    const char *name;
    const char *label;   /* NULL or a label pair, e.g. code="empty" */
    const char *help;
};

static const struct metric_desc descs[] = {
    {METRIC_CONNS_ACCEPTED, "chatd_connections_accepted_total", NULL, "TCP connections accepted."},
    {METRIC_CONNS_REFUSED, "chatd_connections_refused_total", NULL, "Connections refused at accept (max_conns_per_ip)."},
    {METRIC_WS_UPGRADES, "chatd_websocket_upgrades_total", NULL, "WebSocket upgrades completed."},
    {METRIC_FRAMES_IN, "chatd_frames_in_total", NULL, "WebSocket frames received."},
    {METRIC_FRAMES_OUT, "chatd_frames_out_total", NULL, "WebSocket frames queued for sending."},
    {METRIC_BYTES_IN, "chatd_ws_bytes_in_total", NULL, "WebSocket bytes received (frames)."},
    {METRIC_BYTES_OUT, "chatd_ws_bytes_out_total", NULL, "WebSocket bytes queued (frames)."},
    {METRIC_MESSAGES_STORED, "chatd_messages_stored_total", NULL, "Messages committed to PostgreSQL."},
    {METRIC_MESSAGE_BATCHES, "chatd_message_batches_total", NULL, "Transactions that committed new messages (group commit: messages stored per batch)."},
    {METRIC_EDITS_STORED, "chatd_edits_stored_total", NULL, "Edits committed to PostgreSQL."},
    {METRIC_DELETES_STORED, "chatd_deletes_stored_total", NULL, "Deletes committed to PostgreSQL."},
    {METRIC_ACKS, "chatd_acks_total", NULL, "Acks sent."},
    {METRIC_SLOW_CLOSES, "chatd_slow_consumer_closes_total", NULL, "Connections closed with 1013 for not reading."},
    {METRIC_REDIS_ERRORS, "chatd_redis_errors_total", NULL, "Redis link losses, failed connects and error replies."},
    {METRIC_REDIS_RECONNECTS, "chatd_redis_reconnects_total", NULL, "Redis connects attempted."},
    {METRIC_PG_ERRORS, "chatd_postgres_errors_total", NULL, "PostgreSQL connection losses and failed connects."},
    {METRIC_PG_RECONNECTS, "chatd_postgres_reconnects_total", NULL, "PostgreSQL connects attempted."},
    {METRIC_GAP_REPAIRS, "chatd_gap_repairs_total", NULL, "Sequence gaps filled from PostgreSQL."},
    {METRIC_PUBLISH_DROPPED, "chatd_publish_dropped_total", NULL, "PUBLISHes dropped on purpose (test_drop_publish_every)."},
    {METRIC_RATE_REFUSED_LOCALLY, "chatd_rate_limited_locally_total", NULL, "rate_limited replies given without asking Redis (it had just refused the user)."},
    {METRIC_READS_PAUSED, "chatd_websocket_reads_paused_total", NULL, "Times a connection's reading paused at its limit of requests in flight."},
    {METRIC_ERR_BAD_REQUEST, "chatd_errors_total", "code=\"bad_request\"", "Error replies on sockets, by code."},
    {METRIC_ERR_UNKNOWN_TYPE, "chatd_errors_total", "code=\"unknown_type\"", NULL},
    {METRIC_ERR_EMPTY, "chatd_errors_total", "code=\"empty\"", NULL},
    {METRIC_ERR_TOO_LONG, "chatd_errors_total", "code=\"too_long\"", NULL},
    {METRIC_ERR_FORBIDDEN, "chatd_errors_total", "code=\"forbidden\"", NULL},
    {METRIC_ERR_NOT_FOUND, "chatd_errors_total", "code=\"not_found\"", NULL},
    {METRIC_ERR_EDIT_WINDOW, "chatd_errors_total", "code=\"edit_window_closed\"", NULL},
    {METRIC_ERR_RATE_LIMITED, "chatd_errors_total", "code=\"rate_limited\"", NULL},
    {METRIC_ERR_UNAVAILABLE, "chatd_errors_total", "code=\"unavailable\"", NULL},
    {METRIC_CONNS_OPEN, "chatd_connections_open", NULL, "Open client connections (HTTP and WebSocket)."},
    {METRIC_WS_OPEN, "chatd_websocket_connections_open", NULL, "Open WebSocket connections."},
};

static const struct {
    const char *name, *help;
} hist_descs[METRIC_HIST_COUNT] = {
    [METRIC_HIST_BROADCAST] = {"chatd_broadcast_latency_seconds", "Time from a change reaching a worker from Redis to its frame being queued to the local recipients, reorder waits included."},
    [METRIC_HIST_MESSAGE_COMMIT] = {"chatd_message_commit_seconds", "Time from a batch of new messages leaving for PostgreSQL to its commit being answered."},
};

char *metrics_render(size_t *len)
{
    struct metrics_block s;
    sum(&s);
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
        const struct metric_desc *d = &descs[i];
        if (d->help) {
            fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                    d->id < METRIC_COUNTERS_END ? "counter" : "gauge");
        }
        if (d->label) fprintf(f, "%s{%s} %llu\n", d->name, d->label, (unsigned long long)s.v[d->id]);
        else fprintf(f, "%s %lld\n", d->name, (long long)s.v[d->id]);
    }
    for (int k = 0; k < METRIC_HIST_COUNT; k++) {
        const char *h = hist_descs[k].name;
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", h, hist_descs[k].help, h);
        uint64_t cum = 0;
        for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
            cum += s.hist[k][i];
            fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", h, (double)metrics_latency_bounds_us[i] / 1e6,
                    (unsigned long long)cum);
        }
        cum += s.hist[k][METRICS_LATENCY_BUCKETS];
        fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", h, (unsigned long long)cum);
        fprintf(f, "%s_sum %.6f\n%s_count %llu\n", h, (double)s.hist_sum_us[k] / 1e6, h,
                (unsigned long long)cum);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

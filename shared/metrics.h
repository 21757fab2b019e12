#ifndef CHATD_SHARED_METRICS_H
#define CHATD_SHARED_METRICS_H

/* Figures for /metrics, summed over one host's workers.
 *
 * The master maps one shared anonymous region before it forks; each worker
 * process writes only its own block (the master's process-table index),
 * so updates need no lock: one writer per block, readers sum. Any worker renders the sum. When
 * a worker dies the master folds its counters into the "retired" block and
 * drops its gauges, so counters never go backwards and gauges never keep a
 * dead process's connections. Without metrics_init_shared (unit tests,
 * chatctl) a private block is used. */

#include <stddef.h>
#include <stdint.h>

enum metric_id {
    /* Counters. */
    METRIC_CONNS_ACCEPTED,
    METRIC_CONNS_REFUSED,
    METRIC_WS_UPGRADES,
    METRIC_FRAMES_IN,
    METRIC_FRAMES_OUT,
    METRIC_BYTES_IN,
    METRIC_BYTES_OUT,
    METRIC_MESSAGES_STORED,
    METRIC_MESSAGE_BATCHES,
    METRIC_EDITS_STORED,
    METRIC_DELETES_STORED,
    METRIC_ACKS,
    METRIC_SLOW_CLOSES,
    METRIC_REDIS_ERRORS,
    METRIC_REDIS_RECONNECTS,
    METRIC_PG_ERRORS,
    METRIC_PG_RECONNECTS,
    METRIC_GAP_REPAIRS,
    METRIC_PUBLISH_DROPPED,
    METRIC_RATE_REFUSED_LOCALLY,
    METRIC_READS_PAUSED,
    METRIC_ERR_BAD_REQUEST,
    METRIC_ERR_UNKNOWN_TYPE,
    METRIC_ERR_EMPTY,
    METRIC_ERR_TOO_LONG,
    METRIC_ERR_FORBIDDEN,
    METRIC_ERR_NOT_FOUND,
    METRIC_ERR_EDIT_WINDOW,
    METRIC_ERR_RATE_LIMITED,
    METRIC_ERR_UNAVAILABLE,
    METRIC_COUNTERS_END,
    /* Gauges. */
    METRIC_CONNS_OPEN = METRIC_COUNTERS_END,
    METRIC_WS_OPEN,
    METRIC_COUNT
};

/* Latency histograms, all with the same buckets (upper bounds in
 * microseconds). */
enum metric_hist {
    /* From a change's arrival in a worker (from Redis) to its frame being
     * queued to the local recipients, reorder waits included. Changes read
     * back from PostgreSQL by a gap repair are not timed (no arrival to
     * time from). */
    METRIC_HIST_BROADCAST,
    /* From a batch of new messages leaving for PostgreSQL to its commit
     * being answered: the database's share of an ack's latency. */
    METRIC_HIST_MESSAGE_COMMIT,
    METRIC_HIST_COUNT
};
#define METRICS_LATENCY_BUCKETS 12
extern const uint64_t metrics_latency_bounds_us[METRICS_LATENCY_BUCKETS];

#define METRICS_MAX_PROCS 512

/* Master, before forking. Returns 0 or -1. */
int metrics_init_shared(void);
/* Worker, after fork: its block. */
void metrics_attach(int proc_index);
/* Master, after reaping the process that used the block. */
void metrics_retire(int proc_index);

void metrics_add(enum metric_id id, uint64_t n);
void metrics_gauge(enum metric_id id, int64_t delta);
void metrics_observe_us(enum metric_hist h, uint64_t us);

/* Prometheus text exposition of the sum. Returns a malloc'd string and
 * its length, or NULL. */
char *metrics_render(size_t *len);

#endif

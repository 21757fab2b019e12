#ifndef CHATD_BENCH_HIST_H
#define CHATD_BENCH_HIST_H

/* A log-bucketed latency histogram in the manner of HdrHistogram: values
 * (microseconds) below 128 are counted exactly, larger ones in buckets
 * 1/64 of their power of two wide, so any reported value is within 1.6 %
 * of the true one. Fixed size, no allocation: recording is an index
 * computation and an increment, cheap enough for every received frame.
 *
 * Ownership: plain data, owned by whoever embeds it; it can be copied
 * (and sent through a pipe) as bytes. */

#include <stdint.h>

#define HIST_SUB_BITS 6                     /* 64 sub-buckets per octave */
#define HIST_MAX_SHIFT 34                   /* values up to 2^41 us: 25 days */
#define HIST_BUCKETS ((HIST_MAX_SHIFT + 2) << HIST_SUB_BITS)

struct hist {
	uint64_t count;
	uint64_t min, max;
	double sum;
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t v);
/* Adds src's counts to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at quantile q (0..1): the highest value of the bucket that
 * holds the ceil(q * count)-th smallest sample, capped at max; 0 when
 * empty. */
uint64_t hist_quantile(const struct hist *h, double q);
double hist_mean(const struct hist *h);

/* Bucket index of v, and the highest value that lands in bucket i
 * (exposed for the self-test). */
unsigned hist_index(uint64_t v);
uint64_t hist_bucket_high(unsigned i);

#endif

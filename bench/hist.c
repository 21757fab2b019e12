#include "bench/hist.h"

#include <string.h>

#define SUB (1u << HIST_SUB_BITS)      /* 64 */
#define LINEAR (2u * SUB)              /* values below 128 are exact */

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof *h);
	h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t v)
{
	if (v < LINEAR)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);  /* >= 7 */
	unsigned shift = msb - HIST_SUB_BITS;                /* >= 1 */
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	/* v >> shift is in [64, 128): octave `shift` takes indexes
	 * 64 * shift + 64 .. 64 * shift + 127, right after the previous. */
	return (shift << HIST_SUB_BITS) + (unsigned)(v >> shift);
}

uint64_t hist_bucket_high(unsigned i)
{
	if (i < LINEAR)
		return i;
	unsigned shift = (i >> HIST_SUB_BITS) - 1;
	uint64_t sub = (i & (SUB - 1)) + SUB;
	return ((sub + 1) << shift) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
	h->sum += (double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (!src->count)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	if (!h->count)
		return 0;
	if (q <= 0)
		return h->min;
	uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t v = hist_bucket_high(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? h->sum / (double)h->count : 0;
}

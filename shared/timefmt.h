#ifndef CHATD_SHARED_TIMEFMT_H
#define CHATD_SHARED_TIMEFMT_H

#include <stdint.h>

/* "2026-11-26T09:31:32.123Z": 24 characters. */
#define TIMEFMT_RFC3339_MS_LEN 24

/* Wall-clock milliseconds since the Unix epoch. */
int64_t timefmt_now_ms(void);

/* Monotonic milliseconds, for timeouts and latency; microseconds for
 * finer latency. */
int64_t timefmt_mono_ms(void);
int64_t timefmt_mono_us(void);

/* Writes TIMEFMT_RFC3339_MS_LEN characters and a NUL into out (UTC).
 * Returns 0, or -1 for a time outside years 0000..9999. */
int timefmt_rfc3339_ms(int64_t epoch_ms, char out[TIMEFMT_RFC3339_MS_LEN + 1]);

/* Parses the subset PostgreSQL and our own formatter produce:
 * "YYYY-MM-DD[T ]HH:MM:SS[.fraction](Z|+HH[:MM]|-HH[:MM])".
 * Returns 0 and sets *epoch_ms, or -1. */
int timefmt_parse(const char *s, int64_t *epoch_ms);

#endif

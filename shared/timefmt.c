#include "shared/timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t timefmt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t timefmt_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t timefmt_mono_ms(void) { return timefmt_mono_us() / 1000; }

/* Days since 1970-01-01 of a proleptic Gregorian date and back, after
 * Howard Hinnant's civil-date algorithms: no timezone database, no locks
 * (gmtime_r is fine too, but this one also runs backwards for parsing). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int timefmt_rfc3339_ms(int64_t epoch_ms, char out[TIMEFMT_RFC3339_MS_LEN + 1])
{
    int64_t days = epoch_ms / 86400000;
    int64_t rem = epoch_ms % 86400000;
    if (rem < 0) {
        rem += 86400000;
        days -= 1;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) {
        memcpy(out, "0000-00-00T00:00:00.000Z", TIMEFMT_RFC3339_MS_LEN + 1);
        return -1;
    }
    int ms = (int)(rem % 1000);
    int s = (int)(rem / 1000);
    snprintf(out, TIMEFMT_RFC3339_MS_LEN + 1, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (int)y, m, d, s / 3600, (s / 60) % 60, s % 60, ms);
    return 0;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int expect(const char **p, char c)
{
    if (**p != c) return -1;
    (*p)++;
    return 0;
}

int timefmt_parse(const char *s, int64_t *epoch_ms)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, ms = 0;
    if (digits(&p, 4, &y) || expect(&p, '-') || digits(&p, 2, &mo) ||
        expect(&p, '-') || digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != ' ' && *p != 't') return -1;
    p++;
    if (digits(&p, 2, &h) || expect(&p, ':') || digits(&p, 2, &mi) ||
        expect(&p, ':') || digits(&p, 2, &sec))
        return -1;
    /* A day the month does not have (2021-02-29) is malformed, not the
     * next month: every accepted date then names itself. */
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return -1;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3) ms = ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0) return -1;
        for (; n < 3; n++) ms *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om = 0;
        p++;
        if (digits(&p, 2, &oh)) return -1;
        /* A colon promises minutes ("+05:" is malformed). */
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &om)) return -1;
        } else if (isdigit((unsigned char)*p) && digits(&p, 2, &om)) {
            return -1;
        }
        if (oh > 23 || om > 59) return -1;
        offset_min = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p != '\0') return -1;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)offset_min * 60;
    *epoch_ms = secs * 1000 + ms;
    return 0;
}

/* shared/timefmt: RFC 3339 formatting of epoch milliseconds and parsing of
 * what PostgreSQL and the formatter produce. gmtime_r and timegm serve as
 * independent oracles for the calendar arithmetic. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/timefmt.h"

/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
#define MIN_MS (-62167219200000LL)
#define MAX_MS (253402300799999LL)
#define DAY_MS 86400000LL

/* Formats from an exact-size heap buffer with a guard byte behind it, so
 * a write past TIMEFMT_RFC3339_MS_LEN + 1 bytes is caught. */
static int fmt(int64_t ms, char out[TIMEFMT_RFC3339_MS_LEN + 1])
{
    char *buf = malloc(TIMEFMT_RFC3339_MS_LEN + 2);
    assert_non_null(buf);
    memset(buf, 'X', TIMEFMT_RFC3339_MS_LEN + 2);
    int rc = timefmt_rfc3339_ms(ms, buf);
    assert_int_equal(buf[TIMEFMT_RFC3339_MS_LEN + 1], 'X');
    memcpy(out, buf, TIMEFMT_RFC3339_MS_LEN + 1);
    free(buf);
    return rc;
}

/* Parses from an exact-size heap copy, so ASan flags a read past the NUL. */
static int parse(const char *s, int64_t *ms)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, s, n);
    int rc = timefmt_parse(copy, ms);
    free(copy);
    return rc;
}

static void assert_fmt(int64_t ms, const char *want)
{
    char out[TIMEFMT_RFC3339_MS_LEN + 1];
    if (fmt(ms, out) != 0) fail_msg("format %lld failed, want %s", (long long)ms, want);
    assert_int_equal(strlen(out), TIMEFMT_RFC3339_MS_LEN);
    assert_string_equal(out, want);
}

static void assert_parse(const char *s, int64_t want)
{
    int64_t got = 12345;
    if (parse(s, &got) != 0) fail_msg("parse '%s' failed, want %lld", s, (long long)want);
    if (got != want) fail_msg("parse '%s' = %lld, want %lld", s, (long long)got, (long long)want);
}

static void assert_rejects(const char *s)
{
    int64_t got = 12345;
    if (parse(s, &got) != -1) fail_msg("parse accepted '%s' as %lld", s, (long long)got);
    assert_int_equal(got, 12345); /* untouched on failure */
}

/* A small deterministic generator: the same values on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static int64_t rng_in(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng() % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------------------ formatting */

static void test_format_known(void **state)
{
    (void)state;
    assert_fmt(0, "1970-01-01T00:00:00.000Z");
    assert_fmt(1, "1970-01-01T00:00:00.001Z");
    assert_fmt(999, "1970-01-01T00:00:00.999Z");
    assert_fmt(1000, "1970-01-01T00:00:01.000Z");
    assert_fmt(DAY_MS - 1, "1970-01-01T23:59:59.999Z");
    assert_fmt(DAY_MS, "1970-01-02T00:00:00.000Z");
    assert_fmt(946684800000LL, "2000-01-01T00:00:00.000Z");
    assert_fmt(951782400000LL, "2000-02-29T00:00:00.000Z");
    assert_fmt(951868799999LL, "2000-02-29T23:59:59.999Z");
    assert_fmt(951868800000LL, "2000-03-01T00:00:00.000Z");
    assert_fmt(1709164800000LL, "2024-02-29T00:00:00.000Z");
    assert_fmt(1234567890123LL, "2009-02-13T23:31:30.123Z");
    assert_fmt(1798277492123LL, "2026-12-26T09:31:32.123Z");
    assert_fmt(2147483647000LL, "2038-01-19T03:14:07.000Z");
    assert_fmt(4107542400000LL, "2100-03-01T00:00:00.000Z"); /* 2100 is no leap year */
    assert_fmt(4107542399999LL, "2100-02-28T23:59:59.999Z");
    assert_fmt(MAX_MS, "9999-12-31T23:59:59.999Z");
    assert_fmt(MIN_MS, "0000-01-01T00:00:00.000Z");
    assert_fmt(MIN_MS + 59 * DAY_MS, "0000-02-29T00:00:00.000Z"); /* year 0 is a leap year */
}

static void test_format_pre_epoch(void **state)
{
    (void)state;
    assert_fmt(-1, "1969-12-31T23:59:59.999Z");
    assert_fmt(-999, "1969-12-31T23:59:59.001Z");
    assert_fmt(-1000, "1969-12-31T23:59:59.000Z");
    assert_fmt(-1001, "1969-12-31T23:59:58.999Z");
    assert_fmt(-DAY_MS, "1969-12-31T00:00:00.000Z");
    assert_fmt(-DAY_MS - 1, "1969-12-30T23:59:59.999Z");
    assert_fmt(-2208988800000LL, "1900-01-01T00:00:00.000Z");
    assert_fmt(-2203891200000LL, "1900-03-01T00:00:00.000Z"); /* 1900 is no leap year */
    assert_fmt(-2203891200001LL, "1900-02-28T23:59:59.999Z");
    assert_fmt(-12219292800000LL, "1582-10-15T00:00:00.000Z"); /* proleptic Gregorian */
}

static void test_format_out_of_range(void **state)
{
    (void)state;
    char out[TIMEFMT_RFC3339_MS_LEN + 1];
    const int64_t bad[] = {MAX_MS + 1, MIN_MS - 1, MAX_MS + DAY_MS * 366, MIN_MS - DAY_MS * 366,
                           INT64_MAX, INT64_MIN, INT64_MAX / 2, INT64_MIN / 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (fmt(bad[i], out) != -1) fail_msg("formatted %lld as %s", (long long)bad[i], out);
        /* Whatever it leaves is still a terminated string of the fixed length. */
        assert_int_equal(strlen(out), TIMEFMT_RFC3339_MS_LEN);
    }
}

/* Every day from 1900 to 2200 (and a stride beyond), each at a varying
 * time of day, against gmtime_r. */
static void test_format_matches_gmtime(void **state)
{
    (void)state;
    char out[TIMEFMT_RFC3339_MS_LEN + 1], want[64];
    int64_t first = -2208988800000LL, last = 7258118400000LL; /* 1900..2200 */
    int n = 0;
    for (int64_t day = first; day <= MAX_MS; day += (day < last ? DAY_MS : 7 * DAY_MS + 3)) {
        int64_t ms = day + (n * 7919LL * 1000 + n) % DAY_MS;
        n++;
        if (ms > MAX_MS) break;
        time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        int sub = (int)(ms - (int64_t)secs * 1000);
        struct tm tm;
        assert_non_null(gmtime_r(&secs, &tm));
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, sub);
        assert_int_equal(fmt(ms, out), 0);
        if (strcmp(out, want) != 0) fail_msg("%lld: got %s, gmtime_r says %s", (long long)ms, out, want);
    }
    assert_true(n > 110000);
}

/* -------------------------------------------------------------- parsing */

static void test_parse_own_format(void **state)
{
    (void)state;
    assert_parse("1970-01-01T00:00:00.000Z", 0);
    assert_parse("1970-01-01T00:00:00Z", 0);
    assert_parse("1969-12-31T23:59:59.999Z", -1);
    assert_parse("2000-02-29T12:00:00.500Z", 951825600500LL);
    assert_parse("2009-02-13T23:31:30.123Z", 1234567890123LL);
    assert_parse("9999-12-31T23:59:59.999Z", MAX_MS);
    assert_parse("0000-01-01T00:00:00.000Z", MIN_MS);
    assert_parse("1900-03-01T00:00:00.000Z", -2203891200000LL);
    /* RFC 3339 5.6: T and Z may be lower case. */
    assert_parse("2009-02-13t23:31:30.123z", 1234567890123LL);
}

/* What PostgreSQL prints for timestamptz: a space, up to six fraction
 * digits (none when zero), the session's offset as +HH or +HH:MM. */
static void test_parse_postgres_style(void **state)
{
    (void)state;
    assert_parse("2009-02-13 23:31:30.123+00", 1234567890123LL);
    assert_parse("2009-02-13 23:31:30+00", 1234567890000LL);
    assert_parse("2009-02-13 23:31:30.123456+00", 1234567890123LL);
    assert_parse("2009-02-14 05:01:30.123+05:30", 1234567890123LL);
    assert_parse("2009-02-13 15:31:30.123-08", 1234567890123LL);
    assert_parse("2009-02-13 15:31:30.123-08:00", 1234567890123LL);
    assert_parse("2009-02-13 15:31:30.123-0800", 1234567890123LL);
    assert_parse("2009-02-14 05:01:30.123+0530", 1234567890123LL);
    assert_parse("2009-02-13 20:01:30.123-03:30", 1234567890123LL);
    /* An offset moves the instant across a day and a year boundary. */
    assert_parse("1970-01-01 05:30:00+05:30", 0);
    assert_parse("1969-12-31 16:00:00-08", 0);
    assert_parse("2000-01-01 00:00:00+01", 946684800000LL - 3600000);
    assert_parse("1999-12-31 23:00:00-01", 946684800000LL);
    assert_parse("2000-02-29 23:59:59.999-00:01", 951868800000LL + 59999);
    assert_parse("1969-12-31 23:59:59.999999+00", -1);
}

/* 1 to 6 fraction digits are tenths, hundredths, ... Digits past the
 * millisecond are cut, not rounded, which keeps every instant in its
 * millisecond (also before the epoch). */
static void test_parse_fractions(void **state)
{
    (void)state;
    assert_parse("2020-01-01T00:00:00.1Z", 1577836800100LL);
    assert_parse("2020-01-01T00:00:00.12Z", 1577836800120LL);
    assert_parse("2020-01-01T00:00:00.123Z", 1577836800123LL);
    assert_parse("2020-01-01T00:00:00.1234Z", 1577836800123LL);
    assert_parse("2020-01-01T00:00:00.12345Z", 1577836800123LL);
    assert_parse("2020-01-01T00:00:00.123456Z", 1577836800123LL);
    assert_parse("2020-01-01T00:00:00.999999Z", 1577836800999LL);
    assert_parse("2020-01-01T00:00:00.000001Z", 1577836800000LL);
    assert_parse("2020-01-01T00:00:00.05Z", 1577836800050LL);
    assert_parse("2020-01-01T00:00:00.005Z", 1577836800005LL);
    assert_parse("2020-01-01T00:00:00.0Z", 1577836800000LL);
    assert_parse("1969-12-31T23:59:59.9+00", -100);
    assert_parse("1969-12-31 23:59:59.000001+00", -1000);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2020",
        "2020-01-01",
        "2020-01-01T",
        "2020-01-01T00:00",
        "2020-01-01T00:00:00",          /* no zone */
        "2020-01-01T00:00:00.123",      /* no zone */
        "2020-01-01T00:00:00.Z",        /* empty fraction */
        "2020-01-01T00:00:00.+00",
        "2020-01-01X00:00:00Z",
        "2020-01-01  00:00:00Z",
        "2020/01/01T00:00:00Z",
        "2020-01-01T00-00-00Z",
        "20-01-01T00:00:00Z",
        "02020-01-01T00:00:00Z",
        "2020-1-01T00:00:00Z",
        "2020-01-1T00:00:00Z",
        "2020-01-01T0:00:00Z",
        "2020-01-01T00:0:00Z",
        "2020-01-01T00:00:0Z",
        " 2020-01-01T00:00:00Z",
        "2020-01-01T00:00:00Z ",
        "2020-01-01T00:00:00ZZ",
        "2020-01-01T00:00:00Zjunk",
        "2020-01-01T00:00:00+",
        "2020-01-01T00:00:00+5",
        "2020-01-01T00:00:00+5:30",
        "2020-01-01T00:00:00+05:3",
        "2020-01-01T00:00:00+053",
        "2020-01-01T00:00:00+05:",      /* a colon needs minutes */
        "2020-01-01T00:00:00+05:30:",
        "2020-01-01T00:00:00+05:3000",
        "2020-01-01T00:00:00+053000",
        "2020-01-01T00:00:00+05:30:00", /* seconds in offsets: not in the subset */
        "2020-01-01T00:00:00+05:30Z",
        "2020-01-01T00:00:00+05:60",    /* minutes 0..59 */
        "2020-01-01T00:00:00+24",       /* hours 0..23 */
        "2020-01-01T00:00:00+99:99",
        "2020-01-01T00:00:00 +00",
        "2020-01-01T00:00:00UTC",
        "2020-00-01T00:00:00Z",
        "2020-13-01T00:00:00Z",
        "2020-01-00T00:00:00Z",
        "2020-01-32T00:00:00Z",
        "2021-02-29T00:00:00Z",         /* not a leap year */
        "1900-02-29T00:00:00Z",         /* century, not a leap year */
        "2020-02-30T00:00:00Z",
        "2020-04-31T00:00:00Z",
        "2020-06-31T00:00:00Z",
        "2020-09-31T00:00:00Z",
        "2020-11-31T00:00:00Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T00:60:00Z",
        "2020-01-01T00:00:61Z",
        "-001-01-01T00:00:00Z",
        "+2020-01-01T00:00:00Z",
        "2020-01-01T00:00:00.1a2Z",
        "２020-01-01T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_rejects(bad[i]);
    /* Every valid day-of-month limit is still accepted. */
    assert_parse("2020-02-29T00:00:00Z", 1582934400000LL);
    assert_parse("2000-02-29T00:00:00Z", 951782400000LL);
    assert_parse("2021-02-28T00:00:00Z", 1614470400000LL);
    assert_parse("2020-04-30T00:00:00Z", 1588204800000LL);
    assert_parse("2020-12-31T00:00:00Z", 1609372800000LL);
    assert_parse("2020-01-31T00:00:00Z", 1580428800000LL);
    assert_parse("2020-01-01T00:00:00+23:59", 1577836800000LL - (23 * 60 + 59) * 60000LL);
}

/* Every prefix of valid strings is incomplete, hence rejected; and each
 * prefix is parsed from an exact-size copy, so no read goes past its end. */
static void test_parse_prefixes(void **state)
{
    (void)state;
    static const char *const good[] = {
        "2009-02-13T23:31:30.123Z",
        "2009-02-14 05:01:30.123456+05:30",
        "2009-02-13 15:31:30-08",
    };
    char buf[64];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t whole;
        assert_int_equal(parse(good[i], &whole), 0);
        size_t n = strlen(good[i]);
        for (size_t k = 0; k < n; k++) {
            memcpy(buf, good[i], k);
            buf[k] = '\0';
            int64_t got = 0;
            /* "...-08" cut to "...-0" is bad, "...+05:30" cut to "...+05"
             * is a valid shorter offset: only a prefix ending in the
             * offset's hour digits may parse. */
            if (parse(buf, &got) == 0) {
                assert_true(buf[k - 1] >= '0' && buf[k - 1] <= '9');
                assert_non_null(strpbrk(buf + 19, "+-"));
            }
        }
    }
    assert_rejects("2009-02-13 15:31:30-0");
}

/* ----------------------------------------------------------- round trips */

static void round_trip(int64_t ms)
{
    char out[TIMEFMT_RFC3339_MS_LEN + 1];
    if (fmt(ms, out) != 0) fail_msg("format %lld failed", (long long)ms);
    int64_t back = 0;
    if (parse(out, &back) != 0) fail_msg("parse '%s' (from %lld) failed", out, (long long)ms);
    if (back != ms) fail_msg("%lld -> '%s' -> %lld", (long long)ms, out, (long long)back);
}

static void test_round_trip(void **state)
{
    (void)state;
    const int64_t edges[] = {0, 1, -1, 999, -999, 1000, -1000, DAY_MS, -DAY_MS, MIN_MS,
                             MIN_MS + 1, MAX_MS, MAX_MS - 1, 951782400000LL, 951868799999LL,
                             -2203891200001LL, 253402214400000LL};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) round_trip(edges[i]);
    for (int i = 0; i < 200000; i++) round_trip(rng_in(MIN_MS, MAX_MS));
    /* Dense around today's dates, where the values really are. */
    for (int i = 0; i < 100000; i++) round_trip(rng_in(946684800000LL, 4102444800000LL));
    /* Every millisecond of one second and every second of one day. */
    for (int64_t ms = 1234567890000LL; ms < 1234567891000LL; ms++) round_trip(ms);
    for (int64_t s = 0; s < 86400; s++) round_trip(951782400000LL + s * 1000 + s % 1000);
}

/* The parser agrees with timegm on random broken-down times, written with
 * random offsets and fraction lengths. */
static void test_parse_matches_timegm(void **state)
{
    (void)state;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char s[80], frac[8];
    for (int i = 0; i < 50000; i++) {
        int y = (int)rng_in(1, 9998);
        int mo = (int)rng_in(1, 12);
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        int d = (int)rng_in(1, mdays[mo - 1] + (mo == 2 && leap));
        int h = (int)rng_in(0, 23), mi = (int)rng_in(0, 59), sec = (int)rng_in(0, 59);
        int ndig = (int)rng_in(0, 6);
        int fracv = 0;
        for (int k = 0; k < ndig; k++) {
            int dig = (int)rng_in(0, 9);
            frac[k] = (char)('0' + dig);
            if (k < 3) fracv = fracv * 10 + dig;
        }
        frac[ndig] = '\0';
        for (int k = ndig; k < 3; k++) fracv *= 10;
        int oh = (int)rng_in(0, 14), om = (int)(rng_in(0, 3) * 15);
        int sign = rng() & 1 ? 1 : -1;
        int style = (int)rng_in(0, 3);
        char zone[16];
        if (style == 0 && oh == 0 && om == 0) snprintf(zone, sizeof zone, "Z");
        else if (style <= 1) snprintf(zone, sizeof zone, "%c%02d:%02d", sign > 0 ? '+' : '-', oh, om);
        else if (style == 2) snprintf(zone, sizeof zone, "%c%02d%02d", sign > 0 ? '+' : '-', oh, om);
        else {
            om = 0;
            snprintf(zone, sizeof zone, "%c%02d", sign > 0 ? '+' : '-', oh);
        }
        snprintf(s, sizeof s, "%04d-%02d-%02d%c%02d:%02d:%02d%s%s%s", y, mo, d,
                 rng() & 1 ? 'T' : ' ', h, mi, sec, ndig ? "." : "", frac, zone);
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                        .tm_hour = h, .tm_min = mi, .tm_sec = sec};
        int64_t want = ((int64_t)timegm(&tm) - (int64_t)sign * (oh * 3600 + om * 60)) * 1000 + fracv;
        assert_parse(s, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_known),
        cmocka_unit_test(test_format_pre_epoch),
        cmocka_unit_test(test_format_out_of_range),
        cmocka_unit_test(test_format_matches_gmtime),
        cmocka_unit_test(test_parse_own_format),
        cmocka_unit_test(test_parse_postgres_style),
        cmocka_unit_test(test_parse_fractions),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_prefixes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_matches_timegm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

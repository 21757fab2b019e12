/* worker/http_query.c: query parameters, integers and static-file paths.
 *
 * Inputs are copied to end exactly at a PROT_NONE page, so reading past
 * query.n (for instance while looking at a '%' escape cut short by the end
 * of the query) crashes the test. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/http_query.h"

static char *g_map;
static size_t g_map_len;
static char *g_guard;

static int arena_setup(void **state)
{
    (void)state;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    g_map_len = 2 * pg;
    void *m = mmap(NULL, g_map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    g_map = m;
    g_guard = g_map + pg;
    if (mprotect(g_guard, pg, PROT_NONE) != 0) return -1;
    return 0;
}

static int arena_teardown(void **state)
{
    (void)state;
    munmap(g_map, g_map_len);
    return 0;
}

/* The string s placed against the guard page, without its NUL. */
static struct http_str gs(const char *s)
{
    size_t n = strlen(s);
    assert_true(n < 4096);
    char *dst = g_guard - n;
    memcpy(dst, s, n);
    return (struct http_str){dst, n};
}

/* http_query_get into a roomy buffer; checks the output contract. */
static int qget(const char *query, const char *name, char *out, size_t outlen)
{
    size_t n = 12345;
    memset(out, 'X', outlen);
    int r = http_query_get(gs(query), name, out, outlen, &n);
    if (r == 1) {
        assert_int_equal(n, strlen(out));
        assert_true(n < outlen);
    } else {
        assert_int_equal(n, 12345); /* untouched */
        if (outlen > 0) assert_string_equal(out, "");
    }
    return r;
}

static void expect_get(const char *query, const char *name, const char *want)
{
    char out[64];
    int r = qget(query, name, out, sizeof out);
    if (r != 1) fail_msg("%s in \"%s\": got %d", name, query, r);
    assert_string_equal(out, want);
}

static void expect_ret(const char *query, const char *name, int want)
{
    char out[64];
    int r = qget(query, name, out, sizeof out);
    if (r != want)
        fail_msg("%s in \"%s\": got %d, want %d", name, query, r, want);
}

static void test_get_basic(void **state)
{
    (void)state;
    expect_get("room=general", "room", "general");
    expect_get("room=general&since=5", "room", "general");
    expect_get("room=general&since=5", "since", "5");
    expect_get("a=1&room=x&b=2", "room", "x");
    expect_ret("room=general", "roo", 0);   /* prefix of a key */
    expect_ret("room=general", "rooms", 0); /* longer than the key */
    expect_ret("room=general", "Room", 0);  /* case-sensitive */
    expect_ret("room=general", "general", 0); /* values are not keys */
    expect_ret("", "room", 0);
    expect_ret("&&&", "room", 0);
    expect_get("a=b=c", "a", "b=c"); /* the first '=' splits */
    expect_get("&&room=x&&", "room", "x");

    /* Absent query: p may be NULL. */
    char out[8];
    size_t n = 99;
    struct http_str none = {NULL, 0};
    assert_int_equal(http_query_get(none, "room", out, sizeof out, &n), 0);
    assert_int_equal(n, 99);
    int64_t v = 7;
    assert_int_equal(http_query_get_i64(none, "limit", 1, 200, &v), 0);
    assert_int_equal(v, 7);
}

static void test_get_missing_values(void **state)
{
    (void)state;
    expect_get("flag", "flag", "");
    expect_get("flag&room=x", "flag", "");
    expect_get("room=x&flag", "flag", "");
    expect_get("room=", "room", "");
    expect_get("room=&x=1", "room", "");
    expect_get("=v", "", "v"); /* an empty key is a key like any other */
    expect_ret("=v", "v", 0);
}

static void test_get_escapes(void **state)
{
    (void)state;
    expect_get("q=a%20b", "q", "a b");
    expect_get("q=a+b", "q", "a b");
    expect_get("q=a%2Bb", "q", "a+b");
    expect_get("q=a%2bb", "q", "a+b");
    expect_get("q=%e2%82%AC", "q", "\xe2\x82\xac");
    expect_get("q=%26%3D", "q", "&=");
    expect_get("q=100%25", "q", "100%");
    expect_get("r%6Fom=x", "room", "x");  /* keys are decoded too */
    expect_get("a+b=x", "a b", "x");
    expect_get("a%20b=x", "a b", "x");
    expect_get("a%26b=x", "a&b", "x");

    expect_ret("q=%", "q", -1);
    expect_ret("q=%2", "q", -1);  /* cut short by the end of the query */
    expect_ret("q=%2&r=1", "q", -1);
    expect_ret("q=%zz", "q", -1);
    expect_ret("q=%g0", "q", -1);
    expect_ret("q=%0g", "q", -1);
    expect_ret("q=a%00b", "q", -1); /* a NUL would truncate the C string */
    expect_ret("q=%00", "q", -1);

    /* Junk in other parameters does not matter... */
    expect_get("x=%zz&q=1", "q", "1");
    expect_get("%zz=1&q=2", "q", "2");
    /* ... and an undecodable key is nobody's key. */
    expect_ret("%zz=1", "%zz", 0);
    expect_ret("a%00=1", "a", 0);
    expect_ret("q%=1", "q", 0);
    expect_ret("q%", "q", 0);
}

static void test_get_duplicates(void **state)
{
    (void)state;
    expect_get("room=a&room=b", "room", "a");
    expect_get("room&room=b", "room", "");
    /* The first occurrence decides, even when it is malformed. */
    expect_ret("room=%zz&room=b", "room", -1);
    expect_get("ro%6Fm=a&room=b", "room", "a");
}

static void test_get_output_size(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(qget("q=1234567", "q", out, 8), 1); /* 7 + NUL fits */
    assert_string_equal(out, "1234567");
    assert_int_equal(qget("q=12345678", "q", out, 8), -1);
    assert_int_equal(qget("q=%31%32%33%34%35%36%37", "q", out, 8), 1);
    assert_int_equal(qget("q=", "q", out, 1), 1);
    assert_string_equal(out, "");
    assert_int_equal(qget("q=a", "q", out, 1), -1);
    /* No room for even the NUL. */
    assert_int_equal(http_query_get(gs("q="), "q", NULL, 0, NULL), -1);
    assert_int_equal(http_query_get(gs("q=a"), "q", NULL, 0, NULL), -1);
    assert_int_equal(http_query_get(gs("x=a"), "q", NULL, 0, NULL), 0);
    /* outn is optional. */
    assert_int_equal(http_query_get(gs("q=ab"), "q", out, sizeof out, NULL), 1);
    assert_string_equal(out, "ab");
}

/* ---- integers ------------------------------------------------------- */

static void expect_i64(const char *query, int64_t min, int64_t max, int want,
                       int64_t want_v)
{
    int64_t v = 424242;
    int r = http_query_get_i64(gs(query), "n", min, max, &v);
    if (r != want) fail_msg("\"%s\": got %d, want %d", query, r, want);
    if (r == 1) {
        if (v != want_v)
            fail_msg("\"%s\": got %lld, want %lld", query, (long long)v,
                     (long long)want_v);
    } else {
        assert_int_equal(v, 424242);
    }
}

static void test_i64(void **state)
{
    (void)state;
    const int64_t lo = INT64_MIN, hi = INT64_MAX;
    expect_i64("n=0", lo, hi, 1, 0);
    expect_i64("n=1", lo, hi, 1, 1);
    expect_i64("n=50", lo, hi, 1, 50);
    expect_i64("n=-7", lo, hi, 1, -7);
    expect_i64("a=1&n=20&b=x", lo, hi, 1, 20);
    expect_i64("n=%32%30", lo, hi, 1, 20); /* decoded before parsing */
    expect_i64("x=1", lo, hi, 0, 0);
    expect_i64("", lo, hi, 0, 0);

    /* Bounds are inclusive; outside is an error, not clamped. */
    expect_i64("n=1", 1, 200, 1, 1);
    expect_i64("n=200", 1, 200, 1, 200);
    expect_i64("n=0", 1, 200, -1, 0);
    expect_i64("n=201", 1, 200, -1, 0);
    expect_i64("n=-1", 0, hi, -1, 0);

    /* Extremes and overflow. */
    expect_i64("n=9223372036854775807", lo, hi, 1, INT64_MAX);
    expect_i64("n=-9223372036854775808", lo, hi, 1, INT64_MIN);
    expect_i64("n=9223372036854775808", lo, hi, -1, 0);
    expect_i64("n=-9223372036854775809", lo, hi, -1, 0);
    expect_i64("n=18446744073709551615", lo, hi, -1, 0);
    expect_i64("n=18446744073709551616", lo, hi, -1, 0);
    expect_i64("n=99999999999999999999", lo, hi, -1, 0);
    expect_i64("n=999999999999999999999999999999", lo, hi, -1, 0);

    /* Leading zeros spell the same integer; a sign is only '-'. */
    expect_i64("n=-0", lo, hi, 1, 0);
    expect_i64("n=00", lo, hi, 1, 0);
    expect_i64("n=007", lo, hi, 1, 7);
    expect_i64("n=-01", lo, hi, 1, -1);
    expect_i64("n=0009223372036854775807", lo, hi, 1, INT64_MAX);
    expect_i64("n=0009223372036854775808", lo, hi, -1, 0);
    expect_i64("n=-00", 0, hi, 1, 0); /* zero is >= 0 however it is written */
    expect_i64("n=-01", 0, hi, -1, 0);
    expect_i64("n=000000000000000000000000000000000000000000000000000000000000001", lo, hi, 1, 1);
    expect_i64("n=0000000000000000000000000000000000000000000000000000000000000001", lo, hi, -1, 0);
    expect_i64("n=+1", lo, hi, -1, 0);  /* '+' is a space */
    expect_i64("n=%2B1", lo, hi, -1, 0); /* a real '+' */
    expect_i64("n=%201", lo, hi, -1, 0);
    expect_i64("n=1%20", lo, hi, -1, 0);

    /* Junk. */
    expect_i64("n", lo, hi, -1, 0);
    expect_i64("n=", lo, hi, -1, 0);
    expect_i64("n=-", lo, hi, -1, 0);
    expect_i64("n=--1", lo, hi, -1, 0);
    expect_i64("n=1-", lo, hi, -1, 0);
    expect_i64("n=abc", lo, hi, -1, 0);
    expect_i64("n=12abc", lo, hi, -1, 0);
    expect_i64("n=1.5", lo, hi, -1, 0);
    expect_i64("n=1e3", lo, hi, -1, 0);
    expect_i64("n=0x10", lo, hi, -1, 0);
    expect_i64("n=%zz", lo, hi, -1, 0);
    expect_i64("n=1%00", lo, hi, -1, 0);
    expect_i64("n=%", lo, hi, -1, 0);

    /* The first occurrence decides. */
    expect_i64("n=5&n=x", lo, hi, 1, 5);
    expect_i64("n=x&n=5", lo, hi, -1, 0);
}

/* ---- paths ---------------------------------------------------------- */

static int pdec(const char *path, char *out, size_t outlen)
{
    memset(out, 'X', outlen);
    int r = http_path_decode(gs(path), out, outlen);
    if (r >= 0) {
        assert_int_equal((size_t)r, strlen(out));
        assert_true((size_t)r < outlen);
    } else if (outlen > 0) {
        assert_string_equal(out, "");
    }
    return r;
}

static void expect_path(const char *path, const char *want)
{
    char out[64];
    int r = pdec(path, out, sizeof out);
    if (r < 0) fail_msg("\"%s\": refused", path);
    assert_string_equal(out, want);
}

static void expect_bad_path(const char *path)
{
    char out[64];
    if (pdec(path, out, sizeof out) != -1) fail_msg("\"%s\": accepted", path);
}

static void test_path_decode(void **state)
{
    (void)state;
    expect_path("/", "/");
    expect_path("/index.html", "/index.html");
    expect_path("/a%20b.txt", "/a b.txt");
    expect_path("/a+b", "/a+b"); /* '+' is only a space in queries */
    expect_path("/%7Euser/", "/~user/");
    expect_path("/a..b", "/a..b");
    expect_path("/...", "/...");
    expect_path("/./a", "/./a");
    expect_path("/.a/..b/b..", "/.a/..b/b..");
    expect_path("//a", "//a");
    expect_path("/%e2%82%ac", "/\xe2\x82\xac");
    expect_path("/a%2fb", "/a/b");

    expect_bad_path("");
    expect_bad_path("*");
    expect_bad_path("a/b");
    expect_bad_path("%2Fa"); /* must start with a literal '/' */
    expect_bad_path("/..");
    expect_bad_path("/../etc/passwd");
    expect_bad_path("/a/../b");
    expect_bad_path("/a/..");
    expect_bad_path("/a/../");
    expect_bad_path("/%2e%2e/x");
    expect_bad_path("/%2E%2E");
    expect_bad_path("/.%2e/x");
    expect_bad_path("/a%2f..%2fb");
    expect_bad_path("/..%2f");
    expect_bad_path("/a\\b");
    expect_bad_path("/a%5cb");
    expect_bad_path("/..%5c");
    expect_bad_path("/a%00b");
    expect_bad_path("/a%0ab");
    expect_bad_path("/a%1f");
    expect_bad_path("/a%7f");
    expect_bad_path("/a%");
    expect_bad_path("/a%2");
    expect_bad_path("/a%zz");

    char out[4];
    assert_int_equal(pdec("/abc", out, 4), -1); /* 4 + NUL */
    assert_int_equal(pdec("/ab", out, 4), 3);
    assert_int_equal(pdec("/%61%62", out, 4), 3);
    assert_int_equal(http_path_decode(gs("/"), NULL, 0), -1);
    struct http_str none = {NULL, 0};
    assert_int_equal(http_path_decode(none, out, sizeof out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_basic),
        cmocka_unit_test(test_get_missing_values),
        cmocka_unit_test(test_get_escapes),
        cmocka_unit_test(test_get_duplicates),
        cmocka_unit_test(test_get_output_size),
        cmocka_unit_test(test_i64),
        cmocka_unit_test(test_path_decode),
    };
    return cmocka_run_group_tests(tests, arena_setup, arena_teardown);
}

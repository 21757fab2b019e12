/* shared/jsonw.c: string escaping (checked against jansson's parser),
 * UTF-8 passthrough, integers, and running out of room: the result is
 * refused, the failure is sticky, and nothing is written past cap. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/jsonw.h"

/* jsonw_str of s[0..n) as a NUL-terminated string, into a roomy buffer. */
static const char *str_of(const char *s, size_t n)
{
    static char buf[4096];
    struct jsonw w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_str(&w, s, n);
    long len = jsonw_finish(&w);
    assert_true(len >= 0);
    /* Every NUL of the input is escaped: the text has none inside. */
    assert_int_equal((size_t)len, strlen(buf));
    return buf;
}

#define STR(lit) str_of((lit), sizeof(lit) - 1)

static void test_escapes(void **state)
{
    (void)state;
    assert_string_equal(STR(""), "\"\"");
    assert_string_equal(STR("hello"), "\"hello\"");
    assert_string_equal(STR("say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(STR("a\\b"), "\"a\\\\b\"");
    assert_string_equal(STR("\\\""), "\"\\\\\\\"\"");
    assert_string_equal(STR("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
    assert_string_equal(STR("\x01\x1f"), "\"\\u0001\\u001f\"");
    assert_string_equal(STR("a\x00" "b"), "\"a\\u0000b\"");
    assert_string_equal(STR("\x0b\x1b"), "\"\\u000b\\u001b\"");
    /* Not control characters for JSON: passed through. */
    assert_string_equal(STR(" ~\x7f/"), "\" ~\x7f/\"");
    /* Escapes at the start, the end, and back to back. */
    assert_string_equal(STR("\"x\""), "\"\\\"x\\\"\"");
    assert_string_equal(STR("\"\"\n\n"), "\"\\\"\\\"\\n\\n\"");
}

static void test_utf8_passthrough(void **state)
{
    (void)state;
    /* é, €, U+3000, an emoji, U+2028 (legal raw in JSON): bytes as given. */
    const char *in = "\xc3\xa9\xe2\x82\xac\xe3\x80\x80\xf0\x9f\x98\x80\xe2\x80\xa8";
    char want[64];
    snprintf(want, sizeof want, "\"%s\"", in);
    assert_string_equal(str_of(in, strlen(in)), want);
    /* Mixed with escapes. */
    assert_string_equal(STR("\xc3\xa9\"\n\xf0\x9f\x98\x80"), "\"\xc3\xa9\\\"\\n\xf0\x9f\x98\x80\"");
}

static void test_cstr_raw_i64(void **state)
{
    (void)state;
    char buf[256];
    struct jsonw w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "{\"a\":");
    jsonw_cstr(&w, "x\"y");
    jsonw_raw(&w, ",\"n\":[");
    jsonw_i64(&w, 0);
    jsonw_raw(&w, ",");
    jsonw_i64(&w, -1);
    jsonw_raw(&w, ",");
    jsonw_i64(&w, INT64_MAX);
    jsonw_raw(&w, ",");
    jsonw_i64(&w, INT64_MIN);
    jsonw_raw(&w, "]}");
    long n = jsonw_finish(&w);
    const char *want = "{\"a\":\"x\\\"y\",\"n\":[0,-1,9223372036854775807,-9223372036854775808]}";
    assert_int_equal(n, (long)strlen(want));
    assert_string_equal(buf, want);
}

/* A user object, escaped, and exactly as long as jsonw_user_len says:
 * callers size their buffers with it. */
static void test_user(void **state)
{
    (void)state;
    static const char *const ids[] = {"u1", "a\"b", ""};
    static const char *const names[] = {"Ann", "\xc3\xa9\n\\", "x\x01"};
    static const char *const want[] = {
        "{\"id\":\"u1\",\"name\":\"Ann\"}",
        "{\"id\":\"a\\\"b\",\"name\":\"\xc3\xa9\\n\\\\\"}",
        "{\"id\":\"\",\"name\":\"x\\u0001\"}",
    };
    for (size_t i = 0; i < 3; i++) {
        size_t need = jsonw_user_len(ids[i], strlen(ids[i]), names[i], strlen(names[i]));
        assert_int_equal(need, strlen(want[i]));
        char buf[64];
        struct jsonw w;
        jsonw_init(&w, buf, need + 1);
        jsonw_user(&w, ids[i], strlen(ids[i]), names[i], strlen(names[i]));
        assert_int_equal(jsonw_finish(&w), (long)need);
        assert_string_equal(buf, want[i]);
        jsonw_init(&w, buf, need); /* a byte short: no room for the NUL */
        jsonw_user(&w, ids[i], strlen(ids[i]), names[i], strlen(names[i]));
        assert_int_equal(jsonw_finish(&w), -1);
    }
}

/* Random bytes drawn mostly from the troublesome ones, as valid UTF-8:
 * jsonw's output must parse back to exactly the input. */
static size_t random_text(char *out, size_t cap, unsigned *seed)
{
    static const char *const pieces[] = {
        "\"", "\\", "\n", "\r", "\t", "\b", "\f", "\x01", "\x1f", "\x7f", "/", "a", " ",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xe2\x80\xa8", "\\u0041", "\0",
    };
    size_t n = 0, want = (size_t)(rand_r(seed) % 40);
    for (size_t i = 0; i < want; i++) {
        const char *p = pieces[rand_r(seed) % (sizeof pieces / sizeof pieces[0])];
        size_t pl = *p ? strlen(p) : 1;
        if (n + pl > cap) break;
        memcpy(out + n, p, pl);
        n += pl;
    }
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (int iter = 0; iter < 5000; iter++) {
        char in[200];
        size_t n = random_text(in, sizeof in, &seed);
        char buf[2048];
        struct jsonw w;
        jsonw_init(&w, buf, sizeof buf);
        jsonw_str(&w, in, n);
        long len = jsonw_finish(&w);
        assert_true(len > 0);
        json_error_t err;
        json_t *v = json_loadb(buf, (size_t)len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!v) fail_msg("iteration %d: %s does not parse: %s", iter, buf, err.text);
        assert_true(json_is_string(v));
        assert_int_equal(json_string_length(v), n);
        assert_memory_equal(json_string_value(v), in, n);
        json_decref(v);
    }
}

/* Writes the same content into every cap from 0 to a little more than it
 * needs, each in an exact-size heap block inside a guarded one: the
 * result is either the whole text or -1, and no byte past cap changes. */
static long write_sample(char *buf, size_t cap)
{
    struct jsonw w;
    jsonw_init(&w, buf, cap);
    jsonw_raw(&w, "{\"type\":\"error\",\"ref\":");
    jsonw_cstr(&w, "r\"1\n\xc3\xa9");
    jsonw_raw(&w, ",\"code\":");
    jsonw_str(&w, "x\x01y", 3);
    jsonw_raw(&w, ",\"n\":");
    jsonw_i64(&w, -1234567890123);
    jsonw_raw(&w, "}");
    return jsonw_finish(&w);
}

static void test_overflow_never_writes_past_cap(void **state)
{
    (void)state;
    char full[512];
    long need = write_sample(full, sizeof full);
    assert_true(need > 0);
    assert_int_equal((size_t)need, strlen(full));
    for (size_t cap = 0; cap <= (size_t)need + 3; cap++) {
        /* Guard bytes on both sides. */
        unsigned char *block = malloc(cap + 32);
        assert_non_null(block);
        memset(block, 0xA5, cap + 32);
        char *buf = (char *)block + 16;
        long n = write_sample(buf, cap);
        if (cap >= (size_t)need + 1) {
            assert_int_equal(n, need);
            assert_string_equal(buf, full);
        } else {
            assert_int_equal(n, -1);
            /* A failed text is left empty, never half written. */
            if (cap > 0) assert_int_equal(buf[0], '\0');
        }
        for (size_t i = 0; i < 16; i++) assert_int_equal(block[i], 0xA5);
        for (size_t i = 16 + cap; i < cap + 32; i++)
            if (block[i] != 0xA5) fail_msg("cap %zu: byte %zu past cap written", cap, i - 16 - cap);
        free(block);

        /* And once more in an exact-size allocation, for ASan. */
        char *exact = cap ? malloc(cap) : NULL;
        assert_int_equal(write_sample(exact, cap), n);
        free(exact);
    }
}

static void test_overflow_is_sticky(void **state)
{
    (void)state;
    char buf[8];
    struct jsonw w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "0123456789"); /* does not fit */
    jsonw_raw(&w, "ab");         /* would fit alone */
    assert_int_equal(jsonw_finish(&w), -1);
    assert_int_equal(buf[0], '\0');

    /* Exactly full: cap - 1 bytes fit (the NUL needs the last one). */
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "0123456");
    assert_int_equal(jsonw_finish(&w), 7);
    assert_string_equal(buf, "0123456");
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "01234567");
    assert_int_equal(jsonw_finish(&w), -1);

    /* An escape that does not fit whole is not written in part. */
    jsonw_init(&w, buf, sizeof buf);
    jsonw_str(&w, "ab\x01", 3); /* "ab\u0001" is 10 bytes */
    assert_int_equal(jsonw_finish(&w), -1);
    assert_int_equal(buf[0], '\0');

    /* cap 0: nothing to write into, not even the NUL. */
    jsonw_init(&w, NULL, 0);
    jsonw_raw(&w, "");
    jsonw_str(&w, "", 0);
    assert_int_equal(jsonw_finish(&w), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_utf8_passthrough),
        cmocka_unit_test(test_cstr_raw_i64),
        cmocka_unit_test(test_user),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_overflow_never_writes_past_cap),
        cmocka_unit_test(test_overflow_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

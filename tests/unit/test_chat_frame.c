/* Client frames: what is asked (stage 1) and whether it may be (stage 2),
 * with the exact error codes of PROTOCOL.md section 3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "worker/chat_frame.h"

static int parse(const char *json, struct chat_frame *f, struct chat_error *err)
{
    return chat_frame_parse(json, strlen(json), f, err);
}

static void expect_parse_error(const char *json, const char *code, const char *ref)
{
    struct chat_frame f;
    struct chat_error err;
    assert_int_equal(parse(json, &f, &err), -1);
    assert_string_equal(err.code, code);
    if (ref) {
        assert_true(f.has_ref);
        assert_string_equal(f.ref, ref);
    } else {
        assert_false(f.has_ref);
    }
    chat_frame_clear(&f);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("", "bad_request", NULL);
    expect_parse_error("not json", "bad_request", NULL);
    expect_parse_error("[1,2]", "bad_request", NULL);
    expect_parse_error("\"message\"", "bad_request", NULL);
    expect_parse_error("{\"text\":\"x\",\"ref\":\"a1\"}", "bad_request", "a1");
    expect_parse_error("{\"type\":7,\"ref\":\"a2\"}", "bad_request", "a2");
    expect_parse_error("{\"type\":null}", "bad_request", NULL);
    expect_parse_error("{\"type\":\"shout\",\"ref\":\"a3\"}", "unknown_type", "a3");
    expect_parse_error("{\"type\":\"Message\"}", "unknown_type", NULL);
    /* NUL inside a string is refused by the JSON reader itself. */
    expect_parse_error("{\"type\":\"message\",\"text\":\"a\\u0000b\"}", "bad_request", NULL);
}

static void test_parse_ops_and_refs(void **state)
{
    (void)state;
    static const struct { const char *json; enum chat_op op; } ok[] = {
        {"{\"type\":\"typing\"}", CHAT_OP_TYPING},
        {"{\"type\":\"message\",\"text\":\"hi\"}", CHAT_OP_MESSAGE},
        {"{\"type\":\"edit\",\"id\":1,\"text\":\"hi\",\"extra\":[1]}", CHAT_OP_EDIT},
        {"{\"room\":\"elsewhere\",\"type\":\"delete\",\"id\":2}", CHAT_OP_DELETE},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct chat_frame f;
        struct chat_error err;
        assert_int_equal(parse(ok[i].json, &f, &err), 0);
        assert_int_equal(f.op, ok[i].op);
        assert_false(f.has_ref);
        assert_false(f.bad_ref);
        chat_frame_clear(&f);
    }
    char json[600];
    char ref64[4 * 64 + 1] = "";
    for (int i = 0; i < 64; i++) strcat(ref64, "\xc3\xa9"); /* 64 code points, 128 bytes */
    snprintf(json, sizeof json, "{\"type\":\"message\",\"ref\":\"%s\"}", ref64);
    struct chat_frame f;
    struct chat_error err;
    assert_int_equal(parse(json, &f, &err), 0);
    assert_true(f.has_ref);
    assert_string_equal(f.ref, ref64);
    chat_frame_clear(&f);
    static const char *const bad_refs[] = {"\"\"", "5", "null", "[\"x\"]",
        "\"0123456789012345678901234567890123456789012345678901234567890123X\""};
    for (size_t i = 0; i < sizeof bad_refs / sizeof bad_refs[0]; i++) {
        snprintf(json, sizeof json, "{\"type\":\"message\",\"text\":\"x\",\"ref\":%s}", bad_refs[i]);
        assert_int_equal(parse(json, &f, &err), 0);
        assert_false(f.has_ref);
        assert_true(f.bad_ref);
        const char *text = NULL;
        int64_t id = 0;
        assert_int_equal(chat_frame_validate(&f, JWT_ROLE_MEMBER, 2000, &text, &id, &err), -1);
        assert_string_equal(err.code, "bad_request");
        chat_frame_clear(&f);
    }
}

static const char *validate(const char *json, enum jwt_role role, int max_chars, const char **text,
                            int64_t *id)
{
    struct chat_frame f;
    struct chat_error err;
    assert_int_equal(parse(json, &f, &err), 0);
    static char code[32];
    if (chat_frame_validate(&f, role, max_chars, text, id, &err) < 0) {
        snprintf(code, sizeof code, "%s", err.code);
    } else {
        snprintf(code, sizeof code, "ok");
        /* text points into the frame; copy what the caller checks. */
        static char copy[64];
        if (*text) {
            snprintf(copy, sizeof copy, "%s", *text);
            *text = copy;
        }
    }
    chat_frame_clear(&f);
    return code;
}

static void test_validate(void **state)
{
    (void)state;
    const char *text = NULL;
    int64_t id = 0;
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\"hi\"}", JWT_ROLE_MEMBER, 2000, &text, &id), "ok");
    assert_string_equal(text, "hi");
    assert_string_equal(validate("{\"type\":\"message\"}", JWT_ROLE_MEMBER, 2000, &text, &id), "bad_request");
    assert_string_equal(validate("{\"type\":\"message\",\"text\":5}", JWT_ROLE_MEMBER, 2000, &text, &id), "bad_request");
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\"hi\"}", JWT_ROLE_VIEWER, 2000, &text, &id), "forbidden");
    /* Structure is judged before the role, the role before the text. */
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\" \"}", JWT_ROLE_VIEWER, 2000, &text, &id), "forbidden");
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\"\"}", JWT_ROLE_MEMBER, 2000, &text, &id), "empty");
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\" \\t\\n\\u3000\\u00a0\"}", JWT_ROLE_MEMBER, 2000, &text, &id), "empty");
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\"12345\"}", JWT_ROLE_MEMBER, 5, &text, &id), "ok");
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\"123456\"}", JWT_ROLE_MEMBER, 5, &text, &id), "too_long");
    /* Code points, not bytes: five 4-byte characters fit in 5. */
    assert_string_equal(validate("{\"type\":\"message\",\"text\":\"\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\"}", JWT_ROLE_MEMBER, 5, &text, &id), "ok");
    assert_string_equal(validate("{\"type\":\"edit\",\"id\":12,\"text\":\"x\"}", JWT_ROLE_MEMBER, 10, &text, &id), "ok");
    assert_int_equal(id, 12);
    assert_string_equal(validate("{\"type\":\"edit\",\"id\":0,\"text\":\"x\"}", JWT_ROLE_MEMBER, 10, &text, &id), "bad_request");
    assert_string_equal(validate("{\"type\":\"edit\",\"id\":1.5,\"text\":\"x\"}", JWT_ROLE_MEMBER, 10, &text, &id), "bad_request");
    assert_string_equal(validate("{\"type\":\"edit\",\"id\":\"3\",\"text\":\"x\"}", JWT_ROLE_MEMBER, 10, &text, &id), "bad_request");
    assert_string_equal(validate("{\"type\":\"edit\",\"id\":3}", JWT_ROLE_MEMBER, 10, &text, &id), "bad_request");
    text = NULL;
    assert_string_equal(validate("{\"type\":\"delete\",\"id\":9}", JWT_ROLE_MEMBER, 10, &text, &id), "ok");
    assert_int_equal(id, 9);
    assert_null(text);
    assert_string_equal(validate("{\"type\":\"delete\",\"id\":9}", JWT_ROLE_VIEWER, 10, &text, &id), "forbidden");
    assert_string_equal(validate("{\"type\":\"delete\",\"id\":-9}", JWT_ROLE_ORGANIZER, 10, &text, &id), "bad_request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_ops_and_refs),
        cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* base64url (strict, unpadded) and padded standard base64 encoding. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shared/base64.h"

/* RFC 4648, section 10. */
static const struct { const char *in, *std, *url; } vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};
#define NVEC (sizeof vectors / sizeof vectors[0])

/* Decodes from an exact-size heap copy, so ASan flags any read past n. */
static int decode_exact(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    int rc = base64url_decode(copy, n, out, cap, outlen);
    free(copy);
    return rc;
}

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    char buf[32];
    uint8_t dec[32];
    for (size_t i = 0; i < NVEC; i++) {
        size_t n = strlen(vectors[i].in);
        assert_int_equal(base64_encoded_len(n), strlen(vectors[i].std));
        assert_int_equal(base64_encode(vectors[i].in, n, buf, sizeof buf), 0);
        assert_string_equal(buf, vectors[i].std);

        assert_int_equal(base64url_encoded_len(n), strlen(vectors[i].url));
        assert_int_equal(base64url_encode(vectors[i].in, n, buf, sizeof buf), 0);
        assert_string_equal(buf, vectors[i].url);

        char *a = base64url_encode_alloc(vectors[i].in, n);
        assert_non_null(a);
        assert_string_equal(a, vectors[i].url);
        free(a);

        size_t got = 99;
        size_t ulen = strlen(vectors[i].url);
        assert_int_equal(base64url_decoded_len(ulen), n);
        assert_int_equal(decode_exact(vectors[i].url, ulen, dec, sizeof dec, &got), 0);
        assert_int_equal(got, n);
        assert_memory_equal(dec, vectors[i].in, n);
    }
}

static void test_url_alphabet(void **state)
{
    (void)state;
    const uint8_t in[] = {0xfb, 0xff, 0xbf};
    char buf[8];
    assert_int_equal(base64_encode(in, 3, buf, sizeof buf), 0);
    assert_string_equal(buf, "+/+/");
    assert_int_equal(base64url_encode(in, 3, buf, sizeof buf), 0);
    assert_string_equal(buf, "-_-_");
    uint8_t out[3];
    size_t got;
    assert_int_equal(decode_exact("-_-_", 4, out, sizeof out, &got), 0);
    assert_int_equal(got, 3);
    assert_memory_equal(out, in, 3);
    /* The standard alphabet's characters are not base64url. */
    assert_int_equal(decode_exact("+/+/", 4, out, sizeof out, &got), -1);
}

/* Sec-WebSocket-Accept example of RFC 6455, section 1.3. */
static void test_websocket_accept(void **state)
{
    (void)state;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)key, strlen(key), md);
    char buf[29];
    assert_int_equal(base64_encode(md, sizeof md, buf, sizeof buf), 0);
    assert_string_equal(buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(base64_encode(md, sizeof md, buf, 28), -1);
}

static void test_encode_capacity(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof buf);
    /* "foo" needs 4 characters and a NUL. */
    assert_int_equal(base64url_encode("foo", 3, buf, 4), -1);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(base64url_encode("foo", 3, buf, 5), 0);
    assert_int_equal(base64_encode("f", 1, buf, 4), -1);
    assert_int_equal(base64_encode("f", 1, buf, 5), 0);
    assert_int_equal(base64url_encode("", 0, buf, 0), -1);
    assert_int_equal(base64url_encode("", 0, buf, 1), 0);
    assert_string_equal(buf, "");
    assert_int_equal(base64url_encoded_len(SIZE_MAX), SIZE_MAX);
    assert_int_equal(base64_encoded_len(SIZE_MAX), SIZE_MAX);
}

static void test_decode_capacity(void **state)
{
    (void)state;
    uint8_t out[6];
    size_t got = 77;
    assert_int_equal(decode_exact("Zm9vYmFy", 8, out, 5, &got), -1);
    assert_int_equal(got, 77);
    assert_int_equal(decode_exact("Zm9vYmFy", 8, out, 6, &got), 0);
    assert_int_equal(got, 6);
    assert_int_equal(decode_exact("", 0, out, 0, &got), 0);
    assert_int_equal(got, 0);
}

static void test_decode_impossible_lengths(void **state)
{
    (void)state;
    uint8_t out[16];
    size_t got;
    assert_int_equal(base64url_decoded_len(1), SIZE_MAX);
    assert_int_equal(base64url_decoded_len(5), SIZE_MAX);
    assert_int_equal(decode_exact("Z", 1, out, sizeof out, &got), -1);
    assert_int_equal(decode_exact("Zm9vY", 5, out, sizeof out, &got), -1);
    assert_int_equal(decode_exact("Zm9vYmFyZ", 9, out, sizeof out, &got), -1);
}

static void test_decode_rejects_padding_and_junk(void **state)
{
    (void)state;
    uint8_t out[16];
    size_t got;
    const char *bad[] = {"Zg==", "Zg=", "Zm8=", "Zm9v=", "=Zm9", "Zm 9v", "Zm9v\n",
                         " Zm9v", "Zm.v", "Zm9v+A", "Zm9v/A", "Zm\x80v", "Zm\xffv"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(decode_exact(bad[i], strlen(bad[i]), out, sizeof out, &got), -1);
    /* An embedded NUL inside the length is a bad character, not an end. */
    assert_int_equal(decode_exact("Zm\0v", 4, out, sizeof out, &got), -1);
}

/* Every byte value at every position of a 4-character group and of the
 * 2- and 3-character tails: only the 64 alphabet characters decode. */
static void test_decode_every_byte(void **state)
{
    (void)state;
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t out[8];
    size_t got;
    for (int c = 0; c < 256; c++) {
        bool in_alpha = c != 0 && strchr(alpha, c) != NULL;
        for (size_t pos = 0; pos < 4; pos++) {
            char s[4] = {'A', 'A', 'A', 'A'};
            s[pos] = (char)c;
            assert_int_equal(decode_exact(s, 4, out, sizeof out, &got) == 0, in_alpha);
        }
    }
}

/* Strictness makes the encoding canonical: every accepted text re-encodes
 * to itself. Exhaustive over all 2- and 3-character texts. */
static void test_decode_canonical(void **state)
{
    (void)state;
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t out[4];
    char back[8];
    size_t got, accepted2 = 0, accepted3 = 0;
    for (int a = 0; a < 64; a++) {
        for (int b = 0; b < 64; b++) {
            char s[3] = {alpha[a], alpha[b], 0};
            if (decode_exact(s, 2, out, sizeof out, &got) == 0) {
                accepted2++;
                assert_int_equal(got, 1);
                assert_int_equal(base64url_encode(out, got, back, sizeof back), 0);
                assert_memory_equal(back, s, 2);
            }
            for (int c = 0; c < 64; c++) {
                char t[3] = {alpha[a], alpha[b], alpha[c]};
                if (decode_exact(t, 3, out, sizeof out, &got) == 0) {
                    accepted3++;
                    assert_int_equal(got, 2);
                    assert_int_equal(base64url_encode(out, got, back, sizeof back), 0);
                    assert_memory_equal(back, t, 3);
                }
            }
        }
    }
    /* Exactly one spelling per byte string. */
    assert_int_equal(accepted2, 256);
    assert_int_equal(accepted3, 65536);
}

static void test_round_trip_lengths(void **state)
{
    (void)state;
    uint8_t in[300], out[300];
    char enc[512];
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof in; n++) {
        assert_int_equal(base64url_encode(in, n, enc, sizeof enc), 0);
        size_t elen = strlen(enc);
        assert_int_equal(elen, base64url_encoded_len(n));
        assert_null(strchr(enc, '='));
        size_t got;
        assert_int_equal(decode_exact(enc, elen, out, sizeof out, &got), 0);
        assert_int_equal(got, n);
        assert_memory_equal(out, in, n);
        /* Every proper prefix either fails or decodes to fewer bytes;
         * none reads past its length (exact-size copies). */
        for (size_t k = 0; k < elen; k++) {
            if (decode_exact(enc, k, out, sizeof out, &got) == 0) assert_true(got < n);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_websocket_accept),
        cmocka_unit_test(test_encode_capacity),
        cmocka_unit_test(test_decode_capacity),
        cmocka_unit_test(test_decode_impossible_lengths),
        cmocka_unit_test(test_decode_rejects_padding_and_junk),
        cmocka_unit_test(test_decode_every_byte),
        cmocka_unit_test(test_decode_canonical),
        cmocka_unit_test(test_round_trip_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

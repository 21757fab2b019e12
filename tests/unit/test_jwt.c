/* HS256 JWT verification and signing (shared/jwt.c) and room names
 * (shared/room.c).
 *
 * Tokens are built here independently of jwt_sign (base64url + OpenSSL
 * HMAC over hand-written JSON), so that bad headers and bad claims can be
 * signed correctly and the verifier is tested past the signature check.
 * Every verification goes through an exact-size heap copy of the token
 * without a NUL, so ASan reports any read past len. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/base64.h"
#include "shared/jwt.h"
#include "shared/room.h"

#define NOW 1700000000LL
#define CUR "current-secret-0123456789"
#define PREV "previous-secret-abcdefgh"

static const struct jwt_secrets secrets = {{CUR, PREV}, 2};
static const char hs256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    return s;
}

static char *b64(const char *s)
{
    char *e = base64url_encode_alloc(s, strlen(s));
    assert_non_null(e);
    return e;
}

/* "<h>.<p>.<HMAC-SHA256(secret, h.p)>" from already-encoded segments. */
static char *sign_segments(const char *hseg, const char *pseg, const char *secret)
{
    char *input = fmt("%s.%s", hseg, pseg);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                         (const unsigned char *)input, strlen(input), md, &mdlen));
    assert_int_equal(mdlen, 32);
    char *sig = base64url_encode_alloc(md, mdlen);
    assert_non_null(sig);
    char *tok = fmt("%s.%s", input, sig);
    free(input);
    free(sig);
    return tok;
}

static char *mk_with(const char *header, const char *payload, const char *secret)
{
    char *h = b64(header), *p = b64(payload);
    char *tok = sign_segments(h, p, secret);
    free(h);
    free(p);
    return tok;
}

static char *mk(const char *payload)
{
    return mk_with(hs256, payload, CUR);
}

static int verify_n(const struct jwt_secrets *s, const char *tok, size_t len,
                    int64_t now, struct jwt_claims *c, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, tok, len);
    int rc = jwt_verify(s, copy, len, now, c, err, errlen);
    free(copy);
    return rc;
}

/* err must never quote the token: not whole, not any segment of it. */
static void assert_err_clean(const char *err, const char *tok, size_t len)
{
    assert_true(strlen(err) > 0);
    if (len >= 8) assert_null(memmem(err, strlen(err), tok, len));
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || tok[i] == '.') {
            if (i - start >= 8) assert_null(memmem(err, strlen(err), tok + start, i - start));
            start = i + 1;
        }
    }
}

static void expect_fail_n(const struct jwt_secrets *s, const char *tok, size_t len,
                          int64_t now, const char *reason)
{
    struct jwt_claims c;
    memset(&c, 0x5a, sizeof c);  /* garbage in: out must come back cleared */
    char err[128] = "";
    int rc = verify_n(s, tok, len, now, &c, err, sizeof err);
    if (rc != -1) fail_msg("token accepted, expected \"%s\"", reason ? reason : "failure");
    assert_null(c.rooms);
    assert_false(c.has_exp);
    assert_int_equal(c.sub[0], '\0');
    assert_err_clean(err, tok, len);
    if (reason && strstr(err, reason) == NULL)
        fail_msg("err \"%s\" lacks \"%s\"", err, reason);
}

static void expect_fail(const char *tok, const char *reason)
{
    expect_fail_n(&secrets, tok, strlen(tok), NOW, reason);
}

/* Signs payload with the standard header and expects refusal. */
static void expect_payload_fail(const char *payload, const char *reason)
{
    char *tok = mk(payload);
    expect_fail(tok, reason);
    free(tok);
}

static void expect_ok_at(const char *tok, int64_t now, struct jwt_claims *c)
{
    char err[128] = "";
    int rc = verify_n(&secrets, tok, strlen(tok), now, c, err, sizeof err);
    if (rc != 0) fail_msg("token refused: %s", err);
}

static void expect_ok(const char *tok, struct jwt_claims *c)
{
    expect_ok_at(tok, NOW, c);
}

static void expect_payload_ok(const char *payload)
{
    char *tok = mk(payload);
    struct jwt_claims c;
    expect_ok(tok, &c);
    jwt_claims_clear(&c);
    free(tok);
}

/* ---- good tokens ---------------------------------------------------- */

static void test_good_token_all_claims(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\",\"name\":\"Alice Liddell\",\"role\":\"organizer\","
                   "\"rooms\":[\"general\",\"ops.team-1\"],\"exp\":1700000100,"
                   "\"nbf\":1699999900,\"iat\":1699999900,\"aud\":\"ignored\"}");
    struct jwt_claims c;
    expect_ok(tok, &c);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.name, "Alice Liddell");
    assert_int_equal(c.role, JWT_ROLE_ORGANIZER);
    assert_non_null(c.rooms);
    assert_int_equal(json_array_size(c.rooms), 2);
    assert_true(c.has_exp);
    assert_int_equal(c.exp, 1700000100);
    assert_true(c.has_nbf);
    assert_int_equal(c.nbf, 1699999900);
    assert_true(jwt_claims_allow_room(&c, "general"));
    assert_true(jwt_claims_allow_room(&c, "ops.team-1"));
    assert_false(jwt_claims_allow_room(&c, "General"));
    assert_false(jwt_claims_allow_room(&c, "gen"));
    assert_false(jwt_claims_allow_room(&c, "generalx"));
    assert_false(jwt_claims_allow_room(&c, NULL));
    jwt_claims_clear(&c);
    assert_null(c.rooms);
    jwt_claims_clear(&c);  /* twice is harmless */
    free(tok);
}

static void test_good_token_defaults(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"bob\"}");
    struct jwt_claims c;
    expect_ok(tok, &c);
    assert_string_equal(c.sub, "bob");
    assert_string_equal(c.name, "bob");
    assert_int_equal(c.role, JWT_ROLE_MEMBER);
    assert_null(c.rooms);
    assert_false(c.has_exp);
    assert_false(c.has_nbf);
    assert_true(jwt_claims_allow_room(&c, "anything"));
    jwt_claims_clear(&c);
    free(tok);
}

/* The well-known example token of jwt.io, made by another implementation. */
static void test_external_vector(void **state)
{
    (void)state;
    const char *tok = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                      "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
                      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    struct jwt_secrets s = {{"your-256-bit-secret"}, 1};
    struct jwt_claims c;
    char err[128];
    assert_int_equal(verify_n(&s, tok, strlen(tok), NOW, &c, err, sizeof err), 0);
    assert_string_equal(c.sub, "1234567890");
    assert_string_equal(c.name, "John Doe");
    jwt_claims_clear(&c);
    expect_fail(tok, "bad token signature");
}

static void test_typ_variants(void **state)
{
    (void)state;
    const char *ok[] = {"{\"alg\":\"HS256\"}", "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
                        "{\"typ\":\"Jwt\",\"alg\":\"HS256\",\"kid\":\"k1\"}",
                        " { \"alg\" : \"HS256\" } ",
                        /* RFC 7515 4.1.9: "JWT" is short for this media type. */
                        "{\"alg\":\"HS256\",\"typ\":\"application/jwt\"}",
                        "{\"alg\":\"HS256\",\"typ\":\"Application/JWT\"}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *tok = mk_with(ok[i], "{\"sub\":\"a\"}", CUR);
        struct jwt_claims c;
        expect_ok(tok, &c);
        jwt_claims_clear(&c);
        free(tok);
    }
    const char *bad[] = {"{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
                         "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}",
                         "{\"alg\":\"HS256\",\"typ\":\"application/at+jwt\"}",
                         "{\"alg\":\"HS256\",\"typ\":\"text/jwt\"}",
                         "{\"alg\":\"HS256\",\"typ\":\"application/\"}",
                         "{\"alg\":\"HS256\",\"typ\":1}", "{\"alg\":\"HS256\",\"typ\":null}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *tok = mk_with(bad[i], "{\"sub\":\"a\"}", CUR);
        expect_fail(tok, "typ");
        free(tok);
    }
}

/* ---- keys kept between calls ------------------------------------------ */

static bool verifies(const struct jwt_secrets *s, const char *tok)
{
    struct jwt_claims c;
    char err[128];
    int rc = verify_n(s, tok, strlen(tok), NOW, &c, err, sizeof err);
    jwt_claims_clear(&c);
    return rc == 0;
}

/* Secrets change under a running process (a reload): a token is judged
 * by the secrets of the call, never by a key kept from an earlier one,
 * in either slot, whatever the order of the changes. */
static void test_secret_change_rekeys(void **state)
{
    (void)state;
    const char *a = "secret-A-0123456", *b = "secret-B-0123456", *a_prefix = "secret-A-012";
    char *ta = mk_with(hs256, "{\"sub\":\"a\"}", a);
    char *tb = mk_with(hs256, "{\"sub\":\"b\"}", b);
    const struct jwt_secrets only_a = {{a}, 1}, only_b = {{b}, 1}, prefix = {{a_prefix}, 1},
                             b_then_a = {{b, a}, 2}, a_then_b = {{a, b}, 2};
    for (int round = 0; round < 2; round++) {
        assert_true(verifies(&only_a, ta));
        assert_false(verifies(&only_a, tb));
        assert_true(verifies(&only_b, tb));
        assert_false(verifies(&only_b, ta));
        assert_false(verifies(&prefix, ta));
        assert_true(verifies(&only_a, ta));
        assert_true(verifies(&b_then_a, ta));
        assert_true(verifies(&a_then_b, tb));
        assert_false(verifies(&prefix, tb));
        /* Signing keys a slot of its own: verifying is not disturbed. */
        char *signed_b = jwt_sign(b, "s", NULL, "member", NULL, 0, NOW, NOW + 60);
        assert_non_null(signed_b);
        assert_true(verifies(&only_b, signed_b));
        assert_false(verifies(&only_a, signed_b));
        free(signed_b);
    }
    free(ta);
    free(tb);
}

/* A header accepted once is remembered by its bytes; that must not let
 * anything else through: not another header, not a bad signature under
 * the remembered one. */
static void test_known_header_still_checked(void **state)
{
    (void)state;
    char *good = mk("{\"sub\":\"a\"}");
    struct jwt_claims c;
    expect_ok(good, &c);
    jwt_claims_clear(&c);
    char *forged = strdup(good);
    assert_non_null(forged);
    char *sig = strrchr(forged, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    expect_fail(forged, "bad token signature");
    char *other = mk_with("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", "{\"sub\":\"a\"}", CUR);
    expect_fail(other, "typ");
    char *none = mk_with("{\"alg\":\"none\"}", "{\"sub\":\"a\"}", CUR);
    expect_fail(none, "alg");
    /* Five distinct good headers: the remembered ones rotate, and each
     * is still judged right when it comes back. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5; i++) {
            char *h = fmt("{\"alg\":\"HS256\",\"kid\":\"k%d\"}", i);
            char *t = mk_with(h, "{\"sub\":\"a\"}", CUR);
            expect_ok(t, &c);
            jwt_claims_clear(&c);
            free(t);
            free(h);
        }
        expect_fail(other, "typ");
    }
    free(good);
    free(forged);
    free(other);
    free(none);
}

/* ---- header and alg -------------------------------------------------- */

static void test_alg_none_empty_signature(void **state)
{
    (void)state;
    char *h = b64("{\"alg\":\"none\",\"typ\":\"JWT\"}"), *p = b64("{\"sub\":\"alice\"}");
    char *tok = fmt("%s.%s.", h, p);
    expect_fail(tok, "alg");
    free(tok);
    /* Same, with a signature that is valid HMAC for the input. */
    tok = sign_segments(h, p, CUR);
    expect_fail(tok, "alg");
    free(tok);
    free(h);
    free(p);
}

static void test_bad_algs(void **state)
{
    (void)state;
    const char *headers[] = {
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", "{\"alg\":\"HS384\"}",
        "{\"alg\":\"RS256\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"NONE\"}", "{\"alg\":\"\"}", "{\"alg\":null}",
        "{\"alg\":256}", "{\"alg\":[\"HS256\"]}", "{\"typ\":\"JWT\"}", "{}",
        "{\"Alg\":\"HS256\"}"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *tok = mk_with(headers[i], "{\"sub\":\"alice\"}", CUR);
        expect_fail(tok, "alg");
        free(tok);
    }
}

static void test_header_not_object(void **state)
{
    (void)state;
    const char *headers[] = {"[\"HS256\"]", "\"HS256\"", "null", "1", "",
                             "{\"alg\":\"HS256\"", "{\"alg\":\"HS256\"}x",
                             "{\"alg\":\"HS256\"}{}"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *tok = mk_with(headers[i], "{\"sub\":\"alice\"}", CUR);
        expect_fail(tok, "header");
        free(tok);
    }
}

static void test_header_crit_and_duplicates(void **state)
{
    (void)state;
    char *tok = mk_with("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
                        "{\"sub\":\"alice\"}", CUR);
    expect_fail(tok, "crit");
    free(tok);
    /* A parser keeping the last key would see HS256. */
    tok = mk_with("{\"alg\":\"none\",\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}", CUR);
    expect_fail(tok, "header");
    free(tok);
}

/* ---- signature ------------------------------------------------------- */

static void test_bad_signature(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\"}");
    size_t len = strlen(tok);
    char *dot = strrchr(tok, '.');
    /* Change the first signature character. */
    dot[1] = dot[1] == 'A' ? 'B' : 'A';
    expect_fail(tok, "bad token signature");
    free(tok);

    /* Every bit of the 32 signature bytes counts. */
    tok = mk("{\"sub\":\"alice\"}");
    dot = strrchr(tok, '.');
    uint8_t sig[32];
    size_t siglen;
    assert_int_equal(base64url_decode(dot + 1, strlen(dot + 1), sig, sizeof sig, &siglen), 0);
    assert_int_equal(siglen, 32);
    for (size_t bit = 0; bit < 256; bit++) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(base64url_encode(sig, 32, dot + 1, 44), 0);
        expect_fail(tok, "bad token signature");
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(base64url_encode(sig, 32, dot + 1, 44), 0);
    struct jwt_claims c;
    expect_ok(tok, &c);
    jwt_claims_clear(&c);
    free(tok);

    /* A payload swapped under an existing signature. */
    tok = mk("{\"sub\":\"alice\"}");
    char *h = b64(hs256), *p = b64("{\"sub\":\"admin\"}");
    char *forged = fmt("%s.%s%s", h, p, strrchr(tok, '.'));
    expect_fail(forged, "bad token signature");
    free(forged);
    free(h);
    free(p);
    free(tok);

    /* A signature of the wrong length. */
    tok = mk("{\"sub\":\"alice\"}");
    len = strlen(tok);
    expect_fail_n(&secrets, tok, len - 1, NOW, "signature");
    char *longer = fmt("%sAAAA", tok);
    expect_fail(longer, "signature");
    free(longer);
    free(tok);
}

/* 43 characters carry 258 bits for 256: changing the unused low bits of
 * the last character decodes to the same bytes. Refused, so a token has
 * exactly one valid spelling. */
static void test_signature_noncanonical(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\"}");
    size_t len = strlen(tok);
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(alpha, tok[len - 1]) - alpha);
    assert_int_equal(v & 3, 0);
    for (int low = 1; low < 4; low++) {
        tok[len - 1] = alpha[v | low];
        expect_fail(tok, "signature");
    }
    free(tok);
}

static void test_wrong_secret(void **state)
{
    (void)state;
    char *tok = mk_with(hs256, "{\"sub\":\"alice\"}", "some-other-secret");
    expect_fail(tok, "bad token signature");
    free(tok);
    /* A prefix of the right secret is a different key. */
    tok = mk_with(hs256, "{\"sub\":\"alice\"}", "current-secret");
    expect_fail(tok, "bad token signature");
    free(tok);
}

static void test_second_secret(void **state)
{
    (void)state;
    char *tok = mk_with(hs256, "{\"sub\":\"alice\"}", PREV);
    struct jwt_claims c;
    expect_ok(tok, &c);
    assert_string_equal(c.sub, "alice");
    jwt_claims_clear(&c);
    /* Once the previous secret is retired, its tokens stop working. */
    struct jwt_secrets only_cur = {{CUR}, 1};
    expect_fail_n(&only_cur, tok, strlen(tok), NOW, "bad token signature");
    /* An empty or NULL slot is skipped, not treated as a key. */
    struct jwt_secrets holes = {{"", PREV}, 2};
    char err[128];
    assert_int_equal(verify_n(&holes, tok, strlen(tok), NOW, &c, err, sizeof err), 0);
    jwt_claims_clear(&c);
    struct jwt_secrets nulls = {{NULL, PREV}, 2};
    assert_int_equal(verify_n(&nulls, tok, strlen(tok), NOW, &c, err, sizeof err), 0);
    jwt_claims_clear(&c);
    free(tok);
}

static void test_no_usable_secret(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\"}");
    struct jwt_secrets none = {{CUR, PREV}, 0};
    expect_fail_n(&none, tok, strlen(tok), NOW, "secret");
    struct jwt_secrets empty = {{"", NULL}, 2};
    expect_fail_n(&empty, tok, strlen(tok), NOW, "secret");
    struct jwt_secrets too_many = {{CUR, PREV}, 3};
    expect_fail_n(&too_many, tok, strlen(tok), NOW, "secret");
    expect_fail_n(NULL, tok, strlen(tok), NOW, "secret");
    /* A token signed with the empty key never verifies. */
    char *h = b64(hs256), *p = b64("{\"sub\":\"alice\"}");
    char *input = fmt("%s.%s", h, p);
    uint8_t md[32];
    unsigned int mdlen = 0;
    assert_non_null(HMAC(EVP_sha256(), "", 0, (const unsigned char *)input,
                         strlen(input), md, &mdlen));
    char *sig = base64url_encode_alloc(md, 32);
    char *etok = fmt("%s.%s", input, sig);
    expect_fail_n(&empty, etok, strlen(etok), NOW, "secret");
    expect_fail(etok, "bad token signature");
    free(etok);
    free(sig);
    free(input);
    free(h);
    free(p);
    free(tok);
}

/* ---- structure ------------------------------------------------------- */

static void test_every_prefix_fails(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\",\"name\":\"Alice\",\"rooms\":[\"general\"],\"exp\":1700000100}");
    size_t len = strlen(tok);
    for (size_t k = 0; k < len; k++) expect_fail_n(&secrets, tok, k, NOW, NULL);
    struct jwt_claims c;
    expect_ok(tok, &c);
    jwt_claims_clear(&c);
    /* Every suffix (token with its start cut off) fails too. */
    for (size_t k = 1; k < len; k++) expect_fail_n(&secrets, tok + k, len - k, NOW, NULL);
    free(tok);
}

static void test_garbage(void **state)
{
    (void)state;
    const char *bad[] = {"x", "abc", ".", "..", "...", "a.b.c", "a..c", ".b.c", "a.b.",
                         "Bearer x.y.z", "eyJ", "{\"alg\":\"HS256\"}.{}.x",
                         "\xff\xfe.\x00\x01.abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_fail(bad[i], NULL);
    expect_fail_n(&secrets, "", 0, NOW, "empty");
    struct jwt_claims c;
    char err[64];
    assert_int_equal(jwt_verify(&secrets, NULL, 0, NOW, &c, err, sizeof err), -1);
    assert_null(c.rooms);
    /* Arbitrary bytes of every value, including NUL, at every length. */
    char junk[300];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 37 + 11);
    for (size_t n = 1; n <= sizeof junk; n += 7) expect_fail_n(&secrets, junk, n, NOW, NULL);
}

static void test_segment_count(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\"}");
    char *more = fmt("%s.", tok);
    expect_fail(more, "three segments");
    free(more);
    more = fmt("%s.%s", tok, strrchr(tok, '.') + 1);
    expect_fail(more, "three segments");
    free(more);
    char *two = strdup(tok);
    *strrchr(two, '.') = '\0';
    expect_fail(two, "three segments");
    free(two);
    /* JWE compact form has five. */
    more = fmt("%s.AAAA.AAAA", tok);
    expect_fail(more, "three segments");
    free(more);
    free(tok);
}

/* Every non-alphabet byte, and padding, placed inside each segment. */
static void test_bad_characters(void **state)
{
    (void)state;
    char *tok = mk("{\"sub\":\"alice\",\"name\":\"Alice\"}");
    size_t len = strlen(tok);
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    size_t pos[3] = {1, (size_t)(dot1 - tok) + 2, (size_t)(dot2 - tok) + 2};
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    for (int ch = 0; ch < 256; ch++) {
        if (ch != 0 && strchr(alpha, ch)) continue;
        for (size_t i = 0; i < 3; i++) {
            char *t = strdup(tok);
            t[pos[i]] = (char)ch;
            expect_fail_n(&secrets, t, len, NOW, NULL);
            free(t);
        }
    }
    free(tok);
}

static void test_padding(void **state)
{
    (void)state;
    /* Segments whose encodings would need padding: a 26-byte header makes
     * 35 characters (36 with "="), a 16-byte payload 22 (24 with "=="). */
    const char *h26 = "{\"alg\":\"HS256\",\"typ\":\"JW\"}";
    const char *p16 = "{\"sub\":\"alice1\"}";
    assert_int_equal(strlen(h26), 26);
    assert_int_equal(strlen(p16), 16);
    char *h = b64(h26), *p = b64(p16), *hs = b64(hs256);
    /* Signed after padding, so only the padding is wrong. */
    char *hp = fmt("%s=", h), *pp = fmt("%s==", p);
    char *t1 = sign_segments(hp, p, CUR), *t2 = sign_segments(hs, pp, CUR);
    expect_fail(t1, "header");
    expect_fail(t2, "payload");
    char *t3 = sign_segments(hs, p, CUR);
    struct jwt_claims c;
    expect_ok(t3, &c);
    jwt_claims_clear(&c);
    char *t4 = fmt("%s=", t3);
    expect_fail(t4, "signature");
    free(t1);
    free(t2);
    free(t3);
    free(t4);
    free(hp);
    free(pp);
    free(h);
    free(p);
    free(hs);
}

static void test_token_length_bound(void **state)
{
    (void)state;
    /* Find a filler that makes the token exactly JWT_MAX_TOKEN_LEN long. */
    char *filler = malloc(JWT_MAX_TOKEN_LEN);
    assert_non_null(filler);
    bool hit_exact = false, hit_over = false;
    for (size_t n = 6000; n < 6200; n++) {
        memset(filler, 'x', n);
        filler[n] = '\0';
        char *payload = fmt("{\"sub\":\"alice\",\"pad\":\"%s\"}", filler);
        char *tok = mk(payload);
        size_t len = strlen(tok);
        if (len == JWT_MAX_TOKEN_LEN) {
            hit_exact = true;
            struct jwt_claims c;
            expect_ok(tok, &c);
            jwt_claims_clear(&c);
        } else if (len > JWT_MAX_TOKEN_LEN) {
            hit_over = true;
            expect_fail(tok, "too long");
        }
        free(tok);
        free(payload);
    }
    assert_true(hit_exact);
    assert_true(hit_over);
    free(filler);
}

static void test_payload_not_object(void **state)
{
    (void)state;
    const char *bad[] = {"", "[]", "\"alice\"", "null", "42", "{\"sub\":\"alice\"",
                         "{\"sub\":\"alice\"} x", "{\"sub\":\"a\",\"sub\":\"b\"}",
                         "{\"sub\":\"\xff\"}", "{\"sub\":\"a\\u0000b\"}",
                         "{\"sub\":\"\\ud800\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_payload_fail(bad[i], "payload");
}

/* ---- claims ---------------------------------------------------------- */

static void test_sub(void **state)
{
    (void)state;
    expect_payload_fail("{}", "sub");
    expect_payload_fail("{\"name\":\"Alice\"}", "sub");
    expect_payload_fail("{\"sub\":\"\"}", "sub");
    expect_payload_fail("{\"sub\":null}", "sub");
    expect_payload_fail("{\"sub\":42}", "sub");
    expect_payload_fail("{\"sub\":true}", "sub");
    expect_payload_fail("{\"sub\":[\"alice\"]}", "sub");
    expect_payload_fail("{\"sub\":{\"id\":\"alice\"}}", "sub");
    expect_payload_fail("{\"sub\":\"a\\u0001b\"}", "sub");
    expect_payload_fail("{\"sub\":\"a\\tb\"}", "sub");
    expect_payload_fail("{\"sub\":\"a\\nb\"}", "sub");
    expect_payload_fail("{\"sub\":\"a\\u001fb\"}", "sub");
    expect_payload_fail("{\"sub\":\"a\\u007fb\"}", "sub");
    expect_payload_fail("{\"sub\":\"a\\u0085b\"}", "sub");   /* C1 NEL */
    expect_payload_fail("{\"sub\":\"\\u009b2J\"}", "sub");   /* C1 CSI */
    expect_payload_ok("{\"sub\":\"a\\u00a0b\"}");            /* just past C1 */
    expect_payload_ok("{\"sub\":\"a b~\"}");

    /* 64 bytes accepted, 65 refused; multi-byte characters count bytes. */
    char s64[65], s65[66];
    memset(s64, 'u', 64);
    s64[64] = '\0';
    memset(s65, 'u', 65);
    s65[65] = '\0';
    char *p = fmt("{\"sub\":\"%s\"}", s64);
    char *tok = mk(p);
    struct jwt_claims c;
    expect_ok(tok, &c);
    assert_string_equal(c.sub, s64);
    assert_string_equal(c.name, s64);
    jwt_claims_clear(&c);
    free(tok);
    free(p);
    p = fmt("{\"sub\":\"%s\"}", s65);
    expect_payload_fail(p, "sub");
    free(p);

    char u64[129] = "", u66[133] = "";
    for (int i = 0; i < 32; i++) strcat(u64, "\xc3\xbc");  /* 32 x U+00FC: 64 bytes */
    for (int i = 0; i < 33; i++) strcat(u66, "\xc3\xbc");
    p = fmt("{\"sub\":\"%s\"}", u64);
    expect_payload_ok(p);
    free(p);
    p = fmt("{\"sub\":\"%s\"}", u66);
    expect_payload_fail(p, "sub");
    free(p);
}

static void test_name(void **state)
{
    (void)state;
    expect_payload_fail("{\"sub\":\"a\",\"name\":\"\"}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":null}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":7}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":[\"x\"]}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":\"x\\u0000y\"}", "payload");
    expect_payload_fail("{\"sub\":\"a\",\"name\":\"x\\ny\"}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":\"x\\u001by\"}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":\"x\\u007f\"}", "name");
    expect_payload_fail("{\"sub\":\"a\",\"name\":\"\\u0080\"}", "name");

    /* 64 characters, whatever their byte length, accepted; 65 refused. */
    const char *units[] = {"n", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t u = 0; u < 4; u++) {
        char name64[4 * 64 + 1] = "", name65[4 * 65 + 1] = "";
        for (int i = 0; i < 64; i++) strcat(name64, units[u]);
        strcpy(name65, name64);
        strcat(name65, units[u]);
        char *p = fmt("{\"sub\":\"a\",\"name\":\"%s\"}", name64);
        char *tok = mk(p);
        struct jwt_claims c;
        expect_ok(tok, &c);
        assert_string_equal(c.name, name64);
        jwt_claims_clear(&c);
        free(tok);
        free(p);
        p = fmt("{\"sub\":\"a\",\"name\":\"%s\"}", name65);
        expect_payload_fail(p, "name");
        free(p);
    }
}

static void test_role(void **state)
{
    (void)state;
    const char *names[] = {"viewer", "member", "organizer"};
    const enum jwt_role roles[] = {JWT_ROLE_VIEWER, JWT_ROLE_MEMBER, JWT_ROLE_ORGANIZER};
    for (int i = 0; i < 3; i++) {
        char *p = fmt("{\"sub\":\"a\",\"role\":\"%s\"}", names[i]);
        char *tok = mk(p);
        struct jwt_claims c;
        expect_ok(tok, &c);
        assert_int_equal(c.role, roles[i]);
        jwt_claims_clear(&c);
        free(tok);
        free(p);
    }
    const char *bad[] = {"\"admin\"", "\"Member\"", "\"ORGANIZER\"", "\"\"", "\"member \"",
                         "null", "1", "[\"member\"]", "{}", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = fmt("{\"sub\":\"a\",\"role\":%s}", bad[i]);
        expect_payload_fail(p, "role");
        free(p);
    }
}

static void test_rooms(void **state)
{
    (void)state;
    /* An empty list allows no room at all. */
    char *tok = mk("{\"sub\":\"a\",\"rooms\":[]}");
    struct jwt_claims c;
    expect_ok(tok, &c);
    assert_non_null(c.rooms);
    assert_false(jwt_claims_allow_room(&c, "general"));
    jwt_claims_clear(&c);
    free(tok);

    const char *not_array[] = {"\"general\"", "{\"general\":true}", "null", "1", "true"};
    for (size_t i = 0; i < sizeof not_array / sizeof not_array[0]; i++) {
        char *p = fmt("{\"sub\":\"a\",\"rooms\":%s}", not_array[i]);
        expect_payload_fail(p, "must be an array");
        free(p);
    }
    const char *bad_entries[] = {
        "[1]", "[null]", "[\"\"]", "[\"general\",\"bad room\"]", "[\"a/b\"]",
        "[\"caf\\u00e9\"]", "[[\"general\"]]", "[\"general\",{}]", "[\"a\\u0000b\"]",
        "[\"x:y\"]", "[\"a\\nb\"]",
        "[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]"};
    for (size_t i = 0; i < sizeof bad_entries / sizeof bad_entries[0]; i++) {
        char *p = fmt("{\"sub\":\"a\",\"rooms\":%s}", bad_entries[i]);
        expect_payload_fail(p, NULL);
        free(p);
    }
    expect_payload_ok("{\"sub\":\"a\",\"rooms\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}");

    /* 1000 entries accepted, 1001 refused. Two-character names keep the
     * token under JWT_MAX_TOKEN_LEN. */
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int n = 1000; n <= 1001; n++) {
        size_t cap = (size_t)n * 8 + 64;
        char *p = malloc(cap);
        assert_non_null(p);
        size_t off = (size_t)snprintf(p, cap, "{\"sub\":\"a\",\"rooms\":[");
        for (int i = 0; i < n; i++)
            off += (size_t)snprintf(p + off, cap - off, "%s\"%c%c\"", i ? "," : "",
                                    alpha[i / 64], alpha[i % 64]);
        snprintf(p + off, cap - off, "]}");
        if (n == 1000) {
            tok = mk(p);
            expect_ok(tok, &c);
            assert_int_equal(json_array_size(c.rooms), 1000);
            /* Entry 999 is alpha[15], alpha[39]: "Pn"; 1000 would be "Po". */
            assert_true(jwt_claims_allow_room(&c, "Pn"));
            assert_false(jwt_claims_allow_room(&c, "Po"));
            jwt_claims_clear(&c);
            free(tok);
        } else {
            expect_payload_fail(p, "too many");
        }
        free(p);
    }
}

/* A failure after rooms was read (here: expiry) must not leak the
 * reference; LeakSanitizer checks. */
static void test_no_leak_on_late_failure(void **state)
{
    (void)state;
    expect_payload_fail("{\"sub\":\"a\",\"rooms\":[\"general\"],\"exp\":1}", "expired");
    expect_payload_fail("{\"sub\":\"a\",\"rooms\":[\"general\"],\"nbf\":\"soon\"}", "nbf");
}

/* ---- exp / nbf ------------------------------------------------------- */

static void expect_time(const char *claims, bool ok, const char *reason)
{
    char *p = fmt("{\"sub\":\"a\",%s}", claims);
    if (ok) expect_payload_ok(p);
    else expect_payload_fail(p, reason);
    free(p);
}

static void test_exp_nbf_boundaries(void **state)
{
    (void)state;
    char buf[128];
    /* Expired when now > exp + 30. */
    snprintf(buf, sizeof buf, "\"exp\":%lld", NOW - 30);
    expect_time(buf, true, NULL);
    snprintf(buf, sizeof buf, "\"exp\":%lld", NOW - 31);
    expect_time(buf, false, "expired");
    snprintf(buf, sizeof buf, "\"exp\":%lld", NOW);
    expect_time(buf, true, NULL);
    /* Not yet valid when now < nbf - 30. */
    snprintf(buf, sizeof buf, "\"nbf\":%lld", NOW + 30);
    expect_time(buf, true, NULL);
    snprintf(buf, sizeof buf, "\"nbf\":%lld", NOW + 31);
    expect_time(buf, false, "not yet valid");
    snprintf(buf, sizeof buf, "\"nbf\":%lld", NOW);
    expect_time(buf, true, NULL);
    /* Both at once, each at its edge. */
    snprintf(buf, sizeof buf, "\"nbf\":%lld,\"exp\":%lld", NOW + 30, NOW - 30);
    expect_time(buf, true, NULL);

    /* Real numbers compare exactly: now > exp + 30 with exp = now - 30.5
     * is expired, with now - 29.5 not; likewise for nbf. */
    snprintf(buf, sizeof buf, "\"exp\":%lld.5", NOW - 31);
    expect_time(buf, false, "expired");
    snprintf(buf, sizeof buf, "\"exp\":%lld.5", NOW - 30);
    expect_time(buf, true, NULL);
    snprintf(buf, sizeof buf, "\"exp\":%lld.0", NOW - 30);
    expect_time(buf, true, NULL);
    snprintf(buf, sizeof buf, "\"nbf\":%lld.5", NOW + 30);
    expect_time(buf, false, "not yet valid");
    snprintf(buf, sizeof buf, "\"nbf\":%lld.5", NOW + 29);
    expect_time(buf, true, NULL);
    char *p = fmt("{\"sub\":\"a\",\"exp\":1.7e9}");
    char *tok = mk(p);
    struct jwt_claims c;
    expect_ok_at(tok, 1700000030, &c);
    assert_int_equal(c.exp, 1700000000);
    jwt_claims_clear(&c);
    expect_fail_n(&secrets, tok, strlen(tok), 1700000031, "expired");
    free(tok);
    free(p);
}

static void test_exp_nbf_extremes(void **state)
{
    (void)state;
    expect_time("\"exp\":9223372036854775807", true, NULL);
    expect_time("\"exp\":1e300", true, NULL);
    expect_time("\"exp\":-1e300", false, "expired");
    expect_time("\"exp\":-9223372036854775808", false, "expired");
    expect_time("\"exp\":0", false, "expired");
    expect_time("\"nbf\":-9223372036854775808", true, NULL);
    expect_time("\"nbf\":-1e300", true, NULL);
    expect_time("\"nbf\":9223372036854775807", false, "not yet valid");
    expect_time("\"nbf\":1e300", false, "not yet valid");
    expect_time("\"nbf\":0", true, NULL);
    /* now at the ends of int64_t must not overflow the leeway arithmetic
     * (UBSan checks). */
    char *tok = mk("{\"sub\":\"a\",\"exp\":9223372036854775807,\"nbf\":-9223372036854775808}");
    struct jwt_claims c;
    expect_ok_at(tok, INT64_MAX, &c);
    jwt_claims_clear(&c);
    expect_ok_at(tok, INT64_MIN, &c);
    assert_int_equal(c.exp, INT64_MAX);
    assert_int_equal(c.nbf, INT64_MIN);
    jwt_claims_clear(&c);
    free(tok);
    tok = mk("{\"sub\":\"a\",\"exp\":-9223372036854775808,\"nbf\":9223372036854775807}");
    expect_fail_n(&secrets, tok, strlen(tok), INT64_MAX, "expired");
    expect_fail_n(&secrets, tok, strlen(tok), INT64_MIN, "not yet valid");
    free(tok);
}

static void test_exp_nbf_types(void **state)
{
    (void)state;
    const char *bad[] = {"\"1700000000\"", "null", "true", "[1]", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "\"exp\":%s", bad[i]);
        expect_time(buf, false, "exp claim must be a number");
        snprintf(buf, sizeof buf, "\"nbf\":%s", bad[i]);
        expect_time(buf, false, "nbf claim must be a number");
    }
    /* Integers beyond 64 bits are refused by the JSON parser. */
    expect_time("\"exp\":99999999999999999999", false, "payload");
}

/* ---- signing ---------------------------------------------------------- */

static void test_sign_round_trip(void **state)
{
    (void)state;
    const char *rooms[] = {"general", "random"};
    char *tok = jwt_sign(CUR, "alice", "Alice \xc3\x89.", "organizer", rooms, 2, NOW - 10, NOW + 3600);
    assert_non_null(tok);
    assert_int_equal(strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37), 0);
    struct jwt_claims c;
    expect_ok(tok, &c);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.name, "Alice \xc3\x89.");
    assert_int_equal(c.role, JWT_ROLE_ORGANIZER);
    assert_true(c.has_exp);
    assert_int_equal(c.exp, NOW + 3600);
    assert_false(c.has_nbf);
    assert_true(jwt_claims_allow_room(&c, "random"));
    assert_false(jwt_claims_allow_room(&c, "other"));
    jwt_claims_clear(&c);
    /* Only the signing secret's holders accept it. */
    struct jwt_secrets other = {{"x-other-secret"}, 1};
    expect_fail_n(&other, tok, strlen(tok), NOW, "bad token signature");
    expect_fail_n(&secrets, tok, strlen(tok), NOW + 3631, "expired");
    free(tok);

    /* Minimal: defaults, no rooms claim, no exp. */
    tok = jwt_sign(PREV, "bob", NULL, NULL, NULL, 0, NOW, 0);
    assert_non_null(tok);
    expect_ok(tok, &c);
    assert_string_equal(c.name, "bob");
    assert_int_equal(c.role, JWT_ROLE_MEMBER);
    assert_null(c.rooms);
    assert_false(c.has_exp);
    jwt_claims_clear(&c);
    free(tok);

    /* rooms given but empty: a token for no room. */
    tok = jwt_sign(CUR, "bob", NULL, "viewer", rooms, 0, NOW, 0);
    assert_non_null(tok);
    expect_ok(tok, &c);
    assert_non_null(c.rooms);
    assert_false(jwt_claims_allow_room(&c, "general"));
    assert_int_equal(c.role, JWT_ROLE_VIEWER);
    jwt_claims_clear(&c);
    free(tok);

    /* Claims are not policed when signing; verification refuses them. */
    tok = jwt_sign(CUR, "bob", NULL, "admin", NULL, 0, NOW, 0);
    assert_non_null(tok);
    expect_fail(tok, "role");
    free(tok);
}

static void test_sign_bad_input(void **state)
{
    (void)state;
    const char *rooms[] = {"general", NULL};
    assert_null(jwt_sign(NULL, "a", NULL, NULL, NULL, 0, NOW, 0));
    assert_null(jwt_sign("", "a", NULL, NULL, NULL, 0, NOW, 0));
    assert_null(jwt_sign(CUR, NULL, NULL, NULL, NULL, 0, NOW, 0));
    assert_null(jwt_sign(CUR, "a", NULL, NULL, rooms, 2, NOW, 0));
    assert_null(jwt_sign(CUR, "\xff", NULL, NULL, NULL, 0, NOW, 0));
    assert_null(jwt_sign(CUR, "a", "\xc3", NULL, NULL, 0, NOW, 0));
}

/* ---- err buffer ------------------------------------------------------- */

static void test_err_buffer(void **state)
{
    (void)state;
    struct jwt_claims c;
    assert_int_equal(jwt_verify(&secrets, "x", 1, NOW, &c, NULL, 0), -1);
    char small[6];
    memset(small, 'z', sizeof small);
    assert_int_equal(jwt_verify(&secrets, "x", 1, NOW, &c, small, sizeof small), -1);
    assert_int_equal(small[5], '\0');
    assert_int_equal(strlen(small), 5);

    /* Nothing token-derived in err, including decoded claim values. */
    const char *secret_sub = "SENSITIVE-SUBJECT-VALUE";
    char *p = fmt("{\"sub\":\"%s\",\"role\":\"SENSITIVE-ROLE-VALUE\"}", secret_sub);
    char *tok = mk(p);
    char err[256];
    assert_int_equal(verify_n(&secrets, tok, strlen(tok), NOW, &c, err, sizeof err), -1);
    assert_null(strstr(err, "SENSITIVE"));
    assert_err_clean(err, tok, strlen(tok));
    free(tok);
    free(p);
    /* Bad JSON: jansson's message would quote the input; ours does not. */
    tok = mk("{\"sub\":\"SENSITIVE-IN-BROKEN-JSON\" oops}");
    assert_int_equal(verify_n(&secrets, tok, strlen(tok), NOW, &c, err, sizeof err), -1);
    assert_null(strstr(err, "SENSITIVE"));
    assert_null(strstr(err, "oops"));
    free(tok);
}

/* ---- allocation failure ---------------------------------------------- */

/* jansson allocations fail once the budget is spent. The wrappers sit on
 * malloc/free, so memory is freed the same way whichever allocator was
 * in force when it was taken. */
static long alloc_budget = -1;  /* < 0: unlimited */

static void *limited_malloc(size_t n)
{
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    return malloc(n);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *rooms[] = {"general", "random", "ops"};
    char *tok = jwt_sign(CUR, "alice", "Alice", "organizer", rooms, 3, NOW, NOW + 60);
    assert_non_null(tok);
    json_set_alloc_funcs(limited_malloc, free);
    bool verified = false, signed_ok = false;
    for (long budget = 0; budget < 500 && !(verified && signed_ok); budget++) {
        struct jwt_claims c;
        char err[128] = "";
        alloc_budget = budget;
        int rc = verify_n(&secrets, tok, strlen(tok), NOW, &c, err, sizeof err);
        if (rc == 0) {
            assert_int_equal(json_array_size(c.rooms), 3);
            jwt_claims_clear(&c);
            verified = true;
        } else {
            assert_null(c.rooms);
            assert_true(err[0] != '\0');
        }
        alloc_budget = budget;
        char *t2 = jwt_sign(CUR, "alice", "Alice", "organizer", rooms, 3, NOW, NOW + 60);
        if (budget == 0) {
            /* Nothing works without memory: the failure paths did run. */
            assert_int_equal(rc, -1);
            assert_null(t2);
        }
        if (t2) {
            assert_string_equal(t2, tok);
            signed_ok = true;
            free(t2);
        }
    }
    alloc_budget = -1;
    json_set_alloc_funcs(malloc, free);
    assert_true(verified);
    assert_true(signed_ok);
    free(tok);
}

/* ---- roles and rooms helpers ----------------------------------------- */

static void test_role_names(void **state)
{
    (void)state;
    enum jwt_role r = JWT_ROLE_ORGANIZER;
    assert_string_equal(jwt_role_name(JWT_ROLE_VIEWER), "viewer");
    assert_string_equal(jwt_role_name(JWT_ROLE_MEMBER), "member");
    assert_string_equal(jwt_role_name(JWT_ROLE_ORGANIZER), "organizer");
    assert_string_equal(jwt_role_name((enum jwt_role)42), "?");
    assert_int_equal(jwt_role_parse("viewer", &r), 0);
    assert_int_equal(r, JWT_ROLE_VIEWER);
    assert_int_equal(jwt_role_parse("organizer", &r), 0);
    assert_int_equal(r, JWT_ROLE_ORGANIZER);
    assert_int_equal(jwt_role_parse("member", &r), 0);
    assert_int_equal(r, JWT_ROLE_MEMBER);
    assert_int_equal(jwt_role_parse("Viewer", &r), -1);
    assert_int_equal(jwt_role_parse("", &r), -1);
    assert_int_equal(jwt_role_parse(NULL, &r), -1);
    assert_int_equal(r, JWT_ROLE_MEMBER);
}

static void test_room_name_valid(void **state)
{
    (void)state;
    assert_true(room_name_valid("general", 7));
    assert_true(room_name_valid("A-z_0.9", 7));
    assert_true(room_name_valid("x", 1));
    assert_true(room_name_valid(".", 1));
    assert_false(room_name_valid("", 0));
    assert_false(room_name_valid("general", 0));
    /* The length given is what counts, not a NUL. */
    assert_true(room_name_valid("general!", 7));
    assert_false(room_name_valid("gen\0ral", 7));
    char name[66];
    memset(name, 'r', sizeof name);
    assert_true(room_name_valid(name, 64));
    assert_false(room_name_valid(name, 65));
    for (int c = 0; c < 256; c++) {
        bool expect = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        char s[3] = {'a', (char)c, 'b'};
        assert_int_equal(room_name_valid(s, 3), expect);
        char *one = malloc(1);  /* exact size: ASan checks the bound */
        assert_non_null(one);
        one[0] = (char)c;
        assert_int_equal(room_name_valid(one, 1), expect);
        free(one);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_token_all_claims),
        cmocka_unit_test(test_good_token_defaults),
        cmocka_unit_test(test_external_vector),
        cmocka_unit_test(test_typ_variants),
        cmocka_unit_test(test_alg_none_empty_signature),
        cmocka_unit_test(test_bad_algs),
        cmocka_unit_test(test_header_not_object),
        cmocka_unit_test(test_header_crit_and_duplicates),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_signature_noncanonical),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_second_secret),
        cmocka_unit_test(test_no_usable_secret),
        cmocka_unit_test(test_every_prefix_fails),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_segment_count),
        cmocka_unit_test(test_bad_characters),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_token_length_bound),
        cmocka_unit_test(test_payload_not_object),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_role),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_no_leak_on_late_failure),
        cmocka_unit_test(test_exp_nbf_boundaries),
        cmocka_unit_test(test_exp_nbf_extremes),
        cmocka_unit_test(test_exp_nbf_types),
        cmocka_unit_test(test_sign_round_trip),
        cmocka_unit_test(test_sign_bad_input),
        cmocka_unit_test(test_err_buffer),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_room_name_valid),
        cmocka_unit_test(test_secret_change_rekeys),
        cmocka_unit_test(test_known_header_still_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

// fuzz-sources: shared/jwt.c shared/hs256.c shared/base64.c shared/utf8.c shared/room.c
/* libFuzzer target for jwt_verify, plus base64url round-trip oracles.
 *
 * Random bytes almost never carry a valid HMAC, so fed as tokens they only
 * reach the header and signature checks. To fuzz the claim rules too, an
 * input starting with '{' is also taken as "<header JSON>\n<payload JSON>"
 * (or just "<payload JSON>", with the standard header) and signed with the
 * fuzz secret before verification. A real token never starts with '{'
 * (not a base64url character), so the text seeds in corpus/jwt/ stay plain
 * tokens.
 *
 * Beyond crashes and sanitizer reports, the target aborts when a verified
 * token's claims break a documented invariant, when a refusal leaves
 * anything in the claims, or when err quotes the token. */

#include "shared/base64.h"
#include "shared/jwt.h"
#include "shared/room.h"
#include "shared/utf8.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000
#define SECRET "fuzz-current-secret"

static const struct jwt_secrets secrets = {{SECRET, "fuzz-previous-secret"}, 2};

static void check_text(const char *s, size_t min_chars, size_t max_chars)
{
    size_t n = strlen(s);
    if (!utf8_is_complete_valid((const uint8_t *)s, n)) abort();
    size_t chars = utf8_count_codepoints((const uint8_t *)s, n);
    if (chars < min_chars || chars > max_chars) abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) abort();
    }
}

static void check_claims(const struct jwt_claims *c)
{
    size_t sublen = strlen(c->sub);
    if (sublen < 1 || sublen > JWT_SUB_MAX_BYTES) abort();
    check_text(c->sub, 1, JWT_SUB_MAX_BYTES);
    check_text(c->name, 1, JWT_NAME_MAX_CHARS);
    if (strcmp(jwt_role_name(c->role), "?") == 0) abort();
    if (c->rooms) {
        if (!json_is_array(c->rooms) || json_array_size(c->rooms) > JWT_ROOMS_MAX) abort();
        size_t i;
        json_t *r;
        json_array_foreach(c->rooms, i, r) {
            if (!json_is_string(r) ||
                !room_name_valid(json_string_value(r), json_string_length(r)))
                abort();
            if (!jwt_claims_allow_room(c, json_string_value(r))) abort();
        }
        /* Listed names are valid, so an invalid one is never allowed. */
        if (jwt_claims_allow_room(c, "") || jwt_claims_allow_room(c, "a b")) abort();
    } else if (!jwt_claims_allow_room(c, "general")) {
        abort();
    }
    if (c->has_exp && c->exp < NOW - JWT_LEEWAY_S) abort();
    if (c->has_nbf && c->nbf > NOW + JWT_LEEWAY_S) abort();
}

static void verify(const char *tok, size_t n)
{
    struct jwt_claims c;
    char err[128];
    err[0] = '\0';
    if (jwt_verify(&secrets, tok, n, NOW, &c, err, sizeof err) == 0) {
        check_claims(&c);
        jwt_claims_clear(&c);
        return;
    }
    if (err[0] == '\0' || c.rooms || c.sub[0]) abort();
    /* No error text contains '.', so a token with one that shows up in err
     * was quoted, not matched by coincidence. */
    if (n >= 8 && memchr(tok, '.', n) && memmem(err, strlen(err), tok, n)) abort();
}

/* Signs header/payload JSON with SECRET and verifies the result. */
static void verify_signed(const uint8_t *h, size_t hn, const uint8_t *p, size_t pn)
{
    char *hb = base64url_encode_alloc(h, hn);
    char *pb = base64url_encode_alloc(p, pn);
    if (!hb || !pb) goto out;
    size_t hl = strlen(hb), pl = strlen(pb);
    size_t n = hl + 1 + pl + 1 + 43;
    char *tok = malloc(n + 1);
    if (!tok) goto out;
    memcpy(tok, hb, hl);
    tok[hl] = '.';
    memcpy(tok + hl + 1, pb, pl);
    tok[hl + 1 + pl] = '.';
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)tok,
             hl + 1 + pl, md, &mdlen) &&
        mdlen == 32 && base64url_encode(md, 32, tok + hl + 1 + pl + 1, 44) == 0)
        verify(tok, n);
    free(tok);
out:
    free(hb);
    free(pb);
}

/* Strict base64url is canonical: what decodes re-encodes to the same
 * text, and what is encoded decodes back. */
static void base64_oracles(const uint8_t *data, size_t size)
{
    if (size > 4096) return;
    uint8_t out[4096];
    char back[5464 + 1];
    size_t got;
    if (base64url_decode((const char *)data, size, out, sizeof out, &got) == 0) {
        if (got != base64url_decoded_len(size)) abort();
        if (base64url_encode(out, got, back, sizeof back) != 0) abort();
        if (strlen(back) != size || memcmp(back, data, size) != 0) abort();
    }
    if (base64url_encode(data, size, back, sizeof back) != 0) abort();
    size_t blen = strlen(back);
    if (blen != base64url_encoded_len(size)) abort();
    if (base64url_decode(back, blen, out, sizeof out, &got) != 0) abort();
    if (got != size || memcmp(out, data, size) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan sees any read past the end. */
    char *tok = malloc(size ? size : 1);
    if (!tok) return 0;
    memcpy(tok, data, size);
    verify(tok, size);
    free(tok);

    if (size > 0 && data[0] == '{') {
        const uint8_t *nl = memchr(data, '\n', size);
        if (nl) {
            verify_signed(data, (size_t)(nl - data), nl + 1, size - (size_t)(nl + 1 - data));
        } else {
            static const char h[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
            verify_signed((const uint8_t *)h, sizeof h - 1, data, size);
        }
    }

    base64_oracles(data, size);
    return 0;
}

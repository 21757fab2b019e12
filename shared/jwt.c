#include "shared/jwt.h"

#include "shared/base64.h"
#include "shared/hs256.h"
#include "shared/room.h"
#include "shared/utf8.h"

#include <openssl/crypto.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* An HS256 signature is 32 bytes: 43 unpadded base64url characters. */
#define HS256_B64_LEN 43
/* Any decoded segment is shorter than the bounded token it came from. */
#define SEGMENT_BUF_LEN (JWT_MAX_TOKEN_LEN / 4 * 3 + 2)

/* The only header we mint. */
static const char sign_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static const char *const role_names[] = {
    [JWT_ROLE_VIEWER] = "viewer",
    [JWT_ROLE_MEMBER] = "member",
    [JWT_ROLE_ORGANIZER] = "organizer",
};

/* Every failure goes through here with a fixed string: error text must
 * never carry token bytes, so nothing token-derived is ever formatted in
 * (jansson's own error text is not used either, as it quotes the input). */
static int fail(char *err, size_t errlen, const char *why)
{
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return -1;
}

const char *jwt_role_name(enum jwt_role role)
{
    if ((unsigned)role >= sizeof role_names / sizeof role_names[0]) return "?";
    return role_names[role];
}

int jwt_role_parse(const char *s, enum jwt_role *out)
{
    if (!s) return -1;
    for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum jwt_role)i;
            return 0;
        }
    }
    return -1;
}

void jwt_claims_clear(struct jwt_claims *c)
{
    if (!c) return;
    json_decref(c->rooms);
    memset(c, 0, sizeof *c);
}

bool jwt_claims_allow_room(const struct jwt_claims *c, const char *room)
{
    if (!c->rooms) return true;
    if (!room) return false;
    size_t i;
    json_t *v;
    json_array_foreach(c->rooms, i, v) {
        if (strcmp(json_string_value(v), room) == 0) return true;
    }
    return false;
}

/* Valid UTF-8 with no control character: C0 (which includes NUL), DEL, and
 * C1 (U+0080..U+009F, encoded as C2 80..C2 9F). Names and ids end up in
 * log lines, terminals and other users' screens; control characters there
 * are at best noise and at worst escape sequences. */
static bool text_ok(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    if (!utf8_is_complete_valid(p, n)) return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] == 0x7F) return false;
        if (p[i] == 0xC2 && i + 1 < n && p[i + 1] <= 0x9F) return false;
    }
    return true;
}

/* Decodes one base64url segment and parses it as a JSON object. Returns a
 * new reference, or NULL with err set to what. Duplicate keys are refused:
 * with them, which value "the" claim has depends on the parser, a classic
 * way to make two services read one token differently. */
static json_t *decode_object(const char *seg, size_t n, const char *what,
                             char *err, size_t errlen)
{
    uint8_t buf[SEGMENT_BUF_LEN];
    size_t got;
    if (base64url_decode(seg, n, buf, sizeof buf, &got) < 0) {
        fail(err, errlen, what);
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb((const char *)buf, got, JSON_REJECT_DUPLICATES, &jerr);
    /* jansson reports an allocation failure as a syntax error (or as
     * nothing at all), so memory exhaustion cannot be told apart here: the
     * token is refused as malformed, which at least fails closed. */
    if (!v || !json_is_object(v)) {
        json_decref(v);
        fail(err, errlen, what);
        return NULL;
    }
    return v;
}

static int check_header(const json_t *h, char *err, size_t errlen)
{
    const json_t *alg = json_object_get(h, "alg");
    /* Exact match only: no "none", no other HMAC size, no asymmetric alg
     * whose public key could be misused as an HMAC secret. */
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
        return fail(err, errlen, "token alg must be HS256");
    /* Explicit typing (RFC 8725 3.11): another kind of token signed with
     * the same secret (at+jwt, say) is not taken for ours. "JWT" is short
     * for application/JWT (RFC 7515 4.1.9), and media types compare
     * without regard to case. */
    const json_t *typ = json_object_get(h, "typ");
    const char *t = json_string_value(typ);
    if (t && strncasecmp(t, "application/", 12) == 0) t += 12;
    if (typ && (!t || strcasecmp(t, "JWT") != 0))
        return fail(err, errlen, "token typ must be JWT");
    /* RFC 7515, 4.1.11: extensions listed in crit must be understood or
     * the token refused. We understand none. */
    if (json_object_get(h, "crit"))
        return fail(err, errlen, "token header has unsupported crit");
    return 0;
}

_Static_assert(sizeof ((struct jwt_secrets *)0)->secrets / sizeof(char *) < HS256_SLOTS,
              "a verifying slot per secret, and one more for signing");

/* Header segments (base64url, as in the token) found acceptable: whether
 * a header passes depends on its bytes alone, and nearly every token
 * carries the same one, so it is decoded and parsed once, not per token. */
#define HEADER_CACHE_SLOTS 4
#define HEADER_CACHE_SEG_MAX 96
static struct {
    uint8_t len;
    char seg[HEADER_CACHE_SEG_MAX];
} header_ok[HEADER_CACHE_SLOTS];
static unsigned header_ok_next;

static bool header_known_ok(const char *seg, size_t n)
{
    for (size_t i = 0; i < HEADER_CACHE_SLOTS; i++)
        if (header_ok[i].len && header_ok[i].len == n && memcmp(header_ok[i].seg, seg, n) == 0)
            return true;
    return false;
}

static void remember_header_ok(const char *seg, size_t n)
{
    if (n == 0 || n > HEADER_CACHE_SEG_MAX) return;
    unsigned i = header_ok_next++ % HEADER_CACHE_SLOTS;
    memcpy(header_ok[i].seg, seg, n);
    header_ok[i].len = (uint8_t)n;
}

/* HMAC-SHA256 of the signing input under each usable secret, compared in
 * constant time. All secrets are tried even after a match so the time
 * taken does not tell which secret signed. Returns 1 on a match, 0 on
 * none, -1 when there is no usable secret or HMAC fails. */
static int signature_matches(const struct jwt_secrets *s, const char *input,
                             size_t n, const uint8_t sig[HS256_LEN],
                             char *err, size_t errlen)
{
    size_t count = s ? s->count : 0;
    if (count > sizeof s->secrets / sizeof s->secrets[0]) {
        fail(err, errlen, "bad JWT secret configuration");
        return -1;
    }
    int usable = 0, match = 0;
    for (size_t i = 0; i < count; i++) {
        const char *key = s->secrets[i];
        if (!key || !*key) continue;
        size_t klen = strlen(key);
        if (klen > INT_MAX) continue;
        uint8_t md[HS256_LEN];
        if (hs256((unsigned)i, key, klen, input, n, md) < 0) {
            OPENSSL_cleanse(md, sizeof md);
            fail(err, errlen, "cannot compute token signature");
            return -1;
        }
        usable++;
        match |= CRYPTO_memcmp(md, sig, HS256_LEN) == 0;
        OPENSSL_cleanse(md, sizeof md);
    }
    if (!usable) {
        fail(err, errlen, "no JWT secret configured");
        return -1;
    }
    return match;
}

/* floor() and ceil() into int64_t, clamped, without libm. For d inside
 * [-2^63, 2^63) the cast is defined; it truncates toward zero, then one
 * step fixes the direction. */
static int64_t floor_i64(double d)
{
    if (d >= 9223372036854775808.0) return INT64_MAX;
    if (d < -9223372036854775808.0) return INT64_MIN;
    int64_t t = (int64_t)d;
    if ((double)t > d) t--;
    return t;
}

static int64_t ceil_i64(double d)
{
    if (d >= 9223372036854775808.0) return INT64_MAX;
    if (d < -9223372036854775808.0) return INT64_MIN;
    int64_t t = (int64_t)d;
    if ((double)t < d && t < INT64_MAX) t++;
    return t;
}

/* Reads an optional NumericDate. Rounding is chosen so that comparing the
 * rounded value with an integer now decides as the exact value would:
 * exp is rounded down (now > exp + L), nbf up (now < nbf - L). Returns -1
 * for a present non-number. */
static int get_time(const json_t *payload, const char *key, bool round_up,
                    int64_t *out, bool *has)
{
    const json_t *v = json_object_get(payload, key);
    *has = false;
    if (!v) return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != d) return -1;  /* jansson never yields NaN; be sure */
        *out = round_up ? ceil_i64(d) : floor_i64(d);
    } else {
        return -1;
    }
    *has = true;
    return 0;
}

static int check_claims(const json_t *p, int64_t now_s, struct jwt_claims *out,
                        char *err, size_t errlen)
{
    const json_t *v = json_object_get(p, "sub");
    if (!v) return fail(err, errlen, "token has no sub claim");
    if (!json_is_string(v)) return fail(err, errlen, "token sub claim must be a string");
    const char *str = json_string_value(v);
    size_t n = json_string_length(v);
    if (n < 1 || n > JWT_SUB_MAX_BYTES)
        return fail(err, errlen, "token sub claim must be 1..64 bytes");
    if (!text_ok(str, n))
        return fail(err, errlen, "token sub claim has invalid or control characters");
    memcpy(out->sub, str, n);
    out->sub[n] = '\0';

    v = json_object_get(p, "name");
    if (v) {
        if (!json_is_string(v)) return fail(err, errlen, "token name claim must be a string");
        str = json_string_value(v);
        n = json_string_length(v);
        if (!text_ok(str, n))
            return fail(err, errlen, "token name claim has invalid or control characters");
        size_t chars = utf8_count_codepoints((const uint8_t *)str, n);
        /* The byte bound follows from valid UTF-8 (4 bytes a character at
         * most) but is checked too, as it guards the copy. */
        if (chars < 1 || chars > JWT_NAME_MAX_CHARS || n >= sizeof out->name)
            return fail(err, errlen, "token name claim must be 1..64 characters");
        memcpy(out->name, str, n);
        out->name[n] = '\0';
    } else {
        memcpy(out->name, out->sub, strlen(out->sub) + 1);
    }

    out->role = JWT_ROLE_MEMBER;
    v = json_object_get(p, "role");
    if (v && (!json_is_string(v) || jwt_role_parse(json_string_value(v), &out->role) < 0))
        return fail(err, errlen, "token role claim must be viewer, member or organizer");

    const json_t *rooms = json_object_get(p, "rooms");
    if (rooms) {
        if (!json_is_array(rooms)) return fail(err, errlen, "token rooms claim must be an array");
        if (json_array_size(rooms) > JWT_ROOMS_MAX)
            return fail(err, errlen, "token rooms claim has too many entries");
        size_t i;
        const json_t *r;
        json_array_foreach(rooms, i, r) {
            if (!json_is_string(r) ||
                !room_name_valid(json_string_value(r), json_string_length(r)))
                return fail(err, errlen, "token rooms claim has an invalid room name");
        }
    }

    if (get_time(p, "exp", false, &out->exp, &out->has_exp) < 0)
        return fail(err, errlen, "token exp claim must be a number");
    if (get_time(p, "nbf", true, &out->nbf, &out->has_nbf) < 0)
        return fail(err, errlen, "token nbf claim must be a number");
    /* Written to stay clear of overflow at the ends of int64_t. */
    if (out->has_exp && out->exp <= INT64_MAX - JWT_LEEWAY_S &&
        now_s > out->exp + JWT_LEEWAY_S)
        return fail(err, errlen, "token expired");
    if (out->has_nbf && out->nbf >= INT64_MIN + JWT_LEEWAY_S &&
        now_s < out->nbf - JWT_LEEWAY_S)
        return fail(err, errlen, "token not yet valid");

    /* Last, so that no early return leaves a reference behind. The array
     * is shared with the (soon freed) payload; callers only read it. */
    if (rooms) out->rooms = json_incref((json_t *)rooms);
    return 0;
}

int jwt_verify(const struct jwt_secrets *s, const char *token, size_t len,
               int64_t now_s, struct jwt_claims *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!token || len == 0) return fail(err, errlen, "token is empty");
    if (len > JWT_MAX_TOKEN_LEN) return fail(err, errlen, "token too long");

    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return fail(err, errlen, "malformed token: not three segments");
    size_t hlen = (size_t)(dot1 - token);
    const char *pseg = dot1 + 1;
    size_t plen = (size_t)(dot2 - pseg);
    const char *sseg = dot2 + 1;
    size_t slen = len - (size_t)(sseg - token);

    int rc;
    if (!header_known_ok(token, hlen)) {
        json_t *header = decode_object(token, hlen, "malformed token header", err, errlen);
        if (!header) return -1;
        rc = check_header(header, err, errlen);
        json_decref(header);
        if (rc < 0) return -1;
        remember_header_ok(token, hlen);
    }

    uint8_t sig[HS256_LEN];
    size_t siglen = 0;
    if (slen != HS256_B64_LEN || base64url_decode(sseg, slen, sig, sizeof sig, &siglen) < 0 ||
        siglen != HS256_LEN)
        return fail(err, errlen, "malformed token signature");
    /* The signing input is the token itself up to the second dot. */
    rc = signature_matches(s, token, (size_t)(dot2 - token), sig, err, errlen);
    if (rc < 0) return -1;
    if (rc == 0) return fail(err, errlen, "bad token signature");

    json_t *payload = decode_object(pseg, plen, "malformed token payload", err, errlen);
    if (!payload) return -1;
    rc = check_claims(payload, now_s, out, err, errlen);
    json_decref(payload);
    if (rc < 0) {
        jwt_claims_clear(out);
        return -1;
    }
    return 0;
}

/* json_object_set_new with a value that may be NULL from a failed
 * constructor. Returns -1 on any failure. */
static int set_new(json_t *obj, const char *key, json_t *value)
{
    if (!value) return -1;
    return json_object_set_new(obj, key, value);
}

static json_t *sign_payload(const char *sub, const char *name, const char *role,
                            const char *const *rooms, size_t nrooms,
                            int64_t iat, int64_t exp)
{
    json_t *p = json_object();
    if (!p) return NULL;
    if (set_new(p, "sub", json_string(sub)) < 0) goto fail;
    if (name && set_new(p, "name", json_string(name)) < 0) goto fail;
    if (role && set_new(p, "role", json_string(role)) < 0) goto fail;
    if (rooms) {
        json_t *arr = json_array();
        if (set_new(p, "rooms", arr) < 0) goto fail;
        for (size_t i = 0; i < nrooms; i++) {
            /* json_string(NULL) is NULL, caught by the append. */
            if (json_array_append_new(arr, json_string(rooms[i])) < 0) goto fail;
        }
    }
    if (set_new(p, "iat", json_integer((json_int_t)iat)) < 0) goto fail;
    if (exp && set_new(p, "exp", json_integer((json_int_t)exp)) < 0) goto fail;
    return p;
fail:
    json_decref(p);
    return NULL;
}

char *jwt_sign(const char *secret, const char *sub, const char *name,
               const char *role, const char *const *rooms, size_t nrooms,
               int64_t iat, int64_t exp)
{
    if (!secret || !*secret || !sub) return NULL;
    size_t klen = strlen(secret);
    if (klen > INT_MAX) return NULL;

    json_t *payload = sign_payload(sub, name, role, rooms, nrooms, iat, exp);
    if (!payload) return NULL;
    char *ptext = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    if (!ptext) return NULL;

    size_t hlen = base64url_encoded_len(sizeof sign_header - 1);
    size_t plen = base64url_encoded_len(strlen(ptext));
    char *tok = NULL;
    if (plen == SIZE_MAX || plen > SIZE_MAX - hlen - HS256_B64_LEN - 3) goto out;
    size_t total = hlen + 1 + plen + 1 + HS256_B64_LEN;
    tok = malloc(total + 1);
    if (!tok) goto out;

    /* Each encode writes a NUL that the next write overwrites. */
    base64url_encode(sign_header, sizeof sign_header - 1, tok, hlen + 1);
    tok[hlen] = '.';
    base64url_encode(ptext, strlen(ptext), tok + hlen + 1, plen + 1);
    tok[hlen + 1 + plen] = '.';

    uint8_t md[HS256_LEN];
    /* The slot after the verifying ones: signing does not re-key them. */
    if (hs256(HS256_SLOTS - 1, secret, klen, tok, hlen + 1 + plen, md) < 0) {
        free(tok);
        tok = NULL;
        goto out;
    }
    base64url_encode(md, HS256_LEN, tok + hlen + 1 + plen + 1, HS256_B64_LEN + 1);
    OPENSSL_cleanse(md, sizeof md);
out:
    free(ptext);
    return tok;
}

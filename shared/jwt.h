#ifndef CHATD_SHARED_JWT_H
#define CHATD_SHARED_JWT_H

/* HS256 JSON Web Tokens (RFC 7519, JWS compact form of RFC 7515) and the
 * chatd claims of PROTOCOL.md section 1.
 *
 * Tokens are bearer credentials: nothing here logs them, and no error text
 * ever quotes a token or any part of one (not even a decoded claim), so
 * callers may log the err text as is. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longer tokens are refused before any decoding. */
#define JWT_MAX_TOKEN_LEN 8192
/* Leeway for exp and nbf, for clock skew between issuer and us. */
#define JWT_LEEWAY_S 30
#define JWT_SUB_MAX_BYTES 64
#define JWT_NAME_MAX_CHARS 64
#define JWT_ROOMS_MAX 1000

/* Verification accepts a token signed with any of the listed secrets, so a
 * secret can be rotated (current and previous) without logging everyone
 * out. The strings are borrowed; NULL or empty entries are skipped (an
 * empty HMAC key would let anyone mint tokens), and verification fails
 * when no usable secret is left. */
struct jwt_secrets {
    const char *secrets[2];
    size_t count;
};

enum jwt_role { JWT_ROLE_VIEWER, JWT_ROLE_MEMBER, JWT_ROLE_ORGANIZER };

/* "viewer", "member", "organizer"; "?" for a value outside the enum. */
const char *jwt_role_name(enum jwt_role role);

/* Exact, case-sensitive match of the names above. Returns 0 and sets *out,
 * or -1 (*out untouched). */
int jwt_role_parse(const char *s, enum jwt_role *out);

/* Verified claims. Ownership: the struct owns one reference to rooms;
 * jwt_claims_clear drops it. A struct filled by a successful jwt_verify
 * must be cleared exactly once; after a failed jwt_verify it holds nothing
 * (clearing it anyway is harmless). Copying the struct does not copy the
 * reference: take json_incref for each copy that outlives the original. */
struct jwt_claims {
    char sub[JWT_SUB_MAX_BYTES + 1];  /* NUL-terminated, 1..64 bytes */
    /* NUL-terminated, 1..64 code points (at most 256 bytes); sub when the
     * token has no name. */
    char name[4 * JWT_NAME_MAX_CHARS + 1];
    enum jwt_role role;  /* JWT_ROLE_MEMBER when the token has none */
    /* Array of valid room name strings, or NULL when the token does not
     * restrict rooms. An empty array allows no room. Read-only: it may be
     * shared with other holders. */
    json_t *rooms;
    /* Seconds since the epoch. A fractional exp is rounded down and a
     * fractional nbf up, which decides exactly as comparing the exact values
     * with an integer now would. Values beyond int64_t are clamped. */
    int64_t exp, nbf;
    bool has_exp, has_nbf;
};

/* Verifies token[0..len) (no NUL needed; nothing past len is read) against
 * the secrets at time now_s (seconds since the epoch) and fills *out.
 *
 * Checks, in order: length (<= JWT_MAX_TOKEN_LEN); three strict base64url
 * segments; header a JSON object with "alg" exactly "HS256", "typ" if
 * present "JWT" in any case, and no "crit"; the HMAC-SHA256 signature
 * against each secret (constant-time compare); only then the payload: a
 * JSON object with the claims of PROTOCOL.md section 1 (sub, name, role,
 * rooms, exp, nbf with JWT_LEEWAY_S leeway). JSON with duplicate keys is
 * refused, so no two parsers can disagree about which value counts.
 *
 * Returns 0, or -1 with *out cleared and a short reason in err (may be
 * NULL when errlen is 0). Out of memory, a good token is refused as
 * malformed (jansson does not report allocation failure distinctly). *out is overwritten without being cleared first:
 * clear a previously filled struct before reusing it. */
int jwt_verify(const struct jwt_secrets *s, const char *token, size_t len,
               int64_t now_s, struct jwt_claims *out, char *err,
               size_t errlen);

/* Drops the rooms reference and resets *c. Safe on a cleared struct. */
void jwt_claims_clear(struct jwt_claims *c);

/* True when the token's rooms claim is absent or lists room (exact match). */
bool jwt_claims_allow_room(const struct jwt_claims *c, const char *room);

/* Mints an HS256 token with header {"alg":"HS256","typ":"JWT"} and payload
 * {"sub", "name" (when non-NULL), "role" (when non-NULL), "rooms" (when
 * rooms is non-NULL, even if nrooms is 0: that token allows no room),
 * "iat", "exp" (when non-zero)}. For chatctl and tests.
 *
 * The claims are not checked against the rules jwt_verify applies (so a
 * caller can mint, say, an unknown role to test refusal), beyond what JSON
 * needs: every string must be valid UTF-8 without NUL.
 *
 * Returns a malloc'd NUL-terminated token the caller frees, or NULL for a
 * NULL/empty secret, a NULL sub or room, invalid UTF-8, or allocation
 * failure. */
char *jwt_sign(const char *secret, const char *sub, const char *name,
               const char *role, const char *const *rooms, size_t nrooms,
               int64_t iat, int64_t exp);

#endif

#include "worker/http_query.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the byte at s[*i] (s has n bytes), advancing *i past it.
 * Returns the byte, or -1 for a '%' without two hex digits after it. */
static int decode_byte(const char *s, size_t n, size_t *i, bool plus_space)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '%') {
        if (n - *i < 3) return -1;
        int hi = hex_value((unsigned char)s[*i + 1]);
        int lo = hex_value((unsigned char)s[*i + 2]);
        if (hi < 0 || lo < 0) return -1;
        *i += 3;
        return hi << 4 | lo;
    }
    *i += 1;
    return (plus_space && c == '+') ? ' ' : c;
}

/* Whether the encoded key s[0..n) decodes to name[0..name_n). Decoding on
 * the fly avoids a key buffer and stops at the first differing byte. */
static bool key_is(const char *s, size_t n, const char *name, size_t name_n)
{
    size_t i = 0, j = 0;
    while (i < n) {
        int c = decode_byte(s, n, &i, true);
        /* A decoded NUL can never equal a byte of name before name_n. */
        if (c < 0 || j == name_n || (unsigned char)name[j] != c) return false;
        j++;
    }
    return j == name_n;
}

int http_query_get(struct http_str query, const char *name, char *out,
                   size_t outlen, size_t *outn)
{
    if (outlen > 0) out[0] = '\0';
    size_t name_n = strlen(name);
    const char *q = query.p;
    size_t n = query.n;
    /* Index arithmetic throughout: q may be NULL when n == 0. */
    for (size_t pos = 0; pos < n;) {
        const char *amp = memchr(q + pos, '&', n - pos);
        size_t pend = amp != NULL ? (size_t)(amp - q) : n;
        const char *eq = memchr(q + pos, '=', pend - pos);
        size_t kend = eq != NULL ? (size_t)(eq - q) : pend;

        if (pend > pos && key_is(q + pos, kend - pos, name, name_n)) {
            size_t vpos = eq != NULL ? kend + 1 : pend;
            const char *v = q + vpos;
            size_t vn = pend - vpos, o = 0;
            for (size_t i = 0; i < vn;) {
                int c = decode_byte(v, vn, &i, true);
                /* outlen - 1 leaves room for the NUL; o + 1 >= outlen
                 * cannot wrap since o < outlen whenever it is reached. */
                if (c <= 0 || o + 1 >= outlen) {
                    if (outlen > 0) out[0] = '\0';
                    return -1;
                }
                out[o++] = (char)c;
            }
            if (outlen == 0) return -1; /* not even room for the NUL */
            out[o] = '\0';
            if (outn != NULL) *outn = o;
            return 1;
        }
        pos = pend + 1;
    }
    return 0;
}

int http_query_get_i64(struct http_str query, const char *name, int64_t min,
                       int64_t max, int64_t *out)
{
    /* Room for leading zeros; a longer value is refused as not fitting. */
    char buf[64];
    size_t n;
    int r = http_query_get(query, name, buf, sizeof buf, &n);
    if (r != 1) return r;

    const char *s = buf;
    bool neg = false;
    if (*s == '-') {
        neg = true;
        s++;
        n--;
    }
    if (n == 0) return -1;

    uint64_t mag = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < '0' || c > '9') return -1;
        unsigned d = c - '0';
        if (mag > (UINT64_MAX - d) / 10) return -1;
        mag = mag * 10 + d;
    }
    int64_t v;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return -1;
        /* -(mag - 1) - 1 avoids negating INT64_MIN's magnitude as int64. */
        v = -(int64_t)(mag - 1) - 1;
    } else {
        if (mag > (uint64_t)INT64_MAX) return -1;
        v = (int64_t)mag;
    }
    if (v < min || v > max) return -1;
    *out = v;
    return 1;
}

int http_path_decode(struct http_str path, char *out, size_t outlen)
{
    if (outlen > 0) out[0] = '\0';
    if (path.n == 0 || path.p[0] != '/' || outlen == 0) return -1;

    size_t o = 0;
    for (size_t i = 0; i < path.n;) {
        int c = decode_byte(path.p, path.n, &i, false);
        /* Control bytes have no business in a file name and would end up
         * in log lines; a backslash is a separator on other systems. */
        if (c < 0x20 || c == 0x7f || c == '\\' || o + 1 >= outlen) {
            out[0] = '\0';
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';

    /* Checked on the decoded text, after "%2e%2e" and "%2f" became '.'
     * and '/', since that is what the file system will see. */
    for (size_t s = 0; s < o;) {
        size_t e = s + 1;
        while (e < o && out[e] != '/') e++;
        /* Segment out[s+1..e) after the '/' at s. */
        if (e - s == 3 && out[s + 1] == '.' && out[s + 2] == '.') {
            out[0] = '\0';
            return -1;
        }
        s = e;
    }
    if (o > INT_MAX) {
        out[0] = '\0';
        return -1;
    }
    return (int)o;
}

#include "worker/http_head.h"

#include <stdint.h>
#include <string.h>

/* Byte classes. One table lookup per byte keeps the hot loops (target,
 * header values) branch-light; the table is const, so the parser keeps no
 * mutable global state.
 *   C_TOKEN  tchar (RFC 9110 5.6.2): method and header names
 *   C_TARGET visible ASCII except '#': request-target after its first byte
 *   C_VALUE  field-value bytes: VCHAR, SP, HTAB, obs-text */
enum { C_TOKEN = 1, C_TARGET = 2, C_VALUE = 4 };

static const uint8_t byte_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 10 */
    4, 7, 6, 5, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, /* 20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, /* 30 */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, /* 50 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0, /* 70 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 80 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 90 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* a0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* b0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* c0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* d0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* e0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* f0 */
};

#define IS(cls, c) ((byte_class[(unsigned char)(c)] & (cls)) != 0)

/* Targets and header values are most of a head's bytes. They are skipped
 * eight at a time with word-wide tests (SWAR, portable, no SIMD
 * intrinsics); only a word holding a byte that might end the run or need
 * a closer look (a delimiter, a control byte, HTAB) is walked bytewise.
 * The "any byte" answers of these tests are exact: a borrow can only
 * produce false positives above a byte that is a true positive. */
#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_LESS(x, n) (((x) - ONES * (n)) & ~(x) & HIGHS) /* n <= 128 */
#define HAS_BYTE(x, b) HAS_LESS((x) ^ (ONES * (b)), 1)

static uint64_t load64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x); /* one unaligned load on common targets */
    return x;
}

/* Skips C_TARGET bytes; also stops at '?' when stop_at_q. */
static const unsigned char *skip_target(const unsigned char *p,
                                        const unsigned char *end,
                                        bool stop_at_q)
{
    for (;;) {
        if (end - p >= 8) {
            uint64_t x = load64(p);
            uint64_t stop = HAS_LESS(x, 0x21) | (x & HIGHS) |
                            HAS_BYTE(x, 0x7f) | HAS_BYTE(x, '#');
            if (stop_at_q) stop |= HAS_BYTE(x, '?');
            if (stop == 0) {
                p += 8;
                continue;
            }
        }
        if (p == end || !IS(C_TARGET, *p) || (stop_at_q && *p == '?'))
            return p;
        p++;
    }
}

/* Skips C_VALUE bytes. HTAB is a value byte but trips the word test like
 * any control byte; it is rare, and then passed one byte at a time. */
static const unsigned char *skip_value(const unsigned char *p,
                                       const unsigned char *end)
{
    for (;;) {
        if (end - p >= 8) {
            uint64_t x = load64(p);
            if ((HAS_LESS(x, 0x20) | HAS_BYTE(x, 0x7f)) == 0) {
                p += 8;
                continue;
            }
        }
        if (p == end || !IS(C_VALUE, *p)) return p;
        p++;
    }
}

/* Fewest bytes that can still complete a head from each partial state,
 * with bare-LF line ends. They let an incomplete head that can no longer
 * fit be refused with TOO_LARGE straight away instead of after the
 * client sends up to 8 KiB more; they must never overestimate, or a valid
 * head near the limit would be refused (the unit tests check prefixes of
 * exactly-8192-byte heads of every shape). */
#define REST_LINE      14 /* "A / HTTP/1.0\n\n" */
#define REST_METHOD    13 /* " / HTTP/1.0\n\n" */
#define REST_TARGET0   12 /* "/ HTTP/1.0\n\n" */
#define REST_TARGET    11 /* " HTTP/1.0\n\n" */
#define REST_VERSION(i) (10 - (i)) /* i bytes of "HTTP/1.x" seen, then "\n\n" */
#define REST_EOL        2 /* "\n\n": end of the request line or a header */
#define REST_NAME       3 /* ":\n\n" */
#define REST_BLANK      1 /* "\n" */

/* Out of input: AGAIN while a head could still end within the limit.
 * When len exceeded the limit the scan stopped at exactly
 * HTTP_HEAD_MAX_BYTES, so seen + rest > limit and this says TOO_LARGE. */
static int need_more(size_t seen, size_t rest)
{
    return seen + rest > HTTP_HEAD_MAX_BYTES ? HTTP_HEAD_TOO_LARGE
                                             : HTTP_HEAD_AGAIN;
}

static struct http_str mkstr(const unsigned char *b, const unsigned char *e)
{
    return (struct http_str){(const char *)b, (size_t)(e - b)};
}

int http_head_parse(const char *buf, size_t len, struct http_head *out)
{
    out->nheaders = 0;
    /* Before any pointer arithmetic: buf may be NULL when len is 0. */
    if (len == 0) return need_more(0, REST_LINE);

    const unsigned char *const start = (const unsigned char *)buf;
    /* Nothing beyond the limit can belong to an acceptable head, so the
     * scan never looks there; this also bounds the work per call. */
    const size_t scan = len < HTTP_HEAD_MAX_BYTES ? len : HTTP_HEAD_MAX_BYTES;
    const unsigned char *const end = start + scan;
    const unsigned char *p = start;

    /* RFC 9112 2.2: a server SHOULD ignore at least one empty line before
     * the request line (some clients send a CRLF after a POST body). */
    for (;;) {
        if (p == end) return need_more(scan, REST_LINE);
        if (*p == '\n') {
            p++;
        } else if (*p == '\r') {
            if (p + 1 == end) return need_more(scan, 1 + REST_LINE);
            if (p[1] != '\n') return HTTP_HEAD_BAD;
            p += 2;
        } else {
            break;
        }
    }

    /* method SP */
    const unsigned char *mark = p;
    while (p < end && IS(C_TOKEN, *p)) p++;
    if (p == end) return need_more(scan, REST_METHOD);
    if (p == mark || *p != ' ') return HTTP_HEAD_BAD;
    out->method = mkstr(mark, p);
    p++;

    /* request-target SP */
    if (p == end) return need_more(scan, REST_TARGET0);
    mark = p;
    const unsigned char *qmark = NULL;
    if (*p == '/') {
        /* Path, then query: the '?' is found in the same pass. */
        p = skip_target(p + 1, end, true);
        if (p < end && *p == '?') {
            qmark = p;
            p = skip_target(p + 1, end, false);
        }
    } else if (*p == '*') {
        if (!http_str_eq(out->method, "OPTIONS")) return HTTP_HEAD_BAD;
        p++;
    } else {
        return HTTP_HEAD_BAD;
    }
    if (p == end) return need_more(scan, REST_TARGET);
    if (*p != ' ') return HTTP_HEAD_BAD;
    out->target = mkstr(mark, p);
    if (qmark != NULL) {
        out->path = mkstr(mark, qmark);
        out->query = mkstr(qmark + 1, p);
    } else {
        out->path = out->target;
        out->query = mkstr(p, p);
    }
    p++;

    /* HTTP-version: byte by byte so that "HTTX" is refused as soon as the
     * X arrives rather than once the whole line is in. */
    static const char version[] = "HTTP/1.";
    for (size_t i = 0; i < sizeof version - 1; i++) {
        if (p == end) return need_more(scan, REST_VERSION(i));
        if (*p != (unsigned char)version[i]) return HTTP_HEAD_BAD;
        p++;
    }
    if (p == end) return need_more(scan, REST_VERSION(7));
    if (*p != '0' && *p != '1') return HTTP_HEAD_BAD;
    out->minor_version = *p - '0';
    p++;

    if (p == end) return need_more(scan, REST_EOL);
    if (*p == '\r') {
        p++;
        if (p == end) return need_more(scan, REST_EOL);
    }
    if (*p != '\n') return HTTP_HEAD_BAD;
    p++;

    /* Header lines until the empty line. */
    size_t n = 0;
    for (;;) {
        if (p == end) return need_more(scan, REST_BLANK);
        if (*p == '\n') {
            p++;
            break;
        }
        if (*p == '\r') {
            if (p + 1 == end) return need_more(scan, REST_BLANK);
            if (p[1] != '\n') return HTTP_HEAD_BAD;
            p += 2;
            break;
        }
        /* Catches obs-fold (SP/HTAB), an empty name (':') and control
         * bytes at the start of a line. */
        if (!IS(C_TOKEN, *p)) return HTTP_HEAD_BAD;
        /* A header line beyond the limit has started: no need to wait for
         * the rest of it. */
        if (n == HTTP_HEAD_MAX_HEADERS) return HTTP_HEAD_TOO_LARGE;

        struct http_header *h = &out->headers[n];
        mark = p;
        while (p < end && IS(C_TOKEN, *p)) p++;
        if (p == end) return need_more(scan, REST_NAME);
        /* Also refuses "Name : v" (RFC 9112 5.1: MUST reject). */
        if (*p != ':') return HTTP_HEAD_BAD;
        h->name = mkstr(mark, p);
        p++;

        while (p < end && (*p == ' ' || *p == '\t')) p++;
        mark = p;
        p = skip_value(p, end);
        if (p == end) return need_more(scan, REST_EOL);
        const unsigned char *vend = p;
        if (*p == '\r') {
            p++;
            if (p == end) return need_more(scan, REST_EOL);
        }
        if (*p != '\n') return HTTP_HEAD_BAD;
        p++;
        /* Leading OWS was skipped above, so trimming cannot cross mark. */
        while (vend > mark && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
        h->value = mkstr(mark, vend);
        n++;
    }
    out->nheaders = n;
    return (int)(p - start);
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Locale-independent, unlike strncasecmp: header names are ASCII and a
 * Turkish locale must not make "I" differ from "i". */
static bool mem_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    return true;
}

bool http_str_eq(struct http_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}

bool http_str_ieq(struct http_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && mem_ieq(s.p, lit, n);
}

const struct http_str *http_head_get(const struct http_head *h,
                                     const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (hd->name.n == n && mem_ieq(hd->name.p, name, n)) return &hd->value;
    }
    return NULL;
}

int http_head_count(const struct http_head *h, const char *name)
{
    size_t n = strlen(name);
    int count = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (hd->name.n == n && mem_ieq(hd->name.p, name, n)) count++;
    }
    return count;
}

bool http_token_list_has(struct http_str value, const char *token)
{
    size_t tn = strlen(token);
    if (tn == 0 || value.n == 0) return false;
    const char *p = value.p, *end = value.p + value.n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma != NULL ? comma : end;
        const char *b = p;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        const char *t = e;
        while (t > b && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - b) == tn && mem_ieq(b, token, tn)) return true;
        if (comma == NULL) break;
        p = comma + 1;
    }
    return false;
}

bool http_head_has_token(const struct http_head *h, const char *name, const char *token)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (hd->name.n == n && mem_ieq(hd->name.p, name, n) && http_token_list_has(hd->value, token))
            return true;
    }
    return false;
}

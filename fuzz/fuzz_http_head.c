// fuzz-sources: worker/http_head.c worker/http_query.c
/* libFuzzer target for the request-head parser and the query helpers.
 *
 * libFuzzer hands over a heap copy of exactly size bytes, so ASan catches
 * any read past len. Beyond memory safety this checks what the parser
 * promises:
 *   - a successful result is a head that a plain line-by-line reading of
 *     the buffer agrees with, every http_str lies inside it, and the
 *     grammar holds (token names, trimmed values, no control bytes);
 *   - parsing is deterministic and looks at nothing after the head;
 *   - a proper prefix of a complete head is AGAIN, and so is a prefix of
 *     an AGAIN input;
 *   - the query and path helpers keep their output contracts, and an
 *     integer they accept prints back to exactly the text it came from. */

#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "worker/http_head.h"
#include "worker/http_query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *g_buf;
static size_t g_len;

static void in_buf(struct http_str s)
{
    assert(s.n == 0 || s.p != NULL);
    if (s.n == 0) return;
    assert(s.p >= g_buf && s.p + s.n <= g_buf + g_len);
}

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* Next line of buf starting at *pos, without its LF and any CR before it. */
static struct http_str next_line(size_t *pos, size_t limit)
{
    const char *nl = memchr(g_buf + *pos, '\n', limit - *pos);
    assert(nl != NULL);
    struct http_str l = {g_buf + *pos, (size_t)(nl - (g_buf + *pos))};
    if (l.n > 0 && l.p[l.n - 1] == '\r') l.n--;
    *pos = (size_t)(nl - g_buf) + 1;
    return l;
}

/* Re-reads the head line by line and compares with what the parser said. */
static void check_against_lines(const struct http_head *h, size_t r)
{
    size_t pos = 0;
    struct http_str line;
    do line = next_line(&pos, r);
    while (line.n == 0);

    char want[HTTP_HEAD_MAX_BYTES + 32];
    int n = snprintf(want, sizeof want, "%.*s %.*s HTTP/1.%d",
                     (int)h->method.n, h->method.p, (int)h->target.n,
                     h->target.p, h->minor_version);
    assert(n > 0 && (size_t)n == line.n);
    assert(memcmp(want, line.p, line.n) == 0);
    assert(h->method.p == line.p);

    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        line = next_line(&pos, r);
        assert(hd->name.p == line.p);
        assert(line.n > hd->name.n && line.p[hd->name.n] == ':');
        size_t v = hd->name.n + 1;
        while (v < line.n && is_ows(line.p[v])) v++;
        assert(hd->value.p == line.p + v || hd->value.n == 0);
        for (size_t k = v + hd->value.n; k < line.n; k++)
            assert(is_ows(line.p[k]));
    }
    line = next_line(&pos, r);
    assert(line.n == 0);
    assert(pos == r);
}

static void check_grammar(const struct http_head *h)
{
    assert(h->method.n > 0);
    for (size_t i = 0; i < h->method.n; i++)
        assert(is_tchar((unsigned char)h->method.p[i]));
    assert(h->minor_version == 0 || h->minor_version == 1);

    assert(h->target.n > 0);
    assert(h->target.p[0] == '/' ||
           (h->target.n == 1 && h->target.p[0] == '*' &&
            http_str_eq(h->method, "OPTIONS")));
    for (size_t i = 0; i < h->target.n; i++) {
        unsigned char c = (unsigned char)h->target.p[i];
        assert(c > 0x20 && c < 0x7f && c != '#');
    }
    assert(h->path.p == h->target.p && h->path.n <= h->target.n);
    assert(memchr(h->path.p, '?', h->path.n) == NULL);
    if (h->path.n < h->target.n) {
        assert(h->target.p[h->path.n] == '?');
        assert(h->query.n == h->target.n - h->path.n - 1);
        if (h->query.n > 0) assert(h->query.p == h->path.p + h->path.n + 1);
    } else {
        assert(h->query.n == 0);
    }

    assert(h->nheaders <= HTTP_HEAD_MAX_HEADERS);
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        in_buf(hd->name);
        in_buf(hd->value);
        assert(hd->name.n > 0);
        for (size_t k = 0; k < hd->name.n; k++)
            assert(is_tchar((unsigned char)hd->name.p[k]));
        for (size_t k = 0; k < hd->value.n; k++) {
            unsigned char c = (unsigned char)hd->value.p[k];
            assert(c >= 0x80 || c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (hd->value.n > 0) {
            assert(!is_ows(hd->value.p[0]));
            assert(!is_ows(hd->value.p[hd->value.n - 1]));
        }
    }
}

/* Copies s into a NUL-terminated buffer; false when it holds a NUL or is
 * too long to be interesting. */
static int cstr(struct http_str s, char *out, size_t outlen)
{
    if (s.n >= outlen || (s.n > 0 && memchr(s.p, '\0', s.n) != NULL))
        return 0;
    if (s.n > 0) memcpy(out, s.p, s.n);
    out[s.n] = '\0';
    return 1;
}

static void check_lookup(const struct http_head *h)
{
    static char name[HTTP_HEAD_MAX_BYTES + 1];
    static char elem[HTTP_HEAD_MAX_BYTES + 1];
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (!cstr(hd->name, name, sizeof name)) continue;
        const struct http_str *v = http_head_get(h, name);
        assert(v != NULL);
        /* The first header with a case-insensitively equal name. */
        size_t first = 0;
        while (!http_str_ieq(h->headers[first].name, name)) first++;
        assert(first <= i && v == &h->headers[first].value);
        assert(http_head_count(h, name) >= 1);
        assert(http_str_eq(hd->name, name) && http_str_ieq(hd->name, name));

        /* Every trimmed, non-empty element of the value is found, in
         * either case. */
        struct http_str val = hd->value;
        size_t s = 0;
        while (s <= val.n) {
            size_t e = s;
            while (e < val.n && val.p[e] != ',') e++;
            size_t b = s, t = e;
            while (b < t && is_ows(val.p[b])) b++;
            while (t > b && is_ows(val.p[t - 1])) t--;
            struct http_str el = {val.p + b, t - b};
            if (el.n > 0 && cstr(el, elem, sizeof elem)) {
                assert(http_token_list_has(val, elem));
                for (size_t k = 0; k < el.n; k++)
                    if (elem[k] >= 'a' && elem[k] <= 'z') elem[k] ^= 0x20;
                assert(http_token_list_has(val, elem));
            }
            s = e + 1;
        }
    }
    assert(http_head_get(h, "") == NULL);
    (void)http_head_get(h, "Host");
    (void)http_head_count(h, "connection");
}

static void check_query_name(struct http_str q, const char *name)
{
    char out[64];
    size_t n = 777;
    int r = http_query_get(q, name, out, sizeof out, &n);
    assert(r >= -1 && r <= 1);
    if (r == 1) {
        assert(n < sizeof out && strlen(out) == n);
    } else {
        assert(n == 777 && out[0] == '\0');
    }

    int64_t v = 0;
    int ri = http_query_get_i64(q, name, INT64_MIN, INT64_MAX, &v);
    assert(ri >= -1 && ri <= 1);
    if (r == 0) assert(ri == 0);
    if (ri == 1) {
        /* Prints back to the decoded text without its leading zeros (and
         * without the sign of a zero). */
        assert(r == 1);
        const char *digits = out + (out[0] == '-');
        while (digits[0] == '0' && digits[1] != '\0') digits++;
        char want[80];
        snprintf(want, sizeof want, "%s%s", out[0] == '-' && strcmp(digits, "0") != 0 ? "-" : "",
                 digits);
        char back[32];
        snprintf(back, sizeof back, "%" PRId64, v);
        assert(strcmp(back, want) == 0);
        int64_t w = 0;
        assert(http_query_get_i64(q, name, v, v, &w) == 1 && w == v);
        if (v != INT64_MAX)
            assert(http_query_get_i64(q, name, v + 1, INT64_MAX, &w) == -1);
    }
}

static void check_query(struct http_str q)
{
    static const char *const names[] = {"room", "since", "limit", "before",
                                        "after", "token", "", "n"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_query_name(q, names[i]);

    /* The first raw key, when it needs no decoding, must be found. */
    if (q.n > 0) {
        size_t e = 0;
        while (e < q.n && q.p[e] != '&' && q.p[e] != '=') e++;
        struct http_str key = {q.p, e};
        char name[64];
        if (e > 0 && cstr(key, name, sizeof name) && !strpbrk(name, "%+")) {
            check_query_name(q, name);
            char out[16];
            assert(http_query_get(q, name, out, sizeof out, NULL) != 0);
        }
    }
}

static void check_path(struct http_str path)
{
    char out[256];
    int r = http_path_decode(path, out, sizeof out);
    assert(r >= -1);
    if (r < 0) {
        assert(out[0] == '\0');
        return;
    }
    assert((size_t)r < sizeof out && strlen(out) == (size_t)r);
    assert(out[0] == '/');
    assert(strchr(out, '\\') == NULL);
    for (int i = 0; i < r; i++) {
        unsigned char c = (unsigned char)out[i];
        assert(c >= 0x20 && c != 0x7f);
    }
    assert(strstr(out, "/../") == NULL);
    assert(!(r >= 3 && strcmp(out + r - 3, "/..") == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_buf = (const char *)data;
    g_len = size;
    struct http_head h, h2;
    int r = http_head_parse(g_buf, size, &h);

    switch (r) {
    case HTTP_HEAD_AGAIN:
        /* Could still end within the limit, so the limit is not reached. */
        assert(size < HTTP_HEAD_MAX_BYTES);
        if (size > 0) assert(http_head_parse(g_buf, size - 1, &h2) == r);
        break;
    case HTTP_HEAD_BAD:
    case HTTP_HEAD_TOO_LARGE:
        break;
    default: {
        assert(r > 0 && (size_t)r <= size && r <= HTTP_HEAD_MAX_BYTES);
        assert(g_buf[r - 1] == '\n');
        in_buf(h.method);
        in_buf(h.target);
        in_buf(h.path);
        in_buf(h.query);
        check_grammar(&h);
        check_against_lines(&h, (size_t)r);

        /* Nothing after the head matters. */
        assert(http_head_parse(g_buf, (size_t)r, &h2) == r);
        assert(memcmp(&h.method, &h2.method, 4 * sizeof h.method) == 0);
        assert(h2.nheaders == h.nheaders);
        assert(memcmp(h.headers, h2.headers,
                      h.nheaders * sizeof h.headers[0]) == 0);
        /* Prefixes ask for more. Every prefix would make this quadratic;
         * a few spread-out ones, including the last, catch early ends. */
        size_t ks[] = {(size_t)r - 1, (size_t)r / 2, (size_t)r / 3,
                       (size_t)r * 7 / 8, 0};
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
            assert(http_head_parse(g_buf, ks[i], &h2) == HTTP_HEAD_AGAIN);

        check_lookup(&h);
        check_query(h.query);
        check_path(h.path);
        break;
    }
    }

    /* The helpers take any bytes, not only what the parser accepted. */
    struct http_str raw = {g_buf, size < 512 ? size : 512};
    if (raw.n == 0) raw.p = NULL;
    check_query(raw);
    check_path(raw);
    (void)http_token_list_has(raw, "upgrade");
    return 0;
}

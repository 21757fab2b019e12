/* worker/http_head.c: request-head parser and header helpers.
 *
 * Every input the parser sees is copied so that it ends exactly at a
 * PROT_NONE page: reading even one byte past len crashes the test. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/http_head.h"

/* ---- guard page arena ---------------------------------------------- */

/* Room for the largest inputs below (a bit over HTTP_HEAD_MAX_BYTES plus
 * a pipelined follow-up). */
#define ARENA_DATA (64 * 1024)

static char *g_map;
static size_t g_map_len;
static char *g_guard; /* first byte of the PROT_NONE page */

static int arena_setup(void **state)
{
    (void)state;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (ARENA_DATA + pg - 1) / pg * pg;
    g_map_len = data + pg;
    void *m = mmap(NULL, g_map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    g_map = m;
    g_guard = g_map + data;
    if (mprotect(g_guard, pg, PROT_NONE) != 0) return -1;
    return 0;
}

static int arena_teardown(void **state)
{
    (void)state;
    munmap(g_map, g_map_len);
    return 0;
}

/* Copies data[0..n) so that it ends right at the guard page. */
static const char *at_guard(const void *data, size_t n)
{
    assert_true(n <= ARENA_DATA);
    char *dst = g_guard - n;
    if (n > 0) memcpy(dst, data, n);
    return dst;
}

/* Parses data[0..n) placed against the guard page. Results point into the
 * arena and stay valid until the next call. */
static int parse_g(const void *data, size_t n, struct http_head *h)
{
    return http_head_parse(at_guard(data, n), n, h);
}

static int parse_gs(const char *s, struct http_head *h)
{
    return parse_g(s, strlen(s), h);
}

/* Every http_str of a successful parse lies inside buf[0..n). */
static void assert_within(const struct http_head *h, const char *buf,
                          size_t n)
{
    const struct http_str *all[] = {&h->method, &h->target, &h->path,
                                    &h->query};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_true(all[i]->p >= buf);
        assert_true(all[i]->p + all[i]->n <= buf + n);
    }
    assert_true(h->nheaders <= HTTP_HEAD_MAX_HEADERS);
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        assert_true(hd->name.n > 0);
        assert_true(hd->name.p >= buf && hd->name.p + hd->name.n <= buf + n);
        assert_true(hd->value.p >= buf &&
                    hd->value.p + hd->value.n <= buf + n);
    }
}

static void assert_str(struct http_str s, const char *want)
{
    if (!http_str_eq(s, want))
        fail_msg("got \"%.*s\", want \"%s\"", (int)s.n, s.p ? s.p : "",
                 want);
}

/* A buffer built piecewise for the large-input tests. */
struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (n == 0) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_fill(struct sbuf *b, char c, size_t n)
{
    for (size_t i = 0; i < n; i++) sb_add(b, &c, 1);
}

/* ---- valid heads ---------------------------------------------------- */

static void test_get_several_headers(void **state)
{
    (void)state;
    static const char req[] =
        "GET /api/chat/messages?room=general&limit=20 HTTP/1.1\r\n"
        "Host: chat.example.com\r\n"
        "User-Agent: curl/8.5.0\r\n"
        "Accept: */*\r\n"
        "Authorization: Bearer abc.def.ghi\r\n"
        "\r\n";
    struct http_head h;
    int r = parse_g(req, sizeof req - 1, &h);
    assert_int_equal(r, sizeof req - 1);
    assert_within(&h, g_guard - (sizeof req - 1), (size_t)r);
    assert_str(h.method, "GET");
    assert_str(h.target, "/api/chat/messages?room=general&limit=20");
    assert_str(h.path, "/api/chat/messages");
    assert_str(h.query, "room=general&limit=20");
    assert_int_equal(h.minor_version, 1);
    assert_int_equal(h.nheaders, 4);
    assert_str(h.headers[0].name, "Host");
    assert_str(h.headers[0].value, "chat.example.com");
    assert_str(h.headers[1].name, "User-Agent");
    assert_str(h.headers[1].value, "curl/8.5.0");
    assert_str(h.headers[2].value, "*/*");
    assert_str(h.headers[3].name, "Authorization");
    assert_str(h.headers[3].value, "Bearer abc.def.ghi");
}

static void test_websocket_upgrade(void **state)
{
    (void)state;
    static const char req[] =
        "GET /api/chat?room=general&since=5120 HTTP/1.1\r\n"
        "Host: localhost:8080\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Upgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Origin: http://localhost:8080\r\n"
        "\r\n";
    struct http_head h;
    assert_int_equal(parse_g(req, sizeof req - 1, &h), sizeof req - 1);
    const struct http_str *conn = http_head_get(&h, "connection");
    assert_non_null(conn);
    assert_true(http_token_list_has(*conn, "upgrade"));
    assert_true(http_token_list_has(*conn, "Keep-Alive"));
    assert_false(http_token_list_has(*conn, "close"));
    const struct http_str *up = http_head_get(&h, "UPGRADE");
    assert_non_null(up);
    assert_true(http_str_ieq(*up, "WebSocket"));
    assert_false(http_str_eq(*up, "WebSocket"));
    assert_true(http_str_eq(*up, "websocket"));
    assert_str(*http_head_get(&h, "sec-websocket-key"),
               "dGhlIHNhbXBsZSBub25jZQ==");
    assert_str(h.query, "room=general&since=5120");
}

static void test_keep_alive_http10(void **state)
{
    (void)state;
    struct http_head h;
    int r = parse_gs("GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                     &h);
    assert_true(r > 0);
    assert_int_equal(h.minor_version, 0);
    assert_true(http_token_list_has(*http_head_get(&h, "Connection"),
                                    "keep-alive"));
    assert_str(h.path, "/healthz");
    assert_int_equal(h.query.n, 0);
}

static void test_pipelined(void **state)
{
    (void)state;
    static const char first[] = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char second[] = "GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n";
    char both[sizeof first + sizeof second];
    memcpy(both, first, sizeof first - 1);
    memcpy(both + sizeof first - 1, second, sizeof second);
    size_t total = sizeof first - 1 + sizeof second - 1;

    struct http_head h;
    int r = parse_g(both, total, &h);
    assert_int_equal(r, sizeof first - 1);
    assert_str(h.path, "/healthz");
    assert_int_equal(h.nheaders, 1);
    assert_str(h.headers[0].value, "a");

    r = parse_g(both + r, total - (size_t)r, &h);
    assert_int_equal(r, sizeof second - 1);
    assert_str(h.path, "/readyz");
    assert_str(h.headers[0].value, "b");

    /* A partial second request does not disturb the first either. */
    assert_int_equal(parse_g(both, sizeof first + 3, &h), sizeof first - 1);
    /* Nor do body bytes that would be malformed as a head. */
    static const char body[] =
        "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n\x00\x01\xff";
    assert_int_equal(parse_g(body, sizeof body - 1, &h), sizeof body - 4);
}

static void test_bare_lf_and_mixed(void **state)
{
    (void)state;
    struct http_head h;
    static const char lf[] = "GET /a?b=c HTTP/1.1\nHost: x\nX-A:  y \n\n";
    assert_int_equal(parse_gs(lf, &h), sizeof lf - 1);
    assert_int_equal(h.nheaders, 2);
    assert_str(h.headers[1].value, "y");
    static const char mixed[] = "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\n";
    assert_int_equal(parse_gs(mixed, &h), sizeof mixed - 1);
    assert_int_equal(h.nheaders, 2);
    static const char mixed2[] = "GET / HTTP/1.1\nHost: x\r\n\r\n";
    assert_int_equal(parse_gs(mixed2, &h), sizeof mixed2 - 1);
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    struct http_head h;
    static const char req[] = "\r\n\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    int r = parse_gs(req, &h);
    assert_int_equal(r, sizeof req - 1); /* the empty lines are consumed */
    assert_str(h.method, "GET");
    assert_int_equal(parse_gs("\r\n", &h), HTTP_HEAD_AGAIN);
    assert_int_equal(parse_gs("\r", &h), HTTP_HEAD_AGAIN);
    assert_int_equal(parse_g("", 0, &h), HTTP_HEAD_AGAIN);
    assert_int_equal(http_head_parse(NULL, 0, &h), HTTP_HEAD_AGAIN);
}

static void test_value_trimming(void **state)
{
    (void)state;
    struct http_head h;
    static const char req[] = "GET / HTTP/1.1\r\n"
                              "A:\r\n"
                              "B: \t \r\n"
                              "C:\t x \t y\t \r\n"
                              "D:z\r\n"
                              "E: \x80\xfe\xff \r\n"
                              "\r\n";
    assert_int_equal(parse_gs(req, &h), sizeof req - 1);
    assert_int_equal(h.nheaders, 5);
    assert_int_equal(h.headers[0].value.n, 0);
    assert_int_equal(h.headers[1].value.n, 0);
    assert_str(h.headers[2].value, "x \t y");
    assert_str(h.headers[3].value, "z");
    assert_str(h.headers[4].value, "\x80\xfe\xff");
}

static void test_targets(void **state)
{
    (void)state;
    struct http_head h;
    assert_true(parse_gs("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &h) > 0);
    assert_str(h.target, "*");
    assert_str(h.path, "*");
    assert_int_equal(h.query.n, 0);

    assert_true(parse_gs("GET /? HTTP/1.1\r\n\r\n", &h) > 0);
    assert_str(h.path, "/");
    assert_int_equal(h.query.n, 0);

    assert_true(parse_gs("GET /a?b?c=/d HTTP/1.1\r\n\r\n", &h) > 0);
    assert_str(h.path, "/a");
    assert_str(h.query, "b?c=/d");

    /* Characters browsers and curl send raw are accepted. */
    assert_true(parse_gs("GET /a|b^c[d]{e}\\f\"g<h>`i HTTP/1.1\r\n\r\n", &h) >
                0);

    assert_true(parse_gs("OPTIONS /api/chat/messages HTTP/1.1\r\n\r\n", &h) >
                0);
    assert_str(h.method, "OPTIONS");
    /* Unknown but well-formed methods are the handler's 405, not a 400. */
    assert_true(parse_gs("BREW /pot HTTP/1.1\r\n\r\n", &h) > 0);
    assert_str(h.method, "BREW");
}

/* ---- every byte boundary -------------------------------------------- */

struct bytes {
    const char *s;
    size_t n;
};
#define B(lit) {lit, sizeof(lit) - 1}

static const struct bytes valid_heads[] = {
    B("GET / HTTP/1.1\r\n\r\n"),
    B("GET / HTTP/1.0\n\n"),
    B("A / HTTP/1.0\n\n"),
    B("GET /api/chat?room=general&since=5 HTTP/1.1\r\n"
      "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n"),
    B("\r\n\nGET / HTTP/1.1\r\nA: b\n\r\n"),
    B("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
    B("POST /api HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
    B("GET / HTTP/1.1\r\nX-Empty:\r\nX-Sp: \t \r\nX-Trim:  a b \t\r\n\n"),
    B("GET /%7Euser/a;b,c@d:e!$&'()*+=?q=a%20b&x=/?? HTTP/1.1\r\n"
      "User-Agent: Mozilla/5.0 (X11) \x80\xff\r\n\r\n"),
    B("M-SEARCH!#$%&'*+.^_`|~ / HTTP/1.1\r\n"
      "!#$%&'*+-.^_`|~09AZaz: \"quoted\" <>{}\r\n\r\n"),
    B("GET /x HTTP/1.1\r\nA:b\r\nA: c\r\na:  d\r\n\r\n"),
};

/* Every proper prefix of a valid head must ask for more; the whole head
 * must give exactly its length, also with more bytes after it. */
static void check_split(const char *s, size_t n)
{
    struct http_head h;
    for (size_t k = 0; k < n; k++) {
        int r = parse_g(s, k, &h);
        if (r != HTTP_HEAD_AGAIN)
            fail_msg("prefix %zu of %zu: got %d, want AGAIN", k, n, r);
    }
    int r = parse_g(s, n, &h);
    if (r < 0 || (size_t)r != n) fail_msg("whole head of %zu: got %d", n, r);
    assert_within(&h, g_guard - n, n);

    static const char more[] = "GET /next HTTP/1.1\r\n\r\n";
    char *both = malloc(n + sizeof more);
    assert_non_null(both);
    memcpy(both, s, n);
    memcpy(both + n, more, sizeof more);
    r = parse_g(both, n + sizeof more - 1, &h);
    free(both);
    if (r < 0 || (size_t)r != n) fail_msg("pipelined %zu: got %d", n, r);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof valid_heads / sizeof valid_heads[0]; i++)
        check_split(valid_heads[i].s, valid_heads[i].n);
}

/* ---- malformed ------------------------------------------------------ */

/* Each input ends with its offending byte: the prefix without it must
 * still be AGAIN (so nothing is refused too early) and the whole must be
 * BAD (so it is refused as soon as that byte arrives), also when more
 * bytes follow. */
static const struct bytes malformed[] = {
    B("\x01"),                            /* control byte first */
    B("\x00"),                            /* NUL first */
    B("\xff"),                            /* non-ASCII first */
    B("\r\x01"),                          /* CR not followed by LF */
    B("\r\r"),                            /* CR CR */
    B(" "),                               /* empty method */
    B("\t"),
    B("GET\t"),                           /* HTAB as separator */
    B("GET  "),                           /* two SP */
    B("GE("),                             /* non-token in method */
    B("GET\x00"),
    B("G\x7f"),
    B("GET\r"),                           /* request line without target */
    B("GET\n"),
    B("GET x"),                           /* target without '/' */
    B("GET h"),                           /* absolute-form */
    B("CONNECT e"),                       /* authority-form */
    B("GET *"),                           /* asterisk-form on GET */
    B("OPTIONS *x"),
    B("OPTIONS **"),
    B("GET /a\x01"),                      /* control byte in target */
    B("GET /a\x00"),
    B("GET /a\x7f"),
    B("GET /a\x80"),                      /* non-ASCII in target */
    B("GET /a#"),                         /* fragment */
    B("GET /\t"),
    B("GET /\r"),                         /* HTTP/0.9 style */
    B("GET /\n"),
    B("GET /  "),                         /* two SP before version */
    B("GET / h"),                         /* lowercase version */
    B("GET / HTTP/2"),
    B("GET / HTTP/1.2"),
    B("GET / HTTP/1,"),
    B("GET / HTTPS"),
    B("GET / HTTP/1.10"),
    B("GET / HTTP/1.1 "),                 /* trailing SP */
    B("GET / HTTP/1.1\t"),
    B("GET / HTTP/1.1\rX"),               /* CR without LF */
    B("GET / HTTP/1.1\r\r"),
    B("GET / HTTP/1.1x"),
    B("GET /a?b c"),                      /* SP inside the target */
    B("GET / HTTP/1.1\r\n "),             /* obs-fold on the first line */
    B("GET / HTTP/1.1\r\nA: b\r\n\t"),    /* obs-fold */
    B("GET / HTTP/1.1\r\nA: b\n "),
    B("GET / HTTP/1.1\r\n:"),             /* empty name */
    B("GET / HTTP/1.1\r\nHost "),         /* SP before colon */
    B("GET / HTTP/1.1\r\nHost\t"),
    B("GET / HTTP/1.1\r\nHo("),           /* non-token in name */
    B("GET / HTTP/1.1\r\nHo/"),
    B("GET / HTTP/1.1\r\nHo\x80"),
    B("GET / HTTP/1.1\r\nHost\r"),        /* line without colon */
    B("GET / HTTP/1.1\r\nHost\n"),
    B("GET / HTTP/1.1\r\n\x00"),          /* NUL at line start */
    B("GET / HTTP/1.1\r\n\x01"),
    B("GET / HTTP/1.1\r\nA\x00"),         /* NUL in name */
    B("GET / HTTP/1.1\r\nA: b\x00"),      /* NUL in value */
    B("GET / HTTP/1.1\r\nA: \x00"),
    B("GET / HTTP/1.1\r\nA:\x00"),
    B("GET / HTTP/1.1\r\nA: b\x7f"),      /* DEL in value */
    B("GET / HTTP/1.1\r\nA: b\x0b"),      /* VT in value */
    B("GET / HTTP/1.1\r\nA: b\x1b"),      /* ESC in value */
    B("GET / HTTP/1.1\r\nA: b\rc"),       /* bare CR in value */
    B("GET / HTTP/1.1\r\nA: b\r\r"),
    B("GET / HTTP/1.1\r\nA: b\r\n\rX"),   /* CR then junk as the end */
    B("GET / HTTP/1.1\r\nA: b\r\n\r\r"),
};

static void test_malformed(void **state)
{
    (void)state;
    struct http_head h;
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        const struct bytes *m = &malformed[i];
        int r = parse_g(m->s, m->n - 1, &h);
        if (r != HTTP_HEAD_AGAIN)
            fail_msg("malformed[%zu] without its last byte: got %d", i, r);
        r = parse_g(m->s, m->n, &h);
        if (r != HTTP_HEAD_BAD) fail_msg("malformed[%zu]: got %d", i, r);

        char buf[256];
        assert_true(m->n + 4 <= sizeof buf);
        memcpy(buf, m->s, m->n);
        memcpy(buf + m->n, "\r\n\r\n", 4);
        r = parse_g(buf, m->n + 4, &h);
        if (r != HTTP_HEAD_BAD)
            fail_msg("malformed[%zu] + CRLFCRLF: got %d", i, r);
    }
}

/* ---- byte classes, checked against the RFC grammar written out here
 * independently of the parser's table ------------------------------- */

static int is_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_target_char(int c) { return c >= 0x21 && c <= 0x7e && c != '#'; }

static int is_value_char(int c)
{
    return (c >= 0x21 && c <= 0x7e) || c >= 0x80 || c == ' ' || c == '\t';
}

static int parse_fmt(struct http_head *h, const char *pre, size_t pad,
                     int c, const char *post)
{
    char buf[128];
    size_t a = strlen(pre), b = strlen(post);
    memcpy(buf, pre, a);
    memset(buf + a, pre[a - 1], pad); /* repeat the last byte of pre */
    buf[a + pad] = (char)c;
    memcpy(buf + a + pad + 1, post, b);
    return parse_g(buf, a + pad + 1 + b, h);
}

static void test_byte_classes(void **state)
{
    (void)state;
    struct http_head h;
    /* The padding moves the byte through every lane of the parser's
     * eight-byte word tests. */
    for (size_t pad = 0; pad < 10; pad++) {
        for (int c = 0; c < 256; c++) {
            int r = parse_fmt(&h, "G", pad, c, "T / HTTP/1.1\r\n\r\n");
            if ((r > 0) != is_tchar(c))
                fail_msg("method byte %#x pad %zu: %d", c, pad, r);

            r = parse_fmt(&h, "GET /a", pad, c, "b HTTP/1.1\r\n\r\n");
            if ((r > 0) != is_target_char(c))
                fail_msg("target byte %#x pad %zu: %d", c, pad, r);
            if (r > 0) assert_int_equal(h.target.n, 4 + pad);

            r = parse_fmt(&h, "GET /a?b", pad, c, "c HTTP/1.1\r\n\r\n");
            if ((r > 0) != is_target_char(c))
                fail_msg("query byte %#x pad %zu: %d", c, pad, r);
            if (r > 0) assert_int_equal(h.query.n, 3 + pad);

            r = parse_fmt(&h, "GET / HTTP/1.1\r\nX", pad, c, "Y: v\r\n\r\n");
            /* ':' just ends the name early: "X..." with value "Y: v". */
            if ((r > 0) != (is_tchar(c) || c == ':'))
                fail_msg("name byte %#x pad %zu: %d", c, pad, r);

            r = parse_fmt(&h, "GET / HTTP/1.1\r\nX: v", pad, c, "w\r\n\r\n");
            if ((r > 0) != is_value_char(c))
                fail_msg("value byte %#x pad %zu: %d", c, pad, r);
            if (r > 0) {
                assert_int_equal(h.headers[0].value.n, pad + 3);
                assert_int_equal((unsigned char)h.headers[0].value.p[pad + 1],
                                 c);
            }
        }
    }
}

/* ---- limits --------------------------------------------------------- */

/* Builds pre + fill * k + post with k chosen so the total is n bytes. */
static struct sbuf shaped(const char *pre, char fill, const char *post,
                          size_t n)
{
    struct sbuf b = {0};
    size_t fixed = strlen(pre) + strlen(post);
    assert_true(n >= fixed);
    sb_str(&b, pre);
    sb_fill(&b, fill, n - fixed);
    sb_str(&b, post);
    return b;
}

/* Heads with the bulk in each place a partial head can stop, so each of
 * the parser's "fewest bytes still needed" estimates is exercised right at
 * the limit. */
static const struct {
    const char *pre;
    char fill;
    const char *post;
} shapes[] = {
    {"GET /", 'a', " HTTP/1.1\r\n\r\n"},           /* long target */
    {"A /", 'a', " HTTP/1.0\n\n"},                 /* long target, bare LF */
    {"", 'M', " / HTTP/1.1\r\n\r\n"},              /* long method */
    {"", '\n', "GET / HTTP/1.1\r\n\r\n"},          /* leading empty lines */
    {"", '\n', "A / HTTP/1.0\n\n"},
    {"GET / HTTP/1.1\r\nX: ", 'v', "\r\n\r\n"},    /* long value */
    {"GET / HTTP/1.1\nX:", 'v', "\n\n"},
    {"GET / HTTP/1.1\r\nX: ", ' ', "v \r\n\r\n"},  /* long OWS */
    {"GET / HTTP/1.1\r\n", 'N', ": v\r\n\r\n"},    /* long name */
    {"GET / HTTP/1.1\r\n", 'N', ":\n\n"},
};

static void test_exact_limit_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        struct sbuf b =
            shaped(shapes[i].pre, shapes[i].fill, shapes[i].post,
                   HTTP_HEAD_MAX_BYTES);
        check_split(b.p, b.n); /* every prefix AGAIN, whole = 8192 */
        free(b.p);
    }
}

static void test_over_limit_refused(void **state)
{
    (void)state;
    struct http_head h;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        struct sbuf b =
            shaped(shapes[i].pre, shapes[i].fill, shapes[i].post,
                   HTTP_HEAD_MAX_BYTES + 1);
        assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
        /* One byte short of its end, it already cannot fit. */
        assert_int_equal(parse_g(b.p, b.n - 1, &h), HTTP_HEAD_TOO_LARGE);
        /* Growing input goes AGAIN..AGAIN, TOO_LARGE..TOO_LARGE. */
        int seen_large = 0;
        for (size_t k = 0; k <= b.n; k++) {
            int r = parse_g(b.p, k, &h);
            if (r == HTTP_HEAD_TOO_LARGE) {
                seen_large = 1;
            } else if (r != HTTP_HEAD_AGAIN || seen_large) {
                fail_msg("shape %zu prefix %zu: %d", i, k, r);
            }
        }
        /* More bytes do not change the verdict. */
        sb_str(&b, "GET / HTTP/1.1\r\n\r\n");
        assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
        free(b.p);
    }
}

static void test_limit_detected_early(void **state)
{
    (void)state;
    struct http_head h;
    /* A request line that has not ended: " HTTP/1.0\n\n" (11 bytes) is the
     * shortest possible rest. */
    struct sbuf b = shaped("GET /", 'a', "", HTTP_HEAD_MAX_BYTES - 11);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_AGAIN);
    sb_str(&b, "a");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    free(b.p);

    /* Inside a header value the rest is at least "\n\n". */
    b = shaped("GET / HTTP/1.1\r\nX: ", 'v', "", HTTP_HEAD_MAX_BYTES - 2);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_AGAIN);
    sb_str(&b, "v");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    free(b.p);

    /* 8193 bytes without an end: too large whatever they are. */
    b = shaped("GET / HTTP/1.1\r\nX: ", 'v', "", HTTP_HEAD_MAX_BYTES + 1);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    sb_fill(&b, 'v', 20000);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    free(b.p);

    /* A malformed byte within the limit wins over the size. */
    b = shaped("GET / HTTP/1.1\r\nX: \x01", 'v', "", HTTP_HEAD_MAX_BYTES + 50);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_BAD);
    free(b.p);
    /* ... but bytes past the limit are never looked at. */
    b = shaped("GET / HTTP/1.1\r\nX: ", 'v', "\x01", HTTP_HEAD_MAX_BYTES + 1);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    free(b.p);

    /* An 8192-byte head followed by a pipelined request. */
    b = shaped("GET / HTTP/1.1\r\nX: ", 'v', "\r\n\r\n", HTTP_HEAD_MAX_BYTES);
    sb_str(&b, "GET / HTTP/1.1\r\n\r\n");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_MAX_BYTES);
    free(b.p);
}

static struct sbuf with_headers(int count)
{
    struct sbuf b = {0};
    sb_str(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < count; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "X-H%d: value %d\r\n", i, i);
        sb_add(&b, line, (size_t)n);
    }
    return b;
}

static void test_header_count(void **state)
{
    (void)state;
    struct http_head h;
    struct sbuf b = with_headers(HTTP_HEAD_MAX_HEADERS);
    size_t body = b.n;
    sb_str(&b, "\r\n");
    check_split(b.p, b.n);
    assert_int_equal(parse_g(b.p, b.n, &h), (int)b.n);
    assert_int_equal(h.nheaders, HTTP_HEAD_MAX_HEADERS);
    assert_str(h.headers[99].name, "X-H99");
    assert_str(h.headers[99].value, "value 99");
    assert_int_equal(http_head_count(&h, "x-h5"), 1);

    /* The 101st line is refused as soon as it starts... */
    b.n = body;
    sb_str(&b, "X");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    /* ... while the end, or a fold, is still judged as such. */
    b.n = body;
    sb_str(&b, "\r");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_AGAIN);
    b.n = body;
    sb_str(&b, " x");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_BAD);
    free(b.p);

    b = with_headers(HTTP_HEAD_MAX_HEADERS + 1);
    sb_str(&b, "\r\n");
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    free(b.p);

    b = with_headers(1000);
    assert_int_equal(parse_g(b.p, b.n, &h), HTTP_HEAD_TOO_LARGE);
    free(b.p);
}

/* ---- helpers -------------------------------------------------------- */

static void test_lookup(void **state)
{
    (void)state;
    struct http_head h;
    static const char req[] = "GET / HTTP/1.1\r\n"
                              "Host: a\r\n"
                              "X-Dup: one\r\n"
                              "x-dup: two\r\n"
                              "X-DUP: three\r\n"
                              "Content-Type: text/plain\r\n"
                              "\r\n";
    assert_true(parse_gs(req, &h) > 0);
    assert_str(*http_head_get(&h, "host"), "a");
    assert_str(*http_head_get(&h, "HOST"), "a");
    assert_str(*http_head_get(&h, "x-dup"), "one"); /* first wins */
    assert_int_equal(http_head_count(&h, "X-Dup"), 3);
    assert_int_equal(http_head_count(&h, "host"), 1);
    assert_int_equal(http_head_count(&h, "missing"), 0);
    assert_null(http_head_get(&h, "missing"));
    assert_null(http_head_get(&h, "hos"));   /* prefix only */
    assert_null(http_head_get(&h, "hostx")); /* longer */
    assert_null(http_head_get(&h, ""));
    assert_str(*http_head_get(&h, "content-TYPE"), "text/plain");
    /* Only ASCII letters fold: '-' and '_' are distinct. */
    assert_null(http_head_get(&h, "content_type"));

    struct http_str s = {"Upgrade", 7};
    assert_true(http_str_eq(s, "Upgrade"));
    assert_false(http_str_eq(s, "upgrade"));
    assert_true(http_str_ieq(s, "uPGRADE"));
    assert_false(http_str_ieq(s, "Upgrad"));
    assert_false(http_str_ieq(s, "Upgrades"));
    struct http_str empty = {NULL, 0};
    assert_true(http_str_eq(empty, ""));
    assert_true(http_str_ieq(empty, ""));
    assert_false(http_str_eq(empty, "a"));
    /* '@' (0x40) and '`' (0x60) differ only in the case bit, yet are not
     * letters, so they must not compare equal. */
    struct http_str at = {"@[", 2};
    assert_false(http_str_ieq(at, "`{"));
}

static int tl(const char *value, const char *token)
{
    struct http_str v = {value, strlen(value)};
    return http_token_list_has(v, token);
}

static void test_token_list(void **state)
{
    (void)state;
    assert_true(tl("Upgrade", "upgrade"));
    assert_true(tl("keep-alive, Upgrade", "upgrade"));
    assert_true(tl("keep-alive, Upgrade", "KEEP-ALIVE"));
    assert_true(tl("keep-alive,Upgrade", "upgrade"));
    assert_true(tl(" \tUpgrade\t ", "upgrade"));
    assert_true(tl(",, ,upgrade,,", "upgrade"));
    assert_true(tl("a , b , c", "b"));
    assert_false(tl("keep-alive, Upgrade", "close"));
    assert_false(tl("upgrade-insecure-requests", "upgrade"));
    assert_false(tl("xupgrade", "upgrade"));
    assert_false(tl("upgrad", "upgrade"));
    assert_false(tl("up grade", "upgrade"));
    assert_false(tl("", "upgrade"));
    assert_false(tl(",,,", "upgrade"));
    assert_false(tl("a,,b", ""));
    assert_true(tl("websocket", "websocket"));
    struct http_str none = {NULL, 0};
    assert_false(http_token_list_has(none, "x"));

    /* At the guard page, with the token as the very last bytes. */
    static const char v[] = "keep-alive, upgrade";
    struct http_str g = {at_guard(v, sizeof v - 1), sizeof v - 1};
    assert_true(http_token_list_has(g, "Upgrade"));
    assert_false(http_token_list_has(g, "upgrades"));
    g.n = 0;
    assert_false(http_token_list_has(g, "Upgrade"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_several_headers),
        cmocka_unit_test(test_websocket_upgrade),
        cmocka_unit_test(test_keep_alive_http10),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_bare_lf_and_mixed),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_value_trimming),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_byte_classes),
        cmocka_unit_test(test_exact_limit_accepted),
        cmocka_unit_test(test_over_limit_refused),
        cmocka_unit_test(test_limit_detected_early),
        cmocka_unit_test(test_header_count),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_token_list),
    };
    return cmocka_run_group_tests(tests, arena_setup, arena_teardown);
}

#include "shared/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------------
 * The table
 *
 * Like Redis' static_configs[] and nginx's command tables: one row per
 * setting, and every consumer (parser, env names, dump, help, sample file,
 * reload check, validation) walks the same rows. The key is the field's
 * name (the macros stringify it), so the two cannot drift apart.
 * ---------------------------------------------------------------------- */

enum config_type {
    CT_STRING,     /* char[size], NUL-terminated; min = least length */
    CT_INT,        /* int; min..max inclusive */
    CT_DOUBLE,     /* double; min exclusive, max inclusive */
    CT_LOG_LEVEL,  /* enum log_level, by log_level_parse's names */
};

#define CF_RESTART    0x01u /* cannot change on reload (SIGHUP) */
#define CF_SECRET     0x02u /* never shown */
#define CF_URL_SECRET 0x04u /* may contain a password: mask it when shown */
#define CF_AUTO_CPUS  0x08u /* int that also accepts "auto" = online CPUs */
#define CF_REQUIRED   0x10u /* string that config_validate wants non-empty */

/* Checks a string value beyond its length. With c == NULL it only
 * checks; with a config it may also store what it parsed from the value
 * (allowed_origins fills the origins array), and must then succeed or
 * leave c untouched. Errors carry no key: the caller prefixes it. */
typedef int config_check_fn(const char *value, struct chat_config *c,
                            char *err, size_t errlen);

struct config_entry {
    const char *name;
    enum config_type type;
    unsigned flags;
    const char *def;      /* default, as written in a config file */
    const char *sample;   /* value in etc/chatd.conf when not def */
    long long min, max;
    size_t offset, size;
    config_check_fn *check;
    const char *allowed;  /* strings: what is accepted, for help and sample */
    const char *desc;
};

static config_check_fn check_bind, check_redis_url, check_pg_dsn, check_prefix,
    check_origins, check_instance_name, check_listen_mode;

#define FIELD_OF(key) \
    .offset = offsetof(struct chat_config, key), \
    .size = sizeof(((struct chat_config *)0)->key)

#define STR(key, fl, dflt, minlen, chk, allow, text)                      \
    { .name = #key, .type = CT_STRING, .flags = (fl), .def = (dflt),      \
      .min = (minlen), FIELD_OF(key), .check = (chk), .allowed = (allow), \
      .desc = (text) }
#define INT(key, fl, dflt, lo, hi, text)                                  \
    { .name = #key, .type = CT_INT, .flags = (fl), .def = (dflt),         \
      .min = (lo), .max = (hi), FIELD_OF(key), .desc = (text) }

static const struct config_entry config_table[] = {
    STR(bind, CF_RESTART, "127.0.0.1", 1, check_bind,
        "a numeric IPv4 or IPv6 address",
        "Address to listen on (0.0.0.0 or :: for every interface)."),
    INT(port, CF_RESTART, "8080", 1, 65535, "TCP port to listen on."),
    INT(workers, CF_RESTART | CF_AUTO_CPUS, "auto", 1, 256,
        "Worker processes on this host; auto = one per online CPU."),
    /* docs/architecture.md has the measurements behind the default. */
    STR(listen_mode, CF_RESTART, "reuseport", 1, check_listen_mode, "reuseport or shared",
        "reuseport: one listening socket per worker (the kernel spreads "
        "connections); shared: one socket all workers accept from."),
    { .name = "jwt_secret", .type = CT_STRING, .flags = CF_SECRET | CF_REQUIRED, .def = "",
      .sample = CONFIG_SAMPLE_JWT_SECRET, FIELD_OF(jwt_secret),
      .desc = "HS256 secret that signs access tokens. Required; use a long "
              "random string." },
    STR(jwt_secret_previous, CF_SECRET, "", 0, NULL, NULL,
        "A second secret still accepted while rotating jwt_secret; empty = none."),
    STR(redis_url, CF_URL_SECRET, "redis://127.0.0.1:6379/0", 1, check_redis_url,
        "redis://[[user]:password@]host[:port][/db]",
        "Redis server. Host names other than localhost are not resolved."),
    STR(pg_dsn, CF_URL_SECRET, "postgresql://chat@127.0.0.1:5432/chat", 1, check_pg_dsn,
        "a libpq URI or key=value string",
        "PostgreSQL server. Hosts are IP addresses or socket directories (or "
        "hostaddr is given): libpq would resolve a name with a blocking lookup."),
    INT(pg_pool_size, 0, "4", 1, 64, "PostgreSQL connections per worker."),
    /* Not reloadable: workers are replaced one by one on reload, and old
     * and new workers on different prefixes would not see each other's
     * messages or presence. */
    STR(redis_prefix, CF_RESTART, "chat:", 1, check_prefix,
        "1..64 characters, no whitespace",
        "Prefix of every Redis key and channel; the same on all hosts."),
    STR(allowed_origins, 0, "", 0, check_origins,
        "scheme://host[:port], comma-separated, at most 64",
        "Browser origins allowed to open a WebSocket or call the REST API; empty = any. "
        "chatd's own web client is checked like any page: list its origin if it is used."),
    INT(max_text_chars, 0, "2000", 1, 100000,
        "Longest message text, in code points."),
    INT(max_frame_bytes, 0, "16384", 125, 16777216,
        "Largest inbound WebSocket frame or message, in bytes."),
    INT(max_outbuf_bytes, 0, "1048576", 4096, 1073741824,
        "Unsent output a connection may hold, in bytes, before it is closed "
        "with 1013."),
    INT(max_conns_per_ip, 0, "0", 0, 1000000,
        "Open connections per client IP address (IPv6: per /64); 0 = no limit."),
    { .name = "rate_per_sec", .type = CT_DOUBLE, .def = "5", .min = 0,
      .max = 1000000, FIELD_OF(rate_per_sec),
      .desc = "Messages per second a user may send (token bucket refill rate)." },
    INT(rate_burst, 0, "10", 1, 1000000,
        "Messages a user may send at once (token bucket size)."),
    INT(edit_window_s, 0, "60", 1, 86400,
        "Seconds after sending during which a message may be edited."),
    INT(presence_ttl_s, 0, "30", 2, 3600,
        "Seconds a dead process's users may still show as online, at most."),
    INT(replay_max, 0, "1000", 1, 100000,
        "Most changed messages replayed to a client that reconnects with "
        "since."),
    INT(ping_interval_s, 0, "30", 1, 3600,
        "Seconds between server pings; a peer silent for twice this is closed."),
    INT(drain_timeout_s, 0, "10", 0, 3600,
        "Seconds a graceful stop waits for connections to close; 0 = close "
        "at once."),
    STR(static_dir, 0, "web", 1, NULL, NULL, "Directory of the files served at /."),
    { .name = "log_level", .type = CT_LOG_LEVEL, .def = "info",
      FIELD_OF(log_level),
      .desc = "Least severe log level written." },
    /* The master writes (and removes) the pid file once, at start. */
    STR(pid_file, CF_RESTART, "", 0, NULL, NULL,
        "File the master writes its process id to; empty = none."),
    /* The master derives each worker's Redis identity from it at start. */
    STR(instance_name, CF_RESTART, "", 0, check_instance_name,
        "up to 64 letters, digits, '.', '_' or '-'",
        "Name of this host in Redis records; empty = the host name."),
    INT(test_drop_publish_every, 0, "0", 0, 1000000,
        "Tests only: drop every n-th Redis PUBLISH to simulate loss; 0 = never."),
};

#define CONFIG_NENTRIES (sizeof config_table / sizeof config_table[0])

/* Longest config file line; longer ones are almost certainly not config. */
#define CONFIG_LINE_MAX 16384

#define MASK "********"

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ASCII only, so behaviour never depends on the locale. */
static bool is_blank(char ch) { return ch == ' ' || ch == '\t'; }
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}
static bool is_ctl(unsigned char ch) { return ch < 0x20 || ch == 0x7f; }
static char to_lower(char ch) { return (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch; }
static char to_upper(char ch) { return (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch; }

/* A value quoted for an error message: bounded, and with control bytes
 * replaced, so a hostile environment cannot forge log lines. */
#define SHOW_MAX 48
struct shown { char s[SHOW_MAX + 8]; };

static struct shown show(const char *v)
{
    struct shown o;
    size_t i = 0, k = 0;
    o.s[k++] = '\'';
    for (; v[i] != '\0' && i < SHOW_MAX; i++)
        o.s[k++] = is_ctl((unsigned char)v[i]) ? '?' : v[i];
    if (v[i] != '\0') {
        memcpy(o.s + k, "...", 3);
        k += 3;
    }
    o.s[k++] = '\'';
    o.s[k] = '\0';
    return o;
}

static void *field_ptr(struct chat_config *c, const struct config_entry *e)
{
    return (char *)c + e->offset;
}

static const void *field_cptr(const struct chat_config *c, const struct config_entry *e)
{
    return (const char *)c + e->offset;
}

static const struct config_entry *entry_find(const char *key)
{
    for (size_t i = 0; i < CONFIG_NENTRIES; i++)
        if (strcmp(config_table[i].name, key) == 0) return &config_table[i];
    return NULL;
}

static void env_name(const struct config_entry *e, char *out, size_t n)
{
    size_t k = 0;
    const char *pre = "CHAT_";
    while (*pre && k + 1 < n) out[k++] = *pre++;
    for (const char *p = e->name; *p && k + 1 < n; p++) out[k++] = to_upper(*p);
    out[k] = '\0';
}

/* Levenshtein distance of short ASCII strings; -1 if either is too long to
 * be worth a suggestion. */
static int edit_distance(const char *a, const char *b)
{
    enum { MAXL = 40 };
    size_t la = strlen(a), lb = strlen(b);
    if (la > MAXL || lb > MAXL) return -1;
    int prev[MAXL + 1], cur[MAXL + 1];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = to_lower(a[i - 1]) == to_lower(b[j - 1]) ? 0 : 1;
            int best = prev[j - 1] + cost;
            if (prev[j] + 1 < best) best = prev[j] + 1;
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
            cur[j] = best;
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

/* The closest key to a misspelt one, if it is close enough to be a typo. */
static const struct config_entry *entry_suggest(const char *key)
{
    const struct config_entry *best = NULL;
    int best_d = 3; /* at most two edits */
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        int d = edit_distance(key, config_table[i].name);
        if (d >= 0 && d < best_d) {
            best_d = d;
            best = &config_table[i];
        }
    }
    return best;
}

static void unknown_key_error(const char *key, char *err, size_t errlen)
{
    const struct config_entry *s = entry_suggest(key);
    if (s != NULL)
        errf(err, errlen, "unknown key %s (did you mean '%s'?)", show(key).s, s->name);
    else
        errf(err, errlen, "unknown key %s", show(key).s);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > INT_MAX ? INT_MAX : (int)n;
}

/* ------------------------------------------------------------------------
 * Value parsing
 * ---------------------------------------------------------------------- */

/* Decimal integer, optional leading '-', nothing else: strtoll alone would
 * also take leading blanks, '+', and trailing junk. */
static int parse_ll(const char *s, long long *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!is_digit(d[0])) return -1;
    for (const char *p = d; *p; p++)
        if (!is_digit(*p)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return -1;
    *out = v;
    return 0;
}

/* Decimal number ("5", "0.5", "2.5e1"). Rejects what strtod would also
 * take but a config should not mean: inf, nan, hex, blanks. Programs do
 * not call setlocale, so '.' is the decimal point. */
static int parse_decimal(const char *s, double *out)
{
    if (!is_digit(s[0]) && s[0] != '.') return -1;
    for (const char *p = s; *p; p++)
        if (!is_digit(*p) && *p != '.' && *p != 'e' && *p != 'E' && *p != '+' && *p != '-')
            return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Shortest text that reads back as the same double. */
static void format_double(double v, char *buf, size_t n)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void describe_allowed(const struct config_entry *e, char *buf, size_t n)
{
    switch (e->type) {
    case CT_INT:
        snprintf(buf, n, "an integer %lld..%lld%s", e->min, e->max,
                 (e->flags & CF_AUTO_CPUS) ? " or auto" : "");
        break;
    case CT_DOUBLE:
        snprintf(buf, n, "a number > %lld and <= %lld", e->min, e->max);
        break;
    case CT_LOG_LEVEL:
        snprintf(buf, n, "one of debug, info, warn, error");
        break;
    case CT_STRING:
        if (e->allowed != NULL)
            snprintf(buf, n, "%s", e->allowed);
        else if (e->min > 0)
            snprintf(buf, n, "text of %lld..%zu bytes", e->min, e->size - 1);
        else
            snprintf(buf, n, "text of up to %zu bytes", e->size - 1);
        break;
    }
}

static int set_string(struct chat_config *c, const struct config_entry *e,
                      const char *v, char *err, size_t errlen)
{
    size_t len = strlen(v);
    /* Secrets are never echoed; other values are, bounded, to help. */
    if (len >= e->size) {
        errf(err, errlen, "too long: %zu bytes, at most %zu", len, e->size - 1);
        return -1;
    }
    if ((long long)len < e->min) {
        errf(err, errlen, "must not be empty");
        return -1;
    }
    /* A newline or other control byte would break the one-line-per-setting
     * formats (config file, dump) and could forge log lines. A tab is
     * harmless there, and libpq and lists treat it as a blank. */
    for (size_t i = 0; i < len; i++) {
        if (is_ctl((unsigned char)v[i]) && v[i] != '\t') {
            errf(err, errlen, "must not contain control characters");
            return -1;
        }
    }
    if (e->check != NULL && e->check(v, c, err, errlen) < 0) return -1;
    memcpy(field_ptr(c, e), v, len + 1);
    return 0;
}

/* Sets one entry. Error text carries no key; callers prefix it. */
static int entry_set(struct chat_config *c, const struct config_entry *e,
                     const char *v, char *err, size_t errlen)
{
    char allowed[128];
    switch (e->type) {
    case CT_STRING:
        return set_string(c, e, v, err, errlen);
    case CT_INT: {
        long long n;
        if ((e->flags & CF_AUTO_CPUS) && strcmp(v, "auto") == 0) {
            int cpus = online_cpus();
            n = cpus < e->min ? e->min : cpus > e->max ? e->max : cpus;
        } else if (parse_ll(v, &n) < 0 || n < e->min || n > e->max) {
            describe_allowed(e, allowed, sizeof allowed);
            errf(err, errlen, "expected %s, got %s", allowed, show(v).s);
            return -1;
        }
        *(int *)field_ptr(c, e) = (int)n;
        return 0;
    }
    case CT_DOUBLE: {
        double d;
        if (parse_decimal(v, &d) < 0 || !(d > (double)e->min) || d > (double)e->max) {
            describe_allowed(e, allowed, sizeof allowed);
            errf(err, errlen, "expected %s, got %s", allowed, show(v).s);
            return -1;
        }
        *(double *)field_ptr(c, e) = d;
        return 0;
    }
    case CT_LOG_LEVEL: {
        enum log_level lv;
        if (log_level_parse(v, &lv) < 0) {
            describe_allowed(e, allowed, sizeof allowed);
            errf(err, errlen, "expected %s, got %s", allowed, show(v).s);
            return -1;
        }
        *(enum log_level *)field_ptr(c, e) = lv;
        return 0;
    }
    }
    errf(err, errlen, "internal error: bad setting type");
    return -1;
}

/* ------------------------------------------------------------------------
 * String checks
 * ---------------------------------------------------------------------- */

static int check_bind(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    (void)c;
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, addr) == 1 || inet_pton(AF_INET6, v, addr) == 1) return 0;
    errf(err, errlen,
         "expected a numeric IPv4 or IPv6 address (names are not resolved), got %s",
         show(v).s);
    return -1;
}

/* One element of libpq's host list: a socket directory (or abstract
 * socket), a numeric address, or empty (the default socket). */
static bool pg_host_needs_no_lookup(const char *h, size_t n)
{
    char buf[64];
    if (n == 0 || h[0] == '/' || h[0] == '@') return true;
    if (n >= sizeof buf) return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/* libpq resolves a host name with a blocking getaddrinfo() inside
 * PQconnectStart, which runs in a worker's event loop: a name (even
 * localhost) is refused here, as for redis_url. */
static int check_pg_dsn(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    (void)c;
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(v, &why);
    if (!opts) {
        /* libpq's reason may quote the string, password and all. */
        errf(err, errlen, why ? "not a libpq connection string" : "out of memory");
        PQfreemem(why);
        return -1;
    }
    const char *host = NULL, *hostaddr = NULL;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0]) continue;
        if (strcmp(o->keyword, "host") == 0) host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
    }
    int rc = 0;
    for (const char *h = hostaddr ? NULL : host; h;) {
        size_t n = strcspn(h, ",");
        if (!pg_host_needs_no_lookup(h, n)) {
            /* Not quoted: a password written without its '@' lands here. */
            errf(err, errlen, "hosts must be IP addresses (127.0.0.1 for localhost) or socket "
                              "directories, or hostaddr given: a name would be looked up, "
                              "blocking a worker");
            rc = -1;
            break;
        }
        h = h[n] ? h + n + 1 : NULL;
    }
    PQconninfoFree(opts);
    return rc;
}

static int check_redis_url(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    (void)c;
    return config_parse_redis_url(v, NULL, 0, NULL, NULL, NULL, 0, err, errlen);
}

static int check_prefix(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    (void)c;
    /* Keys and channel names go into commands unquoted in redis-cli and
     * logs; whitespace there only causes confusion. */
    for (const char *p = v; *p; p++) {
        if (is_blank(*p)) {
            errf(err, errlen, "must not contain whitespace, got %s", show(v).s);
            return -1;
        }
    }
    return 0;
}

static int check_instance_name(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    (void)c;
    /* It becomes part of Redis keys that other tools split on ':'. */
    for (const char *p = v; *p; p++) {
        if (!is_alpha(*p) && !is_digit(*p) && *p != '.' && *p != '_' && *p != '-') {
            errf(err, errlen, "expected letters, digits, '.', '_' and '-' only, got %s",
                 show(v).s);
            return -1;
        }
    }
    return 0;
}

static int check_listen_mode(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    (void)c;
    if (strcmp(v, "reuseport") == 0 || strcmp(v, "shared") == 0) return 0;
    errf(err, errlen, "expected reuseport or shared, got %s", show(v).s);
    return -1;
}

/* Is s[0..n) an origin as browsers send it: scheme://host[:port]? */
static bool origin_valid(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_alpha(s[0])) return false;
    while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (n - i < 3 || memcmp(s + i, "://", 3) != 0) return false;
    i += 3;
    if (i < n && s[i] == '[') {
        size_t close = i + 1;
        while (close < n && s[close] != ']') close++;
        char a6[INET6_ADDRSTRLEN];
        size_t alen = close - i - 1;
        unsigned char addr[sizeof(struct in6_addr)];
        if (close >= n || alen == 0 || alen >= sizeof a6) return false;
        memcpy(a6, s + i + 1, alen);
        a6[alen] = '\0';
        if (inet_pton(AF_INET6, a6, addr) != 1) return false;
        i = close + 1;
    } else {
        size_t start = i;
        while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '-' || s[i] == '.' || s[i] == '_'))
            i++;
        if (i == start) return false;
    }
    if (i == n) return true;
    if (s[i] != ':') return false;
    i++;
    long port = 0;
    size_t digits = 0;
    for (; i < n && is_digit(s[i]) && digits < 6; i++, digits++) port = port * 10 + (s[i] - '0');
    return i == n && digits > 0 && port >= 1 && port <= 65535;
}

/* Splits allowed_origins. With out == NULL only checks and counts. */
static int origins_parse(const char *raw, char (*out)[CONFIG_ORIGIN_MAX], int *count,
                         char *err, size_t errlen)
{
    int k = 0;
    const char *p = raw;
    while (is_blank(*p)) p++;
    if (*p == '\0') {
        *count = 0;
        return 0;
    }
    for (p = raw;;) {
        const char *end = strchr(p, ',');
        if (end == NULL) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && is_blank(*a)) a++;
        while (b > a && is_blank(b[-1])) b--;
        size_t n = (size_t)(b - a);
        /* One byte more than show() prints, so it marks a cut with "...". */
        char one[SHOW_MAX + 2];
        snprintf(one, sizeof one, "%.*s", (int)(n <= SHOW_MAX ? n : SHOW_MAX + 1), a);
        if (n == 0) {
            errf(err, errlen, "empty entry in the list (stray comma?)");
            return -1;
        }
        if (n == 1 && a[0] == '*') {
            errf(err, errlen, "'*' is not supported: leave allowed_origins empty to allow any origin");
            return -1;
        }
        if (n >= CONFIG_ORIGIN_MAX) {
            errf(err, errlen, "origin %s is longer than %d bytes", show(one).s, CONFIG_ORIGIN_MAX - 1);
            return -1;
        }
        if (!origin_valid(a, n)) {
            errf(err, errlen, "%s is not an origin: expected scheme://host[:port], no path",
                 show(one).s);
            return -1;
        }
        if (k == CONFIG_MAX_ORIGINS) {
            errf(err, errlen, "more than %d origins", CONFIG_MAX_ORIGINS);
            return -1;
        }
        if (out != NULL) {
            memcpy(out[k], a, n);
            out[k][n] = '\0';
        }
        k++;
        if (*end == '\0') break;
        p = end + 1;
    }
    *count = k;
    return 0;
}

static int check_origins(const char *v, struct chat_config *c, char *err, size_t errlen)
{
    int count;
    /* Check first, then fill: a bad list leaves the old one in place. */
    if (origins_parse(v, NULL, &count, err, errlen) < 0) return -1;
    if (c != NULL) {
        origins_parse(v, c->origins, &c->origins_count, NULL, 0);
        for (int i = c->origins_count; i < CONFIG_MAX_ORIGINS; i++) c->origins[i][0] = '\0';
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Redis URL
 * ---------------------------------------------------------------------- */

static int hexval(char ch)
{
    if (is_digit(ch)) return ch - '0';
    ch = to_lower(ch);
    return (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (size outlen). */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (n - i < 3) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0') return -1;
            i += 2;
        }
        if (k + 1 >= outlen) return -1;
        out[k++] = ch;
    }
    if (outlen == 0) return -1;
    out[k] = '\0';
    return 0;
}

static int copy_out(char *dst, size_t dstlen, const char *src)
{
    if (dst == NULL) return 0;
    size_t len = strlen(src);
    if (len >= dstlen) return -1;
    memcpy(dst, src, len + 1);
    return 0;
}

int config_parse_redis_url(const char *url, char *host, size_t hostlen,
                           int *port, int *db, char *password, size_t pwlen,
                           char *err, size_t errlen)
{
    static const char form[] = "redis://[[user]:password@]host[:port][/db]";
    if (url == NULL || strncasecmp(url, "redis://", 8) != 0) {
        if (url != NULL && strncasecmp(url, "rediss://", 9) == 0)
            errf(err, errlen, "TLS (rediss://) is not supported");
        else
            errf(err, errlen, "expected %s", form);
        return -1;
    }
    const char *auth = url + 8;
    const char *auth_end = auth + strcspn(auth, "/?#");

    /* The last '@' ends the user info, so a password may hold a literal
     * '@' (but '/', '?' and '#' must be percent-encoded). */
    const char *at = NULL;
    for (const char *p = auth; p < auth_end; p++)
        if (*p == '@') at = p;

    char pw[CONFIG_URL_MAX] = "";
    const char *hp = auth;
    if (at != NULL) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon == NULL) {
            errf(err, errlen, "expected [user]:password@ before the host "
                              "(a password alone is written redis://:password@host)");
            return -1;
        }
        char user[64];
        if (pct_decode(auth, (size_t)(colon - auth), user, sizeof user) < 0 ||
            (user[0] != '\0' && strcmp(user, "default") != 0)) {
            /* hiredis would need AUTH user pass; one field for a password
             * keeps the settings simple, and ACL users are not needed. */
            errf(err, errlen, "only the user 'default' is supported (or none: redis://:password@host)");
            return -1;
        }
        if (pct_decode(colon + 1, (size_t)(at - colon - 1), pw, sizeof pw) < 0) {
            errf(err, errlen, "bad percent-encoding in the password");
            return -1;
        }
        hp = at + 1;
    }

    /* The host is never echoed: a URL written without the '@' would put a
     * password there. */
    char h[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    const char *p = hp;
    if (p < auth_end && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        size_t len = close ? (size_t)(close - p - 1) : 0;
        if (close == NULL || len == 0 || len >= sizeof h) {
            errf(err, errlen, "bad [IPv6] host");
            return -1;
        }
        memcpy(h, p + 1, len);
        h[len] = '\0';
        if (inet_pton(AF_INET6, h, addr) != 1) {
            errf(err, errlen, "bad [IPv6] host");
            return -1;
        }
        p = close + 1;
    } else {
        const char *hend = p;
        while (hend < auth_end && *hend != ':') hend++;
        size_t len = (size_t)(hend - p);
        if (len == 0) {
            errf(err, errlen, "missing host (expected %s)", form);
            return -1;
        }
        if (len < sizeof h) {
            memcpy(h, p, len);
            h[len] = '\0';
        } else {
            h[0] = '\0';
        }
        if (strcasecmp(h, "localhost") == 0) {
            snprintf(h, sizeof h, "127.0.0.1");
        } else if (inet_pton(AF_INET, h, addr) != 1) {
            errf(err, errlen, "host must be an IPv4 address, [IPv6 address] or localhost "
                              "(workers do not resolve names)");
            return -1;
        }
        p = hend;
    }

    long prt = 6379;
    if (p < auth_end) {
        /* After the host only ":port" may follow ("[::1]x" lands here). */
        size_t digits = (size_t)(auth_end - p - 1);
        prt = 0;
        bool ok = *p == ':' && digits >= 1 && digits <= 5;
        for (const char *q = p + 1; ok && q < auth_end; q++) {
            if (!is_digit(*q)) ok = false;
            else prt = prt * 10 + (*q - '0');
        }
        if (!ok || prt < 1 || prt > 65535) {
            errf(err, errlen, "port must be an integer 1..65535");
            return -1;
        }
    }

    long dbn = 0;
    p = auth_end;
    if (*p == '/') {
        p++;
        for (; is_digit(*p); p++) {
            if (dbn > (INT_MAX - (*p - '0')) / 10) break;
            dbn = dbn * 10 + (*p - '0');
        }
        if (*p != '\0' && *p != '?' && *p != '#') {
            errf(err, errlen, "database must be an integer 0..%d", INT_MAX);
            return -1;
        }
    }
    if (*p != '\0') {
        errf(err, errlen, "query and fragment are not supported (expected %s)", form);
        return -1;
    }

    if (copy_out(host, hostlen, h) < 0) {
        errf(err, errlen, "host buffer too small");
        return -1;
    }
    if (copy_out(password, pwlen, pw) < 0) {
        errf(err, errlen, "password buffer too small");
        return -1;
    }
    if (port != NULL) *port = (int)prt;
    if (db != NULL) *db = (int)dbn;
    return 0;
}

/* ------------------------------------------------------------------------
 * Masking secrets for display
 * ---------------------------------------------------------------------- */

struct sbuf {
    char *s;
    size_t cap, len;
    bool overflow;
};

static void sb_put(struct sbuf *b, const char *p, size_t n)
{
    if (b->len + n >= b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *p) { sb_put(b, p, strlen(p)); }

/* scheme://user:PASSWORD@host/...?...&password=PASSWORD&... */
static int mask_uri(const char *v, struct sbuf *b)
{
    const char *auth = strstr(v, "://");
    if (auth == NULL) return -1;
    auth += 3;
    const char *auth_end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth_end; p++)
        if (*p == '@') at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
        sb_put(b, v, (size_t)(colon + 1 - v));
        sb_puts(b, MASK);
        sb_put(b, at, (size_t)(auth_end - at));
    } else {
        sb_put(b, v, (size_t)(auth_end - v));
    }
    /* libpq also takes the password as a query parameter. */
    const char *p = auth_end;
    const char *q = strchr(p, '?');
    if (q == NULL) {
        sb_puts(b, p);
        return 0;
    }
    sb_put(b, p, (size_t)(q + 1 - p));
    p = q + 1;
    while (*p) {
        size_t plen = strcspn(p, "&#");
        const char *eq = memchr(p, '=', plen);
        if (eq != NULL && (size_t)(eq - p) == 8 && memcmp(p, "password", 8) == 0) {
            sb_put(b, p, 9);
            sb_puts(b, MASK);
        } else {
            sb_put(b, p, plen);
        }
        p += plen;
        if (*p == '&') {
            sb_put(b, "&", 1);
            p++;
        } else {
            sb_puts(b, p); /* fragment or end */
            break;
        }
    }
    return 0;
}

/* libpq key=value form: "host=x password='a b' dbname=y". Values are
 * bare words or single-quoted, with backslash escapes in both. */
static int mask_kv(const char *v, struct sbuf *b)
{
    const char *p = v;
    for (;;) {
        const char *ws = p;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        sb_put(b, ws, (size_t)(p - ws));
        if (*p == '\0') return 0;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ' && *p != '\t') p++;
        size_t klen = (size_t)(p - k);
        sb_put(b, k, klen);
        ws = p;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != '=') return -1;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        sb_put(b, ws, (size_t)(p - ws));
        const char *val = p;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1]) p++;
            if (*p != '\'') return -1;
            p++;
        } else {
            for (; *p && *p != ' ' && *p != '\t'; p++)
                if (*p == '\\' && p[1]) p++;
        }
        if (klen == 8 && memcmp(k, "password", 8) == 0)
            sb_puts(b, MASK);
        else
            sb_put(b, val, (size_t)(p - val));
    }
}

/* Does v start with "scheme://"? Only then is it a URI: a key=value
 * string may hold "://" inside a (password) value. */
static bool is_uri(const char *v)
{
    const char *p = v;
    if (!is_alpha(*p)) return false;
    while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.') p++;
    return strncmp(p, "://", 3) == 0;
}

/* Writes v with any password replaced by MASK. Anything it cannot parse
 * is masked whole: a dump must never leak. */
static void mask_secrets(const char *v, char *out, size_t outlen)
{
    struct sbuf b = {out, outlen, 0, false};
    out[0] = '\0';
    int rc = is_uri(v) ? mask_uri(v, &b) : mask_kv(v, &b);
    if (rc < 0 || b.overflow) snprintf(out, outlen, "%s", MASK);
}

/* ------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------- */

/* Quotes a value when config_load_file would otherwise read it back
 * differently: empty, edge blanks, a leading quote, or " #". */
static void write_value(FILE *out, const char *v)
{
    size_t len = strlen(v);
    bool quote = len == 0 || is_blank(v[0]) || is_blank(v[len - 1]) || v[0] == '"';
    for (size_t i = 1; i < len && !quote; i++)
        if (v[i] == '#' && is_blank(v[i - 1])) quote = true;
    fprintf(out, quote ? "\"%s\"" : "%s", v);
}

/* The value as text; buf must hold at least CONFIG_DSN_MAX * 2. */
static const char *entry_text(const struct chat_config *c, const struct config_entry *e,
                              bool mask, char *buf, size_t n)
{
    const void *f = field_cptr(c, e);
    switch (e->type) {
    case CT_STRING: {
        const char *s = f;
        if (mask && (e->flags & CF_SECRET) && s[0] != '\0') return MASK;
        if (mask && (e->flags & CF_URL_SECRET)) {
            mask_secrets(s, buf, n);
            return buf;
        }
        return s;
    }
    case CT_INT:
        snprintf(buf, n, "%d", *(const int *)f);
        return buf;
    case CT_DOUBLE:
        format_double(*(const double *)f, buf, n);
        return buf;
    case CT_LOG_LEVEL:
        return log_level_name(*(const enum log_level *)f);
    }
    return "";
}

void config_dump(const struct chat_config *c, FILE *out)
{
    char buf[CONFIG_DSN_MAX * 2];
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        const struct config_entry *e = &config_table[i];
        fprintf(out, "%s = ", e->name);
        write_value(out, entry_text(c, e, true, buf, sizeof buf));
        fputc('\n', out);
    }
}

void config_print_help(FILE *out)
{
    char env[64], allowed[128];
    fprintf(out,
            "Settings, by config file key and environment variable. Later sources win:\n"
            "defaults, then the config file (-c FILE, else $%s), then the\n"
            "environment, then flags. [restart]: not applied on reload (SIGHUP).\n\n",
            CONFIG_ENV_FILE);
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        const struct config_entry *e = &config_table[i];
        env_name(e, env, sizeof env);
        describe_allowed(e, allowed, sizeof allowed);
        const char *def = (e->flags & CF_REQUIRED) ? "none, required"
                          : e->def[0] ? e->def : "(empty)";
        fprintf(out, "  %-24s %-30s default: %s\n      %s\n      Value: %s.%s\n", e->name,
                env, def, e->desc, allowed, (e->flags & CF_RESTART) ? " [restart]" : "");
    }
}

void config_print_sample(FILE *out)
{
    char env[64], allowed[128];
    fprintf(out,
            "# chatd and chatctl configuration: every setting, at its default.\n"
            "#\n"
            "# Generated from the settings table in shared/config.c; regenerate with\n"
            "#   bin/tests/test_config --print-sample > etc/chatd.conf\n"
            "# (a unit test fails when this file and the table disagree).\n"
            "#\n"
            "# Format: key = value; '#' starts a comment (at the start of a line, or\n"
            "# after a blank following the value); double quotes keep a value's edge\n"
            "# blanks or a ' #'. Each key may appear once.\n"
            "# Every setting can also be given as an environment variable, CHAT_ and\n"
            "# the key in upper case (CHAT_PORT, CHAT_JWT_SECRET, ...), which overrides\n"
            "# this file; command-line flags override both.\n"
            "# Settings marked [restart] are not applied by a reload (SIGHUP).\n");
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        const struct config_entry *e = &config_table[i];
        env_name(e, env, sizeof env);
        describe_allowed(e, allowed, sizeof allowed);
        fprintf(out, "\n# %s\n# Value: %s. Env: %s.%s\n%s = ", e->desc, allowed, env,
                (e->flags & CF_RESTART) ? " [restart]" : "", e->name);
        write_value(out, e->sample ? e->sample : e->def);
        fputc('\n', out);
    }
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

void config_defaults(struct chat_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        char err[256];
        if (entry_set(c, &config_table[i], config_table[i].def, err, sizeof err) < 0) {
            /* A bad default is a bug in the table, caught by the unit tests;
             * never run with half a configuration. */
            fprintf(stderr, "config: bad default for %s: %s\n", config_table[i].name, err);
            abort();
        }
    }
}

void config_free(struct chat_config *c)
{
    (void)c;
}

int config_set(struct chat_config *c, const char *key, const char *value,
               char *err, size_t errlen)
{
    if (key == NULL) {
        errf(err, errlen, "missing key");
        return -1;
    }
    const struct config_entry *e = entry_find(key);
    if (e == NULL) {
        unknown_key_error(key, err, errlen);
        return -1;
    }
    if (value == NULL) {
        errf(err, errlen, "%s: missing value", key);
        return -1;
    }
    char why[256];
    if (entry_set(c, e, value, why, sizeof why) < 0) {
        errf(err, errlen, "%s: %s", e->name, why);
        return -1;
    }
    return 0;
}

/* Finds the value in the text after '=' of a file line, in place.
 * Returns NULL with *why set on a malformed value. */
static char *line_value(char *s, const char *line_start, const char **why)
{
    while (is_blank(*s)) s++;
    if (*s == '"') {
        char *close = strchr(s + 1, '"');
        if (close == NULL) {
            *why = "unterminated quote";
            return NULL;
        }
        char *rest = close + 1;
        while (is_blank(*rest)) rest++;
        if (*rest != '\0' && *rest != '#') {
            *why = "unexpected text after the closing quote";
            return NULL;
        }
        *close = '\0';
        return s + 1;
    }
    for (char *p = s; *p; p++) {
        /* '#' starts a comment only after a blank, so values such as
         * "password=a#b" survive. */
        if (*p == '#' && (p == line_start || is_blank(p[-1]))) {
            *p = '\0';
            break;
        }
    }
    size_t len = strlen(s);
    while (len > 0 && is_blank(s[len - 1])) s[--len] = '\0';
    return s;
}

/* Applies one line; returns 0, or -1 with err (without the file:line). */
static int apply_line(struct chat_config *c, char *line, int lineno, int *seen,
                      char *err, size_t errlen)
{
    char *p = line;
    while (is_blank(*p)) p++;
    if (*p == '\0' || *p == '#') return 0;
    char *eq = strchr(p, '=');
    if (eq == NULL) {
        errf(err, errlen, "expected 'key = value'");
        return -1;
    }
    char *kend = eq;
    while (kend > p && is_blank(kend[-1])) kend--;
    *kend = '\0';
    if (*p == '\0') {
        errf(err, errlen, "missing key before '='");
        return -1;
    }
    const struct config_entry *e = entry_find(p);
    if (e == NULL) {
        unknown_key_error(p, err, errlen);
        return -1;
    }
    size_t idx = (size_t)(e - config_table);
    if (seen[idx] != 0) {
        errf(err, errlen, "'%s' is already set on line %d", e->name, seen[idx]);
        return -1;
    }
    seen[idx] = lineno;
    const char *why = NULL;
    char *v = line_value(eq + 1, line, &why);
    if (v == NULL) {
        errf(err, errlen, "%s: %s", e->name, why);
        return -1;
    }
    char inner[256];
    if (entry_set(c, e, v, inner, sizeof inner) < 0) {
        errf(err, errlen, "%s: %s", e->name, inner);
        return -1;
    }
    return 0;
}

int config_load_file(struct chat_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* Work on a copy so a bad file leaves *c as it was. */
    struct chat_config *tmp = malloc(sizeof *tmp);
    if (tmp == NULL) {
        fclose(f);
        errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    *tmp = *c;
    int seen[CONFIG_NENTRIES] = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, rc = 0;
    char why[512];
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        if (len > CONFIG_LINE_MAX) {
            errf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno, CONFIG_LINE_MAX);
            rc = -1;
            break;
        }
        if (strlen(line) != len) {
            errf(err, errlen, "%s:%d: NUL byte in line", path, lineno);
            rc = -1;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        char *text = line;
        /* Editors on some systems start UTF-8 files with a byte order mark. */
        if (lineno == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3;
        if (apply_line(tmp, text, lineno, seen, why, sizeof why) < 0) {
            errf(err, errlen, "%s:%d: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        errf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc == 0) *c = *tmp;
    free(tmp);
    return rc;
}

int config_load_env(struct chat_config *c, char *const *envp, char *err, size_t errlen)
{
    if (envp == NULL) return 0;
    struct chat_config *tmp = malloc(sizeof *tmp);
    if (tmp == NULL) {
        errf(err, errlen, "environment: out of memory");
        return -1;
    }
    *tmp = *c;
    int rc = 0;
    char name[96], env[64], why[256];
    for (char *const *ep = envp; *ep != NULL && rc == 0; ep++) {
        const char *var = *ep;
        if (strncmp(var, "CHAT_", 5) != 0) continue;
        const char *eq = strchr(var, '=');
        if (eq == NULL) continue;
        size_t nlen = (size_t)(eq - var);
        if (nlen == strlen(CONFIG_ENV_FILE) && memcmp(var, CONFIG_ENV_FILE, nlen) == 0) continue;
        const struct config_entry *e = NULL;
        for (size_t i = 0; i < CONFIG_NENTRIES && e == NULL; i++) {
            env_name(&config_table[i], env, sizeof env);
            if (strlen(env) == nlen && memcmp(env, var, nlen) == 0) e = &config_table[i];
        }
        snprintf(name, sizeof name, "%.*s", (int)(nlen < 80 ? nlen : 80), var);
        if (e == NULL) {
            char lower[96];
            size_t k = 0;
            for (const char *p = name + 5; *p && k + 1 < sizeof lower; p++) lower[k++] = to_lower(*p);
            lower[k] = '\0';
            const struct config_entry *s = entry_suggest(lower);
            if (s != NULL) {
                env_name(s, env, sizeof env);
                errf(err, errlen, "unknown environment variable %s (did you mean %s?)",
                     show(name).s, env);
            } else {
                errf(err, errlen, "unknown environment variable %s", show(name).s);
            }
            rc = -1;
        } else if (entry_set(tmp, e, eq + 1, why, sizeof why) < 0) {
            errf(err, errlen, "%s: %s", name, why);
            rc = -1;
        }
    }
    if (rc == 0) *c = *tmp;
    free(tmp);
    return rc;
}

int config_load_all(struct chat_config *c, const char *file, char *const *envp,
                    char *err, size_t errlen)
{
    config_defaults(c);
    if (file == NULL && envp != NULL) {
        size_t n = strlen(CONFIG_ENV_FILE);
        for (char *const *ep = envp; *ep != NULL; ep++)
            if (strncmp(*ep, CONFIG_ENV_FILE, n) == 0 && (*ep)[n] == '=') file = *ep + n + 1;
        if (file != NULL && file[0] == '\0') file = NULL;
    }
    if (file != NULL && config_load_file(c, file, err, errlen) < 0) return -1;
    return config_load_env(c, envp, err, errlen);
}

/* Re-checks one field as config_set would have. */
static int entry_validate(const struct chat_config *c, const struct config_entry *e,
                          char *err, size_t errlen)
{
    const void *f = field_cptr(c, e);
    char allowed[128];
    describe_allowed(e, allowed, sizeof allowed);
    switch (e->type) {
    case CT_STRING: {
        const char *s = f;
        if (memchr(s, '\0', e->size) == NULL) {
            errf(err, errlen, "not terminated");
            return -1;
        }
        if ((long long)strlen(s) < e->min) {
            errf(err, errlen, "must not be empty");
            return -1;
        }
        if (e->check != NULL && e->check(s, NULL, err, errlen) < 0) return -1;
        return 0;
    }
    case CT_INT: {
        int v = *(const int *)f;
        if (v < e->min || v > e->max) {
            errf(err, errlen, "expected %s, got %d", allowed, v);
            return -1;
        }
        return 0;
    }
    case CT_DOUBLE: {
        double v = *(const double *)f;
        if (!isfinite(v) || !(v > (double)e->min) || v > (double)e->max) {
            errf(err, errlen, "expected %s, got %g", allowed, v);
            return -1;
        }
        return 0;
    }
    case CT_LOG_LEVEL: {
        enum log_level v = *(const enum log_level *)f;
        if (v < LOG_DEBUG || v > LOG_ERROR) {
            errf(err, errlen, "expected %s", allowed);
            return -1;
        }
        return 0;
    }
    }
    return 0;
}

int config_validate(const struct chat_config *c, char *err, size_t errlen)
{
    char why[256];
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        if (entry_validate(c, &config_table[i], why, sizeof why) < 0) {
            errf(err, errlen, "%s: %s", config_table[i].name, why);
            return -1;
        }
    }
    int count;
    if (origins_parse(c->allowed_origins, NULL, &count, NULL, 0) < 0 || count != c->origins_count) {
        errf(err, errlen, "allowed_origins: parsed list does not match the setting "
                          "(set it through config_set)");
        return -1;
    }
    char env[64];
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        const struct config_entry *e = &config_table[i];
        if ((e->flags & CF_REQUIRED) && *(const char *)field_cptr(c, e) == '\0') {
            env_name(e, env, sizeof env);
            errf(err, errlen, "%s: required; set it in the config file or %s in the environment",
                 e->name, env);
            return -1;
        }
    }
    /* Every receiver of a maximal message must be able to queue it, or one
     * large message would close every connection in the room with 1013. */
    if (c->max_outbuf_bytes < c->max_frame_bytes) {
        errf(err, errlen, "max_outbuf_bytes (%d) must be at least max_frame_bytes (%d): "
                          "a largest message must fit in a receiver's output buffer",
             c->max_outbuf_bytes, c->max_frame_bytes);
        return -1;
    }
    return 0;
}

bool config_reloadable_differs(const struct chat_config *old_cfg,
                               const struct chat_config *new_cfg,
                               char *key_out, size_t n)
{
    for (size_t i = 0; i < CONFIG_NENTRIES; i++) {
        const struct config_entry *e = &config_table[i];
        if (!(e->flags & CF_RESTART)) continue;
        const void *a = field_cptr(old_cfg, e), *b = field_cptr(new_cfg, e);
        bool differs;
        switch (e->type) {
        case CT_STRING: differs = strncmp(a, b, e->size) != 0; break;
        case CT_INT: differs = *(const int *)a != *(const int *)b; break;
        case CT_DOUBLE: differs = *(const double *)a != *(const double *)b; break;
        case CT_LOG_LEVEL:
        default: differs = *(const enum log_level *)a != *(const enum log_level *)b; break;
        }
        if (differs) {
            if (key_out != NULL && n > 0) snprintf(key_out, n, "%s", e->name);
            return true;
        }
    }
    if (key_out != NULL && n > 0) key_out[0] = '\0';
    return false;
}

int config_origin_allowed(const struct chat_config *c, const char *origin, size_t n)
{
    if (c->origins_count == 0) return 1;
    for (int i = 0; i < c->origins_count; i++) {
        const char *o = c->origins[i];
        if (strlen(o) == n && n > 0 && strncasecmp(o, origin, n) == 0) return 1;
    }
    return 0;
}

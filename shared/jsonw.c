#include "shared/jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void jsonw_init(struct jsonw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = cap == 0;
}

static void put(struct jsonw *w, const char *s, size_t n)
{
    if (w->overflow) return;
    /* Keep one byte for the terminating NUL. */
    if (n >= w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

void jsonw_raw(struct jsonw *w, const char *s) { put(w, s, strlen(s)); }

void jsonw_rawn(struct jsonw *w, const char *s, size_t n) { put(w, s, n); }

/* Bytes that ch takes inside a JSON string, as jsonw_str writes it. */
static size_t escaped_width(unsigned char ch)
{
    if (ch >= 0x20 && ch != '"' && ch != '\\') return 1;
    switch (ch) {
    case '"': case '\\': case '\n': case '\r': case '\t': case '\b': case '\f': return 2;
    default: return 6;
    }
}

size_t jsonw_str_len(const char *s, size_t n)
{
    size_t len = 2;
    for (size_t i = 0; i < n; i++) len += escaped_width((unsigned char)s[i]);
    return len;
}

void jsonw_str(struct jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    put(w, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        put(w, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            el = 6;
        }
        put(w, esc, el);
    }
    put(w, s + run, n - run);
    put(w, "\"", 1);
}

void jsonw_cstr(struct jsonw *w, const char *s) { jsonw_str(w, s, strlen(s)); }

void jsonw_user(struct jsonw *w, const char *id, size_t id_len, const char *name, size_t name_len)
{
    jsonw_raw(w, "{\"id\":");
    jsonw_str(w, id, id_len);
    jsonw_raw(w, ",\"name\":");
    jsonw_str(w, name, name_len);
    jsonw_raw(w, "}");
}

size_t jsonw_user_len(const char *id, size_t id_len, const char *name, size_t name_len)
{
    return sizeof "{\"id\":,\"name\":}" - 1 + jsonw_str_len(id, id_len) + jsonw_str_len(name, name_len);
}

void jsonw_i64(struct jsonw *w, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    put(w, num, (size_t)n);
}

long jsonw_finish(struct jsonw *w)
{
    if (w->overflow) {
        if (w->cap) w->buf[0] = '\0';
        return -1;
    }
    w->buf[w->len] = '\0';
    return (long)w->len;
}

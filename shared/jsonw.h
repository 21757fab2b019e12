#ifndef CHATD_SHARED_JSONW_H
#define CHATD_SHARED_JSONW_H

/* Writing small JSON texts into a caller's fixed buffer, for the replies
 * sent on every request (acks, errors), where building a jansson tree
 * would cost allocations. A jsonw that ran out of room stays failed and
 * jsonw_finish reports it; nothing is ever written past cap. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

void jsonw_init(struct jsonw *w, char *buf, size_t cap);
/* Raw text, copied as is (for punctuation and keys we write ourselves). */
void jsonw_raw(struct jsonw *w, const char *s);
/* n bytes of raw text: JSON rendered elsewhere. */
void jsonw_rawn(struct jsonw *w, const char *s, size_t n);
/* A JSON string: quoted, with quotes, backslashes and control characters
 * escaped. s must be valid UTF-8 (it is passed through). */
void jsonw_str(struct jsonw *w, const char *s, size_t n);
void jsonw_cstr(struct jsonw *w, const char *s);
/* What jsonw_str(w, s, n) writes, in bytes (quotes included): for sizing
 * a buffer exactly. */
size_t jsonw_str_len(const char *s, size_t n);
void jsonw_i64(struct jsonw *w, int64_t v);
/* {"id":<id>,"name":<name>}: a user, as events and online lists name one. */
void jsonw_user(struct jsonw *w, const char *id, size_t id_len, const char *name, size_t name_len);
/* What jsonw_user writes, in bytes. */
size_t jsonw_user_len(const char *id, size_t id_len, const char *name, size_t name_len);
/* NUL-terminates; returns the length, or -1 when it did not fit. */
long jsonw_finish(struct jsonw *w);

#endif

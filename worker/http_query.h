#ifndef CHATD_WORKER_HTTP_QUERY_H
#define CHATD_WORKER_HTTP_QUERY_H

/* Query-string and path access for a parsed request head
 * (worker/http_head.h). Pure functions: they read only query.p[0..n) /
 * path.p[0..n) and write only out[0..outlen).
 *
 * Query syntax is application/x-www-form-urlencoded as browsers produce
 * it: parameters separated by '&', key and value separated by the first
 * '=', "%XX" escapes (either hex case) and '+' for a space, in keys and
 * values alike. Empty parameters ("a=1&&b=2") are skipped. A parameter
 * without '=' has an empty value. When a key appears more than once the
 * first occurrence wins; later ones are ignored.
 *
 * Keys are compared after decoding, exactly (case-sensitive). A key that
 * cannot be decoded (bad escape, or an escaped NUL) equals no name and is
 * skipped, so junk in an unrelated parameter does not make every lookup
 * fail; a bad escape in the value of the parameter asked for does. */

#include <stddef.h>
#include <stdint.h>

#include "worker/http_head.h"

/* Finds the first parameter whose decoded key is name and writes its
 * decoded value plus a NUL into out, and its length (without the NUL) into
 * *outn when outn is not NULL.
 * Returns 1 found; 0 absent; -1 found but malformed: a bad %-escape, a
 * decoded NUL, or a value that does not fit in outlen - 1 bytes. On 0 and
 * -1 *outn is untouched and out holds "" when outlen > 0. */
int http_query_get(struct http_str query, const char *name, char *out,
                   size_t outlen, size_t *outn);

/* Reads parameter name as a decimal integer within [min, max]: an
 * optional '-', then 1 to 63 digits. Leading zeros are an integer's
 * spelling too ("007" is 7, "-0" is 0: PROTOCOL.md asks for integers, not
 * canonical ones). "+1", " 1", "1 ", "", "1e3", "0x10" and anything
 * outside int64_t are refused rather than reinterpreted; the caller answers
 * 400 instead of guessing (PROTOCOL.md 4: not clamped). The value is
 * percent-decoded first, so "%31" is 1 (and '+' decodes to a space, which
 * is refused).
 * Returns 1 (with *out set), 0 absent (*out untouched), -1 present but not
 * such an integer, or out of range (*out untouched). */
int http_query_get_i64(struct http_str query, const char *name, int64_t min,
                       int64_t max, int64_t *out);

/* Percent-decodes a request path for static-file lookup into out, with a
 * NUL. '+' stays '+' (it means space only in queries). Returns the decoded
 * length, or -1 when the path does not start with '/', has a bad escape,
 * decodes to a control byte (NUL included) or a backslash, has a ".."
 * segment after decoding (so "%2e%2e" and "..%2f" are caught too; "a..b"
 * is a harmless name and allowed), or does not fit in outlen - 1 bytes.
 * On -1 out holds "" when outlen > 0. */
int http_path_decode(struct http_str path, char *out, size_t outlen);

#endif

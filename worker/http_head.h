#ifndef CHATD_WORKER_HTTP_HEAD_H
#define CHATD_WORKER_HTTP_HEAD_H

/* HTTP/1.1 request-head parser (RFC 9112, sections 2-5), in the style of
 * picohttpparser's phr_parse_request: no allocation, no I/O, no state
 * between calls. The caller keeps appending received bytes to one buffer
 * and calls http_head_parse on the whole buffer each time until it stops
 * returning HTTP_HEAD_AGAIN. Heads nearly always arrive in one read, so
 * re-scanning from the start costs less than keeping resumable state.
 *
 * Ownership: every struct http_str that http_head_parse fills points into
 * the caller's buffer; nothing is copied. The results are valid for as long
 * as those bytes stay where they are and unchanged (do not compact or
 * realloc the input buffer while still using the head).
 *
 * What is accepted (stricter than the RFC where the RFC allows leniency,
 * more lenient only where noted):
 *   - Empty lines (CRLF or LF) before the request line are skipped
 *     (RFC 9112 2.2); they count towards HTTP_HEAD_MAX_BYTES and towards
 *     the returned length, since the caller consumes them too.
 *   - Request line: exactly `token SP request-target SP HTTP/1.0|HTTP/1.1`.
 *     One SP each, no other white space. The version is case-sensitive.
 *   - request-target: origin-form (starts with '/') made of visible ASCII
 *     other than '#' (a user agent never sends a fragment); or asterisk-form
 *     "*" with method OPTIONS only (RFC 9112 3.2.4). absolute-form and
 *     authority-form are rejected: chatd is no proxy and serves no CONNECT.
 *     Bytes >= 0x80 are rejected (RFC 3986 targets are ASCII; clients
 *     percent-encode).
 *   - Line endings: CRLF, or a bare LF (as nginx and RFC 9112 2.2 allow).
 *     A CR not followed by LF is malformed.
 *   - Header lines: `token ":" OWS value OWS`. No white space before the
 *     colon (RFC 9112 5.1 requires rejecting it), no empty name, no
 *     obsolete line folding (a line starting with SP or HTAB). The value
 *     may hold VCHAR, SP, HTAB and obs-text (0x80-0xFF); any other control
 *     byte (NUL, CR alone, DEL, ...) is malformed. Leading and trailing
 *     OWS is trimmed from the value. An empty value is fine.
 *   - No semantic checks (Host presence, duplicated Content-Length, ...):
 *     that is the request handler's business.
 */

#include <stdbool.h>
#include <stddef.h>

/* Request line to blank line inclusive (including skipped empty lines
 * before the request line). A head of exactly this many bytes is
 * accepted. */
#define HTTP_HEAD_MAX_BYTES 8192
/* Header lines; exactly this many are accepted. */
#define HTTP_HEAD_MAX_HEADERS 100

enum {
    /* Malformed: answer 400 and close. */
    HTTP_HEAD_BAD = -1,
    /* Incomplete but still possibly valid within the limits: read more. */
    HTTP_HEAD_AGAIN = -2,
    /* Over HTTP_HEAD_MAX_BYTES or HTTP_HEAD_MAX_HEADERS: answer 431. */
    HTTP_HEAD_TOO_LARGE = -3,
};

/* A byte range, not NUL-terminated. p may be NULL only when n == 0. */
struct http_str {
    const char *p;
    size_t n;
};

struct http_header {
    struct http_str name, value;
};

struct http_head {
    struct http_str method;
    struct http_str target; /* the request-target as sent */
    struct http_str path;   /* target up to the first '?' ("*" for OPTIONS *) */
    struct http_str query;  /* after the first '?', '?' excluded; n == 0 when
                               absent or empty */
    int minor_version;      /* HTTP/1.<minor>: 0 or 1 */
    size_t nheaders;
    struct http_header headers[HTTP_HEAD_MAX_HEADERS];
};

/* Parses the request head at the start of buf[0..len). Never reads past
 * len (nor past HTTP_HEAD_MAX_BYTES).
 *
 * Returns the head's length in bytes (> 0, through the final empty line)
 * when complete; bytes after it (a body, a pipelined request) are not
 * looked at. Otherwise returns
 *   HTTP_HEAD_AGAIN      every byte so far is valid and a complete head
 *                        could still fit within HTTP_HEAD_MAX_BYTES;
 *   HTTP_HEAD_TOO_LARGE  no complete head fits in HTTP_HEAD_MAX_BYTES given
 *                        what arrived (reported as soon as that is certain,
 *                        at the latest once HTTP_HEAD_MAX_BYTES + 1 bytes
 *                        arrived without the end), or a header line beyond
 *                        the HTTP_HEAD_MAX_HEADERS-th started;
 *   HTTP_HEAD_BAD        malformed, reported at the first offending byte.
 * An error found within the first HTTP_HEAD_MAX_BYTES bytes wins over
 * TOO_LARGE. *out is fully set only on success; otherwise its contents are
 * unspecified. */
int http_head_parse(const char *buf, size_t len, struct http_head *out);

/* First header named name (ASCII case-insensitive), or NULL. */
const struct http_str *http_head_get(const struct http_head *h,
                                     const char *name);

/* Number of header lines named name (ASCII case-insensitive). */
int http_head_count(const struct http_head *h, const char *name);

/* True when the comma-separated list value (RFC 9110 5.6.1, e.g.
 * Connection: "keep-alive, Upgrade") has an element equal to token,
 * ASCII case-insensitive. OWS around elements and empty elements are
 * tolerated. Elements are compared whole: "Upgrade" does not match
 * "upgrade-insecure", and parameters ("gzip;q=1") are part of the element.
 * An empty token never matches. */
bool http_token_list_has(struct http_str value, const char *token);

/* True when any header line named name has token in its list: lines of
 * one name form one comma-separated list (RFC 9110 5.3), so
 * "Connection: keep-alive" and "Connection: Upgrade" on two lines ask
 * for both. */
bool http_head_has_token(const struct http_head *h, const char *name, const char *token);

/* s equals the NUL-terminated lit: byte for byte / ASCII case-insensitive. */
bool http_str_eq(struct http_str s, const char *lit);
bool http_str_ieq(struct http_str s, const char *lit);

#endif

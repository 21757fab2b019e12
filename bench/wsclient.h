#ifndef CHATD_BENCH_WSCLIENT_H
#define CHATD_BENCH_WSCLIENT_H

/* The client side of the load generator's WebSocket: a parser for the
 * unmasked frame headers a server sends (worker/ws_frame.h decodes only
 * masked client frames), and the few searches chat-bench makes in chatd's
 * events. Pure functions over the caller's buffer: no I/O, no allocation,
 * nothing read at or past buf + len. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wsc_header {
	uint8_t opcode;
	bool fin;
	size_t hlen;   /* header bytes: 2, 4 or 10 */
	uint64_t plen; /* payload bytes */
};

/* Returns 1 with *h filled when buf holds a whole header, 0 when more
 * bytes are needed, -1 for a header no server may send (masked, reserved
 * bits, unknown opcode, a 64-bit length with the top bit set, a control
 * frame that is fragmented or longer than 125 bytes). */
int wsc_header_parse(const uint8_t *buf, size_t len, struct wsc_header *h);

/* What chat-bench cares about in a server text frame. */
enum wsc_kind {
	WSC_OTHER = 0, /* join, leave, typing, notice, ... */
	WSC_WELCOME,   /* chatd's welcome; Socket.IO's connect "40{...}" */
	WSC_MESSAGE,   /* a "message" event */
	WSC_ACK,
	WSC_ERROR,
	/* Socket.IO only (wsc_sio_classify): */
	WSC_SIO_OPEN,    /* Engine.IO open "0{...}": send the connect "40" */
	WSC_SIO_PING,    /* Engine.IO ping "2": answer "3" */
	WSC_SIO_REFUSED, /* connect_error "44{...}" (the middleware said no) */
	WSC_SIO_GONE,    /* Engine.IO close "1", Socket.IO disconnect "41" */
};

/* Classifies by the leading {"type":"..." (chatd writes type first). */
enum wsc_kind wsc_classify(const uint8_t *p, size_t n);

/* The same for a text frame of Engine.IO v4 / Socket.IO v5 (one Engine.IO
 * packet per WebSocket frame; the default namespace only):
 *   0{...}                        WSC_SIO_OPEN
 *   2                             WSC_SIO_PING
 *   1, 41                         WSC_SIO_GONE
 *   40{...}                       WSC_WELCOME
 *   44{...}                       WSC_SIO_REFUSED
 *   42["message",{"type":"message",...}]      WSC_MESSAGE
 *   43<id>[{"type":"ack",...}]    WSC_ACK   (an ack callback's argument)
 *   43<id>[{"type":"error",...}]  WSC_ERROR
 * anything else WSC_OTHER. The payload fields are then found with the
 * functions below on the whole frame, as with chatd. */
enum wsc_kind wsc_sio_classify(const uint8_t *p, size_t n);

/* In a "message" event: the benchmark payload "b:<sender>:<seq>:<send_us>"
 * of the text field, and the event's room seq. Returns 0, or -1 when the
 * text is not a benchmark payload. */
int wsc_parse_message(const uint8_t *p, size_t n, uint64_t *sender, uint64_t *seq,
		      uint64_t *send_us, int64_t *room_seq);

/* In an ack or error: the ref chat-bench sends, "<seq>-<send_us>". Returns
 * 0, or -1 when there is no such ref. */
int wsc_parse_ref(const uint8_t *p, size_t n, uint64_t *seq, uint64_t *send_us);

/* In an error: the code, copied NUL-terminated into out (cut to cap - 1).
 * Returns 0, or -1 (out set to "?"). */
int wsc_error_code(const uint8_t *p, size_t n, char *out, size_t cap);

#endif

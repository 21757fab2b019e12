#ifndef CHATD_WORKER_WS_FRAME_H
#define CHATD_WORKER_WS_FRAME_H

/* RFC 6455 frame codec, server side (plus a client-side encoder for our
 * load generator and tests).
 *
 * Pure functions over caller-owned memory: no I/O, no allocation, no
 * global state; the decoder never reads or writes outside [buf, buf + len),
 * the encoders write only the out array they are given.
 *
 * Ownership:
 * - struct ws_decoder is owned by the caller (embedded in a connection);
 *   it holds no pointers and needs no cleanup.
 * - buf belongs to the caller. ws_frame_decode() writes into it only to
 *   unmask, in place, the payload of the one complete frame it reports,
 *   and only when it returns > 0 or reports a UTF-8/close-payload error
 *   (the payload is unmasked before it is validated).
 * - ev->data points into buf (inside the frame just consumed). It stays
 *   valid until the caller overwrites, moves or frees those bytes, which
 *   it usually does right after handling the event (compacting its read
 *   buffer). A caller that accumulates a fragmented message copies each
 *   WS_EV_TEXT chunk out before reusing the buffer.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

enum {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003, /* e.g. a binary message */
	WS_CLOSE_NO_STATUS = 1005,   /* never on the wire: "close had no code" */
	WS_CLOSE_INVALID_DATA = 1007, /* invalid UTF-8 */
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
	WS_CLOSE_TRY_AGAIN_LATER = 1013,
};

/* Largest server (unmasked) header: 2 + 8-byte extended length. A client
 * header adds the 4-byte masking key. */
#define WS_FRAME_HEADER_MAX 10
/* Ceiling on max_message: ws_frame_decode returns a frame's size as an
 * int. */
#define WS_MESSAGE_MAX (0x7FFFFFFF - WS_FRAME_HEADER_MAX - 4)
/* Largest control frame payload (RFC 6455 5.5). */
#define WS_CONTROL_MAX 125

/* State carried from one frame to the next; treat the fields as private.
 * 16 bytes, no pointers: it lives in every connection. */
struct ws_decoder {
	uint32_t msg_len;     /* payload bytes of the unfinished text message (<= WS_MESSAGE_MAX) */
	uint32_t checked;     /* payload bytes of the incomplete frame in buf already validated */
	uint8_t utf8_state;   /* shared/utf8.h state after msg_len bytes */
	uint8_t checked_state; /* and after the checked bytes */
	uint8_t in_message;   /* a fragmented message awaits its FIN frame */
	uint8_t opcode;       /* its opcode (only WS_OP_TEXT gets this far) */
	uint16_t fail_code;   /* non-zero once decoding failed: sticky */
};

void ws_decoder_init(struct ws_decoder *d);

enum ws_event_type {
	WS_EV_NONE = 0, /* nothing yet (ws_frame_decode returned 0) */
	WS_EV_TEXT,     /* a chunk of a text message */
	WS_EV_PING,
	WS_EV_PONG,
	WS_EV_CLOSE,
	WS_EV_FAIL,     /* protocol error: send close_code, stop reading */
};

struct ws_event {
	enum ws_event_type type;
	/* WS_EV_TEXT: first is true on the frame that starts a message, fin
	 * on the frame that completes it (both for an unfragmented message).
	 * The concatenation of a message's chunks is valid UTF-8; a single
	 * chunk may begin or end in the middle of a character. Control
	 * events have both set. */
	bool first;
	bool fin;
	/* WS_EV_CLOSE: the peer's code, or 1005 when it sent none.
	 * WS_EV_FAIL: the code to close with (1002, 1003, 1007 or 1009). */
	uint16_t close_code;
	/* TEXT: the chunk; PING/PONG: the application data (<= 125 bytes),
	 * to echo in the pong; CLOSE: the reason (valid UTF-8, <= 123 bytes,
	 * not NUL-terminated). Points into the caller's buf, already
	 * unmasked; see ownership above. NULL only for NONE and FAIL. */
	uint8_t *data;
	size_t len;
};

/* Decodes the frame at the start of buf[0..len).
 *
 * Returns:
 *   > 0  a whole frame was there: that many bytes are consumed and *ev
 *        describes it (its payload unmasked in place in buf);
 *   0    need more bytes (ev->type == WS_EV_NONE); call again with the
 *        same bytes plus more. Nothing in buf was changed;
 *   -1   protocol error: ev->type == WS_EV_FAIL with ev->close_code. The
 *        decoder stays failed (later calls return -1 with the same code).
 *
 * Errors visible in the header are reported as soon as the bytes that
 * show them are in buf, before the payload arrives: reserved bits, unknown
 * opcode, binary data (1003), unmasked frame, fragmented or > 125-byte
 * control frame, continuation with no message in progress, a new data
 * message before the previous one finished, a 64-bit length with the top
 * bit set, and a length that takes the frame or the message past
 * max_message (1009; exactly max_message is fine). Invalid UTF-8 in a
 * text or continuation frame (1007) is reported as soon as the bytes that
 * show it are in buf, even while the rest of the frame is still to come:
 * a peer cannot make us wait for a frame already known to be refused.
 * The bytes of an incomplete frame are validated once, however many
 * calls it takes to arrive. A bad close payload is reported once the
 * frame is complete.
 *
 * max_message bounds data frames only (values above WS_MESSAGE_MAX act as
 * WS_MESSAGE_MAX); control frames are bounded by the protocol (125 bytes)
 * so that a ping can always be answered and a close reason always read.
 * Non-minimal length encodings are accepted (RFC 6455 puts that MUST on
 * the sender, and they are harmless).
 *
 * A caller whose buffer can hold WS_FRAME_HEADER_MAX + 4 + max_message
 * bytes always makes progress. */
int ws_frame_decode(struct ws_decoder *d, uint8_t *buf, size_t len, size_t max_message,
		    struct ws_event *ev);

/* 1 if code may appear in a close frame on the wire: 1000..1003,
 * 1007..1014, 3000..4999. */
int ws_close_code_valid(unsigned code);

/* Writes a server frame header (FIN set, unmasked) for a payload of
 * payload_len bytes; returns its size: 2, 4 or 10. */
size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX], uint8_t opcode, size_t payload_len);

/* Writes a close payload: code (big-endian) and as much of the
 * NUL-terminated reason (NULL for none) as fits in 125 bytes, cut before a
 * character that would not fit whole. reason must be valid UTF-8. code 0
 * means "no status": writes nothing (an empty close payload). Returns the
 * payload size, 0 or 2..125. The caller makes sure code is valid. */
size_t ws_close_payload_encode(uint8_t out[WS_CONTROL_MAX], uint16_t code, const char *reason);

/* Client side: writes a masked frame header, mask key included; returns
 * its size: 6, 8 or 14. The payload must then be masked with
 * ws_mask(payload, n, mask, 0). */
size_t ws_frame_header_encode_masked(uint8_t out[WS_FRAME_HEADER_MAX + 4], uint8_t opcode, bool fin,
				     size_t payload_len, const uint8_t mask[4]);

/* XORs p[0..n) with the masking key, as if p started offset bytes into the
 * payload (so a payload can be masked or unmasked in pieces). Masking and
 * unmasking are the same operation. */
void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset);

#endif

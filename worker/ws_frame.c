#include "worker/ws_frame.h"

#include <limits.h>
#include <string.h>

#include "shared/utf8.h"

_Static_assert(sizeof(struct ws_decoder) <= 16, "ws_decoder lives in every connection");
_Static_assert(WS_MESSAGE_MAX + WS_FRAME_HEADER_MAX + 4 <= INT_MAX, "a frame's size must fit the int return");

void ws_decoder_init(struct ws_decoder *d)
{
	memset(d, 0, sizeof *d);
	d->utf8_state = UTF8_ACCEPT;
}

static int fail(struct ws_decoder *d, struct ws_event *ev, uint16_t code)
{
	d->fail_code = code;
	ev->type = WS_EV_FAIL;
	ev->close_code = code;
	ev->data = NULL;
	ev->len = 0;
	return -1;
}

int ws_close_code_valid(unsigned code)
{
	/* 1004 is reserved, 1005/1006/1015 are for local reporting only, the
	 * rest of 1000..2999 is unassigned (1012..1014 were registered with
	 * IANA after RFC 6455), 3000..4999 belong to libraries and
	 * applications. */
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

/* Validates the part of an incomplete text or continuation frame that
 * arrived since the last call (masked_at: its masking key, then the
 * payload's avail bytes so far). buf may not change until the frame is
 * whole, so the bytes are unmasked into a copy. Returns false on invalid
 * UTF-8. */
/* The UTF-8 state the rest of this frame's payload continues from: what
 * earlier calls validated of it, else the message's start or its
 * previous fragments. */
static uint32_t frame_utf8_state(const struct ws_decoder *d, unsigned op)
{
	if (d->checked)
		return d->checked_state;
	return op == WS_OP_TEXT ? UTF8_ACCEPT : d->utf8_state;
}

static bool check_partial(struct ws_decoder *d, unsigned op, const uint8_t *masked_at, size_t avail)
{
	if (avail <= d->checked)
		return true;
	const uint8_t *mask = masked_at, *payload = masked_at + 4;
	uint32_t st = frame_utf8_state(d, op);
	uint8_t chunk[256];
	for (size_t at = d->checked; at < avail;) {
		size_t k = avail - at < sizeof chunk ? avail - at : sizeof chunk;
		memcpy(chunk, payload + at, k);
		ws_mask(chunk, k, mask, at);
		st = utf8_validate(st, chunk, k);
		if (st == UTF8_REJECT)
			return false;
		at += k;
	}
	/* avail < the frame's length <= WS_MESSAGE_MAX: fits. */
	d->checked = (uint32_t)avail;
	d->checked_state = (uint8_t)st;
	return true;
}

int ws_frame_decode(struct ws_decoder *d, uint8_t *buf, size_t len, size_t max_message,
		    struct ws_event *ev)
{
	*ev = (struct ws_event){.type = WS_EV_NONE};
	if (d->fail_code)
		return fail(d, ev, d->fail_code);
	if (len < 1)
		return 0;

	/* Every check below uses only bytes already known to be in buf, and
	 * the checks on byte 0 come before those on byte 1, and so on: an
	 * error is reported at the earliest byte that proves it, and a
	 * longer prefix of the same input reports the same error. */
	uint8_t b0 = buf[0];
	bool fin = b0 & 0x80;
	unsigned op = b0 & 0x0F;
	if (b0 & 0x70)
		return fail(d, ev, WS_CLOSE_PROTOCOL); /* no extension negotiated */
	switch (op) {
	case WS_OP_CONT:
		if (!d->in_message)
			return fail(d, ev, WS_CLOSE_PROTOCOL);
		break;
	case WS_OP_TEXT:
		if (d->in_message)
			return fail(d, ev, WS_CLOSE_PROTOCOL);
		break;
	case WS_OP_BINARY:
		if (d->in_message)
			return fail(d, ev, WS_CLOSE_PROTOCOL);
		/* We have no use for binary data; refuse before buffering it. */
		return fail(d, ev, WS_CLOSE_UNSUPPORTED);
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!fin)
			return fail(d, ev, WS_CLOSE_PROTOCOL);
		break;
	default:
		return fail(d, ev, WS_CLOSE_PROTOCOL);
	}
	bool control = op & 0x8;

	if (len < 2)
		return 0;
	uint8_t b1 = buf[1];
	if (!(b1 & 0x80))
		return fail(d, ev, WS_CLOSE_PROTOCOL); /* clients must mask */
	unsigned len7 = b1 & 0x7F;
	if (control && len7 > WS_CONTROL_MAX)
		return fail(d, ev, WS_CLOSE_PROTOCOL);

	size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
	size_t have = len - 2 < ext ? len - 2 : ext;
	uint64_t plen = len7;
	if (ext) {
		if (ext == 8 && have >= 1 && (buf[2] & 0x80))
			return fail(d, ev, WS_CLOSE_PROTOCOL);
		/* Missing low-order bytes read as zero: with a partial length
		 * plen is a lower bound, enough to refuse a huge frame before
		 * its header is even complete. The top bit is clear, so the
		 * shifts cannot overflow. */
		plen = 0;
		for (size_t i = 0; i < ext; i++)
			plen = (plen << 8) | (i < have ? buf[2 + i] : 0);
	}
	if (!control) {
		/* The first test keeps the subtraction from wrapping should a
		 * caller lower max_message in the middle of a message. */
		if (max_message > WS_MESSAGE_MAX)
			max_message = WS_MESSAGE_MAX;
		if (d->msg_len > max_message || plen > max_message - d->msg_len)
			return fail(d, ev, WS_CLOSE_TOO_BIG);
	}
	if (have < ext)
		return 0;

	size_t hlen = 2 + ext + 4;
	if (len < hlen)
		return 0;
	if (len - hlen < plen) {
		if (!control && !check_partial(d, op, buf + hlen - 4, len - hlen))
			return fail(d, ev, WS_CLOSE_INVALID_DATA);
		return 0;
	}
	/* From here on plen <= len fits a size_t. */
	size_t n = (size_t)plen;
	uint8_t mask[4];
	memcpy(mask, buf + hlen - 4, 4);
	uint8_t *payload = buf + hlen;
	ws_mask(payload, n, mask, 0);

	switch (op) {
	case WS_OP_CONT:
	case WS_OP_TEXT: {
		/* What earlier calls validated of this frame is not done again. */
		size_t done = d->checked;
		uint32_t st = frame_utf8_state(d, op);
		d->checked = 0;
		st = utf8_validate(st, payload + done, n - done);
		/* A fragment may end inside a character; the message may not. */
		if (st == UTF8_REJECT || (fin && st != UTF8_ACCEPT))
			return fail(d, ev, WS_CLOSE_INVALID_DATA);
		ev->type = WS_EV_TEXT;
		ev->first = op == WS_OP_TEXT;
		ev->fin = fin;
		if (fin) {
			d->in_message = 0;
			d->opcode = 0;
			d->msg_len = 0;
			d->utf8_state = UTF8_ACCEPT;
		} else {
			d->in_message = 1;
			d->opcode = WS_OP_TEXT;
			d->msg_len += (uint32_t)n; /* checked against max_message above */
			d->utf8_state = (uint8_t)st;
		}
		break;
	}
	case WS_OP_CLOSE:
		if (n == 0) {
			ev->close_code = WS_CLOSE_NO_STATUS;
		} else {
			if (n == 1)
				return fail(d, ev, WS_CLOSE_PROTOCOL);
			unsigned code = (unsigned)payload[0] << 8 | payload[1];
			if (!ws_close_code_valid(code))
				return fail(d, ev, WS_CLOSE_PROTOCOL);
			if (!utf8_is_complete_valid(payload + 2, n - 2))
				return fail(d, ev, WS_CLOSE_INVALID_DATA);
			ev->close_code = (uint16_t)code;
			payload += 2;
			n -= 2;
		}
		ev->type = WS_EV_CLOSE;
		ev->first = ev->fin = true;
		break;
	case WS_OP_PING:
	case WS_OP_PONG:
		ev->type = op == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
		ev->first = ev->fin = true;
		break;
	}
	ev->data = payload;
	ev->len = n;
	return (int)(hlen + (size_t)plen);
}

static size_t put_len(uint8_t *out, uint8_t mask_bit, size_t payload_len)
{
	if (payload_len <= WS_CONTROL_MAX) {
		out[1] = mask_bit | (uint8_t)payload_len;
		return 2;
	}
	if (payload_len <= 0xFFFF) {
		out[1] = mask_bit | 126;
		out[2] = (uint8_t)(payload_len >> 8);
		out[3] = (uint8_t)payload_len;
		return 4;
	}
	out[1] = mask_bit | 127;
	uint64_t v = payload_len;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(v >> (56 - 8 * i));
	return 10;
}

size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX], uint8_t opcode, size_t payload_len)
{
	out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
	return put_len(out, 0, payload_len);
}

size_t ws_frame_header_encode_masked(uint8_t out[WS_FRAME_HEADER_MAX + 4], uint8_t opcode, bool fin,
				     size_t payload_len, const uint8_t mask[4])
{
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
	size_t n = put_len(out, 0x80, payload_len);
	memcpy(out + n, mask, 4);
	return n + 4;
}

size_t ws_close_payload_encode(uint8_t out[WS_CONTROL_MAX], uint16_t code, const char *reason)
{
	if (code == 0)
		return 0;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	size_t room = WS_CONTROL_MAX - 2;
	size_t n = reason ? strnlen(reason, room + 1) : 0;
	if (n > room) {
		/* reason[n] is the first byte left out: if it continues a
		 * character, drop that character's earlier bytes too. */
		n = room;
		while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
			n--;
	}
	if (n)
		memcpy(out + 2, reason, n);
	return 2 + n;
}

void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset)
{
	/* The key repeats every 4 bytes, so a word holding it twice (rotated
	 * by offset) covers any 8-byte step. memcpy makes the unaligned
	 * loads and stores legal; compilers turn the loop into vector XORs. */
	uint8_t m[8];
	for (size_t j = 0; j < 8; j++)
		m[j] = mask[(offset + j) & 3];
	uint64_t w;
	memcpy(&w, m, 8);

	size_t i = 0;
	for (; n - i >= 32; i += 32) {
		uint64_t x[4];
		memcpy(x, p + i, 32);
		x[0] ^= w;
		x[1] ^= w;
		x[2] ^= w;
		x[3] ^= w;
		memcpy(p + i, x, 32);
	}
	for (; n - i >= 8; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		x ^= w;
		memcpy(p + i, &x, 8);
	}
	for (; i < n; i++)
		p[i] ^= m[i & 7];
}

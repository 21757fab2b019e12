#include "bench/wsclient.h"

#include <string.h>

#include "worker/ws_frame.h"

int wsc_header_parse(const uint8_t *buf, size_t len, struct wsc_header *h)
{
	if (len < 1)
		return 0;
	uint8_t b0 = buf[0];
	unsigned op = b0 & 0x0F;
	if (b0 & 0x70)
		return -1;
	bool control = op & 0x8;
	switch (op) {
	case WS_OP_CONT:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		break;
	default:
		return -1;
	}
	if (control && !(b0 & 0x80))
		return -1;
	if (len < 2)
		return 0;
	uint8_t b1 = buf[1];
	if (b1 & 0x80)
		return -1; /* servers never mask */
	unsigned len7 = b1 & 0x7F;
	if (control && len7 > WS_CONTROL_MAX)
		return -1;
	size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
	if (len < 2 + ext)
		return 0;
	uint64_t plen = len7;
	if (ext) {
		if (ext == 8 && (buf[2] & 0x80))
			return -1;
		plen = 0;
		for (size_t i = 0; i < ext; i++)
			plen = (plen << 8) | buf[2 + i];
	}
	h->opcode = (uint8_t)op;
	h->fin = b0 & 0x80;
	h->hlen = 2 + ext;
	h->plen = plen;
	return 1;
}

static bool has_prefix(const uint8_t *p, size_t n, const char *s, size_t sn)
{
	return n >= sn && memcmp(p, s, sn) == 0;
}

#define PREFIX(p, n, lit) has_prefix(p, n, lit, sizeof lit - 1)

enum wsc_kind wsc_classify(const uint8_t *p, size_t n)
{
	static const char head[] = "{\"type\":\"";
	if (!PREFIX(p, n, head))
		return WSC_OTHER;
	p += sizeof head - 1;
	n -= sizeof head - 1;
	if (PREFIX(p, n, "message\""))
		return WSC_MESSAGE;
	if (PREFIX(p, n, "ack\""))
		return WSC_ACK;
	if (PREFIX(p, n, "welcome\""))
		return WSC_WELCOME;
	if (PREFIX(p, n, "error\""))
		return WSC_ERROR;
	return WSC_OTHER;
}

enum wsc_kind wsc_sio_classify(const uint8_t *p, size_t n)
{
	if (n == 0)
		return WSC_OTHER;
	switch (p[0]) {
	case '0':
		return WSC_SIO_OPEN;
	case '1':
		return WSC_SIO_GONE;
	case '2':
		return n == 1 ? WSC_SIO_PING : WSC_OTHER; /* "2probe": upgrades only */
	case '4':
		break;
	default:
		return WSC_OTHER;
	}
	if (n < 2)
		return WSC_OTHER;
	switch (p[1]) {
	case '0':
		return WSC_WELCOME;
	case '1':
		return WSC_SIO_GONE;
	case '4':
		return WSC_SIO_REFUSED;
	case '2': {
		static const char ev[] = "42[\"message\",";
		if (!PREFIX(p, n, ev))
			return WSC_OTHER;
		enum wsc_kind k = wsc_classify(p + sizeof ev - 1, n - (sizeof ev - 1));
		return k == WSC_MESSAGE ? k : WSC_OTHER;
	}
	case '3': {
		size_t i = 2;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == 2 || i >= n || p[i] != '[')
			return WSC_OTHER;
		enum wsc_kind k = wsc_classify(p + i + 1, n - i - 1);
		return k == WSC_ACK || k == WSC_ERROR ? k : WSC_OTHER;
	}
	default:
		return WSC_OTHER;
	}
}

/* Reads decimal digits at *p; returns the number of digits (0: none). */
static size_t read_u64(const uint8_t *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	while (i < n && i < 19 && p[i] >= '0' && p[i] <= '9')
		v = v * 10 + (uint64_t)(p[i++] - '0');
	*out = v;
	return i;
}

static const uint8_t *find(const uint8_t *p, size_t n, const char *needle, size_t nn)
{
	const uint8_t *q = memmem(p, n, needle, nn);
	return q ? q + nn : NULL;
}

#define FIND(p, n, lit) find(p, n, lit, sizeof lit - 1)

int wsc_parse_message(const uint8_t *p, size_t n, uint64_t *sender, uint64_t *seq,
		      uint64_t *send_us, int64_t *room_seq)
{
	const uint8_t *end = p + n;
	/* chatd writes {"type":"message","id":N,"seq":N,...,"text":"...}; the
	 * room seq comes before any user-controlled field. */
	const uint8_t *s = FIND(p, n, ",\"seq\":");
	uint64_t rs = 0;
	if (s && read_u64(s, (size_t)(end - s), &rs))
		*room_seq = (int64_t)rs;
	else
		*room_seq = -1;
	const uint8_t *t = FIND(p, n, "\"text\":\"b:");
	if (!t)
		return -1;
	size_t k = read_u64(t, (size_t)(end - t), sender);
	if (!k || t + k >= end || t[k] != ':')
		return -1;
	t += k + 1;
	k = read_u64(t, (size_t)(end - t), seq);
	if (!k || t + k >= end || t[k] != ':')
		return -1;
	t += k + 1;
	k = read_u64(t, (size_t)(end - t), send_us);
	return k ? 0 : -1;
}

int wsc_parse_ref(const uint8_t *p, size_t n, uint64_t *seq, uint64_t *send_us)
{
	const uint8_t *end = p + n;
	const uint8_t *t = FIND(p, n, "\"ref\":\"");
	if (!t)
		return -1;
	size_t k = read_u64(t, (size_t)(end - t), seq);
	if (!k || t + k >= end || t[k] != '-')
		return -1;
	t += k + 1;
	k = read_u64(t, (size_t)(end - t), send_us);
	return k && t + k < end && t[k] == '"' ? 0 : -1;
}

int wsc_error_code(const uint8_t *p, size_t n, char *out, size_t cap)
{
	const uint8_t *end = p + n;
	const uint8_t *t = FIND(p, n, "\"code\":\"");
	size_t i = 0;
	if (t) {
		while (t + i < end && t[i] != '"' && i + 1 < cap) {
			out[i] = (char)t[i];
			i++;
		}
	}
	if (i == 0) {
		if (cap >= 2) {
			out[0] = '?';
			out[1] = '\0';
		}
		return -1;
	}
	out[i] = '\0';
	return 0;
}

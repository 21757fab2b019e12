// fuzz-sources: worker/ws_frame.c shared/utf8.c
/* libFuzzer target for the WebSocket frame decoder.
 *
 * Input: byte 0 picks max_message, byte 1 seeds the chunking, the rest is
 * the client's byte stream. The stream is decoded twice: all at once, and
 * in pseudo-random chunks the way socket reads deliver it, each delivery
 * in an exactly-sized heap block so ASan sees any read past len. Both
 * runs must produce the same events, and every event must satisfy the
 * codec's contract (bounds, sizes, UTF-8, close codes). Then the client
 * encoder and the close payload encoder are round-tripped through the
 * decoder. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/utf8.h"
#include "worker/ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                   \
			abort();                                                          \
		}                                                                         \
	} while (0)

static const size_t max_choices[16] = {
	0, 1, 2, 3, 5, 8, 125, 126, 127, 1000, 4096, 16383, 16384, 65535, 65536, SIZE_MAX,
};

struct rec {
	int type, first, fin;
	unsigned code;
	size_t len;
	uint64_t hash;
};

struct log {
	struct rec *r;
	size_t n, cap;
	/* The message being reassembled, to check whole-message UTF-8. */
	uint8_t *msg;
	size_t msg_len, msg_cap;
	int in_msg;
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void log_free(struct log *l)
{
	free(l->r);
	free(l->msg);
}

/* Checks one event against the contract and records it. */
static void record(struct log *l, const struct ws_event *ev, const uint8_t *frame, int n,
		   size_t max)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->r = realloc(l->r, l->cap * sizeof *l->r);
		CHECK(l->r);
	}
	struct rec *r = &l->r[l->n++];
	memset(r, 0, sizeof *r);
	r->type = ev->type;
	r->code = ev->close_code;
	if (ev->type == WS_EV_FAIL) {
		CHECK(n == -1);
		CHECK(ev->data == NULL && ev->len == 0);
		CHECK(ev->close_code == 1002 || ev->close_code == 1003 || ev->close_code == 1007 ||
		      ev->close_code == 1009);
		return;
	}
	CHECK(n >= 6); /* the smallest client frame */
	CHECK(ev->data != NULL);
	CHECK(ev->data >= frame && ev->data + ev->len <= frame + n);
	r->first = ev->first;
	r->fin = ev->fin;
	r->len = ev->len;
	r->hash = fnv(ev->data, ev->len);
	switch (ev->type) {
	case WS_EV_TEXT:
		CHECK(ev->first == !l->in_msg);
		if (max > WS_MESSAGE_MAX)
			max = WS_MESSAGE_MAX;
		CHECK(ev->len <= max && l->msg_len + ev->len <= max);
		if (l->msg_len + ev->len > l->msg_cap) {
			l->msg_cap = 2 * (l->msg_len + ev->len);
			l->msg = realloc(l->msg, l->msg_cap);
			CHECK(l->msg);
		}
		if (ev->len)
			memcpy(l->msg + l->msg_len, ev->data, ev->len);
		l->msg_len += ev->len;
		CHECK(utf8_validate(UTF8_ACCEPT, l->msg, l->msg_len) != UTF8_REJECT);
		if (ev->fin) {
			CHECK(utf8_is_complete_valid(l->msg, l->msg_len));
			l->msg_len = 0;
			l->in_msg = 0;
		} else {
			l->in_msg = 1;
		}
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
		CHECK(ev->len <= WS_CONTROL_MAX);
		CHECK(ev->first && ev->fin);
		break;
	case WS_EV_CLOSE:
		CHECK(ev->len <= WS_CONTROL_MAX - 2);
		CHECK(utf8_is_complete_valid(ev->data, ev->len));
		CHECK(ws_close_code_valid(ev->close_code) || (ev->close_code == 1005 && ev->len == 0));
		break;
	default:
		CHECK(!"unexpected event type");
	}
}

/* Decodes what is pending; returns bytes consumed, sets *failed. */
static size_t drain(struct ws_decoder *d, uint8_t *buf, size_t len, size_t max, struct log *l,
		    int *failed)
{
	size_t off = 0;
	for (;;) {
		struct ws_event ev;
		int n = ws_frame_decode(d, buf + off, len - off, max, &ev);
		if (n == 0) {
			CHECK(ev.type == WS_EV_NONE);
			return off;
		}
		record(l, &ev, buf + off, n, max);
		if (n < 0) {
			*failed = 1;
			return off;
		}
		CHECK((size_t)n <= len - off);
		off += (size_t)n;
		CHECK(d->msg_len <= (max > WS_MESSAGE_MAX ? WS_MESSAGE_MAX : max));
	}
}

static void roundtrip(const uint8_t *p, size_t n, size_t max, const uint8_t key[4], int fin)
{
	if (max > WS_MESSAGE_MAX)
		max = WS_MESSAGE_MAX;
	if (n > max)
		n = max;
	uint8_t *f = malloc(WS_FRAME_HEADER_MAX + 4 + n);
	CHECK(f);
	size_t h = ws_frame_header_encode_masked(f, WS_OP_TEXT, fin, n, key);
	CHECK(h == 6 || h == 8 || h == 14);
	memcpy(f + h, p, n);
	ws_mask(f + h, n, key, 0);
	struct ws_decoder d;
	ws_decoder_init(&d);
	struct ws_event ev;
	int r = ws_frame_decode(&d, f, h + n, max, &ev);
	uint32_t st = utf8_validate(UTF8_ACCEPT, p, n);
	if (st == UTF8_REJECT || (fin && st != UTF8_ACCEPT)) {
		CHECK(r == -1 && ev.close_code == 1007);
	} else {
		CHECK(r == (int)(h + n));
		CHECK(ev.type == WS_EV_TEXT && ev.len == n && ev.first && ev.fin == !!fin);
		CHECK(n == 0 || memcmp(ev.data, p, n) == 0);
	}
	free(f);

	/* Close payload: the reason is whatever valid UTF-8 prefix the input
	 * starts with, up to its first NUL. */
	char reason[256];
	size_t rn = 0;
	while (rn < n && rn < sizeof reason - 1 && p[rn])
		rn++;
	while (rn > 0 && !utf8_is_complete_valid(p, rn))
		rn--;
	memcpy(reason, p, rn);
	reason[rn] = 0;
	uint8_t cf[6 + WS_CONTROL_MAX];
	uint8_t payload[WS_CONTROL_MAX];
	size_t pn = ws_close_payload_encode(payload, 4321, reason);
	CHECK(pn >= 2 && pn <= WS_CONTROL_MAX);
	CHECK(pn - 2 == rn || (rn > pn - 2 && pn - 2 + 3 >= WS_CONTROL_MAX - 2));
	h = ws_frame_header_encode_masked(cf, WS_OP_CLOSE, 1, pn, key);
	memcpy(cf + h, payload, pn);
	ws_mask(cf + h, pn, key, 0);
	ws_decoder_init(&d);
	r = ws_frame_decode(&d, cf, h + pn, 0, &ev);
	CHECK(r == (int)(h + pn));
	CHECK(ev.type == WS_EV_CLOSE && ev.close_code == 4321 && ev.len == pn - 2);
	CHECK(memcmp(ev.data, reason, ev.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = max_choices[data[0] & 15];
	uint64_t seed = 0x9E3779B97F4A7C15ull ^ ((uint64_t)data[1] << 32) ^ size;
	const uint8_t *in = data + 2;
	size_t n = size - 2;

	/* All at once, from an exactly-sized copy. */
	struct log whole = {0};
	uint8_t *buf = malloc(n ? n : 1);
	CHECK(buf);
	if (n)
		memcpy(buf, in, n);
	struct ws_decoder d;
	ws_decoder_init(&d);
	int failed = 0;
	size_t used = drain(&d, buf, n, max, &whole, &failed);
	CHECK(used <= n);
	/* Whatever is left unconsumed is untouched. */
	if (!failed)
		CHECK(memcmp(buf + used, in + used, n - used) == 0);
	free(buf);

	/* In chunks. */
	struct log chunked = {0};
	ws_decoder_init(&d);
	size_t delivered = 0, consumed = 0;
	int cfailed = 0;
	while (delivered < n && !cfailed) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		size_t step = (seed & 3) == 0 ? 1 + (seed >> 8) % 8 : 1 + (seed >> 8) % (n / 8 + 1);
		if (step > n - delivered)
			step = n - delivered;
		delivered += step;
		size_t len = delivered - consumed;
		uint8_t *p = malloc(len);
		CHECK(p);
		memcpy(p, in + consumed, len);
		consumed += drain(&d, p, len, max, &chunked, &cfailed);
		free(p);
	}
	CHECK(failed == cfailed);
	CHECK(whole.n == chunked.n);
	for (size_t i = 0; i < whole.n; i++)
		CHECK(memcmp(&whole.r[i], &chunked.r[i], sizeof whole.r[i]) == 0);
	if (!failed)
		CHECK(consumed == used);
	log_free(&whole);
	log_free(&chunked);

	const uint8_t key[4] = {data[1], (uint8_t)(data[1] * 3), 0x5a, (uint8_t)~data[0]};
	roundtrip(in, n, max, key, data[0] & 0x10);
	return 0;
}

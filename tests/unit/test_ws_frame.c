/* worker/ws_frame.c: a table of client frame sequences with the events and
 * close codes they must produce. Each sequence is fed whole, split in two
 * at every byte boundary and byte by byte, always from a buffer that ends
 * at a PROT_NONE page so that any read past len faults. Errors visible in
 * the header must appear exactly when the byte that shows them arrives.
 * Then the encoders, masking and a few properties checked over every
 * opcode and every close code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/utf8.h"
#include "worker/ws_frame.h"

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10
#define CONT WS_OP_CONT
#define TEXT WS_OP_TEXT
#define BIN WS_OP_BINARY
#define CLOSE WS_OP_CLOSE
#define PING WS_OP_PING
#define PONG WS_OP_PONG

#define DEFAULT_MAX 16384
/* Streams longer than this get every split in their first and last
 * SPLIT_EDGE bytes and around each frame boundary, and a sample in
 * between: the middle of a big payload is all alike, and splitting a
 * 64 KiB frame at all 64 Ki points costs minutes under ASan. */
#define SPLIT_ALL_MAX 8192
#define SPLIT_EDGE 96
#define SPLIT_STRIDE 509

/* ---- frames as a test describes them ---- */

struct tframe {
	int on;
	uint8_t b0;          /* FIN, RSV and opcode bits as sent */
	const char *p;       /* payload; NULL: n bytes of filler */
	size_t n;
	int form;            /* 0 minimal, or 16 / 64 to force that length form */
	int unmasked;
	const char *raw;     /* instead of all the above: these exact bytes */
	size_t rawn;
};

#define F(b0_, lit) {.on = 1, .b0 = (b0_), .p = (lit), .n = sizeof(lit) - 1}
#define FN(b0_, n_) {.on = 1, .b0 = (b0_), .n = (n_)}
#define FL(b0_, lit, form_) {.on = 1, .b0 = (b0_), .p = (lit), .n = sizeof(lit) - 1, .form = (form_)}
#define FU(b0_, lit) {.on = 1, .b0 = (b0_), .p = (lit), .n = sizeof(lit) - 1, .unmasked = 1}
#define RAW(lit) {.on = 1, .raw = (lit), .rawn = sizeof(lit) - 1}

struct tev {
	int on;
	enum ws_event_type type;
	int first, fin;
	uint16_t code;
	const char *p; /* NULL: n bytes of filler */
	size_t n;
};

#define E_TEXT(first_, fin_, lit) {1, WS_EV_TEXT, first_, fin_, 0, lit, sizeof(lit) - 1}
#define E_TEXTN(first_, fin_, n_) {1, WS_EV_TEXT, first_, fin_, 0, NULL, n_}
#define E_PING(lit) {1, WS_EV_PING, 1, 1, 0, lit, sizeof(lit) - 1}
#define E_PINGN(n_) {1, WS_EV_PING, 1, 1, 0, NULL, n_}
#define E_PONG(lit) {1, WS_EV_PONG, 1, 1, 0, lit, sizeof(lit) - 1}
#define E_CLOSE(code_, lit) {1, WS_EV_CLOSE, 1, 1, code_, lit, sizeof(lit) - 1}
#define E_CLOSEN(code_, n_) {1, WS_EV_CLOSE, 1, 1, code_, NULL, n_}
#define E_FAIL(code_) {1, WS_EV_FAIL, 0, 0, code_, "", 0}

struct tcase {
	const char *name;
	long long max;          /* 0: DEFAULT_MAX; -1: a real 0 */
	struct tframe f[8];
	struct tev e[8];
	/* For a case ending in WS_EV_FAIL: the error must be reported once
	 * `off` bytes of frame `frame` are in (0: the whole frame), and not
	 * one byte earlier. */
	int fail_frame, fail_off;
};

#define AT(fr, off) .fail_frame = (fr), .fail_off = (off)
#define OK AT(0, 0)

static uint8_t filler(size_t i)
{
	return (uint8_t)('a' + i % 26);
}

static const struct tcase cases[] = {
	/* RFC 6455 5.7 examples */
	{"rfc single masked text", 0,
	 {RAW("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")}, {E_TEXT(1, 1, "Hello")}, OK},
	{"rfc masked pong", 0,
	 {RAW("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")}, {E_PONG("Hello")}, OK},
	{"rfc unmasked text is refused", 0,
	 {RAW("\x81\x05\x48\x65\x6c\x6c\x6f")}, {E_FAIL(1002)}, AT(0, 2)},
	{"zero masking key", 0, {RAW("\x81\x82\x00\x00\x00\x00hi")}, {E_TEXT(1, 1, "hi")}, OK},

	/* lengths */
	{"empty text", 0, {F(FIN | TEXT, "")}, {E_TEXT(1, 1, "")}, OK},
	{"text 1 byte", 0, {F(FIN | TEXT, "x")}, {E_TEXT(1, 1, "x")}, OK},
	{"text 7-bit max 125", 0, {FN(FIN | TEXT, 125)}, {E_TEXTN(1, 1, 125)}, OK},
	{"text 16-bit min 126", 0, {FN(FIN | TEXT, 126)}, {E_TEXTN(1, 1, 126)}, OK},
	{"text 16-bit 1000 (odd tails)", 0, {FN(FIN | TEXT, 1003)}, {E_TEXTN(1, 1, 1003)}, OK},
	{"text 16-bit max 65535", 65536, {FN(FIN | TEXT, 65535)}, {E_TEXTN(1, 1, 65535)}, OK},
	{"text 64-bit min 65536 = max", 65536, {FN(FIN | TEXT, 65536)}, {E_TEXTN(1, 1, 65536)}, OK},
	{"non-minimal 16-bit length accepted", 0, {FL(FIN | TEXT, "hi", 16)}, {E_TEXT(1, 1, "hi")}, OK},
	{"non-minimal 64-bit length accepted", 0, {FL(FIN | TEXT, "hi", 64)}, {E_TEXT(1, 1, "hi")}, OK},
	{"non-minimal 64-bit empty", 0, {FL(FIN | TEXT, "", 64)}, {E_TEXT(1, 1, "")}, OK},
	{"64-bit length with top bit set", 0,
	 {RAW("\x81\xff\x80\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00x")}, {E_FAIL(1002)}, AT(0, 3)},
	{"64-bit length 2^62 refused at its first byte", 0,
	 {RAW("\x81\xff\x40\x00\x00\x00\x00\x00\x00\x00")}, {E_FAIL(1009)}, AT(0, 3)},
	{"64-bit length 65536 refused when its 1 arrives", 0,
	 {RAW("\x81\xff\x00\x00\x00\x00\x00\x01\x00\x00")}, {E_FAIL(1009)}, AT(0, 8)},

	/* max_message */
	{"7-bit exactly max", 100, {FN(FIN | TEXT, 100)}, {E_TEXTN(1, 1, 100)}, OK},
	{"7-bit max+1", 100, {FN(FIN | TEXT, 101)}, {E_FAIL(1009)}, AT(0, 2)},
	{"16-bit exactly max", 1000, {FN(FIN | TEXT, 1000)}, {E_TEXTN(1, 1, 1000)}, OK},
	{"16-bit max+1 refused at the low length byte", 1000,
	 {FN(FIN | TEXT, 1001)}, {E_FAIL(1009)}, AT(0, 4)},
	{"16-bit far over max refused at the high length byte", 1000,
	 {RAW("\x81\xfe\x10\x00")}, {E_FAIL(1009)}, AT(0, 3)},
	{"default max exactly", 0, {FN(FIN | TEXT, DEFAULT_MAX)}, {E_TEXTN(1, 1, DEFAULT_MAX)}, OK},
	{"default max+1", 0, {RAW("\x81\xfe\x40\x01")}, {E_FAIL(1009)}, AT(0, 4)},
	{"max 0: empty ok, 1 byte too big", -1,
	 {F(FIN | TEXT, ""), F(FIN | TEXT, "a")}, {E_TEXT(1, 1, ""), E_FAIL(1009)}, AT(1, 2)},
	{"fragmented total exactly max", 10,
	 {FN(TEXT, 4), FN(CONT, 0), FN(FIN | CONT, 6)},
	 {E_TEXTN(1, 0, 4), E_TEXTN(0, 0, 0), E_TEXTN(0, 1, 6)}, OK},
	{"fragmented total over max", 10,
	 {FN(TEXT, 4), F(FIN | PING, "p"), FN(CONT, 4), FN(FIN | CONT, 3)},
	 {E_TEXTN(1, 0, 4), E_PING("p"), E_TEXTN(0, 0, 4), E_FAIL(1009)}, AT(3, 2)},
	{"max resets after a message", 10,
	 {FN(TEXT, 6), FN(FIN | CONT, 4), FN(TEXT, 6), FN(FIN | CONT, 4)},
	 {E_TEXTN(1, 0, 6), E_TEXTN(0, 1, 4), E_TEXTN(1, 0, 6), E_TEXTN(0, 1, 4)}, OK},
	{"control frames are not bound by max", 4,
	 {FN(FIN | PING, 10), F(FIN | TEXT, "abcd")}, {E_PINGN(10), E_TEXT(1, 1, "abcd")}, OK},

	/* fragmentation */
	{"fragments with interleaved ping and pong", 0,
	 {F(TEXT, "Hel"), F(FIN | PING, "p"), F(CONT, "lo "), F(FIN | PONG, ""), F(FIN | CONT, "world")},
	 {E_TEXT(1, 0, "Hel"), E_PING("p"), E_TEXT(0, 0, "lo "), E_PONG(""), E_TEXT(0, 1, "world")}, OK},
	{"empty fragments", 0,
	 {F(TEXT, ""), F(CONT, ""), F(FIN | CONT, "")},
	 {E_TEXT(1, 0, ""), E_TEXT(0, 0, ""), E_TEXT(0, 1, "")}, OK},
	{"two messages back to back", 0,
	 {F(TEXT, "a"), F(FIN | CONT, "b"), F(FIN | TEXT, "c")},
	 {E_TEXT(1, 0, "a"), E_TEXT(0, 1, "b"), E_TEXT(1, 1, "c")}, OK},
	{"continuation without a message", 0, {F(FIN | CONT, "x")}, {E_FAIL(1002)}, AT(0, 1)},
	{"continuation after a finished message", 0,
	 {F(FIN | TEXT, "a"), F(FIN | CONT, "b")}, {E_TEXT(1, 1, "a"), E_FAIL(1002)}, AT(1, 1)},
	{"new text inside a fragmented message", 0,
	 {F(TEXT, "a"), F(FIN | TEXT, "b")}, {E_TEXT(1, 0, "a"), E_FAIL(1002)}, AT(1, 1)},
	{"close inside a fragmented message", 0,
	 {F(TEXT, "a"), F(FIN | CLOSE, "\x03\xe8")}, {E_TEXT(1, 0, "a"), E_CLOSE(1000, "")}, OK},

	/* binary */
	{"binary", 0, {F(FIN | BIN, "x")}, {E_FAIL(1003)}, AT(0, 1)},
	{"empty binary", 0, {F(FIN | BIN, "")}, {E_FAIL(1003)}, AT(0, 1)},
	{"fragmented binary", 0, {F(BIN, "x"), F(FIN | CONT, "y")}, {E_FAIL(1003)}, AT(0, 1)},
	{"binary after text", 0,
	 {F(FIN | TEXT, "a"), F(FIN | BIN, "x")}, {E_TEXT(1, 1, "a"), E_FAIL(1003)}, AT(1, 1)},
	{"binary inside a text message", 0,
	 {F(TEXT, "a"), F(FIN | BIN, "x")}, {E_TEXT(1, 0, "a"), E_FAIL(1002)}, AT(1, 1)},
	{"unmasked binary: 1003 from byte 0", 0, {FU(FIN | BIN, "x")}, {E_FAIL(1003)}, AT(0, 1)},

	/* header errors */
	{"rsv1", 0, {F(FIN | RSV1 | TEXT, "x")}, {E_FAIL(1002)}, AT(0, 1)},
	{"rsv2", 0, {F(FIN | RSV2 | TEXT, "x")}, {E_FAIL(1002)}, AT(0, 1)},
	{"rsv3", 0, {F(FIN | RSV3 | TEXT, "x")}, {E_FAIL(1002)}, AT(0, 1)},
	{"rsv on ping", 0, {F(FIN | RSV1 | PING, "")}, {E_FAIL(1002)}, AT(0, 1)},
	{"rsv on continuation", 0,
	 {F(TEXT, "a"), F(FIN | RSV3 | CONT, "b")}, {E_TEXT(1, 0, "a"), E_FAIL(1002)}, AT(1, 1)},
	{"reserved opcode 3", 0, {F(FIN | 3, "")}, {E_FAIL(1002)}, AT(0, 1)},
	{"reserved opcode 7", 0, {F(FIN | 7, "")}, {E_FAIL(1002)}, AT(0, 1)},
	{"reserved opcode B", 0, {F(FIN | 0xB, "")}, {E_FAIL(1002)}, AT(0, 1)},
	{"reserved opcode F", 0, {F(FIN | 0xF, "")}, {E_FAIL(1002)}, AT(0, 1)},
	{"reserved opcode after a good frame", 0,
	 {F(FIN | PING, "a"), F(FIN | 5, "")}, {E_PING("a"), E_FAIL(1002)}, AT(1, 1)},
	{"unmasked text", 0, {FU(FIN | TEXT, "hi")}, {E_FAIL(1002)}, AT(0, 2)},
	{"unmasked ping", 0, {FU(FIN | PING, "")}, {E_FAIL(1002)}, AT(0, 2)},
	{"unmasked close", 0, {FU(FIN | CLOSE, "\x03\xe8")}, {E_FAIL(1002)}, AT(0, 2)},
	{"fragmented ping", 0, {F(PING, "a")}, {E_FAIL(1002)}, AT(0, 1)},
	{"fragmented pong", 0, {F(PONG, "a")}, {E_FAIL(1002)}, AT(0, 1)},
	{"fragmented close", 0, {F(CLOSE, "")}, {E_FAIL(1002)}, AT(0, 1)},
	{"ping 125 bytes", 0, {FN(FIN | PING, 125)}, {E_PINGN(125)}, OK},
	{"ping 126 bytes", 0, {FN(FIN | PING, 126)}, {E_FAIL(1002)}, AT(0, 2)},
	{"ping with a 16-bit length form", 0, {FL(FIN | PING, "x", 16)}, {E_FAIL(1002)}, AT(0, 2)},
	{"close with a 64-bit length form", 0, {RAW("\x88\xff")}, {E_FAIL(1002)}, AT(0, 2)},

	/* UTF-8 */
	{"utf-8 kosme", 0,
	 {F(FIN | TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")},
	 {E_TEXT(1, 1, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")}, OK},
	{"utf-8 split 2|1 across fragments", 0,
	 {F(TEXT, "\xe2\x82"), F(FIN | CONT, "\xac")},
	 {E_TEXT(1, 0, "\xe2\x82"), E_TEXT(0, 1, "\xac")}, OK},
	{"utf-8 4 bytes over 4 fragments with a ping", 0,
	 {F(TEXT, "\xf0"), F(CONT, "\x9f"), F(FIN | PING, ""), F(CONT, "\x98"), F(FIN | CONT, "\x80!")},
	 {E_TEXT(1, 0, "\xf0"), E_TEXT(0, 0, "\x9f"), E_PING(""), E_TEXT(0, 0, "\x98"),
	  E_TEXT(0, 1, "\x80!")}, OK},
	{"utf-8 split with empty fragment between", 0,
	 {F(TEXT, "a\xce"), F(CONT, ""), F(FIN | CONT, "\xba")},
	 {E_TEXT(1, 0, "a\xce"), E_TEXT(0, 0, ""), E_TEXT(0, 1, "\xba")}, OK},
	{"overlong", 0, {F(FIN | TEXT, "a\xc0\xaf")}, {E_FAIL(1007)}, AT(0, 8)},
	{"surrogate", 0, {F(FIN | TEXT, "\xed\xa0\x80")}, {E_FAIL(1007)}, AT(0, 8)},
	{"above U+10FFFF", 0, {F(FIN | TEXT, "\xf4\x90\x80\x80")}, {E_FAIL(1007)}, AT(0, 8)},
	{"0xFF byte", 0, {F(FIN | TEXT, "\xff")}, {E_FAIL(1007)}, AT(0, 0)},
	{"invalid byte fails at its frame, not at FIN", 0,
	 {F(TEXT, "ok\xff"), F(FIN | CONT, "b")}, {E_FAIL(1007)}, AT(0, 0)},
	{"invalid in a middle fragment", 0,
	 {F(TEXT, "ab"), F(CONT, "\xc0\x80"), F(FIN | CONT, "c")},
	 {E_TEXT(1, 0, "ab"), E_FAIL(1007)}, AT(1, 7)},
	{"truncated character at end of single frame", 0,
	 {F(FIN | TEXT, "ab\xe2\x82")}, {E_FAIL(1007)}, AT(0, 0)},
	{"truncated character at final fragment", 0,
	 {F(TEXT, "\xe2\x82"), F(FIN | CONT, "")}, {E_TEXT(1, 0, "\xe2\x82"), E_FAIL(1007)}, AT(1, 0)},
	{"bad continuation across fragments", 0,
	 {F(TEXT, "\xe2"), F(FIN | CONT, "A")}, {E_TEXT(1, 0, "\xe2"), E_FAIL(1007)}, AT(1, 0)},
	{"surrogate across fragments", 0,
	 {F(TEXT, "\xed"), F(FIN | CONT, "\xa0\x80")}, {E_TEXT(1, 0, "\xed"), E_FAIL(1007)}, AT(1, 7)},
	/* Fail fast: an invalid byte is refused when it arrives, not when
	 * the rest of its frame does (a peer could withhold that for ever). */
	{"invalid byte refused before its frame is whole", 0,
	 {F(FIN | TEXT, "ab\xff" "cdefghijklmnopqrstuvwxyz")}, {E_FAIL(1007)}, AT(0, 9)},
	{"invalid byte refused early in a 16-bit length frame", 0,
	 {FL(FIN | TEXT, "ab\xff" "cdefghijklmnopqrstuvwxyz", 16)}, {E_FAIL(1007)}, AT(0, 11)},
	{"invalid continuation byte refused early in a continuation frame", 0,
	 {F(TEXT, "\xe2"), F(FIN | CONT, "\x82\x28" "zzzzzzzzzz")},
	 {E_TEXT(1, 0, "\xe2"), E_FAIL(1007)}, AT(1, 8)},
	{"valid prefix of a frame, then invalid at its last byte", 0,
	 {F(FIN | TEXT, "\xce\xba\xe1\xbd\xb9" "abc\xc0")}, {E_FAIL(1007)}, AT(0, 0)},
	{"utf-8 state resets between messages", 0,
	 {F(TEXT, "\xe2\x82"), F(FIN | CONT, "\xac"), F(FIN | TEXT, "\xac")},
	 {E_TEXT(1, 0, "\xe2\x82"), E_TEXT(0, 1, "\xac"), E_FAIL(1007)}, AT(2, 0)},

	/* close */
	{"close without payload", 0, {F(FIN | CLOSE, "")}, {E_CLOSE(1005, "")}, OK},
	{"close 1000", 0, {F(FIN | CLOSE, "\x03\xe8")}, {E_CLOSE(1000, "")}, OK},
	{"close 1000 with reason", 0, {F(FIN | CLOSE, "\x03\xe8" "bye")}, {E_CLOSE(1000, "bye")}, OK},
	{"close reason in utf-8", 0,
	 {F(FIN | CLOSE, "\x03\xe9\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")},
	 {E_CLOSE(1001, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")}, OK},
	{"close 1-byte payload", 0, {F(FIN | CLOSE, "\x03")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 0", 0, {F(FIN | CLOSE, "\x00\x00")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 999", 0, {F(FIN | CLOSE, "\x03\xe7")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 1004", 0, {F(FIN | CLOSE, "\x03\xec")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 1005", 0, {F(FIN | CLOSE, "\x03\xed")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 1006", 0, {F(FIN | CLOSE, "\x03\xee")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 1015", 0, {F(FIN | CLOSE, "\x03\xf7")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 1016", 0, {F(FIN | CLOSE, "\x03\xf8")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 2999", 0, {F(FIN | CLOSE, "\x0b\xb7")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 5000", 0, {F(FIN | CLOSE, "\x13\x88")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 65535", 0, {F(FIN | CLOSE, "\xff\xff")}, {E_FAIL(1002)}, AT(0, 0)},
	{"close code 1014", 0, {F(FIN | CLOSE, "\x03\xf6")}, {E_CLOSE(1014, "")}, OK},
	{"close code 3000", 0, {F(FIN | CLOSE, "\x0b\xb8")}, {E_CLOSE(3000, "")}, OK},
	{"close code 4999", 0, {F(FIN | CLOSE, "\x13\x87" "x")}, {E_CLOSE(4999, "x")}, OK},
	{"close reason invalid utf-8", 0, {F(FIN | CLOSE, "\x03\xe8\xff")}, {E_FAIL(1007)}, AT(0, 0)},
	{"close reason truncated utf-8", 0,
	 {F(FIN | CLOSE, "\x03\xe8" "ab\xe2\x82")}, {E_FAIL(1007)}, AT(0, 0)},
	{"close reason 123 bytes", 0,
	 {RAW("\x88\xfd\x00\x00\x00\x00\x03\xe8"
	      "0123456789012345678901234567890123456789012345678901234567890123456789"
	      "01234567890123456789012345678901234567890123456789012")},
	 {E_CLOSE(1000, "0123456789012345678901234567890123456789012345678901234567890123456789"
			"01234567890123456789012345678901234567890123456789012")}, OK},
	{"close after text and ping", 0,
	 {F(FIN | TEXT, "a"), F(FIN | TEXT, "b"), F(FIN | PING, ""), F(FIN | CLOSE, "\x03\xe8")},
	 {E_TEXT(1, 1, "a"), E_TEXT(1, 1, "b"), E_PING(""), E_CLOSE(1000, "")}, OK},
};

#define NCASES (sizeof cases / sizeof cases[0])

/* ---- building the wire bytes (independently of the encoders under test) ---- */

struct bytes {
	uint8_t *p;
	size_t n, cap;
	size_t frame_end[9]; /* stream offset where each frame ends */
	size_t nframes;
};

static void put(struct bytes *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void build(const struct tcase *c, struct bytes *b)
{
	memset(b, 0, sizeof *b);
	for (size_t i = 0; i < 8 && c->f[i].on; i++) {
		const struct tframe *f = &c->f[i];
		if (f->raw) {
			put(b, f->raw, f->rawn);
			b->frame_end[b->nframes++] = b->n;
			continue;
		}
		uint8_t h[14];
		size_t hn = 0;
		h[hn++] = f->b0;
		uint8_t mbit = f->unmasked ? 0 : 0x80;
		int form = f->form ? f->form : f->n <= 125 ? 7 : f->n <= 0xFFFF ? 16 : 64;
		if (form == 7) {
			h[hn++] = mbit | (uint8_t)f->n;
		} else if (form == 16) {
			h[hn++] = mbit | 126;
			h[hn++] = (uint8_t)(f->n >> 8);
			h[hn++] = (uint8_t)f->n;
		} else {
			h[hn++] = mbit | 127;
			for (int k = 7; k >= 0; k--)
				h[hn++] = (uint8_t)((uint64_t)f->n >> (8 * k));
		}
		/* A different key for every frame, none of them trivial. */
		uint8_t key[4] = {(uint8_t)(0x37 + 17 * i), 0xfa, (uint8_t)(0x21 ^ (i << 3)), 0x3d};
		if (!f->unmasked) {
			memcpy(h + hn, key, 4);
			hn += 4;
		}
		put(b, h, hn);
		for (size_t k = 0; k < f->n; k++) {
			uint8_t v = f->p ? (uint8_t)f->p[k] : filler(k);
			if (!f->unmasked)
				v ^= key[k % 4];
			put(b, &v, 1);
		}
		b->frame_end[b->nframes++] = b->n;
	}
}

/* ---- a buffer that ends at an inaccessible page ---- */

struct guard {
	uint8_t *base;
	size_t size; /* accessible bytes */
	size_t map;
};

static void guard_init(struct guard *g, size_t need)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	g->size = (need + page - 1) / page * page;
	if (g->size == 0)
		g->size = page;
	g->map = g->size + page;
	void *m = mmap(NULL, g->map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	g->base = m;
	assert_int_equal(mprotect(g->base + g->size, page, PROT_NONE), 0);
}

static void guard_free(struct guard *g)
{
	munmap(g->base, g->map);
}

/* Places n bytes so that the last one is right before the guard page. */
static uint8_t *guard_put(struct guard *g, const uint8_t *p, size_t n)
{
	assert_true(n <= g->size);
	uint8_t *dst = g->base + g->size - n;
	if (n)
		memcpy(dst, p, n);
	return dst;
}

/* ---- feeding a stream in chunks, like a connection's read buffer ---- */

struct rec {
	enum ws_event_type type;
	int first, fin;
	uint16_t code;
	uint8_t *p;
	size_t n;
};

struct run {
	struct rec ev[16];
	size_t nev;
	int failed;
	size_t fail_delivered; /* bytes delivered when the failure came */
	size_t consumed;
};

static void run_free(struct run *r)
{
	for (size_t i = 0; i < r->nev; i++)
		free(r->ev[i].p);
}

static void feed(const struct tcase *c, const struct bytes *b, struct guard *g, const size_t *cuts,
		 size_t ncuts, struct run *r, const char *how)
{
	size_t max = c->max == 0 ? DEFAULT_MAX : c->max < 0 ? 0 : (size_t)c->max;
	struct ws_decoder d;
	ws_decoder_init(&d);
	memset(r, 0, sizeof *r);
	size_t consumed = 0;
	for (size_t k = 0; k < ncuts && !r->failed; k++) {
		size_t delivered = cuts[k];
		/* The decoder leaves unconsumed bytes alone, so the connection's
		 * pending bytes are exactly the original stream's. */
		size_t len = delivered - consumed;
		uint8_t *buf = guard_put(g, b->p + consumed, len);
		for (;;) {
			struct ws_event ev;
			memset(&ev, 0xA5, sizeof ev);
			int n = ws_frame_decode(&d, buf, len, max, &ev);
			if (n == 0) {
				assert_int_equal(ev.type, WS_EV_NONE);
				if (len && memcmp(buf, b->p + consumed, len) != 0)
					fail_msg("%s [%s]: buffer changed on a 0 return", c->name, how);
				break;
			}
			if (r->nev == 16)
				fail_msg("%s [%s]: too many events", c->name, how);
			struct rec *e = &r->ev[r->nev++];
			e->type = ev.type;
			e->code = ev.close_code;
			if (n < 0) {
				assert_int_equal(n, -1);
				assert_int_equal(ev.type, WS_EV_FAIL);
				assert_null(ev.data);
				assert_int_equal(ev.len, 0);
				r->failed = 1;
				r->fail_delivered = delivered;
				/* Sticky: the caller is supposed to stop, but if
				 * it does not, it hears the same verdict. */
				struct ws_event ev2;
				assert_int_equal(ws_frame_decode(&d, buf, len, max, &ev2), -1);
				assert_int_equal(ev2.close_code, ev.close_code);
				break;
			}
			if ((size_t)n > len)
				fail_msg("%s [%s]: consumed %d of %zu", c->name, how, n, len);
			e->first = ev.first;
			e->fin = ev.fin;
			/* The event's bytes lie inside the frame just consumed. */
			assert_non_null(ev.data);
			if (ev.data < buf || ev.data + ev.len > buf + n)
				fail_msg("%s [%s]: event data outside its frame", c->name, how);
			e->n = ev.len;
			e->p = malloc(ev.len + 1);
			assert_non_null(e->p);
			memcpy(e->p, ev.data, ev.len);
			buf += n;
			len -= (size_t)n;
			consumed += (size_t)n;
		}
	}
	r->consumed = consumed;
}

static const char *ev_name(enum ws_event_type t)
{
	switch (t) {
	case WS_EV_NONE: return "NONE";
	case WS_EV_TEXT: return "TEXT";
	case WS_EV_PING: return "PING";
	case WS_EV_PONG: return "PONG";
	case WS_EV_CLOSE: return "CLOSE";
	case WS_EV_FAIL: return "FAIL";
	}
	return "?";
}

static void check_run(const struct tcase *c, const struct bytes *b, const struct run *r,
		      size_t fail_at, const char *how)
{
	size_t want = 0;
	while (want < 8 && c->e[want].on)
		want++;
	for (size_t i = 0; i < want || i < r->nev; i++) {
		if (i >= r->nev)
			fail_msg("%s [%s]: missing event %zu (%s)", c->name, how, i, ev_name(c->e[i].type));
		if (i >= want)
			fail_msg("%s [%s]: extra event %zu (%s %u)", c->name, how, i, ev_name(r->ev[i].type),
				 r->ev[i].code);
		const struct tev *x = &c->e[i];
		const struct rec *y = &r->ev[i];
		if (x->type != y->type || x->code != y->code)
			fail_msg("%s [%s]: event %zu is %s %u, want %s %u", c->name, how, i, ev_name(y->type),
				 y->code, ev_name(x->type), x->code);
		if (x->type == WS_EV_FAIL)
			continue;
		if (x->first != y->first || x->fin != y->fin)
			fail_msg("%s [%s]: event %zu first/fin %d/%d, want %d/%d", c->name, how, i, y->first,
				 y->fin, x->first, x->fin);
		if (x->n != y->n)
			fail_msg("%s [%s]: event %zu len %zu, want %zu", c->name, how, i, y->n, x->n);
		for (size_t k = 0; k < x->n; k++) {
			uint8_t v = x->p ? (uint8_t)x->p[k] : filler(k);
			if (y->p[k] != v)
				fail_msg("%s [%s]: event %zu byte %zu is %02x, want %02x", c->name, how, i, k,
					 y->p[k], v);
		}
	}
	if (r->failed) {
		if (r->fail_delivered < fail_at)
			fail_msg("%s [%s]: failed with only %zu bytes in, expected at %zu", c->name, how,
				 r->fail_delivered, fail_at);
	} else if (r->consumed != b->n) {
		fail_msg("%s [%s]: %zu of %zu bytes consumed", c->name, how, r->consumed, b->n);
	}
}

static size_t case_fail_at(const struct tcase *c, const struct bytes *b)
{
	size_t n = 0;
	while (n < 8 && c->e[n].on)
		n++;
	if (n == 0 || c->e[n - 1].type != WS_EV_FAIL)
		return SIZE_MAX;
	size_t start = c->fail_frame ? b->frame_end[c->fail_frame - 1] : 0;
	return c->fail_off ? start + (size_t)c->fail_off : b->frame_end[c->fail_frame];
}

static int split_wanted(const struct bytes *b, size_t k)
{
	if (b->n <= SPLIT_ALL_MAX || k < SPLIT_EDGE || b->n - k < SPLIT_EDGE || k % SPLIT_STRIDE == 0)
		return 1;
	for (size_t i = 0; i < b->nframes; i++) {
		size_t e = b->frame_end[i];
		if ((k <= e && e - k < SPLIT_EDGE) || (k > e && k - e < SPLIT_EDGE))
			return 1;
	}
	return 0;
}

static void run_case(const struct tcase *c)
{
	struct bytes b;
	build(c, &b);
	size_t fail_at = case_fail_at(c, &b);
	struct guard g;
	guard_init(&g, b.n);
	struct run r;
	size_t cuts[2];
	char how[64];

	/* Whole. */
	cuts[0] = b.n;
	feed(c, &b, &g, cuts, 1, &r, "whole");
	check_run(c, &b, &r, fail_at, "whole");
	run_free(&r);

	/* Two pieces, split everywhere. The first piece alone must give
	 * either the events so far or, once it holds the byte that shows an
	 * error, that same error and no later than that byte. */
	for (size_t k = 0; k <= b.n; k++) {
		if (!split_wanted(&b, k))
			continue;
		cuts[0] = k;
		cuts[1] = b.n;
		snprintf(how, sizeof how, "split at %zu", k);
		feed(c, &b, &g, cuts, 2, &r, how);
		check_run(c, &b, &r, fail_at, how);
		if (fail_at != SIZE_MAX && (k >= fail_at) != (r.failed && r.fail_delivered == k))
			fail_msg("%s [%s]: error not reported exactly once %zu bytes are in", c->name, how,
				 fail_at);
		run_free(&r);
	}

	/* Byte by byte: the error must come exactly at fail_at. */
	if (b.n <= SPLIT_ALL_MAX) {
		size_t *all = malloc((b.n + 1) * sizeof *all);
		assert_non_null(all);
		for (size_t k = 0; k < b.n; k++)
			all[k] = k + 1;
		feed(c, &b, &g, all, b.n, &r, "byte by byte");
		check_run(c, &b, &r, fail_at, "byte by byte");
		if (fail_at != SIZE_MAX && r.fail_delivered != fail_at)
			fail_msg("%s [byte by byte]: failed at %zu, want %zu", c->name, r.fail_delivered, fail_at);
		run_free(&r);
		free(all);
	}
	guard_free(&g);
	free(b.p);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++)
		run_case(&cases[i]);
}

/* ---- properties over whole spaces ---- */

static int decode_one(uint8_t *frame, size_t n, size_t max, struct ws_event *ev)
{
	struct ws_decoder d;
	ws_decoder_init(&d);
	return ws_frame_decode(&d, frame, n, max, ev);
}

static void test_every_opcode(void **state)
{
	(void)state;
	for (unsigned fin = 0; fin < 2; fin++)
		for (unsigned op = 0; op < 16; op++) {
			uint8_t f[6] = {(uint8_t)(fin << 7 | op), 0x80, 1, 2, 3, 4};
			struct ws_event ev;
			int n = decode_one(f, sizeof f, 100, &ev);
			int want_ok = op == TEXT || (fin && (op == CLOSE || op == PING || op == PONG));
			uint16_t want_code = op == BIN ? 1003 : 1002;
			if (want_ok) {
				assert_int_equal(n, 6);
			} else {
				assert_int_equal(n, -1);
				assert_int_equal(ev.close_code, want_code);
			}
		}
}

static void test_every_close_code(void **state)
{
	(void)state;
	for (unsigned code = 0; code <= 0xFFFF; code++) {
		uint8_t f[8] = {0x88, 0x82, 0, 0, 0, 0, (uint8_t)(code >> 8), (uint8_t)code};
		struct ws_event ev;
		int n = decode_one(f, sizeof f, 0, &ev);
		int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
			   (code >= 3000 && code <= 4999);
		assert_int_equal(ws_close_code_valid(code), want);
		if (want) {
			assert_int_equal(n, 8);
			assert_int_equal(ev.type, WS_EV_CLOSE);
			assert_int_equal(ev.close_code, code);
		} else {
			assert_int_equal(n, -1);
			assert_int_equal(ev.close_code, 1002);
		}
	}
}

static void test_max_message_extremes(void **state)
{
	(void)state;
	/* Values past WS_MESSAGE_MAX act as WS_MESSAGE_MAX, so a consumed
	 * size always fits the int return. */
	uint8_t f[10] = {0x81, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0}; /* 2^31 */
	struct ws_event ev;
	assert_int_equal(decode_one(f, sizeof f, SIZE_MAX, &ev), -1);
	assert_int_equal(ev.close_code, 1009);
	uint8_t g[10] = {0x81, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xf1}; /* WS_MESSAGE_MAX */
	assert_int_equal(decode_one(g, sizeof g, SIZE_MAX, &ev), 0);

	/* A caller lowering the limit mid-message must not wrap the
	 * remaining budget around. */
	struct ws_decoder d;
	ws_decoder_init(&d);
	uint8_t a[] = {0x01, 0x84, 0, 0, 0, 0, 'a', 'b', 'c', 'd'};
	assert_int_equal(ws_frame_decode(&d, a, sizeof a, 100, &ev), (int)sizeof a);
	uint8_t b[] = {0x80, 0x80, 0, 0, 0, 0};
	assert_int_equal(ws_frame_decode(&d, b, sizeof b, 2, &ev), -1);
	assert_int_equal(ev.close_code, 1009);
}

static void test_decoder_is_small(void **state)
{
	(void)state;
	assert_true(sizeof(struct ws_decoder) <= 16);
	struct ws_event ev;
	struct ws_decoder d;
	ws_decoder_init(&d);
	assert_int_equal(ws_frame_decode(&d, NULL, 0, 100, &ev), 0);
	assert_int_equal(ev.type, WS_EV_NONE);
}

/* ---- masking ---- */

static void test_mask(void **state)
{
	(void)state;
	const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
	uint8_t ref[300], buf[300 + 8];
	for (size_t n = 0; n <= 300; n += (n < 80 ? 1 : 37)) {
		for (size_t off = 0; off < 8; off++) {
			for (size_t align = 0; align < 8; align++) {
				for (size_t i = 0; i < n; i++)
					ref[i] = (uint8_t)(i * 7 + n + off);
				memcpy(buf + align, ref, n);
				ws_mask(buf + align, n, key, off);
				for (size_t i = 0; i < n; i++)
					if (buf[align + i] != (uint8_t)(ref[i] ^ key[(off + i) % 4]))
						fail_msg("n=%zu off=%zu align=%zu: byte %zu", n, off, align, i);
				/* In two pieces, the second continuing the key. */
				size_t cut = n / 3;
				ws_mask(buf + align, cut, key, off);
				ws_mask(buf + align + cut, n - cut, key, off + cut);
				assert_memory_equal(buf + align, ref, n);
			}
		}
	}
}

/* ---- encoders ---- */

static void test_header_encode(void **state)
{
	(void)state;
	uint8_t h[WS_FRAME_HEADER_MAX];
	assert_int_equal(ws_frame_header_encode(h, TEXT, 0), 2);
	assert_memory_equal(h, "\x81\x00", 2);
	assert_int_equal(ws_frame_header_encode(h, TEXT, 125), 2);
	assert_memory_equal(h, "\x81\x7d", 2);
	assert_int_equal(ws_frame_header_encode(h, TEXT, 126), 4);
	assert_memory_equal(h, "\x81\x7e\x00\x7e", 4);
	assert_int_equal(ws_frame_header_encode(h, CLOSE, 2), 2);
	assert_memory_equal(h, "\x88\x02", 2);
	assert_int_equal(ws_frame_header_encode(h, PONG, 5), 2);
	assert_memory_equal(h, "\x8a\x05", 2);
	assert_int_equal(ws_frame_header_encode(h, TEXT, 65535), 4);
	assert_memory_equal(h, "\x81\x7e\xff\xff", 4);
	assert_int_equal(ws_frame_header_encode(h, TEXT, 65536), 10);
	assert_memory_equal(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
	assert_int_equal(ws_frame_header_encode(h, TEXT, 0x0123456789ull), 10);
	assert_memory_equal(h, "\x81\x7f\x00\x00\x00\x01\x23\x45\x67\x89", 10);

	uint8_t m[WS_FRAME_HEADER_MAX + 4];
	const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	assert_int_equal(ws_frame_header_encode_masked(m, TEXT, true, 5, key), 6);
	assert_memory_equal(m, "\x81\x85\x37\xfa\x21\x3d", 6);
	assert_int_equal(ws_frame_header_encode_masked(m, CONT, false, 200, key), 8);
	assert_memory_equal(m, "\x00\xfe\x00\xc8\x37\xfa\x21\x3d", 8);
	assert_int_equal(ws_frame_header_encode_masked(m, TEXT, false, 70000, key), 14);
	assert_memory_equal(m, "\x01\xff\x00\x00\x00\x00\x00\x01\x11\x70\x37\xfa\x21\x3d", 14);
}

/* What the client encoder writes, the server decoder reads back. */
static void test_encode_decode_roundtrip(void **state)
{
	(void)state;
	static const size_t lens[] = {0, 1, 7, 8, 125, 126, 127, 1000, 65535, 65536, 70001};
	const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
	size_t cap = 14 + 70001;
	uint8_t *f = malloc(cap);
	assert_non_null(f);
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		for (int fin = 0; fin < 2; fin++) {
			size_t n = lens[i];
			size_t h = ws_frame_header_encode_masked(f, TEXT, fin, n, key);
			for (size_t k = 0; k < n; k++)
				f[h + k] = filler(k);
			ws_mask(f + h, n, key, 0);
			struct ws_event ev;
			int r = decode_one(f, h + n, 70001, &ev);
			assert_int_equal(r, (int)(h + n));
			assert_int_equal(ev.type, WS_EV_TEXT);
			assert_int_equal(ev.fin, fin);
			assert_true(ev.first);
			assert_int_equal(ev.len, n);
			for (size_t k = 0; k < n; k++)
				assert_int_equal(ev.data[k], filler(k));
			/* One byte short is "need more": masked again, as the
			 * decoder unmasked it in place. */
			ws_mask(f + h, n, key, 0);
			assert_int_equal(decode_one(f, h + n - 1, 70001, &ev), 0);
		}
	}
	free(f);
}

static void test_close_payload_encode(void **state)
{
	(void)state;
	uint8_t out[WS_CONTROL_MAX];
	assert_int_equal(ws_close_payload_encode(out, 1000, NULL), 2);
	assert_memory_equal(out, "\x03\xe8", 2);
	assert_int_equal(ws_close_payload_encode(out, 1009, ""), 2);
	assert_memory_equal(out, "\x03\xf1", 2);
	assert_int_equal(ws_close_payload_encode(out, 1013, "busy"), 6);
	assert_memory_equal(out, "\x03\xf5" "busy", 6);
	assert_int_equal(ws_close_payload_encode(out, 0, "ignored"), 0);

	char reason[400];
	memset(reason, 'x', 200);
	reason[200] = 0;
	assert_int_equal(ws_close_payload_encode(out, 4000, reason), 125);
	reason[123] = 0;
	assert_int_equal(ws_close_payload_encode(out, 4000, reason), 125);
	reason[123] = 'x';
	reason[122] = 0;
	assert_int_equal(ws_close_payload_encode(out, 4000, reason), 124);

	/* Multi-byte characters across the cut: for every alignment the
	 * result is the longest whole-character prefix and decodes as a
	 * valid close frame. */
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
	for (size_t ci = 0; ci < 3; ci++) {
		size_t cl = strlen(chars[ci]);
		for (size_t pad = 0; pad < 4; pad++) {
			size_t n = 0;
			memset(reason, 'a', pad);
			n = pad;
			while (n + cl < sizeof reason - 1) {
				memcpy(reason + n, chars[ci], cl);
				n += cl;
			}
			reason[n] = 0;
			size_t got = ws_close_payload_encode(out, 1000, reason);
			size_t want = pad + (123 - pad) / cl * cl;
			assert_int_equal(got, 2 + want);
			assert_memory_equal(out + 2, reason, want);
			uint8_t frame[6 + WS_CONTROL_MAX];
			const uint8_t key[4] = {1, 2, 3, 4};
			size_t h = ws_frame_header_encode_masked(frame, CLOSE, true, got, key);
			memcpy(frame + h, out, got);
			ws_mask(frame + h, got, key, 0);
			struct ws_event ev;
			assert_int_equal(decode_one(frame, h + got, 0, &ev), (int)(h + got));
			assert_int_equal(ev.type, WS_EV_CLOSE);
			assert_int_equal(ev.close_code, 1000);
			assert_int_equal(ev.len, want);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_every_opcode),
		cmocka_unit_test(test_every_close_code),
		cmocka_unit_test(test_max_message_extremes),
		cmocka_unit_test(test_decoder_is_small),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_header_encode),
		cmocka_unit_test(test_encode_decode_roundtrip),
		cmocka_unit_test(test_close_payload_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

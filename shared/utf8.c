#include "shared/utf8.h"

#include <string.h>

/* Byte classes. The split of the continuation range (80..8F, 90..9F,
 * A0..BF) is what lets the automaton reject overlongs and surrogates
 * without decoding: after E0 the next byte must be A0..BF (else the value
 * would fit in two bytes), after ED it must be 80..9F (else a surrogate),
 * after F0 90..BF (else overlong), after F4 80..8F (else > U+10FFFF). */
enum {
	C_ASCII,   /* 00..7F */
	C_CONT_LO, /* 80..8F */
	C_CONT_MI, /* 90..9F */
	C_CONT_HI, /* A0..BF */
	C_LEAD2,   /* C2..DF */
	C_E0,      /* E0 */
	C_LEAD3,   /* E1..EC, EE..EF */
	C_ED,      /* ED */
	C_F0,      /* F0 */
	C_LEAD4,   /* F1..F3 */
	C_F4,      /* F4 */
	C_BAD,     /* C0, C1 (always overlong), F5..FF (beyond U+10FFFF) */
};

static const uint8_t byte_class[256] = {
	/* 00..7F */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 80..8F */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	/* 90..9F */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	/* A0..BF */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	/* C0..DF */
	11, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	/* E0..EF */
	5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 6, 6,
	/* F0..FF */
	8, 9, 9, 9, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,
};

/* States, numbered 0..8; the value a caller holds is 6 times the number
 * (see below), so UTF8_ACCEPT is 0 and UTF8_REJECT is 6. */
enum {
	S_ACC = 0,
	S_REJ = 1,
	S_1 = 2,  /* one more continuation byte (80..BF) */
	S_2 = 3,  /* two more */
	S_3 = 4,  /* three more */
	S_E0 = 5, /* then A0..BF, then one more */
	S_ED = 6, /* then 80..9F, then one more */
	S_F0 = 7, /* then 90..BF, then two more */
	S_F4 = 8, /* then 80..8F, then two more */
	S_COUNT
};

_Static_assert(UTF8_ACCEPT == 6 * S_ACC && UTF8_REJECT == 6 * S_REJ, "public state values");

/* A "shift" automaton: for each byte class, one 64-bit row holds the next
 * state of all nine states, 6 bits each, and a state's value is the bit
 * offset of its own field. A step is then row >> state, a shift that
 * depends on nothing but the previous state, where a [state][class] table
 * puts a dependent memory load between consecutive bytes. That makes
 * non-ASCII text several times faster to validate. */
#define T(from, to) ((uint64_t)(6 * (to)) << (6 * (from)))
#define ROW(acc, rej, s1, s2, s3, e0, ed, f0, f4)                                          \
	(T(S_ACC, acc) | T(S_REJ, rej) | T(S_1, s1) | T(S_2, s2) | T(S_3, s3) | T(S_E0, e0) | \
	 T(S_ED, ed) | T(S_F0, f0) | T(S_F4, f4))
#define R S_REJ

static const uint64_t class_row[12] = {
	/*                 from: ACC    REJ  1      2    3    E0   ED   F0   F4 */
	[C_ASCII]   = ROW(S_ACC, R, R,     R,   R,   R,   R,   R,   R),
	[C_CONT_LO] = ROW(R,     R, S_ACC, S_1, S_2, R,   S_1, R,   S_2),
	[C_CONT_MI] = ROW(R,     R, S_ACC, S_1, S_2, R,   S_1, S_2, R),
	[C_CONT_HI] = ROW(R,     R, S_ACC, S_1, S_2, S_1, R,   S_2, R),
	[C_LEAD2]   = ROW(S_1,   R, R,     R,   R,   R,   R,   R,   R),
	[C_E0]      = ROW(S_E0,  R, R,     R,   R,   R,   R,   R,   R),
	[C_LEAD3]   = ROW(S_2,   R, R,     R,   R,   R,   R,   R,   R),
	[C_ED]      = ROW(S_ED,  R, R,     R,   R,   R,   R,   R,   R),
	[C_F0]      = ROW(S_F0,  R, R,     R,   R,   R,   R,   R,   R),
	[C_LEAD4]   = ROW(S_3,   R, R,     R,   R,   R,   R,   R,   R),
	[C_F4]      = ROW(S_F4,  R, R,     R,   R,   R,   R,   R,   R),
	[C_BAD]     = ROW(R,     R, R,     R,   R,   R,   R,   R,   R),
};

#undef R
#undef ROW
#undef T

#define HIGH_BITS 0x8080808080808080ull

static inline uint32_t step(uint32_t state, uint8_t b)
{
	return (uint32_t)(class_row[byte_class[b]] >> state) & 63;
}

uint32_t utf8_validate(uint32_t state, const uint8_t *p, size_t n)
{
	/* A value we never hand out would shift in garbage. */
	if (state >= 6 * S_COUNT || state % 6 != 0 || state == UTF8_REJECT)
		return UTF8_REJECT;

	size_t i = 0;
	while (i < n) {
		/* Chat text is mostly ASCII: between characters, skip runs of
		 * it a word at a time. memcpy keeps the loads alignment-safe
		 * and compiles to plain moves. */
		if (state == UTF8_ACCEPT && p[i] < 0x80) {
			while (n - i >= 16) {
				uint64_t a, b;
				memcpy(&a, p + i, 8);
				memcpy(&b, p + i + 8, 8);
				if ((a | b) & HIGH_BITS)
					break;
				i += 16;
			}
			while (n - i >= 8) {
				uint64_t a;
				memcpy(&a, p + i, 8);
				if (a & HIGH_BITS)
					break;
				i += 8;
			}
			if (i == n)
				break;
		}
		state = step(state, p[i++]);
		if (state == UTF8_REJECT)
			return UTF8_REJECT;
	}
	return state;
}

int utf8_is_complete_valid(const uint8_t *p, size_t n)
{
	return utf8_validate(UTF8_ACCEPT, p, n) == UTF8_ACCEPT;
}

size_t utf8_count_codepoints(const uint8_t *p, size_t n)
{
	/* Every code point has exactly one byte that is not a continuation
	 * byte (10xxxxxx), so count those. In a word, a byte is a
	 * continuation byte when bit 7 is set and bit 6 is clear; shifting
	 * the word left by one lines each byte's bit 6 up with its bit 7. */
	size_t count = 0, i = 0;
	while (n - i >= 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		uint64_t cont = w & ~(w << 1) & HIGH_BITS;
		count += 8 - (size_t)__builtin_popcountll(cont);
		i += 8;
	}
	for (; i < n; i++)
		count += (p[i] & 0xC0) != 0x80;
	return count;
}

static int is_blank_cp(uint32_t cp)
{
	switch (cp) {
	case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D:
	case 0x20: case 0x85: case 0xA0: case 0x1680:
	case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
	case 0x200B: case 0xFEFF:
		return 1;
	default:
		return cp >= 0x2000 && cp <= 0x200A;
	}
}

int utf8_is_blank(const uint8_t *p, size_t n)
{
	/* Decode with the same automaton that validates, so invalid input
	 * can never decode to something that looks like a space. */
	uint32_t state = UTF8_ACCEPT, cp = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = p[i];
		if (state == UTF8_ACCEPT)
			cp = b < 0x80 ? b : b < 0xE0 ? (b & 0x1Fu) : b < 0xF0 ? (b & 0x0Fu) : (b & 0x07u);
		else
			cp = (cp << 6) | (b & 0x3Fu);
		state = step(state, b);
		if (state == UTF8_REJECT)
			return 0;
		if (state == UTF8_ACCEPT && !is_blank_cp(cp))
			return 0;
	}
	return state == UTF8_ACCEPT;
}

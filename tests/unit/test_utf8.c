/* shared/utf8.c: strict validation (checked against an independent
 * decoder, exhaustively for short sequences), incremental use across any
 * split, code point counting and the blank test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shared/utf8.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Reference: decode each sequence and check its value, the textbook way,
 * sharing nothing with the automaton. */
static int ref_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t b = p[i];
		if (b < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if ((b & 0xE0) == 0xC0) {
			len = 2, cp = b & 0x1F, min = 0x80;
		} else if ((b & 0xF0) == 0xE0) {
			len = 3, cp = b & 0x0F, min = 0x800;
		} else if ((b & 0xF8) == 0xF0) {
			len = 4, cp = b & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (size_t j = 1; j < len; j++) {
			if ((p[i + j] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += len;
	}
	return 1;
}

/* A prefix is acceptable while some continuation makes it valid; the
 * boundary bytes of each continuation range are enough to find one. */
static int ref_prefix_ok(const uint8_t *p, size_t n)
{
	static const uint8_t cont[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
	uint8_t buf[16];
	if (n > sizeof buf - 3)
		return -1;
	memcpy(buf, p, n);
	if (ref_valid(buf, n))
		return 1;
	for (size_t a = 0; a < sizeof cont; a++) {
		buf[n] = cont[a];
		if (ref_valid(buf, n + 1))
			return 1;
		for (size_t b = 0; b < sizeof cont; b++) {
			buf[n + 1] = cont[b];
			if (ref_valid(buf, n + 2))
				return 1;
			for (size_t c = 0; c < sizeof cont; c++) {
				buf[n + 2] = cont[c];
				if (ref_valid(buf, n + 3))
					return 1;
			}
		}
	}
	return 0;
}

static size_t enc(uint32_t cp, uint8_t *out)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xC0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xE0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (uint8_t)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (uint8_t)(0xF0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (uint8_t)(0x80 | (cp & 0x3F));
	return 4;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Feeds p in every 2- and 3-piece split and byte by byte; all must agree
 * with the one-shot result. */
static void check_splits(const uint8_t *p, size_t n, const char *what)
{
	uint32_t whole = utf8_validate(UTF8_ACCEPT, p, n);
	uint32_t st = UTF8_ACCEPT;
	for (size_t i = 0; i < n; i++)
		st = utf8_validate(st, p + i, 1);
	if (st != whole)
		fail_msg("%s: byte-by-byte state %u, whole %u", what, st, whole);
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b++) {
			st = utf8_validate(UTF8_ACCEPT, p, a);
			st = utf8_validate(st, p + a, b - a);
			st = utf8_validate(st, p + b, n - b);
			if (st != whole)
				fail_msg("%s: split %zu/%zu state %u, whole %u", what, a, b, st, whole);
		}
	}
}

struct vcase {
	const char *name;
	const char *s;
	size_t n;
	int valid;       /* complete and valid */
	int prefix_ok;   /* not UTF8_REJECT */
};

#define V(name, lit, valid, pok) {name, lit, sizeof(lit) - 1, valid, pok}

static const struct vcase vcases[] = {
	V("empty", "", 1, 1),
	V("ascii", "hello, world", 1, 1),
	V("nul", "a\0b", 1, 1),
	V("del", "\x7f", 1, 1),
	V("2-byte min U+0080", "\xc2\x80", 1, 1),
	V("2-byte max U+07FF", "\xdf\xbf", 1, 1),
	V("3-byte min U+0800", "\xe0\xa0\x80", 1, 1),
	V("U+D7FF before surrogates", "\xed\x9f\xbf", 1, 1),
	V("U+E000 after surrogates", "\xee\x80\x80", 1, 1),
	V("U+FFFD", "\xef\xbf\xbd", 1, 1),
	V("noncharacter U+FFFE", "\xef\xbf\xbe", 1, 1),
	V("noncharacter U+FFFF", "\xef\xbf\xbf", 1, 1),
	V("4-byte min U+10000", "\xf0\x90\x80\x80", 1, 1),
	V("U+10FFFF", "\xf4\x8f\xbf\xbf", 1, 1),
	V("greek kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1, 1),
	V("emoji", "\xf0\x9f\x98\x80", 1, 1),
	V("lone continuation 80", "\x80", 0, 0),
	V("lone continuation bf", "\xbf", 0, 0),
	V("continuation after ascii", "a\x80", 0, 0),
	V("overlong c0 80 (NUL)", "\xc0\x80", 0, 0),
	V("overlong c1 bf", "\xc1\xbf", 0, 0),
	V("overlong e0 80 80", "\xe0\x80\x80", 0, 0),
	V("overlong e0 9f bf", "\xe0\x9f\xbf", 0, 0),
	V("overlong f0 80 80 80", "\xf0\x80\x80\x80", 0, 0),
	V("overlong f0 8f bf bf", "\xf0\x8f\xbf\xbf", 0, 0),
	V("overlong '/' c0 af", "\xc0\xaf", 0, 0),
	V("surrogate U+D800", "\xed\xa0\x80", 0, 0),
	V("surrogate U+DFFF", "\xed\xbf\xbf", 0, 0),
	V("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 0, 0),
	V("U+110000", "\xf4\x90\x80\x80", 0, 0),
	V("f5 lead", "\xf5\x80\x80\x80", 0, 0),
	V("f8 lead (5-byte form)", "\xf8\x88\x80\x80\x80", 0, 0),
	V("fc lead (6-byte form)", "\xfc\x84\x80\x80\x80\x80", 0, 0),
	V("fe", "\xfe", 0, 0),
	V("ff", "\xff", 0, 0),
	V("lead then ascii", "\xc2\x41", 0, 0),
	V("3-byte lead then ascii", "\xe2\x82\x41", 0, 0),
	V("lead then lead", "\xc2\xc2\x80", 0, 0),
	V("4-byte missing one", "\xf0\x9f\x98\x41", 0, 0),
	V("truncated 2-byte", "\xc2", 0, 1),
	V("truncated 3-byte", "\xe2\x82", 0, 1),
	V("truncated e0", "\xe0", 0, 1),
	V("truncated ed", "\xed\x9f", 0, 1),
	V("truncated 4-byte", "\xf0\x9f\x98", 0, 1),
	V("truncated f4", "\xf4\x8f", 0, 1),
	V("valid then truncated", "ab\xce\xba\xf0\x9f", 0, 1),
	V("long ascii then invalid", "0123456789abcdef0123456789abcdefXYZ\xff", 0, 0),
	V("long ascii then truncated", "0123456789abcdef0123456789abcdef\xe2\x82", 0, 1),
	V("long ascii then valid", "0123456789abcdef0123456789abcdef\xe2\x82\xac!", 1, 1),
	V("invalid at 8", "01234567\x80", 0, 0),
	V("invalid at 16", "0123456789abcdef\xc0\x80", 0, 0),
	V("invalid after ascii word, mid-word", "01234567890\xed\xa0\x80yz", 0, 0),
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vcases / sizeof vcases[0]; i++) {
		const struct vcase *c = &vcases[i];
		const uint8_t *p = (const uint8_t *)c->s;
		uint32_t st = utf8_validate(UTF8_ACCEPT, p, c->n);
		if (utf8_is_complete_valid(p, c->n) != c->valid)
			fail_msg("%s: complete-valid %d, want %d", c->name, !c->valid, c->valid);
		if ((st == UTF8_ACCEPT) != c->valid)
			fail_msg("%s: state %u", c->name, st);
		if ((st != UTF8_REJECT) != c->prefix_ok)
			fail_msg("%s: state %u, want prefix_ok %d", c->name, st, c->prefix_ok);
		if (ref_valid(p, c->n) != c->valid)
			fail_msg("%s: reference disagrees with the table", c->name);
		check_splits(p, c->n, c->name);
	}
}

static void test_exhaustive_short(void **state)
{
	(void)state;
	uint8_t b[4];
	/* Every 1- and 2-byte sequence, including the prefix property. */
	for (unsigned x = 0; x < 256; x++) {
		b[0] = (uint8_t)x;
		uint32_t st = utf8_validate(UTF8_ACCEPT, b, 1);
		assert_int_equal(st == UTF8_ACCEPT, ref_valid(b, 1));
		assert_int_equal(st != UTF8_REJECT, ref_prefix_ok(b, 1));
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (uint8_t)y;
			st = utf8_validate(UTF8_ACCEPT, b, 2);
			if ((st == UTF8_ACCEPT) != ref_valid(b, 2) || (st != UTF8_REJECT) != ref_prefix_ok(b, 2))
				fail_msg("%02x %02x: state %u", x, y, st);
			uint32_t st2 = utf8_validate(utf8_validate(UTF8_ACCEPT, b, 1), b + 1, 1);
			assert_int_equal(st, st2);
		}
	}
	/* Every 3-byte sequence that starts with a non-ASCII byte (ASCII
	 * first bytes reduce to the 2-byte case). */
	for (unsigned x = 0x80; x < 256; x++) {
		b[0] = (uint8_t)x;
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (uint8_t)y;
			uint32_t st1 = utf8_validate(UTF8_ACCEPT, b, 2);
			for (unsigned z = 0; z < 256; z++) {
				b[2] = (uint8_t)z;
				uint32_t st = utf8_validate(UTF8_ACCEPT, b, 3);
				if ((st == UTF8_ACCEPT) != ref_valid(b, 3))
					fail_msg("%02x %02x %02x: state %u", x, y, z, st);
				if (utf8_validate(st1, b + 2, 1) != st)
					fail_msg("%02x %02x %02x: split state differs", x, y, z);
			}
		}
	}
	/* 4-byte sequences: every lead from F0, the boundary bytes of each
	 * class elsewhere. */
	static const uint8_t edge[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
				       0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF};
	for (unsigned x = 0xF0; x < 256; x++)
		for (size_t i = 0; i < sizeof edge; i++)
			for (size_t j = 0; j < sizeof edge; j++)
				for (size_t k = 0; k < sizeof edge; k++) {
					b[0] = (uint8_t)x, b[1] = edge[i], b[2] = edge[j], b[3] = edge[k];
					uint32_t st = utf8_validate(UTF8_ACCEPT, b, 4);
					if ((st == UTF8_ACCEPT) != ref_valid(b, 4) ||
					    (st != UTF8_REJECT) != ref_prefix_ok(b, 4))
						fail_msg("%02x %02x %02x %02x: state %u", b[0], b[1], b[2], b[3], st);
				}
}

static void test_every_code_point(void **state)
{
	(void)state;
	uint8_t b[4];
	for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
		size_t n = enc(cp, b);
		int want = !(cp >= 0xD800 && cp <= 0xDFFF);
		if (utf8_is_complete_valid(b, n) != want)
			fail_msg("U+%04X: valid %d", cp, !want);
		if (want && utf8_count_codepoints(b, n) != 1)
			fail_msg("U+%04X: count", cp);
	}
}

static void test_reject_is_sticky_and_bad_state(void **state)
{
	(void)state;
	uint32_t st = utf8_validate(UTF8_ACCEPT, S("\xff"));
	assert_int_equal(st, UTF8_REJECT);
	assert_int_equal(utf8_validate(st, S("abc")), UTF8_REJECT);
	assert_int_equal(utf8_validate(st, NULL, 0), UTF8_REJECT);
	assert_int_equal(utf8_validate(UTF8_ACCEPT, NULL, 0), UTF8_ACCEPT);
	/* States are small, so callers can keep them in a byte. Any state
	 * but ACCEPT is either inside a character, where ASCII is an error,
	 * or a value we never hand out, which must not be trusted. */
	for (uint32_t s = 0; s < 256; s++) {
		uint32_t r = utf8_validate(s, S("a"));
		assert_int_equal(r, s == UTF8_ACCEPT ? UTF8_ACCEPT : UTF8_REJECT);
		assert_true(utf8_validate(s, S("\xc2")) < 64);
	}
	assert_int_equal(utf8_validate(0xFFFFFFFFu, S("a")), UTF8_REJECT);
	assert_int_equal(utf8_validate(1000, NULL, 0), UTF8_REJECT);
}

/* Random valid text, mostly ASCII with runs of everything else, fed in
 * random pieces: incremental state and counting must match. */
static void test_random_valid_text(void **state)
{
	(void)state;
	uint8_t buf[1024];
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = 0, cps = 0;
		size_t target = rng() % 300;
		while (n + 4 <= sizeof buf && n < target) {
			uint32_t r = rng() % 10, cp;
			if (r < 6)
				cp = rng() % 0x80;
			else if (r < 7)
				cp = 0x80 + rng() % (0x800 - 0x80);
			else if (r < 9)
				cp = 0x800 + rng() % (0x10000 - 0x800);
			else
				cp = 0x10000 + rng() % (0x110000 - 0x10000);
			if (cp >= 0xD800 && cp <= 0xDFFF)
				cp = 0xFFFD;
			n += enc(cp, buf + n);
			cps++;
		}
		assert_true(utf8_is_complete_valid(buf, n));
		assert_int_equal(utf8_count_codepoints(buf, n), cps);
		uint32_t st = UTF8_ACCEPT;
		size_t off = 0;
		while (off < n) {
			size_t k = 1 + rng() % 40;
			if (k > n - off)
				k = n - off;
			st = utf8_validate(st, buf + off, k);
			assert_int_not_equal(st, UTF8_REJECT);
			off += k;
		}
		assert_int_equal(st, UTF8_ACCEPT);
		/* Corrupt one byte: the verdict must match the reference. */
		if (n) {
			size_t at = rng() % n;
			uint8_t old = buf[at];
			buf[at] = (uint8_t)rng();
			if (utf8_is_complete_valid(buf, n) != ref_valid(buf, n))
				fail_msg("iter %d: corrupted byte %zu disagrees", iter, at);
			buf[at] = old;
		}
	}
}

static void test_count(void **state)
{
	(void)state;
	assert_int_equal(utf8_count_codepoints(NULL, 0), 0);
	assert_int_equal(utf8_count_codepoints(S("a")), 1);
	assert_int_equal(utf8_count_codepoints(S("hello, world")), 12);
	assert_int_equal(utf8_count_codepoints(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")), 5);
	assert_int_equal(utf8_count_codepoints(S("\xf0\x9f\x98\x80\xf0\x9f\x98\x80")), 2);
	assert_int_equal(utf8_count_codepoints(S("a\xe2\x82\xac" "bcdefgh\xf0\x9f\x98\x80" "ijklmnopq")), 19);
	/* 2000 euro signs: 6000 bytes, the word loop with a tail. */
	static uint8_t big[6001];
	for (size_t i = 0; i < 2000; i++)
		memcpy(big + 3 * i, "\xe2\x82\xac", 3);
	big[6000] = 'x';
	assert_int_equal(utf8_count_codepoints(big, 6000), 2000);
	assert_int_equal(utf8_count_codepoints(big, 6001), 2001);
	/* Invalid input: some count, never more than n. */
	assert_true(utf8_count_codepoints(S("\xff\xff\xff\x80\x80")) <= 5);
}

static void test_blank(void **state)
{
	(void)state;
	assert_true(utf8_is_blank(NULL, 0));
	assert_true(utf8_is_blank(S("")));
	assert_true(utf8_is_blank(S(" ")));
	assert_true(utf8_is_blank(S(" \t\r\n\v\f  ")));
	assert_true(utf8_is_blank(S("\xc2\x85")));          /* U+0085 */
	assert_true(utf8_is_blank(S("\xc2\xa0")));          /* U+00A0 */
	assert_true(utf8_is_blank(S("\xe1\x9a\x80")));      /* U+1680 */
	assert_true(utf8_is_blank(S("\xe2\x80\x80")));      /* U+2000 */
	assert_true(utf8_is_blank(S("\xe2\x80\x8a")));      /* U+200A */
	assert_true(utf8_is_blank(S("\xe2\x80\x8b")));      /* U+200B */
	assert_true(utf8_is_blank(S("\xe2\x80\xa8\xe2\x80\xa9"))); /* U+2028 U+2029 */
	assert_true(utf8_is_blank(S("\xe2\x80\xaf")));      /* U+202F */
	assert_true(utf8_is_blank(S("\xe2\x81\x9f")));      /* U+205F */
	assert_true(utf8_is_blank(S("\xe3\x80\x80")));      /* U+3000 */
	assert_true(utf8_is_blank(S("\xef\xbb\xbf")));      /* U+FEFF */
	assert_true(utf8_is_blank(S(" \xe3\x80\x80\t\xef\xbb\xbf\xe2\x80\x8b\n")));

	assert_false(utf8_is_blank(S("a")));
	assert_false(utf8_is_blank(S(" a ")));
	assert_false(utf8_is_blank(S("\0")));                /* NUL is not space */
	assert_false(utf8_is_blank(S("\x1c")));              /* not White_Space */
	assert_false(utf8_is_blank(S("\xc2\xa1")));          /* U+00A1 */
	assert_false(utf8_is_blank(S("\xe2\x80\x8c")));      /* U+200C ZWNJ */
	assert_false(utf8_is_blank(S("\xe2\x80\x8d")));      /* U+200D ZWJ */
	assert_false(utf8_is_blank(S("\xe2\x81\xa0")));      /* U+2060 */
	assert_false(utf8_is_blank(S("\xe3\x80\x81")));      /* U+3001 */
	assert_false(utf8_is_blank(S("   \xf0\x9f\x98\x80"))); /* emoji */
	/* Invalid UTF-8 is never blank, even when it would decode to a space
	 * if one were careless: overlong ' ', overlong U+00A0, truncated
	 * U+3000, a surrogate, a stray continuation byte. */
	assert_false(utf8_is_blank(S("\xc0\xa0")));
	assert_false(utf8_is_blank(S("\xe0\x82\xa0")));
	assert_false(utf8_is_blank(S(" \xe3\x80")));
	assert_false(utf8_is_blank(S("\xed\xa0\x80")));
	assert_false(utf8_is_blank(S(" \x80")));

	/* Every code point: blank exactly for the listed ones. */
	uint8_t b[4];
	for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
		if (cp >= 0xD800 && cp <= 0xDFFF)
			continue;
		int want = (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
			   cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 ||
			   cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
		size_t n = enc(cp, b);
		if (utf8_is_blank(b, n) != want)
			fail_msg("U+%04X: blank %d", cp, !want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_exhaustive_short),
		cmocka_unit_test(test_every_code_point),
		cmocka_unit_test(test_reject_is_sticky_and_bad_state),
		cmocka_unit_test(test_random_valid_text),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_blank),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

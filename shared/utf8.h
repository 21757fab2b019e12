#ifndef CHATD_SHARED_UTF8_H
#define CHATD_SHARED_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8 (RFC 3629, Unicode 3.9 D92): overlong forms, UTF-16
 * surrogates (U+D800..U+DFFF) and anything above U+10FFFF are invalid.
 *
 * The validator is a small state machine so that a byte stream can be
 * checked in pieces that split a character anywhere (WebSocket fragments,
 * socket reads). The state is a plain integer the caller keeps:
 *
 *     uint32_t st = UTF8_ACCEPT;
 *     st = utf8_validate(st, piece1, n1);
 *     st = utf8_validate(st, piece2, n2);
 *     ok = (st == UTF8_ACCEPT);   // valid and ends on a character boundary
 *
 * UTF8_REJECT is sticky: once reached, further input leaves it there, so a
 * caller may check after every piece or only at the end. Any other value
 * means "valid so far, in the middle of a character". Values are always
 * below 64, so a caller may store the state in a uint8_t. */
#define UTF8_ACCEPT 0u
#define UTF8_REJECT 6u

/* Feeds n bytes (p may be NULL when n is 0). Pure; reads exactly p[0..n). */
uint32_t utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* 1 if p[0..n) is valid UTF-8 that ends on a character boundary, else 0.
 * The empty string is valid. */
int utf8_is_complete_valid(const uint8_t *p, size_t n);

/* Number of code points in p[0..n). The input must be valid UTF-8 (checked
 * beforehand); on invalid input the result is some count <= n, never a
 * read past n. */
size_t utf8_count_codepoints(const uint8_t *p, size_t n);

/* 1 if p[0..n) is empty or consists only of white space: the Unicode
 * White_Space characters (U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) plus U+200B ZERO
 * WIDTH SPACE and U+FEFF ZERO WIDTH NO-BREAK SPACE, which render as
 * nothing and are the usual way to sneak an "empty" message past a naive
 * check. Invalid UTF-8 is not blank (returns 0). */
int utf8_is_blank(const uint8_t *p, size_t n);

#endif

#ifndef CHATD_SHARED_BASE64_H
#define CHATD_SHARED_BASE64_H

/* Base64 (RFC 4648).
 *
 * base64url (section 5) is unpadded, as JWS compact serialisation
 * (RFC 7515, section 2) requires. Its decoder is strict: only the 64
 * alphabet characters, no '=', no white space, no length that cannot come
 * from an encoder (len % 4 == 1), and no non-zero bits in the last
 * character's unused low bits. Strictness makes the encoding canonical, so
 * one byte string has exactly one accepted spelling and a signed token
 * cannot be varied without breaking its signature.
 *
 * Standard base64 (section 4, padded) is provided for encoding only, for
 * Sec-WebSocket-Accept and the like.
 *
 * All functions are pure and never read in[] past n. */

#include <stddef.h>
#include <stdint.h>

/* Characters base64url_encode writes for n input bytes, not counting the
 * NUL; SIZE_MAX when that would not fit in a size_t. */
size_t base64url_encoded_len(size_t n);

/* Writes the unpadded base64url form of in[0..n) and a NUL into out.
 * Returns 0, or -1 (out untouched) when outcap < base64url_encoded_len(n)+1. */
int base64url_encode(const void *in, size_t n, char *out, size_t outcap);

/* malloc'd NUL-terminated base64url text of in[0..n); NULL on allocation
 * failure. The caller frees it. */
char *base64url_encode_alloc(const void *in, size_t n);

/* Bytes an n-character base64url text decodes to, or SIZE_MAX when no
 * valid text has n characters (n % 4 == 1). */
size_t base64url_decoded_len(size_t n);

/* Decodes in[0..n) into out and sets *outlen. Returns 0, or -1 for a bad
 * character, an impossible length, non-zero trailing bits, or
 * outcap < base64url_decoded_len(n). On -1 out may hold partial output and
 * *outlen is untouched. n == 0 is valid and decodes to nothing. */
int base64url_decode(const char *in, size_t n, uint8_t *out, size_t outcap,
                     size_t *outlen);

/* Characters base64_encode writes (padded) for n input bytes, not counting
 * the NUL; SIZE_MAX on overflow. */
size_t base64_encoded_len(size_t n);

/* Writes the padded standard base64 form of in[0..n) and a NUL into out.
 * Returns 0, or -1 (out untouched) when outcap < base64_encoded_len(n)+1. */
int base64_encode(const void *in, size_t n, char *out, size_t outcap);

#endif

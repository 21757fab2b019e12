#ifndef CHATD_SHARED_HS256_H
#define CHATD_SHARED_HS256_H

/* HMAC-SHA256 with the key set up once and kept. OpenSSL 3's one-shot
 * HMAC() fetches the algorithm, allocates a context and hashes the key
 * into it on every call: that was most of a token check's cost, paid on
 * every upgrade and REST request. Here each slot keeps a keyed context
 * and is keyed again only when its secret changes (a reload), so a call
 * is the two hashes HMAC needs and nothing more.
 *
 * One slot per secret a caller uses side by side (the current and the
 * previous JWT secret, signing). Not thread-safe: each process has its
 * own, and chatd's processes are single-threaded. */

#include <stddef.h>
#include <stdint.h>

#define HS256_LEN 32
#define HS256_SLOTS 3

/* out = HMAC-SHA256(key, msg). Returns 0, or -1 (slot out of range, or
 * OpenSSL failed, out of memory included). */
int hs256(unsigned slot, const char *key, size_t klen, const void *msg, size_t n,
          uint8_t out[HS256_LEN]);

/* Frees the contexts and wipes the kept keys. */
void hs256_forget(void);

#endif

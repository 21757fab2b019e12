#ifndef CHATD_WORKER_WS_HANDSHAKE_H
#define CHATD_WORKER_WS_HANDSHAKE_H

#include <stddef.h>

/* Length of a Sec-WebSocket-Accept value: base64 of a 20-byte SHA-1. */
#define WS_ACCEPT_LEN 28

/* Computes the Sec-WebSocket-Accept value for a Sec-WebSocket-Key
 * (RFC 6455 4.2.2): base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
 *
 * key[0..key_len) is the header value with surrounding white space already
 * trimmed by the caller; it need not be NUL-terminated. It must be the
 * base64 encoding of exactly 16 bytes: 22 characters of the standard
 * alphabet followed by "==". (Non-zero unused bits in the 22nd character
 * are tolerated, as decoders do.)
 *
 * Returns 0 and writes WS_ACCEPT_LEN characters and a NUL into out, or -1
 * (out untouched) when the key is malformed or the hash failed. Pure: no
 * allocation beyond what libcrypto does internally, no global state. */
int ws_handshake_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

#endif

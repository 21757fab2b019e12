#include "worker/ws_handshake.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define KEY_LEN 24 /* base64 of 16 bytes */

static int is_b64(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int ws_handshake_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
	/* The key's value is never used, only echoed through the hash, but a
	 * malformed one means the client is not a conforming WebSocket
	 * client (or a cross-protocol attack), which the RFC says to refuse. */
	if (!key || key_len != KEY_LEN)
		return -1;
	for (size_t i = 0; i < KEY_LEN - 2; i++)
		if (!is_b64((unsigned char)key[i]))
			return -1;
	if (key[KEY_LEN - 2] != '=' || key[KEY_LEN - 1] != '=')
		return -1;

	char buf[KEY_LEN + sizeof WS_GUID - 1];
	memcpy(buf, key, KEY_LEN);
	memcpy(buf + KEY_LEN, WS_GUID, sizeof WS_GUID - 1);

	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (EVP_Digest(buf, sizeof buf, md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20)
		return -1;

	/* EVP_EncodeBlock writes 4 * ceil(20 / 3) = 28 characters and a NUL. */
	unsigned char enc[WS_ACCEPT_LEN + 1];
	if (EVP_EncodeBlock(enc, md, (int)md_len) != WS_ACCEPT_LEN)
		return -1;
	memcpy(out, enc, WS_ACCEPT_LEN + 1);
	return 0;
}

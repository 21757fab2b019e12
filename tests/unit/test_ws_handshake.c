/* worker/ws_handshake.c: Sec-WebSocket-Accept for known keys (the RFC 6455
 * example and others whose values were computed with another SHA-1/base64
 * implementation), and refusal of every malformed key shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "worker/ws_handshake.h"

static void expect_accept(const char *key, const char *want)
{
	char out[WS_ACCEPT_LEN + 1];
	memset(out, 'Z', sizeof out);
	assert_int_equal(ws_handshake_accept(key, strlen(key), out), 0);
	assert_string_equal(out, want);
}

static void test_known_keys(void **state)
{
	(void)state;
	/* RFC 6455 section 1.3 */
	expect_accept("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	expect_accept("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
	expect_accept("AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
}

static void test_key_not_nul_terminated(void **state)
{
	(void)state;
	/* The key is a slice of the request buffer: only key_len bytes count. */
	const char buf[] = "dGhlIHNhbXBsZSBub25jZQ==\r\nHost: x";
	char out[WS_ACCEPT_LEN + 1];
	assert_int_equal(ws_handshake_accept(buf, 24, out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void expect_refused(const char *key, size_t len)
{
	char out[WS_ACCEPT_LEN + 1];
	memset(out, 'Z', sizeof out);
	if (ws_handshake_accept(key, len, out) != -1)
		fail_msg("accepted key \"%.*s\"", (int)len, key);
	for (size_t i = 0; i < sizeof out; i++)
		assert_int_equal(out[i], 'Z'); /* untouched on failure */
}

static void test_malformed_keys(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"dGhlIHNhbXBsZSBub25jZQ=",     /* 23 chars */
		"dGhlIHNhbXBsZSBub25jZQ===",   /* 25 chars */
		"dGhlIHNhbXBsZSBub25jZQ== ",   /* caller did not trim */
		" dGhlIHNhbXBsZSBub25jZQ==",
		"dGhlIHNhbXBsZSBub25jZQAA",    /* 18 bytes, no padding */
		"dGhlIHNhbXBsZSBub25jZ===",    /* 15 bytes */
		"dGhlIHNhbXBsZSBub25jZQ=A",
		"dGhlIHNhbXBsZSBub25j=Q==",    /* '=' inside */
		"dGhlIHNhbXBsZSBub25jZ!==",    /* not base64 */
		"dGhlIHNhbXBsZSBub25jZ-==",    /* base64url alphabet */
		"dGhlIHNhbXBsZSBub25jZ_==",
		"dGhlIHNhbXBsZSBub25jZ\x80==",
		"dGhlIHNhbXBsZSBub25jZQ\r\n",
		"the sample nonce0123456",     /* 24 chars, not base64 */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_refused(bad[i], strlen(bad[i]));
	/* An embedded NUL within key_len. */
	expect_refused("dGhlIHNhbXBsZSBu\0b25jZQ==", 24);
	expect_refused(NULL, 0);
	/* Every character outside the alphabet, in every data position. */
	char key[25] = "dGhlIHNhbXBsZSBub25jZQ==";
	for (int pos = 0; pos < 22; pos++) {
		char keep = key[pos];
		for (int c = 0; c < 256; c++) {
			if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			    c == '+' || c == '/')
				continue;
			key[pos] = (char)c;
			expect_refused(key, 24);
		}
		key[pos] = keep;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_keys),
		cmocka_unit_test(test_key_not_nul_terminated),
		cmocka_unit_test(test_malformed_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

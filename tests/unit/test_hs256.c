/* HMAC-SHA256 with kept keys (shared/hs256.c): RFC 4231's vectors, in
 * every slot, with the key changed between calls (longer, shorter, a
 * prefix, back again) and a key longer than SHA-256's block. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "shared/hs256.h"

struct vector {
    const char *key;
    size_t klen;
    const char *msg;
    const char *hex;
};

static char long_key[131];

static const struct vector vectors[] = {
    /* RFC 4231 test case 2 */
    {"Jefe", 4, "what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    /* RFC 4231 test case 6: a 131-byte key (0xaa), hashed first */
    {long_key, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    /* The case 2 key with a byte less: a prefix must not match */
    {"Jef", 3, "what do ya want for nothing?", NULL},
};

static void hex(const uint8_t *md, char out[65])
{
    for (int i = 0; i < HS256_LEN; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void check(unsigned slot, const struct vector *v, const char *other_than)
{
    uint8_t md[HS256_LEN];
    char got[65];
    assert_int_equal(hs256(slot, v->key, v->klen, v->msg, strlen(v->msg), md), 0);
    hex(md, got);
    if (v->hex) assert_string_equal(got, v->hex);
    if (other_than) assert_string_not_equal(got, other_than);
}

static void test_vectors_in_every_slot_and_order(void **state)
{
    (void)state;
    memset(long_key, 0xaa, sizeof long_key);
    for (int round = 0; round < 3; round++) {
        for (unsigned slot = 0; slot < HS256_SLOTS; slot++) {
            check(slot, &vectors[0], NULL);
            check(slot, &vectors[0], NULL); /* kept key */
            check(slot, &vectors[1], NULL); /* longer */
            check(slot, &vectors[2], vectors[0].hex); /* shorter, a prefix */
            check(slot, &vectors[0], NULL); /* back again */
        }
    }
    hs256_forget();
    check(0, &vectors[1], NULL); /* after forgetting, keyed afresh */
    hs256_forget();
}

static void test_bad_slot(void **state)
{
    (void)state;
    uint8_t md[HS256_LEN];
    assert_int_equal(hs256(HS256_SLOTS, "k", 1, "m", 1, md), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_in_every_slot_and_order),
        cmocka_unit_test(test_bad_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

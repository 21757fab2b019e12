#include "shared/hs256.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct slot {
    EVP_MAC_CTX *ctx;
    uint8_t *key; /* a copy, to notice a changed secret */
    size_t klen;
};

static EVP_MAC *hmac;
static struct slot slots[HS256_SLOTS];

static void drop_key(struct slot *s)
{
    if (s->key) OPENSSL_clear_free(s->key, s->klen);
    s->key = NULL;
    s->klen = 0;
}

static int set_key(struct slot *s, const char *key, size_t klen)
{
    drop_key(s);
    if (!hmac && !(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL))) return -1;
    if (!s->ctx && !(s->ctx = EVP_MAC_CTX_new(hmac))) return -1;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    /* A NULL key means "the previous one" to EVP_MAC_init. */
    static const unsigned char empty[1];
    if (!EVP_MAC_init(s->ctx, klen ? (const unsigned char *)key : empty, klen, params)) return -1;
    s->key = malloc(klen ? klen : 1);
    if (!s->key) return -1;
    memcpy(s->key, key, klen);
    s->klen = klen;
    return 0;
}

int hs256(unsigned slot, const char *key, size_t klen, const void *msg, size_t n,
          uint8_t out[HS256_LEN])
{
    if (slot >= HS256_SLOTS) return -1;
    struct slot *s = &slots[slot];
    /* The kept key is compared in constant time all the same: it is the
     * secret, even if only our own copies meet here. */
    bool same = s->key && s->klen == klen && CRYPTO_memcmp(s->key, key, klen) == 0;
    if (same) {
        if (!EVP_MAC_init(s->ctx, NULL, 0, NULL)) return -1;
    } else if (set_key(s, key, klen) < 0) {
        drop_key(s);
        return -1;
    }
    size_t got = 0;
    if (!EVP_MAC_update(s->ctx, msg, n) || !EVP_MAC_final(s->ctx, out, &got, HS256_LEN) ||
        got != HS256_LEN) {
        drop_key(s); /* the context's state is unknown: key it afresh next time */
        return -1;
    }
    return 0;
}

void hs256_forget(void)
{
    for (size_t i = 0; i < HS256_SLOTS; i++) {
        drop_key(&slots[i]);
        EVP_MAC_CTX_free(slots[i].ctx);
        slots[i].ctx = NULL;
    }
    EVP_MAC_free(hmac);
    hmac = NULL;
}

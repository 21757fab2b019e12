#include "shared/base64.h"

#include <stdlib.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Sextet value of a base64url character, or -1. Range tests rather
 * than a 256-entry table: no table to keep in sync, and compilers turn it
 * into a handful of compares. */
static int url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

size_t base64url_encoded_len(size_t n)
{
    size_t full = n / 3, rest = n % 3;
    if (full > (SIZE_MAX - 3) / 4) return SIZE_MAX;
    return full * 4 + (rest ? rest + 1 : 0);
}

size_t base64_encoded_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 != 0);
    if (groups > (SIZE_MAX - 1) / 4) return SIZE_MAX;
    return groups * 4;
}

/* Shared by both alphabets; pad selects '=' padding to a multiple of 4. */
static void encode(const uint8_t *in, size_t n, char *out,
                   const char *alphabet, int pad)
{
    size_t i = 0, o = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    size_t rest = n - i;
    if (rest) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (rest == 2) v |= (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (rest == 2) out[o++] = alphabet[v >> 6 & 63];
        else if (pad) out[o++] = '=';
        if (pad) out[o++] = '=';
    }
    out[o] = '\0';
}

int base64url_encode(const void *in, size_t n, char *out, size_t outcap)
{
    size_t need = base64url_encoded_len(n);
    if (need == SIZE_MAX || outcap <= need) return -1;
    encode(in, n, out, url_alphabet, 0);
    return 0;
}

char *base64url_encode_alloc(const void *in, size_t n)
{
    size_t need = base64url_encoded_len(n);
    if (need == SIZE_MAX) return NULL;
    char *out = malloc(need + 1);
    if (!out) return NULL;
    encode(in, n, out, url_alphabet, 0);
    return out;
}

int base64_encode(const void *in, size_t n, char *out, size_t outcap)
{
    size_t need = base64_encoded_len(n);
    if (need == SIZE_MAX || outcap <= need) return -1;
    encode(in, n, out, std_alphabet, 1);
    return 0;
}

size_t base64url_decoded_len(size_t n)
{
    size_t rest = n % 4;
    if (rest == 1) return SIZE_MAX;
    /* n / 4 * 3 cannot overflow: it is smaller than n. */
    return n / 4 * 3 + (rest ? rest - 1 : 0);
}

int base64url_decode(const char *in, size_t n, uint8_t *out, size_t outcap,
                     size_t *outlen)
{
    size_t need = base64url_decoded_len(n);
    if (need == SIZE_MAX || outcap < need) return -1;

    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    for (; i + 4 <= n; i += 4) {
        int a = url_value(s[i]), b = url_value(s[i + 1]);
        int c = url_value(s[i + 2]), d = url_value(s[i + 3]);
        if ((a | b | c | d) < 0) return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    size_t rest = n - i;
    if (rest) {
        /* rest is 2 or 3 here (1 was refused above). */
        int a = url_value(s[i]), b = url_value(s[i + 1]);
        int c = rest == 3 ? url_value(s[i + 2]) : 0;
        if ((a | b | c) < 0) return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        /* Bits an encoder would have left zero: non-zero means a second
         * spelling of the same bytes, which we refuse (see base64.h). */
        if (rest == 2 ? (v & 0xFFFF) : (v & 0xFF)) return -1;
        out[o++] = (uint8_t)(v >> 16);
        if (rest == 3) out[o++] = (uint8_t)(v >> 8);
    }
    *outlen = o;
    return 0;
}

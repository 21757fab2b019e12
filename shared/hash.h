#ifndef CHATD_SHARED_HASH_H
#define CHATD_SHARED_HASH_H

/* FNV-1a, 32 bits: the hash of the worker's small tables (hub rooms,
 * store lanes, per-address counts, rate-limit refusals). Fast on short
 * keys, and good enough where a collision only costs a longer chain or
 * a forgotten entry; nothing here has to resist chosen keys. */

#include <stddef.h>
#include <stdint.h>

static inline uint32_t fnv1a_bytes(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static inline uint32_t fnv1a_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

#endif

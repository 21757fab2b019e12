#include "worker/ip_limit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shared/hash.h"

struct slot {
    struct ip_addr addr;
    uint32_t count;      /* 0 = free */
};

struct ip_limit {
    struct slot *slots;
    uint32_t cap;        /* power of two */
    uint32_t used;
};

#define INITIAL_CAP 64

void ip_limit_key(const struct sockaddr_storage *ss, struct ip_addr *out)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof *out);
    if (ss->ss_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        /* An IPv4 client on a dual-stack socket keeps its whole address. */
        if (memcmp(out->b, v4_mapped, sizeof v4_mapped) != 0) memset(out->b + 8, 0, 8);
    } else if (ss->ss_family == AF_INET) {
        memcpy(out->b, v4_mapped, sizeof v4_mapped);
        memcpy(out->b + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    }
}

struct ip_limit *ip_limit_new(void)
{
    struct ip_limit *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->slots = calloc(INITIAL_CAP, sizeof *l->slots);
    if (!l->slots) {
        free(l);
        return NULL;
    }
    l->cap = INITIAL_CAP;
    return l;
}

void ip_limit_free(struct ip_limit *l)
{
    if (!l) return;
    free(l->slots);
    free(l);
}

static struct slot *find(const struct ip_limit *l, const struct ip_addr *a, bool for_insert)
{
    uint32_t mask = l->cap - 1;
    for (uint32_t i = fnv1a_bytes(a->b, sizeof a->b) & mask, n = 0; n < l->cap; i = (i + 1) & mask, n++) {
        struct slot *s = &l->slots[i];
        if (s->count == 0) return for_insert ? s : NULL;
        if (memcmp(&s->addr, a, sizeof *a) == 0) return s;
    }
    return NULL;
}

static int grow(struct ip_limit *l)
{
    struct ip_limit bigger = {.cap = l->cap * 2};
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    if (!bigger.slots) return -1;
    for (uint32_t i = 0; i < l->cap; i++) {
        if (l->slots[i].count == 0) continue;
        *find(&bigger, &l->slots[i].addr, true) = l->slots[i];
        bigger.used++;
    }
    free(l->slots);
    *l = bigger;
    return 0;
}

bool ip_limit_take(struct ip_limit *l, const struct ip_addr *addr, uint32_t max)
{
    if (max == 0) return true;
    struct slot *s = find(l, addr, false);
    if (s) {
        if (s->count >= max) return false;
        s->count++;
        return true;
    }
    /* Keep the table at most half full so probes stay short. */
    if ((l->used + 1) * 2 > l->cap && grow(l) < 0) return false;
    s = find(l, addr, true);
    s->addr = *addr;
    s->count = 1;
    l->used++;
    return true;
}

/* Removing from linear probing: re-place the rest of the cluster so later
 * lookups do not stop at the hole. */
static void remove_slot(struct ip_limit *l, struct slot *s)
{
    uint32_t mask = l->cap - 1;
    uint32_t i = (uint32_t)(s - l->slots);
    s->count = 0;
    l->used--;
    for (uint32_t j = (i + 1) & mask; l->slots[j].count != 0; j = (j + 1) & mask) {
        struct slot moved = l->slots[j];
        l->slots[j].count = 0;
        *find(l, &moved.addr, true) = moved;
    }
}

void ip_limit_release(struct ip_limit *l, const struct ip_addr *addr)
{
    struct slot *s = find(l, addr, false);
    if (!s) return;
    if (s->count == 1) remove_slot(l, s);
    else s->count--;
}

uint32_t ip_limit_count(const struct ip_limit *l, const struct ip_addr *addr)
{
    struct slot *s = find(l, addr, false);
    return s ? s->count : 0;
}

#ifndef CHATD_WORKER_IP_LIMIT_H
#define CHATD_WORKER_IP_LIMIT_H

/* Open connections per client address (IPv6: per /64) in this worker, for
 * max_conns_per_ip. The kernel spreads one address's connections over the
 * workers' sockets, so each worker allows ceil(max / workers): together
 * that is the host's limit, give or take the spread. Bounded: an open
 * addressing table that grows with the number of distinct addresses, which
 * the number of open connections bounds. */

#include <stdbool.h>
#include <stdint.h>

struct ip_limit;

/* A compact peer address: IPv4 as ::ffff:a.b.c.d. */
struct ip_addr {
    uint8_t b[16];
};

struct sockaddr_storage;

/* The address the limit counts for a peer: an IPv4 address as it is, an
 * IPv6 address by its /64. One subscriber or site is usually given a
 * whole /64, so counting each of its 2^64 addresses apart would let one
 * client open as many connections as it likes. */
void ip_limit_key(const struct sockaddr_storage *ss, struct ip_addr *out);

struct ip_limit *ip_limit_new(void);
void ip_limit_free(struct ip_limit *l);

/* Counts one more connection from addr unless that would pass max (0 =
 * no limit: always true, nothing counted). Returns false when refused or
 * out of memory. */
bool ip_limit_take(struct ip_limit *l, const struct ip_addr *addr, uint32_t max);
/* A counted connection closed. */
void ip_limit_release(struct ip_limit *l, const struct ip_addr *addr);
uint32_t ip_limit_count(const struct ip_limit *l, const struct ip_addr *addr);

#endif

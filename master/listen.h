#ifndef CHATD_MASTER_LISTEN_H
#define CHATD_MASTER_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

/* Opens one non-blocking listening socket bound to bind:port with
 * SO_REUSEPORT. The master opens one per worker slot and keeps it while
 * the slot is served: a respawned or reloaded worker inherits its slot's socket,
 * so connections waiting in that socket's backlog are never refused while
 * a worker is replaced (docs/architecture.md explains the choice). With
 * reuseport false the master opens one socket that every worker shares. 
 * Returns the fd, or -1 with a reason in err. */
int listen_open(const char *bind_addr, int port, int backlog, bool reuseport, char *err,
                size_t errlen);

#endif

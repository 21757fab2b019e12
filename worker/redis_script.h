#ifndef CHATD_WORKER_REDIS_SCRIPT_H
#define CHATD_WORKER_REDIS_SCRIPT_H

/* A Lua script run by its SHA-1 (EVALSHA). Its first call on each
 * connection of a link sends it in full (EVAL), which caches it in that
 * Redis before any EVALSHA behind it on the connection runs. Answering
 * NOSCRIPT with a resend instead would run that call after calls sent
 * later: after a Redis restart, a failover or a new script body, a
 * user's messages could be stored out of the order they were sent. A
 * NOSCRIPT is still answered with a resend (a SCRIPT FLUSH while
 * connected). The callback fires once, like redis_link_command's, with
 * the script's reply. */

#include <stdint.h>
#include <stddef.h>

#include <hiredis/async.h>

struct redis_link;

struct redis_script {
    const char *body;
    char sha[41];                   /* computed on first use */
    const struct redis_link *sent_on; /* the body went whole on this link's */
    uint64_t sent_conn;               /* connection (redis_link_reconnects) */
};

/* argv holds the script's KEYS and ARGV (nkeys of them are keys). Returns
 * -1 when the link is down (no callback). Copies what it needs. */
int redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                     void *privdata, int nkeys, int argc, const char *const *argv,
                     const size_t *argvlen);

#endif

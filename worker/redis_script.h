#ifndef CHATD_WORKER_REDIS_SCRIPT_H
#define CHATD_WORKER_REDIS_SCRIPT_H

/* A Lua script run by its SHA-1 (EVALSHA), its calls run in the order
 * they were made. Its first call on each connection of a link sends it
 * in full (EVAL), which caches it in that Redis before any EVALSHA behind
 * it on the connection runs: after a Redis restart, a failover or a new
 * script body no call meets NOSCRIPT. A SCRIPT FLUSH while connected
 * still makes calls meet it. A call that does is resent whole, but not at
 * once: the calls already sent behind it are failing too, and a resend
 * of each as its answer came would run after calls made meanwhile (a
 * user's messages stored out of the order they were sent). So from the
 * first NOSCRIPT until the last call sent before it has answered, the
 * failed calls and new ones wait, and then go out together in the order
 * they were made, the first whole. Callbacks fire in the order calls were
 * made: an answer that comes ahead of its turn (a call that ran after
 * another client loaded the script again) is held until the calls before
 * it are answered. The order is kept across all of a script's calls (a
 * worker runs its scripts on its one command link). The callback fires once, like
 * redis_link_command's, with the script's reply (ac is NULL for a held
 * one). */

#include <stdint.h>
#include <stddef.h>

#include <hiredis/async.h>

struct redis_link;
struct script_call;

struct redis_script {
    const char *body;
    char sha[41];                   /* computed on first use */
    const struct redis_link *sent_on; /* the body went whole on this link's */
    uint64_t sent_conn;               /* connection (redis_link_reconnects) */
    /* Calls not yet answered, in the order made. Callers bound how
     * many they keep waiting (64 requests a connection; presence's
     * batches): a call waiting out a flush is one that would otherwise
     * be in flight. */
    struct script_call *calls_head, *calls_tail;
    /* While a flush is waited out on parked_on: the call whose answer
     * ends it (the last sent before it was noticed). */
    const struct redis_link *parked_on;
    struct script_call *park_end;
};

/* argv holds the script's KEYS and ARGV (nkeys of them are keys). Returns
 * -1 when the link is down (no callback). Copies what it needs. */
int redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                     void *privdata, int nkeys, int argc, const char *const *argv,
                     const size_t *argvlen);

#endif

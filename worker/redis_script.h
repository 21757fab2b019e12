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
 * they were made, the first whole. The callback fires once, like redis_link_command's,
 * with the script's reply. */

#include <stdint.h>
#include <stddef.h>

#include <hiredis/async.h>

struct redis_link;
struct script_call;

/* Most calls waiting out a flush; more are refused (-1). */
#define REDIS_SCRIPT_PARKED_MAX 4096

struct redis_script {
    const char *body;
    char sha[41];                   /* computed on first use */
    const struct redis_link *sent_on; /* the body went whole on this link's */
    uint64_t sent_conn;               /* connection (redis_link_reconnects) */
    /* Calls sent and not answered, oldest first. */
    struct script_call *in_flight_head, *in_flight_tail;
    /* While a flush is waited out on parked_on: the calls to send when
     * park_end answers, in the order they were made (those that met
     * NOSCRIPT up to last_resend, then the new ones). */
    const struct redis_link *parked_on;
    struct script_call *park_end;
    struct script_call *parked_head, *parked_tail, *last_resend;
    unsigned parked;
};

/* argv holds the script's KEYS and ARGV (nkeys of them are keys). Returns
 * -1 when the link is down or too many calls wait out a flush (no
 * callback). Copies what it needs. */
int redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                     void *privdata, int nkeys, int argc, const char *const *argv,
                     const size_t *argvlen);

#endif

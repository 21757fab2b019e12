#ifndef CHATD_WORKER_REDIS_SCRIPT_H
#define CHATD_WORKER_REDIS_SCRIPT_H

/* A Lua script run by its SHA-1 (EVALSHA), sent in full (EVAL) only when
 * Redis answers NOSCRIPT (a restarted or flushed server). The callback
 * fires once, like redis_link_command's, with the script's reply. */

#include <stddef.h>

#include <hiredis/async.h>

struct redis_link;

struct redis_script {
    const char *body;
    char sha[41];   /* computed on first use */
};

/* argv holds the script's KEYS and ARGV (nkeys of them are keys). Returns
 * -1 when the link is down (no callback). Copies what it needs. */
int redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                     void *privdata, int nkeys, int argc, const char *const *argv,
                     const size_t *argvlen);

#endif

#include "worker/redis_script.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "worker/redis_link.h"

/* A call in flight keeps its arguments, to send EVAL after NOSCRIPT. */
struct script_call {
    struct redis_link *link;
    struct redis_script *script;
    redisCallbackFn *fn;
    void *privdata;
    int argc;               /* of argv below: EVAL/EVALSHA, body/sha, nkeys, args... */
    const char **argv;
    size_t *argvlen;
    char nkeys[16];
    char *store;            /* one allocation holding copies of the args */
};

static void ensure_sha(struct redis_script *s)
{
    if (s->sha[0]) return;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s->body, strlen(s->body), md, &n, EVP_sha1(), NULL);
    for (unsigned i = 0; i < n && i < 20; i++) snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

static void call_free(struct script_call *c)
{
    free(c->argv);
    free(c->argvlen);
    free(c->store);
    free(c);
}

static int send_call(struct script_call *c, int with_sha);

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct script_call *c = privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 &&
        strcmp(c->argv[0], "EVALSHA") == 0) {
        c->script->sent_on = NULL; /* flushed: the next new call sends it whole */
        if (send_call(c, 0) == 0) return;
        r = NULL;
    }
    if (c->fn) c->fn(ac, r, c->privdata);
    call_free(c);
}

static int send_call(struct script_call *c, int with_sha)
{
    c->argv[0] = with_sha ? "EVALSHA" : "EVAL";
    c->argvlen[0] = strlen(c->argv[0]);
    c->argv[1] = with_sha ? c->script->sha : c->script->body;
    c->argvlen[1] = strlen(c->argv[1]);
    return redis_link_commandargv(c->link, on_reply, c, c->argc, c->argv, c->argvlen);
}

int redis_script_run(struct redis_link *l, struct redis_script *s, redisCallbackFn *fn,
                     void *privdata, int nkeys, int argc, const char *const *argv,
                     const size_t *argvlen)
{
    if (!redis_link_up(l)) return -1;
    ensure_sha(s);
    struct script_call *c = calloc(1, sizeof *c);
    if (!c) return -1;
    size_t total = 0;
    for (int i = 0; i < argc; i++) total += argvlen ? argvlen[i] : strlen(argv[i]);
    c->argc = argc + 3;
    c->argv = calloc((size_t)c->argc, sizeof *c->argv);
    c->argvlen = calloc((size_t)c->argc, sizeof *c->argvlen);
    c->store = malloc(total + 1);
    if (!c->argv || !c->argvlen || !c->store) {
        call_free(c);
        return -1;
    }
    c->link = l;
    c->script = s;
    c->fn = fn;
    c->privdata = privdata;
    snprintf(c->nkeys, sizeof c->nkeys, "%d", nkeys);
    c->argv[2] = c->nkeys;
    c->argvlen[2] = strlen(c->nkeys);
    char *p = c->store;
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], n);
        c->argv[3 + i] = p;
        c->argvlen[3 + i] = n;
        p += n;
    }
    uint64_t conn = redis_link_reconnects(l);
    bool cached = s->sent_on == l && s->sent_conn == conn;
    if (send_call(c, cached) < 0) {
        call_free(c);
        return -1;
    }
    s->sent_on = l;
    s->sent_conn = conn;
    return 0;
}

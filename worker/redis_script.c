#include "worker/redis_script.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "worker/redis_link.h"

/* A call keeps its arguments until answered: a NOSCRIPT is answered by
 * sending them again. */
struct script_call {
    struct script_call *prev, *next; /* in the script's in-flight or parked list */
    bool in_flight;
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

static void in_flight_remove(struct redis_script *s, struct script_call *c)
{
    if (!c->in_flight) return;
    if (c->prev) c->prev->next = c->next;
    else s->in_flight_head = c->next;
    if (c->next) c->next->prev = c->prev;
    else s->in_flight_tail = c->prev;
    c->prev = c->next = NULL;
    c->in_flight = false;
}

/* A call made while a flush is waited out goes last. One that met
 * NOSCRIPT was made before all of those: it goes after the others that
 * met it, ahead of the new ones. */
static void park(struct redis_script *s, struct script_call *c, bool resend)
{
    struct script_call *after = resend ? s->last_resend : s->parked_tail;
    c->prev = after;
    c->next = after ? after->next : s->parked_head;
    if (c->next) c->next->prev = c;
    else s->parked_tail = c;
    if (after) after->next = c;
    else s->parked_head = c;
    if (resend) s->last_resend = c;
    s->parked++;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

static int send_call(struct script_call *c, bool with_sha)
{
    c->argv[0] = with_sha ? "EVALSHA" : "EVAL";
    c->argvlen[0] = strlen(c->argv[0]);
    c->argv[1] = with_sha ? c->script->sha : c->script->body;
    c->argvlen[1] = strlen(c->argv[1]);
    if (redis_link_commandargv(c->link, on_reply, c, c->argc, c->argv, c->argvlen) < 0) return -1;
    struct redis_script *s = c->script;
    c->prev = s->in_flight_tail;
    c->next = NULL;
    if (s->in_flight_tail) s->in_flight_tail->next = c;
    else s->in_flight_head = c;
    s->in_flight_tail = c;
    c->in_flight = true;
    s->sent_on = c->link;
    s->sent_conn = redis_link_reconnects(c->link);
    return 0;
}

/* The flush has been waited out: every call sent before it has answered.
 * The parked calls go out in order, the first whole. Those that cannot
 * (the link dropped) are answered only after all were tried, so that a
 * callback making a new call cannot get ahead of them. */
static void release_parked(struct redis_script *s)
{
    struct script_call *c = s->parked_head;
    s->parked_head = s->parked_tail = s->last_resend = NULL;
    s->parked = 0;
    s->parked_on = NULL;
    s->park_end = NULL;
    s->sent_on = NULL;
    struct script_call *failed = NULL, **failed_tail = &failed;
    while (c) {
        struct script_call *next = c->next;
        bool cached = s->sent_on == c->link && s->sent_conn == redis_link_reconnects(c->link);
        if (send_call(c, cached) < 0) {
            c->next = NULL;
            *failed_tail = c;
            failed_tail = &c->next;
        }
        c = next;
    }
    while (failed) {
        struct script_call *next = failed->next;
        if (failed->fn) failed->fn(NULL, NULL, failed->privdata);
        call_free(failed);
        failed = next;
    }
}

static bool is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct script_call *c = privdata;
    struct redis_script *s = c->script;
    redisReply *r = reply;
    in_flight_remove(s, c);
    bool ends_park = s->park_end == c;
    if (is_noscript(r) && strcmp(c->argv[0], "EVALSHA") == 0) {
        if (s->parked_on && s->parked_on != c->link) {
            /* A flush waited out on another link: that link's order is
             * kept; this call is simply sent again. */
            if (send_call(c, false) == 0) return;
            r = NULL;
        } else {
            if (!s->parked_on) {
                /* Replies come in the order calls were sent: the calls
                 * behind this one on its link are the ones to wait for. */
                s->parked_on = c->link;
                for (struct script_call *o = s->in_flight_tail; o; o = o->prev) {
                    if (o->link == c->link) {
                        s->park_end = o;
                        break;
                    }
                }
                ends_park = !s->park_end;
            }
            park(s, c, true);
            if (ends_park) release_parked(s);
            return;
        }
    }
    if (c->fn) c->fn(ac, r, c->privdata);
    call_free(c);
    if (ends_park) release_parked(s);
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
    if (s->parked_on == l) {
        if (s->parked >= REDIS_SCRIPT_PARKED_MAX) {
            call_free(c);
            return -1;
        }
        park(s, c, false);
        return 0;
    }
    bool cached = s->sent_on == l && s->sent_conn == redis_link_reconnects(l);
    if (send_call(c, cached) < 0) {
        call_free(c);
        return -1;
    }
    return 0;
}

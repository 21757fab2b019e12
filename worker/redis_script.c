#include "worker/redis_script.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "worker/redis_link.h"

/* Where a call stands. Calls are listed in the order they were made and
 * answered in that order: one answered ahead of its turn is held. */
enum call_state {
    CALL_SENT,      /* waiting for its answer */
    CALL_HELD,      /* answered (reply, or NULL: failed); earlier calls are not */
    CALL_RESEND,    /* met NOSCRIPT: to be sent again when the flush is waited out */
    CALL_UNSENT,    /* made while a flush was waited out */
};

/* A call keeps its arguments until answered: a NOSCRIPT is answered by
 * sending them again. */
struct script_call {
    struct script_call *prev, *next; /* the script's calls, in the order made */
    enum call_state state;
    redisReply *reply;      /* a held answer */
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
    if (c->reply) freeReplyObject(c->reply);
    free(c->argv);
    free(c->argvlen);
    free(c->store);
    free(c);
}

static void call_append(struct redis_script *s, struct script_call *c)
{
    c->prev = s->calls_tail;
    c->next = NULL;
    if (s->calls_tail) s->calls_tail->next = c;
    else s->calls_head = c;
    s->calls_tail = c;
}

static void call_remove(struct redis_script *s, struct script_call *c)
{
    if (c->prev) c->prev->next = c->next;
    else s->calls_head = c->next;
    if (c->next) c->next->prev = c->prev;
    else s->calls_tail = c->prev;
}

/* hiredis frees a reply when its callback returns: one answered ahead of
 * its turn is copied, in a form freeReplyObject frees. */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->type = r->type;
    c->integer = r->integer;
    if (r->str) {
        c->str = malloc(r->len + 1);
        if (!c->str) goto fail;
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements) {
        c->element = calloc(r->elements, sizeof *c->element);
        if (!c->element) goto fail;
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i] && !(c->element[i] = reply_copy(r->element[i]))) goto fail;
        }
    }
    return c;
fail:
    freeReplyObject(c);
    return NULL;
}

static void answer(struct script_call *c, redisAsyncContext *ac, redisReply *r)
{
    call_remove(c->script, c);
    if (c->fn) c->fn(ac, r, c->privdata);
    call_free(c);
}

/* Answers the held calls that have come to the front, in order. */
static void answer_held(struct redis_script *s)
{
    struct script_call *c;
    while ((c = s->calls_head) && c->state == CALL_HELD) answer(c, NULL, c->reply);
}

/* c is answered, but a call made before it is not: its answer waits.
 * Without memory for a copy it is given now, out of turn: losing the
 * answer of a script that ran would be worse (a presence join counted
 * and never uncounted). */
static void hold(struct script_call *c, redisAsyncContext *ac, redisReply *r)
{
    if (r && !(c->reply = reply_copy(r))) {
        answer(c, ac, r);
        return;
    }
    c->state = CALL_HELD;
}

/* The body went whole on this connection of the link: Redis has it. */
static bool body_cached(const struct redis_script *s, const struct redis_link *l)
{
    return s->sent_on == l && s->sent_conn == redis_link_reconnects(l);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

static int send_call(struct script_call *c, bool with_sha)
{
    c->argv[0] = with_sha ? "EVALSHA" : "EVAL";
    c->argvlen[0] = strlen(c->argv[0]);
    c->argv[1] = with_sha ? c->script->sha : c->script->body;
    c->argvlen[1] = strlen(c->argv[1]);
    if (redis_link_commandargv(c->link, on_reply, c, c->argc, c->argv, c->argvlen) < 0) return -1;
    c->state = CALL_SENT;
    c->script->sent_on = c->link;
    c->script->sent_conn = redis_link_reconnects(c->link);
    return 0;
}

/* The flush has been waited out: every call sent before it on the link
 * has answered. Those that met NOSCRIPT and those made meanwhile go out
 * in the order they were made, the first whole. One that cannot be sent
 * (the link dropped) is answered NULL in its turn. */
static void release_parked(struct redis_script *s)
{
    const struct redis_link *l = s->parked_on;
    s->parked_on = NULL;
    s->park_end = NULL;
    s->sent_on = NULL;
    for (struct script_call *c = s->calls_head; c; c = c->next) {
        if (c->link != l || (c->state != CALL_RESEND && c->state != CALL_UNSENT)) continue;
        if (send_call(c, body_cached(s, c->link)) < 0) c->state = CALL_HELD;
    }
    answer_held(s);
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
    bool noscript = is_noscript(r) && strcmp(c->argv[0], "EVALSHA") == 0;
    bool ends_park = s->park_end == c;
    if (noscript && !s->parked_on) {
        /* Replies come in the order calls were sent: the calls sent
         * behind this one on its link are the ones to wait for. */
        s->parked_on = c->link;
        for (struct script_call *o = s->calls_tail; o != c; o = o->prev) {
            if (o->link == c->link && o->state == CALL_SENT) {
                s->park_end = o;
                break;
            }
        }
        ends_park = !s->park_end;
    }
    if (noscript && s->parked_on == c->link) {
        c->state = CALL_RESEND;
    } else if (noscript) {
        /* A flush waited out on another link: this one's calls are simply
         * sent again, in their place in the order of answers. */
        if (send_call(c, false) == 0) return;
        hold(c, ac, NULL);
    } else if (s->calls_head == c) {
        answer(c, ac, r);
    } else {
        hold(c, ac, r);
    }
    if (ends_park) release_parked(s);
    answer_held(s);
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
        c->state = CALL_UNSENT;
    } else {
        if (send_call(c, body_cached(s, l)) < 0) {
            call_free(c);
            return -1;
        }
    }
    call_append(s, c);
    return 0;
}

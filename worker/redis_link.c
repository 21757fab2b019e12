#include "worker/redis_link.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>

#include "shared/config.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
/* Commands outstanding with no reply for this long mean a stalled link
 * (a partition, a frozen server): drop it so callers hear of it. */
#define STALL_MS 3000
/* A connect with no answer for this long (a dead host, a moved address:
 * SYNs unanswered) is given up and tried again, not left to the kernel's
 * two minutes of SYN retries; hiredis's async connect has no timeout. */
#define CONNECT_TIMEOUT_MS 3000
#define WATCHDOG_MS 500
/* A link with a probe channel that has had no reply for this long sends
 * a probe (see redis_link_set_probe). */
#define PROBE_IDLE_MS 1000

struct redis_link {
    struct event_base *base;
    redisAsyncContext *ac;
    char name[32];
    char host[256];
    int port;
    int db;
    char password[256];
    bool up;
    bool freeing;
    int backoff_ms;
    uint32_t pending;         /* commands sent, reply not yet seen */
    int64_t last_progress_ms; /* last reply, or when pending went 0 -> 1 */
    int64_t connect_started_ms;
    char probe_channel[192];  /* "" = no probe */
    redisCallbackFn *sub_fn;  /* every subscription reply goes here */
    void *sub_arg;
    uint64_t errors, reconnects;
    struct event *retry_ev;
    struct event *watchdog_ev;
    redis_link_state_fn on_state;
    void *arg;
};

/* Wraps each user command so the link can count what is outstanding. */
struct pending_cmd {
    struct redis_link *link;
    redisCallbackFn *fn;
    void *privdata;
};

static void connect_now(struct redis_link *l);
static void send_probe(struct redis_link *l);

static void schedule_retry(struct redis_link *l)
{
    /* One failure may be reported twice (hiredis 0.14 calls both the
     * connect and the disconnect callback for a failed connect): one
     * retry, and the back-off doubles once. */
    if (l->freeing || evtimer_pending(l->retry_ev, NULL)) return;
    struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
    evtimer_add(l->retry_ev, &tv);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static void set_down(struct redis_link *l, const char *why)
{
    bool was_up = l->up;
    l->up = false;
    l->ac = NULL;
    l->pending = 0;
    if (was_up && !l->freeing) {
        l->errors++; metrics_add(METRIC_REDIS_ERRORS, 1);
        log_warn("redis link %s lost: %s", l->name, why);
        if (l->on_state) l->on_state(l, false, l->arg);
    }
    schedule_retry(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (status != REDIS_OK) {
        l->errors++; metrics_add(METRIC_REDIS_ERRORS, 1);
        log_debug("redis link %s: connect failed: %s", l->name, ac->errstr);
        /* hiredis frees the context after a failed connect. */
        l->ac = NULL;
        schedule_retry(l);
        return;
    }
    l->up = true;
    /* The back-off is reset by the first answer, not here: a server that
     * accepts and drops at once (maxclients, a proxy) would otherwise be
     * tried again every BACKOFF_MIN_MS. */
    l->last_progress_ms = timefmt_mono_ms();
    log_info("redis link %s connected to %s:%d", l->name, l->host, l->port);
    if (l->on_state) l->on_state(l, true, l->arg);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    set_down(l, status == REDIS_OK ? "closed" : ac->errstr);
}

static void connect_now(struct redis_link *l)
{
    redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);
    if (!ac || ac->err) {
        l->errors++; metrics_add(METRIC_REDIS_ERRORS, 1);
        log_debug("redis link %s: %s", l->name, ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        schedule_retry(l);
        return;
    }
    ac->data = l;
    if (redisLibeventAttach(ac, l->base) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(l);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l->ac = ac;
    l->connect_started_ms = timefmt_mono_ms();
    l->reconnects++; metrics_add(METRIC_REDIS_RECONNECTS, 1);
    /* Queued ahead of everything else, so they run first once connected. */
    if (l->password[0]) redisAsyncCommand(ac, NULL, NULL, "AUTH %s", l->password);
    if (l->db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", l->db);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct redis_link *l = arg;
    if (l->ac && l->up && l->pending > 0 &&
        timefmt_mono_ms() - l->last_progress_ms > STALL_MS) {
        log_warn("redis link %s stalled: %u commands unanswered for %d ms; reconnecting",
                 l->name, l->pending, STALL_MS);
        /* Fires every pending callback with NULL, then on_disconnect. */
        redisAsyncFree(l->ac);
    } else if (l->ac && !l->up && timefmt_mono_ms() - l->connect_started_ms > CONNECT_TIMEOUT_MS) {
        l->errors++; metrics_add(METRIC_REDIS_ERRORS, 1);
        log_warn("redis link %s: no answer to connect in %d ms; trying again", l->name,
                 CONNECT_TIMEOUT_MS);
        /* Not connected yet: the disconnect callback may or may not
         * come; schedule_retry takes either. */
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac);
        schedule_retry(l);
    } else if (l->probe_channel[0] && l->ac && l->up && l->pending == 0 &&
               timefmt_mono_ms() - l->last_progress_ms >= PROBE_IDLE_MS) {
        send_probe(l);
    }
}

struct redis_link *redis_link_new(struct event_base *base, const char *url, const char *name,
                                  redis_link_state_fn on_state, void *arg)
{
    struct redis_link *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    char err[256];
    if (config_parse_redis_url(url, l->host, sizeof l->host, &l->port, &l->db, l->password,
                               sizeof l->password, err, sizeof err) < 0) {
        log_error("redis_url: %s", err);
        free(l);
        return NULL;
    }
    l->base = base;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->on_state = on_state;
    l->arg = arg;
    l->backoff_ms = BACKOFF_MIN_MS;
    l->retry_ev = evtimer_new(base, on_retry, l);
    l->watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, l);
    if (!l->retry_ev || !l->watchdog_ev) {
        redis_link_free(l);
        return NULL;
    }
    struct timeval wd = {0, WATCHDOG_MS * 1000};
    event_add(l->watchdog_ev, &wd);
    connect_now(l);
    return l;
}

void redis_link_free(struct redis_link *l)
{
    if (!l) return;
    l->freeing = true;
    l->on_state = NULL;
    if (l->ac) redisAsyncFree(l->ac);
    if (l->retry_ev) event_free(l->retry_ev);
    if (l->watchdog_ev) event_free(l->watchdog_ev);
    free(l);
}

bool redis_link_up(const struct redis_link *l) { return l && l->up && l->ac; }

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct pending_cmd *pc = privdata;
    struct redis_link *l = pc->link;
    if (l->pending > 0) l->pending--;
    l->last_progress_ms = timefmt_mono_ms();
    if (r) l->backoff_ms = BACKOFF_MIN_MS;
    if (r && ((redisReply *)r)->type == REDIS_REPLY_ERROR) {
        l->errors++;
        metrics_add(METRIC_REDIS_ERRORS, 1);
    }
    if (pc->fn) pc->fn(ac, r, pc->privdata);
    free(pc);
}

static struct pending_cmd *pending_new(struct redis_link *l, redisCallbackFn *fn, void *privdata)
{
    struct pending_cmd *pc = malloc(sizeof *pc);
    if (!pc) return NULL;
    pc->link = l;
    pc->fn = fn;
    pc->privdata = privdata;
    return pc;
}

static void pending_sent(struct redis_link *l)
{
    if (l->pending++ == 0) l->last_progress_ms = timefmt_mono_ms();
}

int redis_link_command(struct redis_link *l, redisCallbackFn *fn, void *privdata,
                       const char *fmt, ...)
{
    if (!redis_link_up(l)) return -1;
    struct pending_cmd *pc = pending_new(l, fn, privdata);
    if (!pc) return -1;
    va_list ap;
    va_start(ap, fmt);
    int r = redisvAsyncCommand(l->ac, on_reply, pc, fmt, ap);
    va_end(ap);
    if (r != REDIS_OK) {
        free(pc);
        return -1;
    }
    pending_sent(l);
    return 0;
}

int redis_link_commandargv(struct redis_link *l, redisCallbackFn *fn, void *privdata, int argc,
                           const char **argv, const size_t *argvlen)
{
    if (!redis_link_up(l)) return -1;
    struct pending_cmd *pc = pending_new(l, fn, privdata);
    if (!pc) return -1;
    if (redisAsyncCommandArgv(l->ac, on_reply, pc, argc, argv, argvlen) != REDIS_OK) {
        free(pc);
        return -1;
    }
    pending_sent(l);
    return 0;
}

static void heard(struct redis_link *l)
{
    l->last_progress_ms = timefmt_mono_ms();
    l->backoff_ms = BACKOFF_MIN_MS;
}

/* NULL (the link dropped or is being freed, the link itself still valid)
 * is passed on: the subscriber learns its channels are gone. */
static void on_subscription_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *l = privdata;
    if (r && !l->freeing) heard(l);
    if (l->sub_fn) l->sub_fn(ac, r, l->sub_arg);
}

void redis_link_set_subscriber(struct redis_link *l, redisCallbackFn *fn, void *privdata)
{
    l->sub_fn = fn;
    l->sub_arg = privdata;
}

int redis_link_subscribe(struct redis_link *l, const char *channel)
{
    if (!redis_link_up(l)) return -1;
    /* Subscription callbacks fire many times: they are not counted as
     * pending commands. */
    return redisAsyncCommand(l->ac, on_subscription_reply, l, "SUBSCRIBE %s", channel) == REDIS_OK
               ? 0
               : -1;
}

int redis_link_unsubscribe(struct redis_link *l, const char *channel)
{
    if (!redis_link_up(l)) return -1;
    return redisAsyncCommand(l->ac, NULL, NULL, "UNSUBSCRIBE %s", channel) == REDIS_OK ? 0 : -1;
}

/* Any reply of the probe channel (its subscribe confirmations: nobody
 * publishes on it) shows the connection alive. NULL: the context is being
 * freed, maybe with the link; touch nothing. */
static void on_probe(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct redis_link *l = privdata;
    if (!r || l->freeing) return;
    if (l->pending > 0) l->pending--;
    heard(l);
}

/* SUBSCRIBE again to a channel we are subscribed to is answered with a
 * confirmation each time, and is allowed in subscribed mode, where PING's
 * answer would reach no callback with hiredis 0.14. Counted as pending,
 * so the watchdog drops the link if it is not answered. */
static void send_probe(struct redis_link *l)
{
    if (redisAsyncCommand(l->ac, on_probe, l, "SUBSCRIBE %s", l->probe_channel) == REDIS_OK)
        pending_sent(l);
}

void redis_link_set_probe(struct redis_link *l, const char *channel)
{
    snprintf(l->probe_channel, sizeof l->probe_channel, "%s", channel);
}

uint32_t redis_link_pending(const struct redis_link *l) { return l && l->ac ? l->pending : 0; }

uint64_t redis_link_errors(const struct redis_link *l) { return l->errors; }
uint64_t redis_link_reconnects(const struct redis_link *l) { return l->reconnects; }

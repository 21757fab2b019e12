#ifndef CHATD_WORKER_WORKER_H
#define CHATD_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "shared/config.h"

/* A worker exits with WORKER_EXIT_FATAL when it cannot work at all with
 * this configuration (no event base, bad static setting): the master does
 * not respawn such a worker, so a bad setting cannot become a crash loop. */
#define WORKER_EXIT_FATAL 2

/* What the master hands a freshly forked worker. */
struct worker_args {
    const struct chat_config *cfg;
    int slot;            /* 0..workers-1, stable across respawns */
    int listen_fd;       /* this slot's SO_REUSEPORT socket */
    int master_fd;       /* read end of a pipe the master never writes: EOF = master gone */
    int ready_fd;        /* the worker writes one byte here once it accepts */
    const char *instance_id; /* unique per worker process, names its Redis records */
    const char *predecessor; /* instance of this slot's previous worker if it died, or "" */
    int metrics_index;   /* this process's block in the shared metrics */
};

/* Runs the worker until it has stopped; returns the process exit status. */
int worker_main(const struct worker_args *args);

struct conn;
struct redis_link;
struct pg_pool;
struct static_files;
struct hub;
struct store;
struct presence;
struct ip_limit;

/* Connections of one kind, intrusive (see struct conn). */
struct conn_list {
    struct conn *head;  /* the newest */
    struct conn *tail;  /* the oldest */
    uint32_t count;
};

/* The state of one worker process. Modules reach it through a pointer
 * they were given (a connection's back pointer), never a global, so unit
 * tests can build small ones. */
struct worker {
    struct event_base *base;
    const struct chat_config *cfg;
    int slot;
    const char *instance_id;

    int listen_fd;
    int spare_fd;              /* held open to shed connections at EMFILE */
    struct event *accept_ev;
    struct event *accept_resume_ev;
    struct event *master_ev;
    struct event *term_ev;
    struct event *quit_ev;
    struct event *tick_ev;

    struct conn *dirty_head;      /* connections with frames to write (ws_out.h) */
    struct event *flush_ev;       /* writes them at the end of the loop turn */

    struct conn_list http_conns;  /* plain HTTP connections */
    struct conn_list ws_conns;    /* upgraded WebSocket connections */

    bool accepting;            /* taking connections (after start-up) */
    int ready_fd;              /* to tell the master once accepting; -1 after */
    int64_t started_ms;
    bool draining;             /* graceful stop in progress */
    uint32_t accepts_since_trim;
    int64_t last_emfile_log_ms;
    uint32_t shed_since_log;
    uint32_t reclaimed_since_log;
    int64_t last_trim_ms;
    int64_t drain_deadline_ms;

    struct redis_link *redis;     /* commands */
    struct redis_link *redis_sub; /* subscriptions */
    struct pg_pool *pg;
    struct static_files *files;
    struct hub *hub;
    struct store *store;
    struct presence *presence;
    struct ip_limit *ip_limit;
    uint32_t max_conns_per_ip;   /* this worker's share of max_conns_per_ip; 0 = none */

    /* libevent common timeouts: one queue per distinct duration instead
     * of a heap entry per connection. */
    const struct timeval *http_idle_timeout;
    const struct timeval *http_first_timeout;
    const struct timeval *ws_ping_timeout;
};

/* Starts a graceful stop: /readyz and upgrades answer 503, WebSocket peers
 * get close 1001, and the loop ends once they are gone or the drain time
 * has passed. Safe to call more than once. */
void worker_begin_drain(struct worker *w, const char *why);

#endif

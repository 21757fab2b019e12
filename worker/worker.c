#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "shared/log.h"
#include "shared/timefmt.h"
#include "shared/metrics.h"
#include "worker/conn.h"
#include "worker/control.h"
#include "worker/hub.h"
#include "worker/presence.h"
#include "worker/store.h"
#include "worker/pg_pool.h"
#include "worker/redis_link.h"
#include "worker/static_files.h"
#include "worker/ws_conn.h"
#include "worker/ws_out.h"

/* Connections accepted per wake-up: enough to take a burst quickly,
 * bounded so a flood cannot starve the connections we already have. */
#define ACCEPTS_PER_WAKE 64
/* After EMFILE/ENFILE, accepting pauses this long instead of spinning. */
#define ACCEPT_PAUSE_MS 100
/* An idle keep-alive HTTP connection is closed after this long. */
#define HTTP_IDLE_TIMEOUT_S 30
/* A new connection must finish its first request head this soon: idle
 * connects (a flood, a port scan) hold a descriptor only briefly. */
#define HTTP_FIRST_REQUEST_S 10
#define TICK_MS 100

static void accept_pause(struct worker *w)
{
    event_del(w->accept_ev);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(w->accept_resume_ev, &tv);
}

/* At the descriptor limit a pending connection can be neither served nor
 * refused: the spare descriptor makes room to accept it and close it at
 * once, so the client sees a clean close rather than a hang. */
static void shed_one(struct worker *w)
{
    if (w->spare_fd < 0) return;
    close(w->spare_fd);
    int fd = accept(w->listen_fd, NULL, NULL);
    if (fd >= 0) close(fd);
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors, a worker would have to turn new clients away while
 * connections that never sent a request, or idle keep-alive ones, hold
 * every descriptor (a flood of idle connections, slowloris): instead it
 * closes the oldest plain HTTP connection that is not being answered, and
 * takes the new one. WebSockets are never taken. Looks at a bounded
 * number of the oldest; returns whether one was closed. */
static bool reclaim_idle_http(struct worker *w)
{
    int looked = 0;
    for (struct conn *c = w->http_conns.tail; c && looked < 64; c = c->prev, looked++) {
        /* A lingering close has had its answer: it may go. */
        if (c->busy || c->closed || (c->close_after_flush && !c->lingering)) continue;
        /* Nor one still sending an answer: that is being answered too. */
        if (!c->lingering && conn_unsent(c) > 0) continue;
        conn_close(c);
        return true;
    }
    return false;
}

/* Over the per-address limit: say so in HTTP (every HTTP client reads an
 * early answer) and close. A request already received but unread would
 * make close() answer with RST rather than FIN, and a client that sees
 * the RST before reading loses the 429: read what has arrived first
 * (bounded), and send our FIN before closing. */
static void refuse_over_limit(int fd)
{
    static const char answer[] =
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        "Content-Length: 74\r\nConnection: close\r\n\r\n"
        "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many connections\"}}";
    char sink[2048];
    for (int i = 0; i < 8 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {
    }
    ssize_t n = send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    (void)shutdown(fd, SHUT_WR);
    close(fd);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                bool reclaimed = reclaim_idle_http(w);
                if (reclaimed) w->reclaimed_since_log++;
                else w->shed_since_log++;
                /* A flood lasts; one line a second says so well enough. */
                int64_t now = timefmt_mono_ms();
                if (now - w->last_emfile_log_ms >= 1000) {
                    log_warn("accept: %s; closed %u idle HTTP connections and shed %u new ones "
                             "since the last line", strerror(errno), w->reclaimed_since_log,
                             w->shed_since_log);
                    w->last_emfile_log_ms = now;
                    w->shed_since_log = w->reclaimed_since_log = 0;
                }
                /* The descriptor is free only once libevent has run the
                 * connection's finalizer, later in this loop round:
                 * accepting again now would fail again and close another
                 * idle connection. The listener is level-triggered: the
                 * next round takes the client. */
                if (reclaimed) return;
                shed_one(w);
                accept_pause(w);
                return;
            }
            log_warn("accept: %s", strerror(errno));
            /* Out of kernel memory, the connection stays queued: the
             * listener would fire again at once, for as long as it lasts. */
            if (errno == ENOMEM || errno == ENOBUFS) accept_pause(w);
            return;
        }
        /* Frames are small and written whole, once per loop turn: Nagle
         * would only hold them back (measured: ~40 ms stalls against a
         * client's delayed ACKs). */
        int one = 1;
        (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct ip_addr peer;
        ip_limit_key(&ss, &peer);
        if (!ip_limit_take(w->ip_limit, &peer, w->max_conns_per_ip)) {
            metrics_add(METRIC_CONNS_REFUSED, 1);
            refuse_over_limit(cfd);
            continue;
        }
        if (!conn_new(w, cfd, &peer, w->max_conns_per_ip > 0)) {
            if (w->max_conns_per_ip > 0) ip_limit_release(w->ip_limit, &peer);
            log_warn("out of memory for a new connection; closed it");
            accept_pause(w);
            return;
        }
        metrics_add(METRIC_CONNS_ACCEPTED, 1);
        w->accepts_since_trim++;
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    if (w->accept_ev && w->accepting) event_add(w->accept_ev, NULL);
}

void worker_begin_drain(struct worker *w, const char *why)
{
    if (w->draining) return;
    w->draining = true;
    w->drain_deadline_ms = timefmt_mono_ms() + (int64_t)w->cfg->drain_timeout_s * 1000;
    log_info("draining (%s): closing %u websocket connections with 1001", why, w->ws_conns.count);
    /* Idle keep-alive connections go now: they have had their answers,
     * and clients expect such a close. Busy ones close after their answer
     * (http_reply sends Connection: close while draining), and so do
     * connections whose first request is still on its way (keep_alive is
     * false until a request was handled): they were accepted to be served,
     * and closing them would fail a request that did nothing wrong. */
    struct conn *next;
    for (struct conn *c = w->http_conns.head; c; c = next) {
        next = c->next;
        /* Input waiting is a request not yet read (parsing pauses behind
         * a large answer): it is answered, with Connection: close. */
        if (c->busy || !c->keep_alive || c->head_started_ms ||
            evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            continue;
        /* One still sending its answer closes when it is out: left open,
         * it would hold the drain to its deadline. */
        if (conn_unsent(c) == 0) conn_close(c);
        else conn_close_after_flush(c);
    }
    for (struct conn *c = w->ws_conns.head; c; c = next) {
        next = c->next;
        /* One whose 101 has not left yet gets the 503 of a new upgrade. */
        ws_conn_refuse(c, 503, "unavailable", "server is shutting down", 1001);
    }
}

static void stop_accepting(struct worker *w)
{
    if (!w->accept_ev) return;
    event_free(w->accept_ev);
    w->accept_ev = NULL;
    evtimer_del(w->accept_resume_ev);
    /* Our copy of the socket would keep it listening after the master
     * closed its own (a slot waiting to restart, a master gone), with
     * nobody taking what the kernel queues on it. */
    close(w->listen_fd);
    w->listen_fd = -1;
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (sig == SIGQUIT) {
        /* Retired by a reload: the new worker already takes this slot's
         * connections from the same socket. */
        stop_accepting(w);
        worker_begin_drain(w, "replaced by reload");
    } else {
        /* The host is stopping: keep answering so that /readyz and new
         * upgrades get 503 until we are gone. */
        worker_begin_drain(w, "stop requested");
    }
}

static void on_master(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 || (n < 0 && errno == EAGAIN)) return;
    event_del(w->master_ev);
    stop_accepting(w);
    log_warn("master process is gone");
    worker_begin_drain(w, "master gone");
}

/* Connection set-up allocates and frees a lot around the long-lived
 * connection state (JSON, Redis and PostgreSQL replies), which leaves
 * free holes that malloc keeps resident (measured: the heap spans twice
 * what is in use after 5000 connects). So while connections arrive, at
 * most once a second, and every 30 s anyway, freed pages go back to the
 * kernel: an idle connection costs what it holds (docs/performance.md). */
#define TRIM_AFTER_ACCEPTS 1
#define TRIM_MIN_GAP_MS 1000
#define TRIM_MAX_GAP_MS 30000

static void maybe_trim(struct worker *w)
{
    int64_t now = timefmt_mono_ms();
    int64_t gap = now - w->last_trim_ms;
    if ((w->accepts_since_trim >= TRIM_AFTER_ACCEPTS && gap >= TRIM_MIN_GAP_MS) ||
        gap >= TRIM_MAX_GAP_MS) {
        malloc_trim(0);
        w->last_trim_ms = now;
        w->accepts_since_trim = 0;
    }
}

/* A new worker takes connections only once Redis (both links) and
 * PostgreSQL answer, so its first clients are not refused with 503 while
 * it connects; during a reload the old worker keeps taking this slot's
 * connections meanwhile. A dependency that is down must not keep the
 * worker from serving (/healthz, and 503 from /readyz) for long, though. */
#define STARTUP_WAIT_MS 5000

static void start_accepting_when_ready(struct worker *w)
{
    bool deps_up = redis_link_up(w->redis) && hub_subscriptions_up(w->hub) && pg_pool_up(w->pg);
    if (!deps_up && timefmt_mono_ms() - w->started_ms < STARTUP_WAIT_MS) return;
    if (!deps_up) log_warn("starting without redis or postgresql; /readyz says 503 until they answer");
    w->accepting = true;
    event_add(w->accept_ev, NULL);
    char one = 'R';
    if (write(w->ready_fd, &one, 1) != 1) log_warn("cannot tell the master we are ready");
    close(w->ready_fd);
    w->ready_fd = -1;
    log_debug("worker ready instance=%s", w->instance_id);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    maybe_trim(w);
    if (!w->accepting && !w->draining && w->accept_ev) start_accepting_when_ready(w);
    if (!w->draining) return;
    /* Once we no longer accept (replaced by a reload, master gone), the
     * HTTP connections we hold are answered before we go: a reload must
     * not fail a request. The drain deadline bounds a client that sends
     * nothing. While we still accept (a host stop) new ones keep coming,
     * so only the WebSockets are waited for. */
    bool http_done = w->accept_ev != NULL || w->http_conns.count == 0;
    /* Leaves still travelling to Redis would be lost if we exited now,
     * and messages being stored would commit unannounced (receivers
     * repair a gap only when a later change shows it). */
    if (w->ws_conns.count == 0 && http_done && store_idle(w->store) &&
        presence_idle(w->presence) && redis_link_pending(w->redis) == 0) {
        log_info("drained; exiting");
        event_base_loopexit(w->base, NULL);
    } else if (timefmt_mono_ms() >= w->drain_deadline_ms) {
        log_warn("drain time over with %u websocket and %u http connections left; exiting",
                 w->ws_conns.count, w->http_conns.count);
        event_base_loopexit(w->base, NULL);
    }
}

static void on_redis_state(struct redis_link *l, bool up, void *arg)
{
    (void)l;
    struct worker *w = arg;
    if (w->presence) presence_on_link(w->presence, up);
    if (up) control_sweep_bans(w);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ws_out_flush_dirty(arg);
}

static void close_all(struct conn_list *l)
{
    while (l->head) conn_close(l->head);
}

static int worker_init(struct worker *w, const struct worker_args *a)
{
    w->cfg = a->cfg;
    w->slot = a->slot;
    w->instance_id = a->instance_id;
    w->listen_fd = a->listen_fd;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->base = event_base_new();
    if (!w->base) return -1;
    struct timeval idle = {HTTP_IDLE_TIMEOUT_S, 0};
    struct timeval ping = {w->cfg->ping_interval_s, 0};
    w->http_idle_timeout = event_base_init_common_timeout(w->base, &idle);
    struct timeval first = {HTTP_FIRST_REQUEST_S, 0};
    w->http_first_timeout = event_base_init_common_timeout(w->base, &first);
    w->ws_ping_timeout = event_base_init_common_timeout(w->base, &ping);
    w->files = static_files_load(w->cfg->static_dir);
    w->ip_limit = ip_limit_new();
    if (!w->files || !w->ip_limit) return -1;
    if (w->cfg->max_conns_per_ip > 0)
        w->max_conns_per_ip = (uint32_t)((w->cfg->max_conns_per_ip + w->cfg->workers - 1) /
                                         w->cfg->workers);
    w->pg = pg_pool_new(w->base, w->cfg->pg_dsn, w->cfg->pg_pool_size, store_prepared,
                        STORE_NSTMTS);
    w->store = w->pg ? store_new(w) : NULL;
    w->presence = presence_new(w, a->predecessor);
    w->redis = redis_link_new(w->base, w->cfg->redis_url, "commands", on_redis_state, w);
    w->hub = hub_new(w);
    if (!w->pg || !w->store || !w->presence || !w->redis || !w->hub) return -1;
    hub_set_control_handler(w->hub, control_handle);
    hub_set_control_resumed(w->hub, control_sweep_bans);
    w->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
    w->accept_resume_ev = evtimer_new(w->base, on_accept_resume, w);
    w->master_ev = event_new(w->base, a->master_fd, EV_READ | EV_PERSIST, on_master, w);
    w->term_ev = evsignal_new(w->base, SIGTERM, on_term, w);
    w->quit_ev = evsignal_new(w->base, SIGQUIT, on_term, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    w->flush_ev = event_new(w->base, -1, 0, on_flush, w);
    if (!w->accept_ev || !w->accept_resume_ev || !w->master_ev || !w->term_ev || !w->quit_ev ||
        !w->tick_ev || !w->flush_ev)
        return -1;
    struct timeval tick = {0, TICK_MS * 1000};
    w->ready_fd = a->ready_fd;
    w->started_ms = timefmt_mono_ms();
    if (event_add(w->master_ev, NULL) < 0 ||
        event_add(w->term_ev, NULL) < 0 || event_add(w->quit_ev, NULL) < 0 ||
        event_add(w->tick_ev, &tick) < 0)
        return -1;
    /* The master held these back until the loop could take them. */
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGQUIT);
    sigprocmask(SIG_UNBLOCK, &stops, NULL);
    return 0;
}

static void worker_teardown(struct worker *w)
{
    close_all(&w->ws_conns);
    close_all(&w->http_conns);
    if (w->flush_ev) ws_out_flush_dirty(w); /* closed ones: only drops references */
    if (w->hub) hub_free(w->hub);
    /* Requests in flight call back into closed connections, which only
     * drop their references. */
    if (w->store) store_free(w->store);
    /* The link before presence: freeing it answers what is in flight, and
     * a script answer held for its turn (worker/redis_script.h) is a real
     * one, which presence's callbacks act on. */
    if (w->redis) redis_link_free(w->redis);
    w->redis = NULL;
    if (w->presence) presence_free(w->presence);
    if (w->pg) pg_pool_free(w->pg);
    static_files_free(w->files);
    ip_limit_free(w->ip_limit);
    if (w->accept_ev) event_free(w->accept_ev);
    if (w->accept_resume_ev) event_free(w->accept_resume_ev);
    if (w->master_ev) event_free(w->master_ev);
    if (w->term_ev) event_free(w->term_ev);
    if (w->quit_ev) event_free(w->quit_ev);
    if (w->tick_ev) event_free(w->tick_ev);
    if (w->flush_ev) event_free(w->flush_ev);
    if (w->base) event_base_free(w->base);
    if (w->spare_fd >= 0) close(w->spare_fd);
    if (w->ready_fd >= 0) close(w->ready_fd);
}

int worker_main(const struct worker_args *a)
{
    /* The terminal's Ctrl-C reaches the whole process group; the master
     * turns it into an orderly stop, so workers ignore it. Reloads are the
     * master's business too. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    metrics_attach(a->metrics_index);
    struct worker w;
    memset(&w, 0, sizeof w);
    w.spare_fd = -1;
    w.ready_fd = -1;
    if (worker_init(&w, a) < 0) {
        log_error("worker cannot start: out of memory or no event base");
        worker_teardown(&w);
        return WORKER_EXIT_FATAL;
    }
    event_base_dispatch(w.base);
    worker_teardown(&w);
    return 0;
}

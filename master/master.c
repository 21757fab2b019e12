#include "master/master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master/listen.h"
#include "shared/metrics.h"
#include "shared/log.h"
#include "shared/timefmt.h"
#include "worker/worker.h"

/* The master supervises and never touches client traffic. It keeps a
 * process table, reaps children with waitpid(-1, WNOHANG) and takes its
 * signals through a signalfd, so every decision is made in one poll loop
 * and no work happens in signal context. */

#define MASTER_MAX_SLOTS 256
#define MASTER_MAX_PROCS (2 * MASTER_MAX_SLOTS)
#define LISTEN_BACKLOG 4096
/* A reloaded worker that has not said it accepts within this time is
 * taken as failed; the old worker keeps serving. */
#define READY_TIMEOUT_MS 10000
/* A worker that dies this soon after start counts as a fast failure and
 * is restarted with exponential backoff. */
#define FAST_FAILURE_MS 2000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000
/* A slot that must wait this long or more before its restart stops
 * listening meanwhile (close_slot_socket). */
#define SLOT_CLOSE_AFTER_MS 1000

enum proc_state { PROC_FREE, PROC_STARTING, PROC_RUNNING, PROC_RETIRING };

struct proc {
    enum proc_state state;
    pid_t pid;
    int slot;
    int ready_fd;          /* read end; -1 once the worker said it is ready */
    bool replaces;         /* a reload candidate that will retire the slot's old worker */
    int64_t started_ms;
    int64_t kill_at_ms;    /* retiring or stopping: SIGKILL after this; 0 = none */
    char instance[96];
};

struct slot {
    int listen_fd;
    char dead_instance[96]; /* the last worker of this slot died: its successor reaps it */
    int fast_failures;
    int64_t respawn_at_ms; /* 0 = no respawn pending */
    bool fatal;
};

struct master {
    struct master_options *opts;
    struct chat_config cfg;
    struct slot slots[MASTER_MAX_SLOTS];
    struct proc procs[MASTER_MAX_PROCS];
    int nslots;
    int alive_pipe[2];
    int sigfd;
    unsigned spawn_counter;
    char host[CONFIG_NAME_MAX];
    bool stopping;
    int64_t stop_deadline_ms;
    int reload_slot;       /* slot being replaced by a reload, -1 when none */
    int exit_status;
};

static struct proc *proc_alloc(struct master *m)
{
    for (int i = 0; i < MASTER_MAX_PROCS; i++)
        if (m->procs[i].state == PROC_FREE) return &m->procs[i];
    return NULL;
}

static struct proc *proc_by_pid(struct master *m, pid_t pid)
{
    for (int i = 0; i < MASTER_MAX_PROCS; i++)
        if (m->procs[i].state != PROC_FREE && m->procs[i].pid == pid) return &m->procs[i];
    return NULL;
}

static int live_procs(const struct master *m)
{
    int n = 0;
    for (int i = 0; i < MASTER_MAX_PROCS; i++) n += m->procs[i].state != PROC_FREE;
    return n;
}

/* Whether a worker other than `except` serves or is about to serve the
 * slot (a retiring one does not). */
static bool slot_served(const struct master *m, int slot, const struct proc *except)
{
    for (int i = 0; i < MASTER_MAX_PROCS; i++) {
        const struct proc *p = &m->procs[i];
        if (p != except && p->slot == slot && (p->state == PROC_STARTING || p->state == PROC_RUNNING))
            return true;
    }
    return false;
}

static void proc_release(struct proc *p)
{
    if (p->ready_fd >= 0) close(p->ready_fd);
    memset(p, 0, sizeof *p);
    p->state = PROC_FREE;
    p->ready_fd = -1;
}

/* In the child: drop everything of the master's that is not this
 * worker's, restore default signal dispositions, and run the worker. */
static void child_run(struct master *m, int slot, int ready_w, const char *instance,
                      int proc_index)
{
    /* SIGTERM and SIGQUIT stay blocked until the worker's loop handles
     * them (worker_init): one sent while it starts (a reload retiring it)
     * then waits instead of killing it with the default action. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGQUIT);
    sigprocmask(SIG_SETMASK, &held, NULL);
    close(m->sigfd);
    close(m->alive_pipe[1]);
    for (int i = 0; i < m->nslots; i++)
        if (m->slots[i].listen_fd != m->slots[slot].listen_fd) close(m->slots[i].listen_fd);
    for (int i = 0; i < MASTER_MAX_PROCS; i++)
        if (m->procs[i].state != PROC_FREE && m->procs[i].ready_fd >= 0) close(m->procs[i].ready_fd);
    char role[32];
    snprintf(role, sizeof role, "worker %d", slot);
    log_set_role(role);
    struct worker_args args = {
        .cfg = &m->cfg,
        .slot = slot,
        .listen_fd = m->slots[slot].listen_fd,
        .master_fd = m->alive_pipe[0],
        .ready_fd = ready_w,
        .instance_id = instance,
        .predecessor = m->slots[slot].dead_instance,
        .metrics_index = proc_index,
    };
    _exit(worker_main(&args));
}

static bool reuseport(const struct master *m) { return strcmp(m->cfg.listen_mode, "reuseport") == 0; }

/* A slot's own socket (reuseport) gets its share of new connections
 * whether or not a worker accepts from it: while the slot waits out a
 * long restart back-off it is closed, so that the kernel sends them to
 * the slots that serve. Its backlog is reset, which a client sees at
 * once, rather than a connection left hanging until the restart. */
static void close_slot_socket(struct master *m, int slot)
{
    struct slot *s = &m->slots[slot];
    if (!reuseport(m) || s->listen_fd < 0) return;
    /* The last socket stays: the port remains ours, and its clients wait
     * for the restart rather than being refused. */
    bool others = false;
    for (int i = 0; i < m->nslots && !others; i++)
        others = i != slot && m->slots[i].listen_fd >= 0 && slot_served(m, i, NULL);
    if (!others) return;
    close(s->listen_fd);
    s->listen_fd = -1;
    log_info("slot=%d stops listening until its worker restarts", slot);
}

static int open_slot_socket(struct master *m, int slot)
{
    struct slot *s = &m->slots[slot];
    if (s->listen_fd >= 0) return 0;
    char err[256];
    s->listen_fd = listen_open(m->cfg.bind, m->cfg.port, LISTEN_BACKLOG, reuseport(m), err, sizeof err);
    if (s->listen_fd < 0) {
        log_error("slot=%d cannot listen again: %s", slot, err);
        return -1;
    }
    return 0;
}

static int spawn(struct master *m, int slot, bool replaces)
{
    struct proc *p = proc_alloc(m);
    if (!p) {
        log_error("process table full, cannot start worker slot=%d", slot);
        return -1;
    }
    if (open_slot_socket(m, slot) < 0) return -1;
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        log_error("pipe: %s", strerror(errno));
        return -1;
    }
    char instance[96];
    snprintf(instance, sizeof instance, "%s:%d:%d:%u", m->host, (int)getpid(), slot,
             ++m->spawn_counter);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    if (pid == 0) {
        close(ready[0]);
        child_run(m, slot, ready[1], instance, (int)(p - m->procs));
    }
    close(ready[1]);
    m->slots[slot].dead_instance[0] = '\0';
    /* A respawn still pending (a reload got there first) would start a
     * second worker for the slot. */
    m->slots[slot].respawn_at_ms = 0;
    p->state = PROC_STARTING;
    p->pid = pid;
    p->slot = slot;
    p->ready_fd = ready[0];
    p->replaces = replaces;
    p->started_ms = timefmt_mono_ms();
    p->kill_at_ms = 0;
    snprintf(p->instance, sizeof p->instance, "%s", instance);
    log_info("worker started slot=%d pid=%d instance=%s", slot, (int)pid, instance);
    return 0;
}

/* SIGTERM: the host stops (the worker keeps answering 503 while it
 * drains). SIGQUIT: replaced by a reload (it stops accepting at once). */
static void retire(struct proc *p, int64_t grace_ms, int sig)
{
    p->state = PROC_RETIRING;
    p->kill_at_ms = timefmt_mono_ms() + grace_ms;
    kill(p->pid, sig);
}

static int64_t drain_grace_ms(const struct master *m)
{
    /* The worker itself gives up at drain_timeout_s; the extra second
     * covers its exit before the master reaches for SIGKILL. */
    return (int64_t)m->cfg.drain_timeout_s * 1000 + 1000;
}

static void begin_stop(struct master *m, const char *why)
{
    if (m->stopping) return;
    m->stopping = true;
    m->stop_deadline_ms = timefmt_mono_ms() + drain_grace_ms(m);
    log_info("graceful stop (%s): draining workers timeout_s=%d", why, m->cfg.drain_timeout_s);
    for (int i = 0; i < MASTER_MAX_PROCS; i++) {
        struct proc *p = &m->procs[i];
        if (p->state != PROC_FREE) retire(p, drain_grace_ms(m), SIGTERM);
    }
    for (int i = 0; i < m->nslots; i++) m->slots[i].respawn_at_ms = 0;
}

/* Starts replacing the next slot of a reload, or ends the reload. */
static void reload_step(struct master *m)
{
    while (m->reload_slot >= 0 && m->reload_slot < m->nslots) {
        if (spawn(m, m->reload_slot, true) == 0) return;
        log_error("reload: cannot start a new worker for slot=%d; old worker keeps serving",
                  m->reload_slot);
        m->reload_slot++;
    }
    if (m->reload_slot >= 0) log_info("reload finished: every worker runs the new settings");
    m->reload_slot = -1;
}

static void reload(struct master *m)
{
    if (m->stopping) return;
    if (m->reload_slot >= 0) {
        log_warn("reload already in progress; SIGHUP ignored");
        return;
    }
    struct chat_config next;
    char err[512];
    if (master_load_config(m->opts, &next, err, sizeof err) < 0) {
        log_error("reload rejected, old workers keep serving: %s", err);
        return;
    }
    char key[64];
    if (config_reloadable_differs(&m->cfg, &next, key, sizeof key)) {
        log_error("reload rejected, old workers keep serving: '%s' cannot change on reload, "
                  "restart chatd to change it", key);
        config_free(&next);
        return;
    }
    config_free(&m->cfg);
    m->cfg = next;
    log_set_level(m->cfg.log_level);
    log_info("reload: settings accepted, replacing workers one at a time");
    m->reload_slot = 0;
    reload_step(m);
}

static void on_ready(struct master *m, struct proc *p)
{
    char c;
    ssize_t n = read(p->ready_fd, &c, 1);
    if (n == 1) {
        close(p->ready_fd);
        p->ready_fd = -1;
        /* One retired meanwhile (a reload's newer worker was ready in the
         * same round) stays retiring. Ready is not yet stable: the
         * back-off is only forgiven once a worker has run FAST_FAILURE_MS
         * (run_timers), or one crashing soon after its start would be
         * restarted at the shortest delay for ever. */
        if (p->state == PROC_STARTING && !m->stopping) {
            p->state = PROC_RUNNING;
            m->slots[p->slot].fatal = false;
            /* The slot is served: a respawn still pending (its previous
             * worker died while this reload candidate started) would start
             * another. */
            m->slots[p->slot].respawn_at_ms = 0;
        }
        log_debug("worker ready slot=%d pid=%d", p->slot, (int)p->pid);
        if (p->replaces && !m->stopping) {
            p->replaces = false;
            for (int i = 0; i < MASTER_MAX_PROCS; i++) {
                struct proc *old = &m->procs[i];
                if (old != p && old->slot == p->slot &&
                    (old->state == PROC_RUNNING || old->state == PROC_STARTING)) {
                    log_info("reload: retiring old worker slot=%d pid=%d", old->slot, (int)old->pid);
                    retire(old, drain_grace_ms(m), SIGQUIT);
                }
            }
            m->reload_slot++;
            reload_step(m);
        }
        return;
    }
    /* EOF without the byte: the worker died before it was ready; the
     * SIGCHLD path handles it. Stop polling the pipe. */
    close(p->ready_fd);
    p->ready_fd = -1;
}

static void schedule_respawn(struct master *m, struct proc *p, int status)
{
    struct slot *s = &m->slots[p->slot];
    int64_t now = timefmt_mono_ms();
    int64_t delay = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
        /* It could not start (out of memory or descriptors): perhaps
         * for a while only, so it is tried again, slowly. */
        s->fatal = true;
        delay = BACKOFF_MAX_MS;
        log_error("worker slot=%d could not start; trying again in %lld ms", p->slot, (long long)delay);
    } else {
        s->fatal = false;
        if (now - p->started_ms < FAST_FAILURE_MS) s->fast_failures++;
        else s->fast_failures = 0;
        if (s->fast_failures > 0) {
            delay = BACKOFF_MIN_MS;
            for (int i = 1; i < s->fast_failures && delay < BACKOFF_MAX_MS; i++) delay *= 2;
            if (delay > BACKOFF_MAX_MS) delay = BACKOFF_MAX_MS;
            log_warn("worker slot=%d restarts in %lld ms (failed %d times in a row soon after start)",
                     p->slot, (long long)delay, s->fast_failures);
        }
    }
    s->respawn_at_ms = now + delay;
    /* A short wait is better spent with the backlog kept: its clients are
     * served when the worker is back. A long one would hold them. */
    if (delay >= SLOT_CLOSE_AFTER_MS) close_slot_socket(m, p->slot);
}

static void describe_status(int status, char *out, size_t n)
{
    if (WIFSIGNALED(status))
        snprintf(out, n, "signal=%s%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
                 WCOREDUMP(status) ? " core=yes" : "");
    else
        snprintf(out, n, "exit=%d", WEXITSTATUS(status));
}

static void reap(struct master *m)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        struct proc *p = proc_by_pid(m, pid);
        if (!p) continue;
        char cause[64];
        describe_status(status, cause, sizeof cause);
        bool expected = m->stopping || p->state == PROC_RETIRING;
        if (expected)
            log_info("worker exited slot=%d pid=%d %s", p->slot, (int)pid, cause);
        else
            log_error("worker died slot=%d pid=%d %s", p->slot, (int)pid, cause);
        metrics_retire((int)(p - m->procs));
        if (!expected || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            /* Its connections' presence records are left behind: the next
             * worker of the slot reaps them as soon as it reaches Redis. */
            memcpy(m->slots[p->slot].dead_instance, p->instance, sizeof p->instance);
        }
        if (!expected) {
            if (p->replaces) {
                log_error("reload aborted: new worker for slot=%d died; old workers keep serving",
                          p->slot);
                m->reload_slot = -1;
            } else {
                schedule_respawn(m, p, status);
            }
        }
        /* A reload candidate that died or never became ready, where the
         * slot had no worker left (it was waiting out a back-off), must
         * not leave the slot without one. */
        if (!m->stopping && m->slots[p->slot].respawn_at_ms == 0 && !slot_served(m, p->slot, p))
            schedule_respawn(m, p, status);
        proc_release(p);
    }
}

static void on_signal(struct master *m)
{
    struct signalfd_siginfo si;
    while (read(m->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGCHLD: reap(m); break;
        case SIGTERM: begin_stop(m, "SIGTERM"); break;
        case SIGINT: begin_stop(m, "SIGINT"); break;
        case SIGQUIT: begin_stop(m, "SIGQUIT"); break;
        case SIGHUP: reload(m); break;
        default: break;
        }
    }
}

/* Timers: pending respawns, reload candidates that never became ready,
 * retiring workers past their grace period. Returns ms until the next. */
static int run_timers(struct master *m)
{
    int64_t now = timefmt_mono_ms();
    int64_t next = now + 1000;
    for (int i = 0; i < m->nslots && !m->stopping; i++) {
        struct slot *s = &m->slots[i];
        if (s->respawn_at_ms == 0) continue;
        if (s->respawn_at_ms <= now) {
            s->respawn_at_ms = 0;
            if (spawn(m, i, false) < 0) {
                s->respawn_at_ms = now + BACKOFF_MAX_MS;
                close_slot_socket(m, i);
            }
        } else if (s->respawn_at_ms < next) {
            next = s->respawn_at_ms;
        }
    }
    for (int i = 0; i < MASTER_MAX_PROCS; i++) {
        struct proc *p = &m->procs[i];
        /* Lived long enough: the slot's back-off is forgiven. */
        if (p->state == PROC_RUNNING && now - p->started_ms >= FAST_FAILURE_MS)
            m->slots[p->slot].fast_failures = 0;
        else if (p->state == PROC_RUNNING && p->started_ms + FAST_FAILURE_MS < next)
            next = p->started_ms + FAST_FAILURE_MS;
        if (p->state == PROC_STARTING && p->replaces && now - p->started_ms > READY_TIMEOUT_MS) {
            log_error("reload aborted: new worker slot=%d pid=%d not ready in %d ms; old workers keep serving",
                      p->slot, (int)p->pid, READY_TIMEOUT_MS);
            p->replaces = false;
            m->reload_slot = -1;
            retire(p, 0, SIGKILL);
        }
        if (p->kill_at_ms && p->kill_at_ms <= now && p->state != PROC_FREE) {
            log_warn("worker slot=%d pid=%d still running after its drain time; killing it",
                     p->slot, (int)p->pid);
            kill(p->pid, SIGKILL);
            p->kill_at_ms = 0;
        } else if (p->kill_at_ms && p->kill_at_ms < next) {
            next = p->kill_at_ms;
        }
    }
    int64_t wait = next - now;
    return wait < 0 ? 0 : (int)wait;
}

static bool all_slots_fatal(const struct master *m)
{
    for (int i = 0; i < m->nslots; i++)
        if (!m->slots[i].fatal) return false;
    return true;
}

static int loop(struct master *m)
{
    struct pollfd pfds[1 + MASTER_MAX_PROCS];
    struct proc *owners[1 + MASTER_MAX_PROCS];
    for (;;) {
        int timeout = run_timers(m);
        if (m->stopping && live_procs(m) == 0) {
            log_info("all workers stopped; master exits");
            return 0;
        }
        if (!m->stopping && all_slots_fatal(m) && live_procs(m) == 0) {
            log_error("no worker can start; master exits");
            return 1;
        }
        int n = 0;
        pfds[n] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
        owners[n++] = NULL;
        for (int i = 0; i < MASTER_MAX_PROCS; i++) {
            struct proc *p = &m->procs[i];
            if (p->state == PROC_FREE || p->ready_fd < 0) continue;
            pfds[n] = (struct pollfd){.fd = p->ready_fd, .events = POLLIN};
            owners[n++] = p;
        }
        int r = poll(pfds, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            log_error("poll: %s", strerror(errno));
            return 1;
        }
        /* Ready pipes first: a worker that wrote its byte and exited at
         * once is still seen as ready before it is reaped. */
        for (int i = 1; i < n; i++)
            if (pfds[i].revents) on_ready(m, owners[i]);
        if (pfds[0].revents & POLLIN) on_signal(m);
    }
}

static int write_pid_file(const char *path)
{
    if (!path || !*path) return 0;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%d\n", (int)getpid());
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

int master_run(struct master_options *opts, struct chat_config *cfg)
{
    static struct master m; /* large (process table): not on the stack */
    memset(&m, 0, sizeof m);
    m.opts = opts;
    m.cfg = *cfg;
    m.reload_slot = -1;
    log_set_role("master");
    for (int i = 0; i < MASTER_MAX_PROCS; i++) m.procs[i].ready_fd = -1;
    if (m.cfg.instance_name[0]) memcpy(m.host, m.cfg.instance_name, sizeof m.cfg.instance_name);
    else if (gethostname(m.host, sizeof m.host) < 0) snprintf(m.host, sizeof m.host, "host");
    m.host[sizeof m.host - 1] = '\0';

    m.nslots = m.cfg.workers;
    if (m.nslots > MASTER_MAX_SLOTS) m.nslots = MASTER_MAX_SLOTS;
    for (int i = 0; i < m.nslots; i++) {
        char err[256];
        if (!reuseport(&m) && i > 0) {
            m.slots[i].listen_fd = m.slots[0].listen_fd;
            continue;
        }
        m.slots[i].listen_fd = listen_open(m.cfg.bind, m.cfg.port, LISTEN_BACKLOG, reuseport(&m), err,
                                           sizeof err);
        if (m.slots[i].listen_fd < 0) {
            log_error("cannot listen: %s", err);
            return 1;
        }
    }
    if (metrics_init_shared() < 0) {
        log_error("cannot map shared memory for metrics: %s", strerror(errno));
        return 1;
    }
    if (pipe2(m.alive_pipe, O_CLOEXEC) < 0) {
        log_error("pipe: %s", strerror(errno));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Also blocked so that a child is born with it blocked (child_run). */
    sigaddset(&set, SIGQUIT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    m.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m.sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return 1;
    }
    if (write_pid_file(m.cfg.pid_file) < 0) {
        log_error("cannot write pid file %s: %s", m.cfg.pid_file, strerror(errno));
        return 1;
    }
    log_info("chatd listening on http://%s:%d workers=%d pid=%d", m.cfg.bind, m.cfg.port,
             m.nslots, (int)getpid());
    for (int i = 0; i < m.nslots; i++)
        if (spawn(&m, i, false) < 0) m.slots[i].respawn_at_ms = timefmt_mono_ms() + BACKOFF_MIN_MS;

    int status = loop(&m);
    if (m.cfg.pid_file[0]) unlink(m.cfg.pid_file);
    *cfg = m.cfg;
    return status;
}

/* chat-bench: a load generator for chatd (bin/chat-bench; docs/performance.md).
 *
 * The parent forks --procs children and only coordinates: each child owns
 * a share of the connections (connection i belongs to child i % procs) on
 * one libevent loop. Children connect, report ready; the parent picks a
 * common start time T0 (CLOCK_MONOTONIC is system-wide, so every child
 * shares the clock) and samples the server's process tree from /proc;
 * children send on an open-loop schedule from T0, measure, and at the end
 * write their counts and histograms back through a pipe.
 *
 * Timeline: [T0, W0) warm-up, [W0, W1) the measured window, [W1, END)
 * drain (no sends; late deliveries of window messages still count).
 * Only messages whose scheduled send time is in the window count, as sent,
 * acked and delivered; expected deliveries are, per room, the window's
 * sends times the room's connected members (every member, the sender's own
 * connection included, gets each message).
 *
 * Latency is measured from the scheduled send time (carried in the
 * message), not the moment the client got round to it, so a client that
 * falls behind shows up as latency rather than hiding it (and the send
 * lag is reported separately to tell the two apart). */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "bench/hist.h"
#include "bench/proctree.h"
#include "bench/steal.h"
#include "bench/wsclient.h"
#include "shared/jwt.h"
#include "shared/timefmt.h"
#include "worker/ws_frame.h"

/* ------------------------------------------------------------ options */

enum mode { MODE_LOAD, MODE_CHURN };
enum proto { PROTO_CHATD, PROTO_SOCKETIO };

/* A server of --url; connection i goes to target i % n_targets. */
struct target {
	char host[64];
	int port;
	struct in_addr addr;
};
#define MAX_TARGETS 16

static struct opts {
	struct target targets[MAX_TARGETS];
	int n_targets;
	enum proto proto;
	long conns;
	long rooms;
	long senders;
	double rate;        /* messages per second per sender */
	double duration_s;
	double warmup_s;
	double drain_s;
	long size;          /* text bytes */
	int procs;
	int source_addrs;   /* 0: let the kernel choose */
	const char *secret;
	pid_t server_pid;
	pid_t service_pids[8]; /* Redis, PostgreSQL: reported apart */
	int n_service_pids;
	char room_prefix[48];
	char user_prefix[32];
	enum mode mode;
	int connect_concurrency; /* per process */
	double connect_timeout_s;
	const char *label;
	bool json_only;
} O = {
	.conns = 100,
	.rooms = 1,
	.senders = 10,
	.rate = 10,
	.duration_s = 10,
	.warmup_s = 2,
	.drain_s = 2,
	.size = 100,
	.procs = 1,
	.source_addrs = -1,
	.mode = MODE_LOAD,
	.connect_concurrency = 256,
	.connect_timeout_s = 30,
	.user_prefix = "bu",
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: chat-bench [options]\n"
		"  --url ws://IP:PORT[,...]  server (numeric IPv4; default ws://127.0.0.1:8080); with\n"
		"                            several, connection i goes to server i %% count\n"
		"  --mode load|churn         load: connect, then send; churn: connect, welcome, leave, repeat\n"
		"  --conns C                 connections (churn: concurrent connect loops) [100]\n"
		"  --rooms R                 rooms; connection i joins room i %% R [1]\n"
		"  --senders S               connections 0..S-1 send [10]\n"
		"  --rate N                  messages per second per sender, open loop [10]\n"
		"  --duration S              measured window, seconds [10]\n"
		"  --warmup S                sending before the window, not counted [2]\n"
		"  --drain S                 waiting after the window for late deliveries [2]\n"
		"  --size B                  message text bytes; the server's max_text_chars\n"
		"                            (2000 by default) bounds it [100]\n"
		"  --procs P                 client processes (each one libevent loop) [1]\n"
		"  --source-addrs N          bind connections to 127.0.0.2 .. 127.0.0.N+1\n"
		"                            [auto: 1 per 25000 conns on loopback, else 0]\n"
		"  --connect-concurrency K   connects in flight per process [256]\n"
		"  --connect-timeout S       per connection, until the welcome [30]\n"
		"  --secret S                JWT secret [$CHAT_JWT_SECRET]\n"
		"  --server-pid PID          chatd master: CPU and memory of its process tree\n"
		"  --service-pid PID         a dependency (Redis, PostgreSQL postmaster), sampled\n"
		"                            the same way and reported apart; repeatable\n"
		"  --room-prefix P           room names P0, P1, ... [bench-<time>-<pid>-]\n"
		"  --user-prefix P           user ids P0, P1, ... (connection i is user P<i>) [bu]\n"
		"  --proto chatd|socketio    wire protocol: chatd's (PROTOCOL.md), or Engine.IO v4 /\n"
		"                            Socket.IO v5 over WebSocket (the bench/peers/socketio peer:\n"
		"                            events \"message\", acks by callback; room seq not checked)\n"
		"  --label NAME              copied into the JSON line\n"
		"  --json-only               print only the JSON line\n"
		"  --self-test               check the histogram and frame parser, then exit\n");
}

static void sleep_until_us(int64_t t)
{
	struct timespec ts = {.tv_sec = t / 1000000, .tv_nsec = (t % 1000000) * 1000};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static __attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("chat-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* ------------------------------------------------------------ results */

/* What a child reports; followed on the pipe by members[rooms] (uint32)
 * and sent_win_room[rooms] (uint64). Plain data. */
struct pstats {
	uint64_t conns_ok, conns_failed;
	uint64_t fail_connect, fail_http, fail_timeout, fail_closed, fail_proto;
	uint64_t http_status_last;
	uint64_t dropped;             /* welcomed, then closed by the server or lost */
	uint64_t close_1013, close_other;
	uint64_t sent_total, sent_win, send_skipped, send_overflow;
	uint64_t acked_total, acked_win;
	uint64_t delivered_total, delivered_win;
	uint64_t err_rate_limited, err_unavailable, err_other;
	uint64_t seq_gaps, seq_disorder;
	uint64_t upgrades_win, upgrades_total, churn_fail_win;
	uint64_t frames_in, bytes_in;
	int64_t connect_first_us, connect_last_us;
	struct hist ack, delivery, connect, send_lag;
};

/* ------------------------------------------------------------ child */

enum cstate {
	ST_IDLE = 0,
	ST_CONNECTING,
	ST_HTTP,
	ST_WAIT_WELCOME,
	ST_OPEN,
	ST_CLOSING, /* churn: our close frame sent, waiting for the server's */
	ST_DONE,
};

struct bconn {
	int fd;
	uint8_t state;
	bool wev_on;
	uint8_t mask[4];
	uint32_t gidx;      /* global connection number */
	uint32_t room;
	uint32_t clen;      /* carried bytes of an unfinished frame or HTTP head */
	uint8_t *carry;     /* CARRY_CAP bytes, allocated when first needed */
	uint64_t skip;      /* bytes still to drop of an oversized frame */
	uint8_t *obuf;      /* unsent output: obuf[ooff .. olen) */
	size_t olen, ooff, ocap;
	int64_t t_connect;
	int64_t last_room_seq;
	struct event rev, wev;
};

#define RBUF_CAP (256 * 1024)
/* A client process this busy over the window (of a core) is flagged. */
#define CLIENT_SATURATED 0.9
#define OBUF_MAX (4u * 1024 * 1024)
#define HTTP_HEAD_MAX 4096
#define PEEK_BYTES 256

static struct child {
	int index;
	struct event_base *base;
	struct bconn *conns;
	size_t n;
	uint32_t *senders;     /* local indexes of sending connections */
	size_t n_senders;
	size_t carry_cap;
	uint8_t *rbuf;
	int up_fd, down_fd;
	bool ready_sent;
	bool started;
	int64_t t0, w0, w1, end;
	/* connecting */
	size_t next_connect;   /* load: next local index to connect */
	size_t in_flight;
	/* sending */
	uint64_t g;
	double step_us;
	double phase_us;
	struct event *send_ev, *house_ev, *down_ev, *end_ev;
	char pad[20000];       /* 'x' * size, for message text */
	uint32_t *members;
	uint64_t *sent_room;
	struct pstats st;
} C;

static void conn_start(struct bconn *c);
static void conn_end(struct bconn *c, bool failed_connect);

static void room_name(uint32_t room, char *out, size_t cap)
{
	snprintf(out, cap, "%s%" PRIu32, O.room_prefix, room);
}

static bool in_window(int64_t t)
{
	return C.started && t >= C.w0 && t < C.w1;
}

static void wev_enable(struct bconn *c)
{
	if (!c->wev_on) {
		event_add(&c->wev, NULL);
		c->wev_on = true;
	}
}

static void wev_disable(struct bconn *c)
{
	if (c->wev_on) {
		event_del(&c->wev);
		c->wev_on = false;
	}
}

/* Queues or writes bytes. Returns 0, or -1 when the connection's backlog
 * is full (nothing queued) or the connection failed (it is ended). */
static int conn_write(struct bconn *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (c->olen == c->ooff) {
		c->olen = c->ooff = 0;
		ssize_t w = write(c->fd, p, len);
		if (w == (ssize_t)len)
			return 0;
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				conn_end(c, false);
				return -1;
			}
			w = 0;
		}
		p += w;
		len -= (size_t)w;
	}
	if (c->olen - c->ooff + len > OBUF_MAX)
		return -1;
	if (c->olen + len > c->ocap) {
		if (c->ooff) {
			memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
			c->olen -= c->ooff;
			c->ooff = 0;
		}
		if (c->olen + len > c->ocap) {
			size_t cap = c->ocap ? c->ocap : 4096;
			while (cap < c->olen + len)
				cap *= 2;
			uint8_t *nb = realloc(c->obuf, cap);
			if (!nb)
				return -1;
			c->obuf = nb;
			c->ocap = cap;
		}
	}
	memcpy(c->obuf + c->olen, p, len);
	c->olen += len;
	wev_enable(c);
	return 0;
}

static int send_frame(struct bconn *c, uint8_t opcode, uint8_t *payload_at, size_t len)
{
	/* payload_at has WS_FRAME_HEADER_MAX + 4 bytes of room before it. */
	uint8_t hdr[WS_FRAME_HEADER_MAX + 4];
	size_t hlen = ws_frame_header_encode_masked(hdr, opcode, true, len, c->mask);
	ws_mask(payload_at, len, c->mask, 0);
	uint8_t *start = payload_at - hlen;
	memcpy(start, hdr, hlen);
	return conn_write(c, start, hlen + len);
}

static void send_control(struct bconn *c, uint8_t opcode, const uint8_t *p, size_t n)
{
	uint8_t buf[WS_FRAME_HEADER_MAX + 4 + WS_CONTROL_MAX];
	if (n > WS_CONTROL_MAX)
		n = WS_CONTROL_MAX;
	memcpy(buf + WS_FRAME_HEADER_MAX + 4, p, n);
	send_frame(c, opcode, buf + WS_FRAME_HEADER_MAX + 4, n);
}

static void send_close(struct bconn *c, uint16_t code)
{
	uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
	send_control(c, WS_OP_CLOSE, p, 2);
}

static void maybe_ready(void);

static void connect_done(struct bconn *c, bool ok, int64_t now)
{
	(void)c;
	if (ok)
		C.st.conns_ok++;
	else
		C.st.conns_failed++;
	if (C.st.connect_last_us < now)
		C.st.connect_last_us = now;
	maybe_ready();
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct bconn *c = arg;
	if (c->state == ST_DONE && timefmt_mono_us() < C.w1)
		conn_start(c);
}

/* A connection's life ends: by failure, the server's close, or (churn) a
 * finished round. Starts whatever should follow. */
static void conn_end(struct bconn *c, bool failed_connect)
{
	if (c->state == ST_DONE || c->state == ST_IDLE)
		return;
	int64_t now = timefmt_mono_us();
	uint8_t was = c->state;
	event_del(&c->rev);
	wev_disable(c);
	close(c->fd);
	c->fd = -1;
	c->state = ST_DONE;
	c->clen = 0;
	c->skip = 0;
	c->olen = c->ooff = 0;
	bool connecting = was == ST_CONNECTING || was == ST_HTTP || was == ST_WAIT_WELCOME;
	if (connecting) {
		C.in_flight--;
		if (O.mode == MODE_LOAD) {
			connect_done(c, false, now);
		} else if (in_window(now)) {
			C.st.churn_fail_win++;
		}
		(void)failed_connect;
	} else if (was == ST_OPEN && O.mode == MODE_LOAD) {
		C.st.dropped++;
	}
	if (O.mode == MODE_CHURN) {
		/* Keep the loop going until the window closes; from the loop,
		 * not from inside this connection's own callback. */
		if (C.started && now < C.w1) {
			struct timeval zero = {0, 0};
			if (event_base_once(C.base, -1, EV_TIMEOUT, on_restart, c, &zero) < 0)
				die("event_base_once failed");
		}
		return;
	}
	/* Load: keep the connect pipeline full. */
	while (C.in_flight < (size_t)O.connect_concurrency && C.next_connect < C.n)
		conn_start(&C.conns[C.next_connect++]);
}

static void on_welcome(struct bconn *c, int64_t now)
{
	c->state = ST_OPEN;
	C.in_flight--;
	if (O.mode == MODE_LOAD) {
		hist_record(&C.st.connect, (uint64_t)(now - c->t_connect));
		connect_done(c, true, now);
		while (C.in_flight < (size_t)O.connect_concurrency && C.next_connect < C.n)
			conn_start(&C.conns[C.next_connect++]);
		return;
	}
	/* Churn: count it, then leave at once. */
	C.st.upgrades_total++;
	if (in_window(now)) {
		C.st.upgrades_win++;
		hist_record(&C.st.connect, (uint64_t)(now - c->t_connect));
	}
	c->state = ST_CLOSING;
	send_close(c, WS_CLOSE_NORMAL);
}

/* Socket.IO: the server ends the session ("1", "41") or refuses the
 * connect ("44"): counted as the server's close, or a failed connect. */
static void sio_gone(struct bconn *c, const uint8_t *p, size_t n, bool refused)
{
	if (c->state == ST_OPEN) {
		C.st.close_other++;
	} else if (refused) {
		C.st.fail_http++;
		if (C.st.fail_http == 1)
			fprintf(stderr, "chat-bench: Socket.IO connect refused: %.*s\n",
				(int)(n > 200 ? 200 : n), (const char *)p);
	} else {
		C.st.fail_closed++;
	}
	send_close(c, WS_CLOSE_NORMAL);
	conn_end(c, c->state != ST_OPEN);
}

static void on_text(struct bconn *c, const uint8_t *p, size_t n, bool complete, int64_t now)
{
	enum wsc_kind kind = O.proto == PROTO_CHATD ? wsc_classify(p, n) : wsc_sio_classify(p, n);
	switch (kind) {
	case WSC_WELCOME:
		if (c->state == ST_WAIT_WELCOME)
			on_welcome(c, now);
		return;
	case WSC_MESSAGE: {
		uint64_t sender, seq, send_us;
		int64_t rseq;
		if (!complete || wsc_parse_message(p, n, &sender, &seq, &send_us, &rseq) < 0)
			return;
		/* The Socket.IO peer numbers a room's messages per process:
		 * its seq says nothing about a room-wide order. */
		if (rseq > 0 && O.proto == PROTO_CHATD) {
			if (c->last_room_seq > 0) {
				if (rseq <= c->last_room_seq)
					C.st.seq_disorder++;
				else if (rseq > c->last_room_seq + 1)
					C.st.seq_gaps++;
			}
			c->last_room_seq = rseq;
		}
		C.st.delivered_total++;
		if (in_window((int64_t)send_us)) {
			C.st.delivered_win++;
			hist_record(&C.st.delivery,
				    now > (int64_t)send_us ? (uint64_t)(now - (int64_t)send_us) : 0);
		}
		return;
	}
	case WSC_ACK: {
		uint64_t seq, send_us;
		if (wsc_parse_ref(p, n, &seq, &send_us) < 0)
			return;
		C.st.acked_total++;
		if (in_window((int64_t)send_us)) {
			C.st.acked_win++;
			hist_record(&C.st.ack,
				    now > (int64_t)send_us ? (uint64_t)(now - (int64_t)send_us) : 0);
		}
		return;
	}
	case WSC_ERROR: {
		/* Counted with the window's sends (by the ref's send time), so
		 * that sent = acked + errors + unanswered; refless ones always. */
		uint64_t seq, send_us;
		if (wsc_parse_ref(p, n, &seq, &send_us) == 0 && !in_window((int64_t)send_us))
			return;
		char code[32];
		wsc_error_code(p, n, code, sizeof code);
		if (strcmp(code, "rate_limited") == 0)
			C.st.err_rate_limited++;
		else if (strcmp(code, "unavailable") == 0)
			C.st.err_unavailable++;
		else
			C.st.err_other++;
		if (C.st.err_other == 1 && strcmp(code, "rate_limited") && strcmp(code, "unavailable"))
			fprintf(stderr, "chat-bench: first error frame: %.*s\n", (int)(n > 200 ? 200 : n),
				(const char *)p);
		return;
	}
	case WSC_SIO_PING:
		send_control(c, WS_OP_TEXT, (const uint8_t *)"3", 1);
		return;
	case WSC_SIO_OPEN:
		if (c->state == ST_WAIT_WELCOME)
			send_control(c, WS_OP_TEXT, (const uint8_t *)"40", 2);
		return;
	case WSC_SIO_REFUSED:
	case WSC_SIO_GONE:
		if (c->state != ST_CLOSING)
			sio_gone(c, p, n, kind == WSC_SIO_REFUSED);
		return;
	default:
		return;
	}
}

/* Handles one frame (or, for an oversized one, its first bytes). Returns
 * false when the connection ended. */
static bool on_frame(struct bconn *c, const struct wsc_header *h, const uint8_t *p, size_t n,
		     bool complete, int64_t now)
{
	C.st.frames_in++;
	switch (h->opcode) {
	case WS_OP_TEXT:
		on_text(c, p, n, complete, now);
		return c->state != ST_DONE;
	case WS_OP_PING:
		send_control(c, WS_OP_PONG, p, n);
		return c->state != ST_DONE;
	case WS_OP_CLOSE: {
		unsigned code = n >= 2 ? ((unsigned)p[0] << 8 | p[1]) : WS_CLOSE_NO_STATUS;
		if (c->state == ST_CLOSING) {
			/* Churn: the server answered our close; it closes TCP first. */
			conn_end(c, false);
			return false;
		}
		if (code == WS_CLOSE_TRY_AGAIN_LATER)
			C.st.close_1013++;
		else
			C.st.close_other++;
		if (c->state != ST_OPEN)
			C.st.fail_closed++;
		uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
		if (code != WS_CLOSE_NO_STATUS)
			send_control(c, WS_OP_CLOSE, echo, 2);
		if (c->state != ST_DONE)
			conn_end(c, c->state != ST_OPEN);
		return false;
	}
	default: /* continuation, binary, pong: nothing of ours */
		return true;
	}
}

/* Consumes what it can of buf; returns the bytes consumed. The rest (an
 * unfinished frame or HTTP head, at most carry_cap bytes) is carried. */
static size_t process(struct bconn *c, uint8_t *buf, size_t len, int64_t now)
{
	size_t off = 0;
	if (c->skip) {
		size_t k = c->skip < len ? (size_t)c->skip : len;
		c->skip -= k;
		off += k;
	}
	if (c->state == ST_HTTP) {
		const uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);
		if (!e) {
			if (len > HTTP_HEAD_MAX) {
				C.st.fail_http++;
				conn_end(c, true);
			}
			return 0;
		}
		/* "HTTP/1.1 101 " */
		int status = 0;
		if (len > 12 && memcmp(buf, "HTTP/1.", 7) == 0)
			status = atoi((const char *)buf + 9);
		if (status != 101) {
			C.st.fail_http++;
			C.st.http_status_last = (uint64_t)status;
			conn_end(c, true);
			return 0;
		}
		c->state = ST_WAIT_WELCOME;
		off = (size_t)(e + 4 - buf);
	}
	while (off < len) {
		struct wsc_header h;
		int rc = wsc_header_parse(buf + off, len - off, &h);
		if (rc == 0)
			break;
		if (rc < 0) {
			C.st.fail_proto++;
			conn_end(c, true);
			return 0;
		}
		size_t avail = len - off;
		uint64_t total = h.hlen + h.plen;
		if (avail >= total) {
			if (!on_frame(c, &h, buf + off + h.hlen, (size_t)h.plen, true, now))
				return 0;
			off += (size_t)total;
			continue;
		}
		if (total > C.carry_cap) {
			/* Too big to carry (a welcome with a long online list):
			 * look at its start, drop the rest as it comes. */
			size_t peek = h.plen < PEEK_BYTES ? (size_t)h.plen : PEEK_BYTES;
			if (avail < h.hlen + peek)
				break;
			if (!on_frame(c, &h, buf + off + h.hlen, avail - h.hlen, false, now))
				return 0;
			c->skip = total - avail;
			off = len;
			break;
		}
		break;
	}
	return off;
}

/* Load mode reads edge-triggered, each socket until it is empty. With
 * level-triggered reads a client that fell behind had every socket ready
 * at once, and each return to epoll_wait (every 1 ms, to look at the send
 * timer) reported all of them again: epoll took more than half of the
 * core, and the process never caught up (docs/performance.md, "Is the
 * generator the bottleneck?"). Churn, whose sockets live for a few
 * frames, keeps one read per readiness as its figures were measured. */
static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct bconn *c = arg;
	for (;;) {
		size_t n0 = c->clen;
		if (n0)
			memcpy(C.rbuf, c->carry, n0);
		size_t room = RBUF_CAP - n0;
		ssize_t r = read(fd, C.rbuf + n0, room);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (c->state == ST_CONNECTING || c->state == ST_HTTP)
				C.st.fail_connect++;
			conn_end(c, true);
			return;
		}
		if (r == 0) {
			if (c->state == ST_HTTP || c->state == ST_WAIT_WELCOME)
				C.st.fail_closed++;
			conn_end(c, false);
			return;
		}
		C.st.bytes_in += (uint64_t)r;
		int64_t now = timefmt_mono_us();
		size_t len = n0 + (size_t)r;
		c->clen = 0;
		size_t used = process(c, C.rbuf, len, now);
		if (c->state == ST_DONE)
			return;
		size_t rest = len - used;
		if (rest) {
			if (!c->carry && !(c->carry = malloc(C.carry_cap)))
				die("out of memory");
			if (rest > C.carry_cap) {
				C.st.fail_proto++;
				conn_end(c, true);
				return;
			}
			memcpy(c->carry, C.rbuf + used, rest);
			c->clen = (uint32_t)rest;
		}
		/* A short read emptied the socket; data arriving later is a
		 * new edge. */
		if (O.mode != MODE_LOAD || (size_t)r < room)
			return;
	}
}

static void send_upgrade(struct bconn *c)
{
	char room[96];
	room_name(c->room, room, sizeof room);
	char sub[64];
	snprintf(sub, sizeof sub, "%s%" PRIu32, O.user_prefix, c->gidx);
	int64_t now_s = (int64_t)time(NULL);
	char *tok = jwt_sign(O.secret, sub, NULL, "member", NULL, 0, now_s, now_s + 86400);
	if (!tok)
		die("jwt_sign failed");
	const struct target *t = &O.targets[c->gidx % (uint32_t)O.n_targets];
	char req[1024];
	int n = snprintf(req, sizeof req,
			 "GET %s%s HTTP/1.1\r\n"
			 "Host: %s:%d\r\n"
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\n"
			 "Authorization: Bearer %s\r\n\r\n",
			 O.proto == PROTO_CHATD ? "/api/chat?room="
						: "/socket.io/?EIO=4&transport=websocket&room=",
			 room, t->host, t->port, tok);
	free(tok);
	if (n <= 0 || (size_t)n >= sizeof req)
		die("upgrade request too long");
	c->state = ST_HTTP;
	conn_write(c, req, (size_t)n);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct bconn *c = arg;
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		wev_disable(c);
		if (err) {
			C.st.fail_connect++;
			conn_end(c, true);
			return;
		}
		send_upgrade(c);
		return;
	}
	while (c->ooff < c->olen) {
		ssize_t w = write(fd, c->obuf + c->ooff, c->olen - c->ooff);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_end(c, false);
			return;
		}
		c->ooff += (size_t)w;
	}
	c->olen = c->ooff = 0;
	wev_disable(c);
}

static void conn_start(struct bconn *c)
{
	int64_t now = timefmt_mono_us();
	c->t_connect = now;
	if (O.mode == MODE_LOAD && (C.st.connect_first_us == 0 || now < C.st.connect_first_us))
		C.st.connect_first_us = now;
	c->clen = 0;
	c->skip = 0;
	c->olen = c->ooff = 0;
	c->last_room_seq = 0;
	c->wev_on = false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		C.st.fail_connect++;
		c->state = ST_DONE;
		if (O.mode == MODE_LOAD)
			connect_done(c, false, now);
		else if (in_window(now))
			C.st.churn_fail_win++;
		if (errno == EMFILE || errno == ENFILE)
			fprintf(stderr, "chat-bench: socket: %s (raise ulimit -n or use more --procs)\n",
				strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (O.source_addrs > 0) {
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		struct sockaddr_in src = {.sin_family = AF_INET};
		src.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)(c->gidx % (uint32_t)O.source_addrs));
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
			die("bind to a 127.0.0.x source address: %s", strerror(errno));
	}
	const struct target *t = &O.targets[c->gidx % (uint32_t)O.n_targets];
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port),
				  .sin_addr = t->addr};
	c->fd = fd;
	c->state = ST_CONNECTING;
	C.in_flight++;
	/* Reads and writes alike: libevent takes one mode per descriptor. */
	short edge = O.mode == MODE_LOAD ? EV_ET : 0;
	event_assign(&c->rev, C.base, fd, EV_READ | EV_PERSIST | edge, on_read, c);
	event_assign(&c->wev, C.base, fd, EV_WRITE | EV_PERSIST | edge, on_writable, c);
	event_add(&c->rev, NULL);
	if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
		C.st.fail_connect++;
		conn_end(c, true);
		return;
	}
	wev_enable(c);
}

/* Open loop: send number g (0, 1, 2, ...) of this process is due at
 * T0 + phase + g * step, by sender g % n_senders, as that sender's
 * message g / n_senders. Senders of all processes interleave evenly. */
static int64_t due(uint64_t g)
{
	return C.t0 + (int64_t)(C.phase_us + (double)g * C.step_us);
}

static void send_message(struct bconn *c, uint64_t seq, int64_t sched, int64_t now)
{
	if (c->state != ST_OPEN) {
		C.st.send_skipped++;
		return;
	}
	uint8_t buf[WS_FRAME_HEADER_MAX + 4 + 256 + sizeof C.pad];
	uint8_t *p = buf + WS_FRAME_HEADER_MAX + 4;
	char *s = (char *)p;
	size_t cap = sizeof buf - (WS_FRAME_HEADER_MAX + 4);
	int n;
	if (O.proto == PROTO_CHATD)
		n = snprintf(s, cap,
			     "{\"type\":\"message\",\"ref\":\"%" PRIu64 "-%" PRId64
			     "\",\"text\":\"b:%" PRIu32 ":%" PRIu64 ":%" PRId64 ":",
			     seq, sched, c->gidx, seq, sched);
	else /* an event with an ack id (this sender's message number) */
		n = snprintf(s, cap,
			     "42%" PRIu64 "[\"message\",{\"type\":\"message\",\"ref\":\"%" PRIu64
			     "-%" PRId64 "\",\"text\":\"b:%" PRIu32 ":%" PRIu64 ":%" PRId64 ":",
			     seq, seq, sched, c->gidx, seq, sched);
	size_t text_start = (size_t)(strstr(s, "\"text\":\"") - s) + 8;
	size_t text_len = (size_t)n - text_start;
	size_t len = (size_t)n;
	if ((size_t)O.size > text_len) {
		size_t k = (size_t)O.size - text_len;
		memcpy(s + len, C.pad, k);
		len += k;
	}
	if (O.proto == PROTO_CHATD) {
		memcpy(s + len, "\"}", 2);
		len += 2;
	} else {
		memcpy(s + len, "\"}]", 3);
		len += 3;
	}
	if (send_frame(c, WS_OP_TEXT, p, len) < 0) {
		if (c->state == ST_OPEN)
			C.st.send_overflow++;
		return;
	}
	C.st.sent_total++;
	hist_record(&C.st.send_lag, (uint64_t)(now > sched ? now - sched : 0));
	if (in_window(sched)) {
		C.st.sent_win++;
		C.sent_room[c->room]++;
	}
}

static void on_send_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	int64_t now = timefmt_mono_us();
	/* A bounded batch, so reads are not starved when behind. */
	for (int i = 0; i < 5000; i++) {
		int64_t t = due(C.g);
		if (t >= C.w1)
			return;
		if (t > now) {
			int64_t d = t - now;
			struct timeval tv = {.tv_sec = d / 1000000, .tv_usec = d % 1000000};
			event_add(C.send_ev, &tv);
			return;
		}
		struct bconn *c = &C.conns[C.senders[C.g % C.n_senders]];
		send_message(c, C.g / C.n_senders, t, now);
		C.g++;
	}
	struct timeval zero = {0, 0};
	event_add(C.send_ev, &zero);
}

static void maybe_ready(void)
{
	if (C.ready_sent)
		return;
	if (O.mode == MODE_LOAD && C.st.conns_ok + C.st.conns_failed < C.n)
		return;
	C.ready_sent = true;
	/* Members are counted now: everyone who got a welcome. */
	for (size_t i = 0; i < C.n; i++)
		if (C.conns[i].state == ST_OPEN)
			C.members[C.conns[i].room]++;
	char r = 'R';
	if (write(C.up_fd, &r, 1) != 1)
		_exit(1);
}

static void on_house(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	int64_t now = timefmt_mono_us();
	int64_t limit = (int64_t)(O.connect_timeout_s * 1e6);
	if (C.in_flight) {
		for (size_t i = 0; i < C.n; i++) {
			struct bconn *c = &C.conns[i];
			if ((c->state == ST_CONNECTING || c->state == ST_HTTP ||
			     c->state == ST_WAIT_WELCOME) &&
			    now - c->t_connect > limit) {
				C.st.fail_timeout++;
				conn_end(c, true);
			} else if (c->state == ST_CLOSING && now - c->t_connect > limit) {
				conn_end(c, false);
			}
		}
	}
	maybe_ready();
}

static void write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(1);
		b += w;
		n -= (size_t)w;
	}
}

static void on_end(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	char f = 'F';
	write_all(C.up_fd, &f, 1);
	write_all(C.up_fd, &C.st, sizeof C.st);
	write_all(C.up_fd, C.members, (size_t)O.rooms * sizeof *C.members);
	write_all(C.up_fd, C.sent_room, (size_t)O.rooms * sizeof *C.sent_room);
	/* The kernel closes every socket; the server sees them go. */
	_exit(0);
}

static void on_down(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	int64_t t0;
	ssize_t r = read(fd, &t0, sizeof t0);
	if (r != (ssize_t)sizeof t0)
		_exit(1); /* the parent is gone */
	event_del(C.down_ev);
	C.started = true;
	C.t0 = t0;
	C.w0 = t0 + (int64_t)(O.warmup_s * 1e6);
	C.w1 = C.w0 + (int64_t)(O.duration_s * 1e6);
	C.end = C.w1 + (int64_t)(O.drain_s * 1e6);
	int64_t now = timefmt_mono_us();
	struct timeval tv;
	int64_t d = C.end - now;
	if (d < 0)
		d = 0;
	tv.tv_sec = d / 1000000;
	tv.tv_usec = d % 1000000;
	event_add(C.end_ev, &tv);
	if (O.mode == MODE_LOAD && C.n_senders && O.rate > 0) {
		C.step_us = 1e6 / O.rate / (double)C.n_senders;
		C.phase_us = C.step_us * (double)C.index / (double)O.procs;
		on_send_tick(-1, 0, NULL);
	}
	if (O.mode == MODE_CHURN) {
		d = t0 - now;
		if (d > 0)
			sleep_until_us(t0);
		for (size_t i = 0; i < C.n; i++)
			conn_start(&C.conns[i]);
	}
}

static void child_main(int index, int up_fd, int down_fd)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	memset(&C, 0, sizeof C);
	C.index = index;
	C.up_fd = up_fd;
	C.down_fd = down_fd;
	C.carry_cap = 2 * (size_t)O.size + 4096;
	C.rbuf = malloc(RBUF_CAP + C.carry_cap);
	memset(C.pad, 'x', sizeof C.pad);
	C.members = calloc((size_t)O.rooms, sizeof *C.members);
	C.sent_room = calloc((size_t)O.rooms, sizeof *C.sent_room);
	hist_init(&C.st.ack);
	hist_init(&C.st.delivery);
	hist_init(&C.st.connect);
	hist_init(&C.st.send_lag);
	/* Connection i is this child's when i % procs == index. */
	C.n = (size_t)(O.conns / O.procs + (index < O.conns % O.procs ? 1 : 0));
	C.conns = calloc(C.n ? C.n : 1, sizeof *C.conns);
	C.senders = calloc(C.n ? C.n : 1, sizeof *C.senders);
	if (!C.rbuf || !C.members || !C.sent_room || !C.conns || !C.senders)
		die("out of memory");
	for (size_t k = 0; k < C.n; k++) {
		struct bconn *c = &C.conns[k];
		c->gidx = (uint32_t)((size_t)index + k * (size_t)O.procs);
		c->room = (uint32_t)(c->gidx % (uint32_t)O.rooms);
		c->fd = -1;
		uint32_t m = c->gidx * 2654435761u + 0x9E3779B9u;
		memcpy(c->mask, &m, 4);
		if (O.mode == MODE_LOAD && c->gidx < (uint32_t)O.senders)
			C.senders[C.n_senders++] = (uint32_t)k;
	}

	struct event_config *cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER | EVENT_BASE_FLAG_NOLOCK);
	/* Sends must go out on schedule even while a burst of fan-out reads
	 * is being handled: the send timer has the higher priority, and
	 * after 1 ms of reading the loop looks for due timers again. */
	struct timeval slice = {0, 1000};
	event_config_set_max_dispatch_interval(cfg, &slice, -1, 1);
	C.base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!C.base || event_base_priority_init(C.base, 2) < 0)
		die("event_base_new failed");
	C.send_ev = evtimer_new(C.base, on_send_tick, NULL);
	event_priority_set(C.send_ev, 0);
	C.end_ev = evtimer_new(C.base, on_end, NULL);
	C.house_ev = event_new(C.base, -1, EV_PERSIST, on_house, NULL);
	C.down_ev = event_new(C.base, down_fd, EV_READ | EV_PERSIST, on_down, NULL);
	struct timeval hv = {0, 200000};
	event_add(C.house_ev, &hv);
	event_add(C.down_ev, NULL);

	if (O.mode == MODE_LOAD) {
		while (C.in_flight < (size_t)O.connect_concurrency && C.next_connect < C.n)
			conn_start(&C.conns[C.next_connect++]);
	}
	maybe_ready();
	event_base_dispatch(C.base);
	_exit(1);
}

/* ------------------------------------------------------------ parent */

struct child_ref {
	pid_t pid;
	int up, down;
};

static void read_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("a client process died before reporting");
		b += r;
		n -= (size_t)r;
	}
}

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static void print_lat_json(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f,
		"\"%s\":{\"count\":%" PRIu64 ",\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
		"\"p999\":%.3f,\"max\":%.3f}",
		name, h->count, hist_mean(h) / 1000.0, ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)),
		ms(hist_quantile(h, 0.99)), ms(hist_quantile(h, 0.999)), ms(h->count ? h->max : 0));
}

static void print_lat_human(const char *name, const struct hist *h)
{
	if (!h->count) {
		printf("  %-18s none\n", name);
		return;
	}
	printf("  %-18s p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%" PRIu64 ")\n",
	       name, ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)), ms(hist_quantile(h, 0.99)),
	       ms(hist_quantile(h, 0.999)), ms(h->max), h->count);
}

static void json_num(FILE *f, const char *key, double v, bool valid)
{
	if (valid && isfinite(v))
		fprintf(f, ",\"%s\":%.3f", key, v);
	else
		fprintf(f, ",\"%s\":null", key);
}

static void sum_stats(struct pstats *a, const struct pstats *b)
{
	/* Every field before the histograms is a counter except the
	 * connect times and the last HTTP status. */
	const uint64_t *src = (const uint64_t *)b;
	uint64_t *dst = (uint64_t *)a;
	size_t n = offsetof(struct pstats, connect_first_us) / sizeof(uint64_t);
	uint64_t status = a->http_status_last;
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
	a->http_status_last = b->http_status_last ? b->http_status_last : status;
	if (b->connect_first_us && (!a->connect_first_us || b->connect_first_us < a->connect_first_us))
		a->connect_first_us = b->connect_first_us;
	if (b->connect_last_us > a->connect_last_us)
		a->connect_last_us = b->connect_last_us;
	hist_merge(&a->ack, &b->ack);
	hist_merge(&a->delivery, &b->delivery);
	hist_merge(&a->connect, &b->connect);
	hist_merge(&a->send_lag, &b->send_lag);
}

static int self_test(void);

/* The dependencies, summed. */
static void sample_services(struct proctree_sample *out)
{
	memset(out, 0, sizeof *out);
	for (int i = 0; i < O.n_service_pids; i++) {
		struct proctree_sample one;
		if (proctree_sample(O.service_pids[i], &one) < 0)
			continue;
		out->procs += one.procs;
		out->cpu_s += one.cpu_s;
		out->rss_kb += one.rss_kb;
		out->pss_kb += one.pss_kb;
	}
}

static long parse_long(const char *opt, const char *v, long lo, long hi)
{
	char *e;
	errno = 0;
	long x = strtol(v, &e, 10);
	if (errno || *e || e == v || x < lo || x > hi)
		die("%s: want an integer %ld..%ld, got '%s'", opt, lo, hi, v);
	return x;
}

static double parse_double(const char *opt, const char *v, double lo, double hi)
{
	char *e;
	errno = 0;
	double x = strtod(v, &e);
	if (errno || *e || e == v || !(x >= lo && x <= hi))
		die("%s: want a number %g..%g, got '%s'", opt, lo, hi, v);
	return x;
}

/* One ws://IP:PORT[/path] of --url into *t (the path is checked, not
 * kept: it is always the protocol's own). */
static void parse_url(const char *u, size_t len, struct target *t)
{
	char one[128];
	if (len >= sizeof one)
		die("--url: too long");
	memcpy(one, u, len);
	one[len] = '\0';
	if (strncmp(one, "ws://", 5) != 0)
		die("--url: want ws://IP:PORT (wss is not supported)");
	const char *h = one + 5;
	const char *colon = strchr(h, ':');
	const char *slash = strchr(h, '/');
	if (colon && slash && slash < colon)
		colon = NULL;
	size_t hl = colon ? (size_t)(colon - h) : slash ? (size_t)(slash - h) : strlen(h);
	if (hl == 0 || hl >= sizeof t->host)
		die("--url: bad host");
	memcpy(t->host, h, hl);
	t->host[hl] = '\0';
	if (colon) {
		char port[8];
		size_t pl = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
		if (pl == 0 || pl >= sizeof port)
			die("--url: bad port");
		memcpy(port, colon + 1, pl);
		port[pl] = '\0';
		t->port = (int)parse_long("--url port", port, 1, 65535);
	} else {
		t->port = 80;
	}
	const char *path = O.proto == PROTO_CHATD ? "/api/chat" : "/socket.io/";
	if (slash && strcmp(slash, "/") != 0 && strcmp(slash, path) != 0)
		die("--url: the path is always %s", path);
	if (inet_pton(AF_INET, t->host, &t->addr) != 1)
		die("--url: the host must be a numeric IPv4 address (no DNS)");
}

static void parse_urls(const char *list)
{
	const char *p = list;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (O.n_targets == MAX_TARGETS)
			die("--url: at most %d servers", MAX_TARGETS);
		parse_url(p, len, &O.targets[O.n_targets++]);
		if (!comma)
			break;
		p = comma + 1;
	}
}

int main(int argc, char **argv)
{
	const char *url = "ws://127.0.0.1:8080";
	const char *room_prefix = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v || (die("%s needs a value", name), 0)) && ++i)
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--self-test") == 0) {
			return self_test();
		} else if (strcmp(a, "--json-only") == 0) {
			O.json_only = true;
		} else if (ARG("--url")) {
			url = v;
		} else if (ARG("--mode")) {
			if (strcmp(v, "load") == 0)
				O.mode = MODE_LOAD;
			else if (strcmp(v, "churn") == 0)
				O.mode = MODE_CHURN;
			else
				die("--mode: load or churn");
		} else if (ARG("--conns")) {
			O.conns = parse_long(a, v, 0, 4000000);
		} else if (ARG("--rooms")) {
			O.rooms = parse_long(a, v, 1, 1000000);
		} else if (ARG("--senders")) {
			O.senders = parse_long(a, v, 0, 4000000);
		} else if (ARG("--rate")) {
			O.rate = parse_double(a, v, 0, 1e6);
		} else if (ARG("--duration")) {
			O.duration_s = parse_double(a, v, 0.1, 86400);
		} else if (ARG("--warmup")) {
			O.warmup_s = parse_double(a, v, 0, 3600);
		} else if (ARG("--drain")) {
			O.drain_s = parse_double(a, v, 0, 3600);
		} else if (ARG("--size")) {
			O.size = parse_long(a, v, 1, (long)sizeof C.pad);
		} else if (ARG("--procs")) {
			O.procs = (int)parse_long(a, v, 1, 256);
		} else if (ARG("--source-addrs")) {
			O.source_addrs = (int)parse_long(a, v, 0, 250);
		} else if (ARG("--connect-concurrency")) {
			O.connect_concurrency = (int)parse_long(a, v, 1, 1000000);
		} else if (ARG("--connect-timeout")) {
			O.connect_timeout_s = parse_double(a, v, 0.1, 3600);
		} else if (ARG("--secret")) {
			O.secret = v;
		} else if (ARG("--server-pid")) {
			O.server_pid = (pid_t)parse_long(a, v, 1, 1L << 30);
		} else if (ARG("--service-pid")) {
			if (O.n_service_pids == (int)(sizeof O.service_pids / sizeof O.service_pids[0]))
				die("--service-pid: at most 8");
			O.service_pids[O.n_service_pids++] = (pid_t)parse_long(a, v, 1, 1L << 30);
		} else if (ARG("--room-prefix")) {
			room_prefix = v;
		} else if (ARG("--user-prefix")) {
			if (strlen(v) < 1 || strlen(v) > 20)
				die("--user-prefix: 1..20 characters");
			snprintf(O.user_prefix, sizeof O.user_prefix, "%s", v);
		} else if (ARG("--proto")) {
			if (strcmp(v, "chatd") == 0)
				O.proto = PROTO_CHATD;
			else if (strcmp(v, "socketio") == 0)
				O.proto = PROTO_SOCKETIO;
			else
				die("--proto: chatd or socketio");
		} else if (ARG("--label")) {
			/* Copied into JSON as is. */
			for (const char *p = v; *p; p++)
				if (!(isalnum((unsigned char)*p) || strchr("_.:+-", *p)))
					die("--label: letters, digits and _ . : + - only");
			O.label = v;
		} else {
			usage(stderr);
			die("unknown option '%s'", a);
		}
#undef ARG
	}
	parse_urls(url);
	if (!O.secret)
		O.secret = getenv("CHAT_JWT_SECRET");
	if (!O.secret || !*O.secret)
		die("no secret: give --secret or set CHAT_JWT_SECRET (the server's jwt_secret)");
	if (O.senders > O.conns)
		O.senders = O.conns;
	if (O.rooms > O.conns && O.conns > 0)
		die("--rooms %ld is more than --conns %ld", O.rooms, O.conns);
	bool loopback = true;
	for (int i = 0; i < O.n_targets; i++)
		loopback = loopback && (ntohl(O.targets[i].addr.s_addr) >> 24) == 127;
	if (O.source_addrs < 0)
		O.source_addrs = loopback ? (int)((O.conns + 24999) / 25000) : 0;
	if (O.source_addrs > 0 && !loopback)
		die("--source-addrs needs a loopback server address");
	if (room_prefix) {
		if (strlen(room_prefix) > 40)
			die("--room-prefix: at most 40 characters");
		for (const char *p = room_prefix; *p; p++)
			if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-'))
				die("--room-prefix: letters, digits, '_', '.', '-' only");
		snprintf(O.room_prefix, sizeof O.room_prefix, "%s", room_prefix);
	} else {
		snprintf(O.room_prefix, sizeof O.room_prefix, "bench-%ld-%d-", (long)time(NULL) % 100000000,
			 (int)getpid());
	}
	if (O.mode == MODE_CHURN)
		O.senders = 0;
	if (O.procs > O.conns && O.conns > 0)
		O.procs = (int)O.conns;

	/* Descriptors: each child holds its share of connections. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		long per = (O.conns + O.procs - 1) / O.procs;
		if ((rlim_t)per + 32 > rl.rlim_cur)
			die("%ld connections per process passes the descriptor limit %llu; use --procs %ld or more",
			    per, (unsigned long long)rl.rlim_cur,
			    (O.conns + (long)rl.rlim_cur - 33) / ((long)rl.rlim_cur - 32));
	}
	signal(SIGPIPE, SIG_IGN);
	fflush(stdout);

	struct proctree_sample s_base = {0}, s_ready = {0}, s_w0 = {0}, s_w1 = {0};
	bool have_server = O.server_pid > 0;
	if (have_server && proctree_sample(O.server_pid, &s_base) < 0)
		die("--server-pid %d: no such process", (int)O.server_pid);

	struct child_ref *kids = calloc((size_t)O.procs, sizeof *kids);
	if (!kids)
		die("out of memory");
	int64_t t_start = timefmt_mono_us();
	for (int i = 0; i < O.procs; i++) {
		int up[2], down[2];
		if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0)
			die("pipe: %s", strerror(errno));
		pid_t pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			for (int j = 0; j < i; j++) {
				close(kids[j].up);
				close(kids[j].down);
			}
			close(up[0]);
			close(down[1]);
			child_main(i, up[1], down[0]);
		}
		close(up[1]);
		close(down[0]);
		kids[i] = (struct child_ref){.pid = pid, .up = up[0], .down = down[1]};
	}

	/* Wait for every child's connect phase. */
	for (int i = 0; i < O.procs; i++) {
		char r;
		read_all(kids[i].up, &r, 1);
		if (r != 'R')
			die("client process %d: unexpected report", i);
	}
	int64_t t_ready = timefmt_mono_us();
	if (have_server)
		proctree_sample(O.server_pid, &s_ready);
	struct proctree_sample v_ready = {0}, v_w0 = {0}, v_w1 = {0};
	sample_services(&v_ready);

	int64_t t0 = timefmt_mono_us() + 200000;
	for (int i = 0; i < O.procs; i++)
		if (write(kids[i].down, &t0, sizeof t0) != (ssize_t)sizeof t0)
			die("client process %d is gone", i);
	int64_t w0 = t0 + (int64_t)(O.warmup_s * 1e6);
	int64_t w1 = w0 + (int64_t)(O.duration_s * 1e6);
	struct steal_sample st_w0, st_w1;
	/* Each client process's CPU over the window: one that fills its core
	 * measures itself, not the server. -1: not read at the start. */
	double *kid_cpu_w0 = calloc((size_t)O.procs, sizeof *kid_cpu_w0);
	if (!kid_cpu_w0)
		die("out of memory");
	sleep_until_us(w0);
	if (have_server)
		proctree_sample(O.server_pid, &s_w0);
	sample_services(&v_w0);
	steal_sample(&st_w0);
	for (int i = 0; i < O.procs; i++) {
		struct proctree_sample k;
		kid_cpu_w0[i] = proctree_sample(kids[i].pid, &k) == 0 ? k.cpu_s : -1;
	}
	sleep_until_us(w1);
	if (have_server)
		proctree_sample(O.server_pid, &s_w1);
	sample_services(&v_w1);
	steal_sample(&st_w1);
	double client_busiest = 0;
	for (int i = 0; i < O.procs; i++) {
		struct proctree_sample k;
		if (kid_cpu_w0[i] >= 0 && proctree_sample(kids[i].pid, &k) == 0 &&
		    k.cpu_s - kid_cpu_w0[i] > client_busiest)
			client_busiest = k.cpu_s - kid_cpu_w0[i];
	}
	free(kid_cpu_w0);
	client_busiest /= O.duration_s;
	int steal_cpus = st_w0.cpus < st_w1.cpus ? st_w0.cpus : st_w1.cpus;
	double steal_win[STEAL_MAX_CPUS];
	for (int i = 0; i < steal_cpus; i++)
		steal_win[i] = st_w1.seconds[i] - st_w0.seconds[i];

	struct pstats *tot = calloc(1, sizeof *tot);
	struct pstats *one = malloc(sizeof *one);
	uint32_t *members = calloc((size_t)O.rooms, sizeof *members);
	uint32_t *m1 = malloc((size_t)O.rooms * sizeof *m1);
	uint64_t *sent_room = calloc((size_t)O.rooms, sizeof *sent_room);
	uint64_t *s1 = malloc((size_t)O.rooms * sizeof *s1);
	if (!tot || !one || !members || !m1 || !sent_room || !s1)
		die("out of memory");
	hist_init(&tot->ack);
	hist_init(&tot->delivery);
	hist_init(&tot->connect);
	hist_init(&tot->send_lag);
	for (int i = 0; i < O.procs; i++) {
		char f;
		read_all(kids[i].up, &f, 1);
		if (f != 'F')
			die("client process %d: unexpected report", i);
		read_all(kids[i].up, one, sizeof *one);
		read_all(kids[i].up, m1, (size_t)O.rooms * sizeof *m1);
		read_all(kids[i].up, s1, (size_t)O.rooms * sizeof *s1);
		sum_stats(tot, one);
		for (long r = 0; r < O.rooms; r++) {
			members[r] += m1[r];
			sent_room[r] += s1[r];
		}
	}
	for (int i = 0; i < O.procs; i++)
		waitpid(kids[i].pid, NULL, 0);
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	double client_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

	/* ---- figures */
	double expected = 0;
	uint64_t members_total = 0;
	for (long r = 0; r < O.rooms; r++) {
		expected += (double)sent_room[r] * (double)members[r];
		members_total += members[r];
	}
	double dur = O.duration_s;
	double ratio = expected > 0 ? (double)tot->delivered_win / expected : NAN;
	double ack_ratio = tot->sent_win ? (double)tot->acked_win / (double)tot->sent_win : NAN;
	double connect_s = (double)(tot->connect_last_us - tot->connect_first_us) / 1e6;
	double connect_rate = connect_s > 0 ? (double)tot->conns_ok / connect_s : NAN;
	double setup_s = (double)(t_ready - t_start) / 1e6;
	double srv_cpu_win = s_w1.cpu_s - s_w0.cpu_s;
	double srv_cpu_connect = s_ready.cpu_s - s_base.cpu_s;
	double rss_per_conn = tot->conns_ok ? ((double)s_ready.rss_kb - (double)s_base.rss_kb) /
						       (double)tot->conns_ok
					    : NAN;
	double pss_per_conn = tot->conns_ok ? ((double)s_ready.pss_kb - (double)s_base.pss_kb) /
						       (double)tot->conns_ok
					    : NAN;
	double work = O.mode == MODE_CHURN ? (double)tot->upgrades_win
					   : (double)(tot->delivered_win + tot->acked_win);
	double churn_rate = (double)tot->upgrades_win / dur;

	if (!O.json_only) {
		printf("chat-bench %s: %s%s, %ld conns in %ld rooms", O.label ? O.label : "",
		       O.mode == MODE_LOAD ? "load" : "churn",
		       O.proto == PROTO_CHATD ? "" : " (Socket.IO)", O.conns, O.rooms);
		if (O.n_targets > 1)
			printf(" over %d servers", O.n_targets);
		if (O.mode == MODE_LOAD)
			printf(" (%" PRIu64 " members counted), %ld senders x %g/s, %ld B text",
			       members_total, O.senders, O.rate, O.size);
		printf(", %g s window (+%g s warm-up), %d procs, %d source addrs\n", dur, O.warmup_s,
		       O.procs, O.source_addrs);
		if (O.mode == MODE_LOAD)
			printf("  connections       %" PRIu64 " ok, %" PRIu64 " failed\n", tot->conns_ok,
			       tot->conns_failed);
		printf("  failures          connect %" PRIu64 ", http %" PRIu64 " [last status %" PRIu64
		       "], timeout %" PRIu64 ", closed %" PRIu64 ", protocol %" PRIu64 "\n",
		       tot->fail_connect, tot->fail_http, tot->http_status_last, tot->fail_timeout,
		       tot->fail_closed, tot->fail_proto);
		if (O.mode == MODE_LOAD) {
			printf("  connect rate      %.0f/s (%.2f s; set-up %.2f s)\n", connect_rate,
			       connect_s, setup_s);
			print_lat_human("connect->welcome", &tot->connect);
			printf("  sent              %" PRIu64 " in window (%" PRIu64 " total, %" PRIu64
			       " skipped on closed conns, %" PRIu64 " refused by a full send buffer)\n",
			       tot->sent_win, tot->sent_total, tot->send_skipped, tot->send_overflow);
			printf("  acked             %" PRIu64 " (%.3f%%), %.1f/s\n", tot->acked_win,
			       100 * ack_ratio, (double)tot->acked_win / dur);
			printf("  delivered         %" PRIu64 " of %.0f expected (%.3f%%), %.1f/s\n",
			       tot->delivered_win, expected, 100 * ratio, (double)tot->delivered_win / dur);
			print_lat_human("ack latency", &tot->ack);
			print_lat_human("delivery latency", &tot->delivery);
			printf("  errors            rate_limited %" PRIu64 ", unavailable %" PRIu64
			       ", other %" PRIu64 "; conns dropped %" PRIu64 " (1013: %" PRIu64
			       ", other closes %" PRIu64 ")",
			       tot->err_rate_limited, tot->err_unavailable, tot->err_other, tot->dropped,
			       tot->close_1013, tot->close_other);
			if (O.proto == PROTO_CHATD)
				printf("; room seq gaps %" PRIu64 ", out of order %" PRIu64 "\n",
				       tot->seq_gaps, tot->seq_disorder);
			else
				printf("; room seq not checked (Socket.IO)\n");
			print_lat_human("client send lag", &tot->send_lag);
		} else {
			printf("  upgrades          %" PRIu64 " in window, %.1f/s (%" PRIu64
			       " failed in window; %" PRIu64 " total)\n",
			       tot->upgrades_win, churn_rate, tot->churn_fail_win, tot->upgrades_total);
			print_lat_human("connect->welcome", &tot->connect);
		}
		printf("  client            %.2f s CPU over %d procs; the busiest used %.0f%% of a core in "
		       "the window\n", client_cpu, O.procs, 100 * client_busiest);
		if (client_busiest >= CLIENT_SATURATED)
			printf("  WARNING           a load process filled its core: its latencies are its "
			       "own backlog, not the server's (use more --procs)\n");
		if (have_server) {
			printf("  server            %d procs; CPU %.2f s in window (%.0f%% of a core), "
			       "%.1f us per %s; CPU %.2f s to connect\n",
			       s_w1.procs, srv_cpu_win, 100 * srv_cpu_win / dur,
			       work > 0 ? srv_cpu_win * 1e6 / work : 0,
			       O.mode == MODE_CHURN ? "upgrade" : "delivery+ack", srv_cpu_connect);
			if (O.mode == MODE_LOAD)
				printf("  server memory     RSS %.1f -> %.1f MB (%.2f KB/conn), PSS %.1f -> "
				       "%.1f MB (%.2f KB/conn); at end RSS %.1f MB\n",
				       s_base.rss_kb / 1024.0, s_ready.rss_kb / 1024.0, rss_per_conn,
				       s_base.pss_kb / 1024.0, s_ready.pss_kb / 1024.0, pss_per_conn,
				       s_w1.rss_kb / 1024.0);
		}
		if (O.n_service_pids)
			printf("  services          %d procs (--service-pid); CPU %.2f s in window "
			       "(%.0f%% of a core); RSS %.1f MB\n",
			       v_w1.procs, v_w1.cpu_s - v_w0.cpu_s, 100 * (v_w1.cpu_s - v_w0.cpu_s) / dur,
			       v_ready.rss_kb / 1024.0);
		if (steal_cpus > 0) {
			printf("  host steal        ");
			for (int i = 0; i < steal_cpus; i++)
				printf("%sCPU %d %.2f s", i ? ", " : "", i, steal_win[i]);
			printf(" in window (the hypervisor running others)\n");
		}
	}

	FILE *f = stdout;
	fprintf(f, "{\"bench\":\"chat-bench\",\"label\":\"%s\",\"mode\":\"%s\",\"proto\":\"%s\",\"url\":\"",
		O.label ? O.label : "", O.mode == MODE_LOAD ? "load" : "churn",
		O.proto == PROTO_CHATD ? "chatd" : "socketio");
	for (int i = 0; i < O.n_targets; i++)
		fprintf(f, "%sws://%s:%d", i ? "," : "", O.targets[i].host, O.targets[i].port);
	fputc('"', f);
	fprintf(f,
		",\"conns\":%ld,\"rooms\":%ld,\"senders\":%ld,\"rate\":%g,\"size\":%ld,"
		"\"duration_s\":%g,\"warmup_s\":%g,\"procs\":%d,\"source_addrs\":%d",
		O.conns, O.rooms, O.senders, O.rate, O.size, dur, O.warmup_s, O.procs, O.source_addrs);
	fprintf(f,
		",\"connections_made\":%" PRIu64 ",\"connections_failed\":%" PRIu64
		",\"conns_dropped\":%" PRIu64 ",\"close_1013\":%" PRIu64,
		tot->conns_ok, tot->conns_failed, tot->dropped, tot->close_1013);
	json_num(f, "connect_per_s", connect_rate, O.mode == MODE_LOAD);
	fprintf(f,
		",\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"delivered\":%" PRIu64
		",\"expected\":%.0f",
		tot->sent_win, tot->acked_win, tot->delivered_win, expected);
	json_num(f, "delivery_ratio", ratio, expected > 0);
	json_num(f, "ack_ratio", ack_ratio, tot->sent_win > 0);
	json_num(f, "delivered_per_s", (double)tot->delivered_win / dur, true);
	json_num(f, "acked_per_s", (double)tot->acked_win / dur, true);
	fprintf(f,
		",\"errors\":{\"rate_limited\":%" PRIu64 ",\"unavailable\":%" PRIu64
		",\"other\":%" PRIu64 "}",
		tot->err_rate_limited, tot->err_unavailable, tot->err_other);
	if (O.proto == PROTO_CHATD)
		fprintf(f, ",\"seq_gaps\":%" PRIu64 ",\"seq_disorder\":%" PRIu64, tot->seq_gaps,
			tot->seq_disorder);
	else /* not checked: the peer's seq is per process */
		fprintf(f, ",\"seq_gaps\":null,\"seq_disorder\":null");
	fprintf(f, ",\"send_skipped\":%" PRIu64 ",\"send_overflow\":%" PRIu64, tot->send_skipped,
		tot->send_overflow);
	fputc(',', f);
	print_lat_json(f, "ack_ms", &tot->ack);
	fputc(',', f);
	print_lat_json(f, "delivery_ms", &tot->delivery);
	fputc(',', f);
	print_lat_json(f, "connect_ms", &tot->connect);
	fputc(',', f);
	print_lat_json(f, "send_lag_ms", &tot->send_lag);
	if (O.mode == MODE_CHURN)
		fprintf(f, ",\"upgrades\":%" PRIu64 ",\"upgrades_per_s\":%.1f,\"upgrade_failures\":%" PRIu64,
			tot->upgrades_win, churn_rate, tot->churn_fail_win);
	fprintf(f, ",\"client_cpu_s\":%.3f,\"client_cpu_util_max\":%.3f", client_cpu, client_busiest);
	if (have_server) {
		fprintf(f,
			",\"server\":{\"procs\":%d,\"cpu_s\":%.3f,\"cpu_util\":%.3f,\"cpu_connect_s\":%.3f,"
			"\"rss_kb_base\":%" PRIu64 ",\"rss_kb\":%" PRIu64 ",\"rss_kb_end\":%" PRIu64
			",\"pss_kb_base\":%" PRIu64 ",\"pss_kb\":%" PRIu64,
			s_w1.procs, srv_cpu_win, srv_cpu_win / dur, srv_cpu_connect, s_base.rss_kb,
			s_ready.rss_kb, s_w1.rss_kb, s_base.pss_kb, s_ready.pss_kb);
		json_num(f, "rss_kb_per_conn", rss_per_conn, tot->conns_ok > 0);
		json_num(f, "pss_kb_per_conn", pss_per_conn, tot->conns_ok > 0 && s_ready.pss_kb > 0);
		json_num(f, "cpu_us_per_op", work > 0 ? srv_cpu_win * 1e6 / work : 0, work > 0);
		fputc('}', f);
	} else {
		fprintf(f, ",\"server\":null");
	}
	if (O.n_service_pids)
		fprintf(f, ",\"services\":{\"procs\":%d,\"cpu_s\":%.3f,\"cpu_util\":%.3f,\"rss_kb\":%" PRIu64 "}",
			v_w1.procs, v_w1.cpu_s - v_w0.cpu_s, (v_w1.cpu_s - v_w0.cpu_s) / dur, v_ready.rss_kb);
	fprintf(f, ",\"host_steal_s\":[");
	for (int i = 0; i < steal_cpus; i++)
		fprintf(f, "%s%.3f", i ? "," : "", steal_win[i]);
	fprintf(f, "]}\n");
	return 0;
}

/* ------------------------------------------------------------ self-test */

static int fails;
#define CHECK(cond)                                                               \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "self-test: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			fails++;                                                  \
		}                                                                 \
	} while (0)

static int self_test(void)
{
	/* Histogram: every value maps to a bucket whose high edge is >= it
	 * and within 1/64 of it; indexes are monotonic. */
	unsigned last = 0;
	for (uint64_t v = 0; v < 2000000; v += (v < 5000 ? 1 : 97)) {
		unsigned i = hist_index(v);
		CHECK(i < HIST_BUCKETS);
		CHECK(i >= last);
		last = i;
		uint64_t hi = hist_bucket_high(i);
		CHECK(hi >= v);
		CHECK((double)(hi - v) <= (double)v / 64.0 + 1);
		if (i + 1 < HIST_BUCKETS)
			CHECK(hist_index(hi + 1) == i + 1);
	}
	CHECK(hist_index(UINT64_MAX) == HIST_BUCKETS - 1);
	static struct hist h;
	hist_init(&h);
	for (uint64_t v = 1; v <= 10000; v++)
		hist_record(&h, v);
	uint64_t p50 = hist_quantile(&h, 0.5), p99 = hist_quantile(&h, 0.99);
	CHECK(p50 >= 5000 && p50 <= 5000 + 5000 / 64 + 1);
	CHECK(p99 >= 9900 && p99 <= 10000);
	CHECK(hist_quantile(&h, 1.0) == 10000);
	CHECK(h.min == 1 && h.max == 10000);

	/* Server frame headers: each split point of a frame needs more bytes,
	 * the whole frame parses. */
	uint8_t f[16];
	size_t hl = ws_frame_header_encode(f, WS_OP_TEXT, 300);
	CHECK(hl == 4);
	struct wsc_header wh;
	for (size_t k = 0; k < hl; k++)
		CHECK(wsc_header_parse(f, k, &wh) == 0);
	CHECK(wsc_header_parse(f, hl, &wh) == 1 && wh.hlen == 4 && wh.plen == 300 &&
	      wh.opcode == WS_OP_TEXT && wh.fin);
	hl = ws_frame_header_encode(f, WS_OP_TEXT, 70000);
	for (size_t k = 0; k < hl; k++)
		CHECK(wsc_header_parse(f, k, &wh) == 0);
	CHECK(wsc_header_parse(f, hl, &wh) == 1 && wh.hlen == 10 && wh.plen == 70000);
	hl = ws_frame_header_encode(f, WS_OP_PING, 5);
	CHECK(wsc_header_parse(f, hl, &wh) == 1 && wh.opcode == WS_OP_PING && wh.plen == 5);
	uint8_t masked[] = {0x81, 0x85};
	CHECK(wsc_header_parse(masked, 2, &wh) == -1);
	uint8_t rsv[] = {0xC1, 0x05};
	CHECK(wsc_header_parse(rsv, 2, &wh) == -1);

	/* Event parsing, on chatd's exact layout. */
	static const char msg[] =
		"{\"type\":\"message\",\"id\":12,\"seq\":34,\"room\":\"r\",\"user\":{\"id\":\"bu3\","
		"\"name\":\"bu3\"},\"text\":\"b:3:17:123456789:xxxx\",\"created_at\":\"2026-01-01T00:00:00.000Z\","
		"\"ref\":\"17-123456789\"}";
	const uint8_t *m = (const uint8_t *)msg;
	CHECK(wsc_classify(m, sizeof msg - 1) == WSC_MESSAGE);
	uint64_t sender, seq, us;
	int64_t rs;
	CHECK(wsc_parse_message(m, sizeof msg - 1, &sender, &seq, &us, &rs) == 0 && sender == 3 &&
	      seq == 17 && us == 123456789 && rs == 34);
	/* Cut short anywhere before the send time's end, it is refused or
	 * reads a prefix, never past the end. */
	for (size_t k = 0; k < sizeof msg - 1; k++)
		(void)wsc_parse_message(m, k, &sender, &seq, &us, &rs);
	static const char ack[] = "{\"type\":\"ack\",\"op\":\"message\",\"ref\":\"17-123456789\",\"id\":12,"
				  "\"seq\":34,\"created_at\":\"x\"}";
	CHECK(wsc_classify((const uint8_t *)ack, sizeof ack - 1) == WSC_ACK);
	CHECK(wsc_parse_ref((const uint8_t *)ack, sizeof ack - 1, &seq, &us) == 0 && seq == 17 &&
	      us == 123456789);
	static const char err[] = "{\"type\":\"error\",\"ref\":\"1-2\",\"code\":\"rate_limited\","
				  "\"message\":\"slow down\",\"retry_after_ms\":400}";
	char code[32];
	CHECK(wsc_classify((const uint8_t *)err, sizeof err - 1) == WSC_ERROR);
	CHECK(wsc_error_code((const uint8_t *)err, sizeof err - 1, code, sizeof code) == 0 &&
	      strcmp(code, "rate_limited") == 0);
	static const char wel[] = "{\"type\":\"welcome\",\"conn_id\":\"x\"}";
	CHECK(wsc_classify((const uint8_t *)wel, sizeof wel - 1) == WSC_WELCOME);
	static const char join[] = "{\"type\":\"join\",\"room\":\"r\"}";
	CHECK(wsc_classify((const uint8_t *)join, sizeof join - 1) == WSC_OTHER);
	CHECK(wsc_classify((const uint8_t *)"{\"type\":\"mess", 13) == WSC_OTHER);

	/* Socket.IO frames, as the bench/peers/socketio peer writes them. */
#define SIO(lit) wsc_sio_classify((const uint8_t *)(lit), sizeof(lit) - 1)
	CHECK(SIO("0{\"sid\":\"a\",\"upgrades\":[],\"pingInterval\":25000}") == WSC_SIO_OPEN);
	CHECK(SIO("2") == WSC_SIO_PING);
	CHECK(SIO("2probe") == WSC_OTHER);
	CHECK(SIO("1") == WSC_SIO_GONE);
	CHECK(SIO("41") == WSC_SIO_GONE);
	CHECK(SIO("40{\"sid\":\"b\"}") == WSC_WELCOME);
	CHECK(SIO("44{\"message\":\"unauthorized\"}") == WSC_SIO_REFUSED);
	CHECK(SIO("42[\"join\",{\"type\":\"join\"}]") == WSC_OTHER);
	CHECK(SIO("42[\"message\",{\"type\":\"mess") == WSC_OTHER);
	CHECK(SIO("43[{\"type\":\"ack\"}]") == WSC_OTHER);
	CHECK(SIO("4317") == WSC_OTHER);
	CHECK(SIO("") == WSC_OTHER && SIO("4") == WSC_OTHER && SIO("3") == WSC_OTHER);
	static const char smsg[] =
		"42[\"message\",{\"type\":\"message\",\"id\":12,\"seq\":34,\"room\":\"r\",\"user\":{\"id\":"
		"\"bu3\",\"name\":\"bu3\"},\"text\":\"b:3:17:123456789:xxxx\",\"created_at\":\"2026-01-01T00:"
		"00:00.000Z\",\"ref\":\"17-123456789\"}]";
	m = (const uint8_t *)smsg;
	CHECK(wsc_sio_classify(m, sizeof smsg - 1) == WSC_MESSAGE);
	CHECK(wsc_parse_message(m, sizeof smsg - 1, &sender, &seq, &us, &rs) == 0 && sender == 3 &&
	      seq == 17 && us == 123456789 && rs == 34);
	static const char sack[] = "4317[{\"type\":\"ack\",\"op\":\"message\",\"ref\":\"17-123456789\","
				   "\"id\":12,\"seq\":34,\"created_at\":\"x\"}]";
	CHECK(wsc_sio_classify((const uint8_t *)sack, sizeof sack - 1) == WSC_ACK);
	CHECK(wsc_parse_ref((const uint8_t *)sack, sizeof sack - 1, &seq, &us) == 0 && seq == 17 &&
	      us == 123456789);
	static const char serr[] = "439[{\"type\":\"error\",\"ref\":\"9-5\",\"code\":\"empty\","
				   "\"message\":\"text is empty\"}]";
	CHECK(wsc_sio_classify((const uint8_t *)serr, sizeof serr - 1) == WSC_ERROR);
	CHECK(wsc_error_code((const uint8_t *)serr, sizeof serr - 1, code, sizeof code) == 0 &&
	      strcmp(code, "empty") == 0);
	/* chatd's own frames are not Socket.IO ones, and the reverse. */
	CHECK(wsc_sio_classify((const uint8_t *)msg, sizeof msg - 1) == WSC_OTHER);
	CHECK(wsc_classify(m, sizeof smsg - 1) == WSC_OTHER);
#undef SIO

	/* Steal time: one entry per CPU this machine has, never the sum line. */
	struct steal_sample ss;
	CHECK(steal_sample(&ss) == 0 && ss.cpus == (int)sysconf(_SC_NPROCESSORS_CONF));

	if (fails) {
		fprintf(stderr, "self-test: %d failures\n", fails);
		return 1;
	}
	printf("self-test: ok\n");
	return 0;
}

/* ws-floor: the least a WebSocket server can do for one of chat-bench's
 * churn rounds, on the same event loop chatd uses. It answers any upgrade
 * with the 101 and a fixed welcome frame in one write, answers the
 * client's close frame with its own and closes the socket. No token, no
 * Redis, no presence, no room: what is left is the kernel's TCP set-up
 * and tear-down, the handshake's SHA-1 and libevent, the floor under
 * chatd's CPU per upgrade (docs/performance.md, "What bounds these").
 *
 *   bin/ws-floor [PORT]        (8090 by default; one process, one loop)
 *
 * A benchmark tool, not a server: it trusts its client to send a request
 * in one segment and frames it can read at once. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "worker/ws_handshake.h"

#define REQ_MAX 4096

struct floor_conn {
	struct event *ev;
	size_t len;
	char upgraded;
	char buf[REQ_MAX];
};

static const char welcome[] = "{\"type\":\"welcome\",\"conn_id\":\"floor\",\"online\":[]}";

static void conn_free(struct floor_conn *c, int fd)
{
	event_free(c->ev);
	close(fd);
	free(c);
}

static int answer_upgrade(int fd, struct floor_conn *c)
{
	static const char name[] = "\r\nSec-WebSocket-Key: ";
	char *key = memmem(c->buf, c->len, name, sizeof name - 1);
	if (!key)
		return -1;
	key += sizeof name - 1;
	char *end = memmem(key, c->len - (size_t)(key - c->buf), "\r\n", 2);
	char accept[WS_ACCEPT_LEN + 1];
	if (!end || ws_handshake_accept(key, (size_t)(end - key), accept) < 0)
		return -1;
	char out[512];
	int n = snprintf(out, sizeof out,
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			 accept);
	out[n++] = (char)0x81;
	out[n++] = (char)(sizeof welcome - 1);
	memcpy(out + n, welcome, sizeof welcome - 1);
	n += (int)sizeof welcome - 1;
	return write(fd, out, (size_t)n) == n ? 0 : -1;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct floor_conn *c = arg;
	ssize_t n = read(fd, c->buf + c->len, sizeof c->buf - c->len);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		conn_free(c, fd);
		return;
	}
	c->len += (size_t)n;
	if (!c->upgraded) {
		if (!memmem(c->buf, c->len, "\r\n\r\n", 4)) {
			if (c->len == sizeof c->buf)
				conn_free(c, fd);
			return;
		}
		if (answer_upgrade(fd, c) < 0) {
			conn_free(c, fd);
			return;
		}
		c->upgraded = 1;
		c->len = 0;
		return;
	}
	/* Anything after the upgrade is taken for the client's close. */
	static const char close_frame[] = {(char)0x88, 2, 0x03, (char)0xe8};
	(void)!write(fd, close_frame, sizeof close_frame);
	conn_free(c, fd);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	(void)what;
	struct event_base *base = arg;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct floor_conn *c = malloc(sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->len = 0;
		c->upgraded = 0;
		c->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
		if (!c->ev || event_add(c->ev, NULL) < 0) {
			if (c->ev)
				event_free(c->ev);
			close(fd);
			free(c);
		}
	}
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 8090;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_ANY)};
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
		perror("ws-floor: listen");
		return 1;
	}
	struct event_base *base = event_base_new();
	struct event *lev = base ? event_new(base, lfd, EV_READ | EV_PERSIST, on_accept, base) : NULL;
	if (!lev || event_add(lev, NULL) < 0) {
		fputs("ws-floor: libevent set-up failed\n", stderr);
		return 1;
	}
	fprintf(stderr, "ws-floor: listening on port %d\n", port);
	event_base_dispatch(base);
	return 0;
}

/* lws_client: checks chatd's WebSocket endpoint with an independent
 * implementation, libwebsockets (Debian's libwebsockets-dev).
 *
 *   lws_client PORT ROOM TOKEN [--frag] [--timeout SECONDS]
 *
 * Connects to ws://127.0.0.1:PORT/api/chat?room=ROOM&token=TOKEN, waits
 * for the welcome, sends a ping and checks the pong's payload, sends a
 * message and waits for its ack and its broadcast, with --frag sends a
 * second message in two fragments (TEXT|NO_FIN, then CONTINUATION) and
 * waits for the same, then closes with 1000 and checks that the server
 * answered the close. Prints one JSON line of what it saw; exits 0 only if
 * every step passed, 1 otherwise, 2 on bad arguments. Every run ends within
 * the timeout (default 10 s), however the server behaves. */

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#define PING_PAYLOAD "lws-ping-7f3a"
#define RX_MAX 65536

enum step { S_CONNECT, S_WELCOME, S_PING, S_MSG, S_FRAG1, S_FRAG2, S_FRAG_WAIT, S_CLOSE, S_CLOSING, S_DONE };
static const char *const step_names[] = {"connect", "welcome", "ping", "message", "frag1",
                                         "frag2", "frag_wait", "close", "closing", "done"};

static struct {
    enum step step;
    bool frag;
    bool done;
    bool msg_sent;
    bool connected, welcome, pong, ack, broadcast, frag_ack, frag_broadcast, close_sent, closed;
    char error[200];
    char text1[64], text2[64];
    char rx[RX_MAX];
    size_t rx_len;
    bool rx_overflow;
    struct lws_context *ctx;
    lws_sorted_usec_list_t deadline;
} g;

/* ---- a tap on what the server sends -------------------------------------
 * libwebsockets answers a close on its own and swallows the server's
 * acknowledgement of ours, so the only way to see that the server did
 * complete the handshake is to watch the bytes: lws reads its socket with
 * recv(), which this executable interposes. After the HTTP head, a small
 * frame parser notes every server frame (and whether any was masked,
 * which a server must never do) and the close frame's code. */

static struct {
    unsigned head_match; /* bytes of "\r\n\r\n" matched so far */
    bool head_done;
    uint8_t hdr[14];
    size_t hdr_len;
    uint64_t remain;
    bool in_payload;
    uint8_t ctl[125];
    size_t ctl_len;
    unsigned frames, masked;
    int close_code; /* -1: no close frame seen; 1005: one without a code */
} tap = {.close_code = -1};

static void tap_frame_done(void)
{
    tap.frames++;
    if ((tap.hdr[0] & 0x0F) == 0x8)
        tap.close_code = tap.ctl_len >= 2 ? (tap.ctl[0] << 8) | tap.ctl[1] : 1005;
    tap.hdr_len = 0;
    tap.in_payload = false;
}

static void tap_feed(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (!tap.head_done) {
            static const char end[] = "\r\n\r\n";
            tap.head_match = b == (uint8_t)end[tap.head_match] ? tap.head_match + 1 : (b == '\r');
            tap.head_done = tap.head_match == 4;
            continue;
        }
        if (tap.in_payload) {
            if ((tap.hdr[0] & 0x0F) == 0x8 && tap.ctl_len < sizeof tap.ctl) tap.ctl[tap.ctl_len++] = b;
            if (--tap.remain == 0) tap_frame_done();
            continue;
        }
        tap.hdr[tap.hdr_len++] = b;
        if (tap.hdr_len < 2) continue;
        unsigned len7 = tap.hdr[1] & 0x7F;
        size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((tap.hdr[1] & 0x80) ? 4 : 0);
        if (tap.hdr_len < need) continue;
        uint64_t len = len7;
        if (len7 >= 126) {
            len = 0;
            for (size_t k = 2; k < (len7 == 126 ? 4u : 10u); k++) len = (len << 8) | tap.hdr[k];
        }
        if (tap.hdr[1] & 0x80) tap.masked++;
        tap.ctl_len = 0;
        tap.remain = len;
        if (len == 0) tap_frame_done();
        else tap.in_payload = true;
    }
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
    if (n > 0 && !(flags & MSG_PEEK)) tap_feed(buf, (size_t)n);
    return n;
}

/* ---- the report ---------------------------------------------------------- */

static bool all_passed(void)
{
    return g.connected && g.welcome && g.pong && g.ack && g.broadcast &&
           (!g.frag || (g.frag_ack && g.frag_broadcast)) && g.close_sent && g.closed &&
           tap.close_code == 1000 && tap.masked == 0 && !g.error[0];
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    if (!g.error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g.error, sizeof g.error, fmt, ap);
        va_end(ap);
    }
    g.done = true;
    if (g.ctx) lws_cancel_service(g.ctx);
}

static void report(void)
{
    json_t *o = json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:i, s:i, s:i, s:s, s:b}",
                          "connected", g.connected, "welcome", g.welcome, "pong", g.pong, "ack", g.ack,
                          "broadcast", g.broadcast, "frag", g.frag, "frag_ack", g.frag_ack,
                          "frag_broadcast", g.frag_broadcast, "close_sent", g.close_sent, "closed",
                          g.closed, "server_close_code", tap.close_code, "server_frames",
                          (int)tap.frames, "masked_frames", (int)tap.masked, "step",
                          step_names[g.step], "ok", all_passed());
    if (o && g.error[0]) json_object_set_new(o, "error", json_string(g.error));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    printf("%s\n", s ? s : "{\"ok\":false,\"error\":\"out of memory\"}");
    fflush(stdout);
    free(s);
    json_decref(o);
}

static void on_hard_timeout(int sig)
{
    (void)sig;
    static const char line[] = "{\"ok\":false,\"error\":\"hard timeout\"}\n";
    if (write(STDOUT_FILENO, line, sizeof line - 1) < 0) _exit(1);
    _exit(1);
}

static void on_deadline(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    fail("timed out in step %s", step_names[g.step]);
}

/* ---- the protocol ------------------------------------------------------- */

static int send_text(struct lws *wsi, const char *s, size_t n, int flags)
{
    unsigned char buf[LWS_PRE + 256];
    if (n > sizeof buf - LWS_PRE) return -1;
    memcpy(buf + LWS_PRE, s, n);
    return lws_write(wsi, buf + LWS_PRE, n, (enum lws_write_protocol)flags) < (int)n ? -1 : 0;
}

static void on_message(struct lws *wsi, const char *data, size_t len)
{
    json_error_t err;
    json_t *m = json_loadb(data, len, 0, &err);
    const char *type = m ? json_string_value(json_object_get(m, "type")) : NULL;
    if (!type) {
        json_decref(m);
        fail("a frame that is not a JSON object with a type: %.100s", data);
        return;
    }
    const char *ref = json_string_value(json_object_get(m, "ref"));
    const char *text = json_string_value(json_object_get(m, "text"));
    if (strcmp(type, "welcome") == 0) {
        if (g.step == S_WELCOME) {
            g.welcome = true;
            g.step = S_PING;
            lws_callback_on_writable(wsi);
        } else {
            fail("a second welcome");
        }
    } else if (strcmp(type, "error") == 0) {
        fail("the server answered with an error: %.150s", data);
    } else if (strcmp(type, "ack") == 0 && ref) {
        if (strcmp(ref, "lws-1") == 0) g.ack = true;
        if (strcmp(ref, "lws-2") == 0) g.frag_ack = true;
    } else if (strcmp(type, "message") == 0 && text) {
        if (strcmp(text, g.text1) == 0) g.broadcast = true;
        if (strcmp(text, g.text2) == 0) g.frag_broadcast = true;
    }
    json_decref(m);
    if (g.step == S_MSG && g.ack && g.broadcast) {
        g.step = g.frag ? S_FRAG1 : S_CLOSE;
        lws_callback_on_writable(wsi);
    } else if (g.step == S_FRAG_WAIT && g.frag_ack && g.frag_broadcast) {
        g.step = S_CLOSE;
        lws_callback_on_writable(wsi);
    }
}

static int on_writeable(struct lws *wsi)
{
    char msg[200];
    int n;
    switch (g.step) {
    case S_PING: {
        unsigned char buf[LWS_PRE + sizeof PING_PAYLOAD];
        memcpy(buf + LWS_PRE, PING_PAYLOAD, sizeof PING_PAYLOAD - 1);
        if (lws_write(wsi, buf + LWS_PRE, sizeof PING_PAYLOAD - 1, LWS_WRITE_PING) < 0) {
            fail("could not send the ping");
            return -1;
        }
        return 0; /* the pong moves us on */
    }
    case S_MSG:
        if (g.msg_sent) return 0;
        n = snprintf(msg, sizeof msg, "{\"type\":\"message\",\"text\":\"%s\",\"ref\":\"lws-1\"}", g.text1);
        if (send_text(wsi, msg, (size_t)n, LWS_WRITE_TEXT) < 0) {
            fail("could not send the message");
            return -1;
        }
        g.msg_sent = true;
        return 0;
    case S_FRAG1:
    case S_FRAG2: {
        n = snprintf(msg, sizeof msg, "{\"type\":\"message\",\"text\":\"%s\",\"ref\":\"lws-2\"}", g.text2);
        size_t half = (size_t)n / 2;
        int r = g.step == S_FRAG1
                    ? send_text(wsi, msg, half, LWS_WRITE_TEXT | LWS_WRITE_NO_FIN)
                    : send_text(wsi, msg + half, (size_t)n - half, LWS_WRITE_CONTINUATION);
        if (r < 0) {
            fail("could not send a fragment in step %s", step_names[g.step]);
            return -1;
        }
        g.step = g.step == S_FRAG1 ? S_FRAG2 : S_FRAG_WAIT;
        if (g.step == S_FRAG2) lws_callback_on_writable(wsi);
        return 0;
    }
    case S_CLOSE: {
        unsigned char reason[] = "bye";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, reason, 3);
        g.close_sent = true;
        g.step = S_CLOSING;
        return -1; /* lws sends the close and waits for the answer */
    }
    default: return 0;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fail("connection error: %.150s", in ? (const char *)in : "(no detail)");
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        g.connected = true;
        g.step = S_WELCOME;
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (lws_frame_is_binary(wsi)) {
            fail("a binary frame from the server");
            return -1;
        }
        if (lws_is_first_fragment(wsi)) {
            g.rx_len = 0;
            g.rx_overflow = false;
        }
        if (g.rx_len + len < sizeof g.rx) {
            memcpy(g.rx + g.rx_len, in, len);
            g.rx_len += len;
        } else {
            g.rx_overflow = true;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (g.rx_overflow) {
                fail("a message over 64 KiB");
                return -1;
            }
            g.rx[g.rx_len] = '\0';
            on_message(wsi, g.rx, g.rx_len);
        }
        return g.done ? -1 : 0;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (g.step == S_PING && len == sizeof PING_PAYLOAD - 1 && memcmp(in, PING_PAYLOAD, len) == 0) {
            g.pong = true;
            g.step = S_MSG;
            lws_callback_on_writable(wsi);
        } else if (g.step == S_PING) {
            fail("a pong whose payload is not the ping's");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (g.step != S_CLOSING) {
            char code[16] = "?";
            if (len >= 2) snprintf(code, sizeof code, "%u", (((uint8_t *)in)[0] << 8) | ((uint8_t *)in)[1]);
            fail("the server closed the connection first, with code %s", code);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (g.step == S_CLOSING) {
            g.closed = true;
            g.step = S_DONE;
        } else {
            fail("the connection closed in step %s", step_names[g.step]);
        }
        g.done = true;
        lws_cancel_service(g.ctx);
        return 0;
    default: return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"chatd-test", callback, 0, RX_MAX, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void usage(void)
{
    fprintf(stderr, "usage: lws_client PORT ROOM TOKEN [--frag] [--timeout SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4) usage();
    int port = atoi(argv[1]);
    const char *room = argv[2], *token = argv[3];
    int timeout_s = 10;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--frag") == 0) g.frag = true;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout_s = atoi(argv[++i]);
        else usage();
    }
    if (port <= 0 || port > 65535 || timeout_s <= 0) usage();
    /* The backstop, should the loop itself ever hang. */
    signal(SIGALRM, on_hard_timeout);
    alarm((unsigned)timeout_s + 5);

    unsigned tag = (unsigned)getpid() ^ (unsigned)time(NULL);
    snprintf(g.text1, sizeof g.text1, "hello from lws %08x", tag);
    snprintf(g.text2, sizeof g.text2, "fragmented hello from lws %08x", tag);

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;
    g.ctx = lws_create_context(&info);
    if (!g.ctx) {
        fail("lws_create_context failed");
        report();
        return 1;
    }

    char path[4096], host[64];
    if ((size_t)snprintf(path, sizeof path, "/api/chat?room=%s&token=%s", room, token) >= sizeof path)
        usage();
    snprintf(host, sizeof host, "127.0.0.1:%d", port);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = g.ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = path;
    ci.host = host;
    ci.ietf_version_or_minus_one = -1;
    ci.local_protocol_name = protocols[0].name;
    g.step = S_CONNECT;
    lws_sul_schedule(g.ctx, 0, &g.deadline, on_deadline, (lws_usec_t)timeout_s * LWS_US_PER_SEC);
    if (!lws_client_connect_via_info(&ci)) fail("lws_client_connect_via_info failed");

    while (!g.done)
        if (lws_service(g.ctx, 0) < 0) break;
    lws_sul_cancel(&g.deadline);
    lws_context_destroy(g.ctx);
    report();
    return all_passed() ? 0 : 1;
}

#include "worker/control.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/jsonw.h"
#include "shared/log.h"
#include "shared/room.h"
#include "shared/config.h"
#include "shared/jwt.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/hub.h"
#include "worker/redis_link.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"

static void kick(struct worker *w, const char *user)
{
    int n = 0;
    struct conn *next;
    for (struct conn *c = w->ws_conns.head; c; c = next) {
        next = c->next;
        struct chat_session *s = ws_conn_chat(c);
        if (s && strcmp(s->user_id, user) == 0) {
            ws_conn_close(c, WS_CLOSE_KICKED, "kicked");
            n++;
        }
    }
    if (n) log_info("kicked %d connection(s) of a user", n);
}

/* Kicks published while a worker's subscription link was down are lost
 * (pub/sub keeps nothing), and a banned user's sockets would stay open
 * for ever, since the ban set is read at join only. So when the control
 * channel is back, the users connected here are looked up in the ban set
 * and the banned ones kicked, as `chatctl ban` meant. */
#define SWEEP_USERS_MAX 512

struct ban_sweep {
    struct worker *w;
    int n;
    char users[SWEEP_USERS_MAX][JWT_SUB_MAX_BYTES + 1];
};

static void on_ban_sweep(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct ban_sweep *sw = privdata;
    redisReply *r = reply;
    /* NULL: the link went down, and its return sweeps again. */
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)sw->n) {
        for (int i = 0; i < sw->n; i++) {
            if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer != 1) continue;
            log_info("control: a banned user was still connected (a kick was missed); kicking");
            kick(sw->w, sw->users[i]);
        }
    } else if (r) {
        log_warn("control: the ban sweep failed: %s", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
    }
    free(sw);
}

static int send_sweep(struct worker *w, struct ban_sweep *sw)
{
    const char *argv[2 + SWEEP_USERS_MAX];
    char key[CONFIG_PREFIX_MAX + 8];
    snprintf(key, sizeof key, "%sbanned", w->cfg->redis_prefix);
    argv[0] = "SMISMEMBER";
    argv[1] = key;
    for (int i = 0; i < sw->n; i++) argv[2 + i] = sw->users[i];
    if (redis_link_commandargv(w->redis, on_ban_sweep, sw, 2 + sw->n, argv, NULL) < 0) {
        free(sw);
        return -1;
    }
    return 0;
}

void control_sweep_bans(struct worker *w)
{
    if (!redis_link_up(w->redis)) return; /* swept when it is up */
    struct ban_sweep *sw = NULL;
    int sent = 0;
    for (struct conn *c = w->ws_conns.head; c; c = c->next) {
        struct chat_session *s = ws_conn_chat(c);
        if (!s) continue;
        if (!sw) {
            if (!(sw = malloc(sizeof *sw))) {
                log_warn("control: out of memory for the ban sweep");
                return;
            }
            sw->w = w;
            sw->n = 0;
        }
        snprintf(sw->users[sw->n++], sizeof sw->users[0], "%s", s->user_id);
        if (sw->n == SWEEP_USERS_MAX) {
            if (send_sweep(w, sw) < 0) return;
            sent++;
            sw = NULL;
        }
    }
    if (sw && send_sweep(w, sw) == 0) sent++;
    if (sent) log_debug("control: ban sweep of %u connections", w->ws_conns.count);
}

static void notice(struct worker *w, const char *room, const char *text, size_t len)
{
    /* The strings as escaped (the text up to six times longer), and 64
     * for the keys. */
    size_t cap = jsonw_str_len(room, strlen(room)) + jsonw_str_len(text, len) + 64;
    char *buf = malloc(cap);
    if (!buf) {
        log_warn("control: out of memory; a notice to %s was dropped", room);
        return;
    }
    struct jsonw jw;
    jsonw_init(&jw, buf, cap);
    jsonw_raw(&jw, "{\"type\":\"notice\",\"room\":");
    jsonw_cstr(&jw, room);
    jsonw_raw(&jw, ",\"text\":");
    jsonw_str(&jw, text, len);
    jsonw_raw(&jw, "}");
    long n = jsonw_finish(&jw);
    if (n > 0) hub_deliver_local(w->hub, room, buf, (size_t)n);
    else log_warn("control: a notice to %s did not fit its buffer; dropped", room); /* cannot happen */
    free(buf);
}

void control_handle(struct worker *w, const char *json, size_t len)
{
    json_error_t err;
    json_t *cmd = json_loadb(json, len, 0, &err);
    const char *op = json_string_value(json_object_get(cmd, "op"));
    if (!op) {
        log_warn("control: ignoring a command without op");
    } else if (strcmp(op, "kick") == 0) {
        const char *user = json_string_value(json_object_get(cmd, "user"));
        if (user) kick(w, user);
        else log_warn("control: kick without user");
    } else if (strcmp(op, "notice") == 0) {
        json_t *room = json_object_get(cmd, "room"), *text = json_object_get(cmd, "text");
        if (json_is_string(room) && json_is_string(text) &&
            room_name_valid(json_string_value(room), json_string_length(room)) &&
            json_string_length(text) <= ROOM_NOTICE_MAX_BYTES)
            notice(w, json_string_value(room), json_string_value(text), json_string_length(text));
        else
            log_warn("control: notice needs a valid room and a text of at most %d bytes",
                     ROOM_NOTICE_MAX_BYTES);
    } else {
        log_warn("control: unknown op '%.32s'", op);
    }
    json_decref(cmd);
}

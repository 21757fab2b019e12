#include "worker/control.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/jsonw.h"
#include "shared/log.h"
#include "shared/room.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/hub.h"
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

#include "worker/chat_request.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/jsonw.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/timefmt.h"
#include "shared/utf8.h"
#include "worker/chat_frame.h"
#include "worker/chat_session.h"
#include "worker/conn.h"
#include "worker/hub.h"
#include "worker/ratelimit.h"
#include "worker/store.h"
#include "worker/worker.h"
#include "worker/ws_conn.h"

/* One message/edit/delete request between its frame and its reply. It
 * holds a reference to the connection: the reply is dropped if the
 * connection closed meanwhile, but a stored change is published anyway. */
struct chat_req {
    struct conn *c;
    struct chat_frame frame;
    char room[ROOM_NAME_MAX + 1];
    int64_t id;
};

static enum metric_id error_metric(const char *code)
{
    static const struct { const char *code; enum metric_id id; } map[] = {
        {"bad_request", METRIC_ERR_BAD_REQUEST}, {"unknown_type", METRIC_ERR_UNKNOWN_TYPE},
        {"empty", METRIC_ERR_EMPTY},             {"too_long", METRIC_ERR_TOO_LONG},
        {"forbidden", METRIC_ERR_FORBIDDEN},     {"not_found", METRIC_ERR_NOT_FOUND},
        {"edit_window_closed", METRIC_ERR_EDIT_WINDOW},
        {"rate_limited", METRIC_ERR_RATE_LIMITED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].code, code) == 0) return map[i].id;
    return METRIC_ERR_UNAVAILABLE;
}

static void send_error(struct conn *c, const char *ref, const char *code, const char *message,
                       int64_t retry_after_ms)
{
    if (c->closed) return;
    char buf[512];
    struct jsonw w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "{\"type\":\"error\"");
    if (ref) {
        jsonw_raw(&w, ",\"ref\":");
        jsonw_cstr(&w, ref);
    }
    jsonw_raw(&w, ",\"code\":");
    jsonw_cstr(&w, code);
    jsonw_raw(&w, ",\"message\":");
    jsonw_cstr(&w, message);
    if (retry_after_ms >= 0) {
        jsonw_raw(&w, ",\"retry_after_ms\":");
        jsonw_i64(&w, retry_after_ms);
    }
    jsonw_raw(&w, "}");
    long n = jsonw_finish(&w);
    metrics_add(error_metric(code), 1);
    if (n > 0) ws_conn_send_text(c, buf, (size_t)n);
}

static const char *req_ref(const struct chat_req *r)
{
    return r->frame.has_ref ? r->frame.ref : NULL;
}

static void req_error(struct chat_req *r, const char *code, const char *message)
{
    send_error(r->c, req_ref(r), code, message, -1);
}

static void req_free(struct chat_req *r)
{
    chat_frame_clear(&r->frame);
    if (r->c->requests-- == CHAT_REQUESTS_MAX) ws_conn_resume_read(r->c);
    conn_unref(r->c);
    free(r);
}

static void send_ack(struct chat_req *r, const struct store_change *ch, const char *at_key)
{
    if (r->c->closed) return;
    char buf[512];
    struct jsonw w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "{\"type\":\"ack\",\"op\":\"");
    jsonw_raw(&w, chat_op_name(r->frame.op));
    jsonw_raw(&w, "\"");
    if (r->frame.has_ref) {
        jsonw_raw(&w, ",\"ref\":");
        jsonw_cstr(&w, r->frame.ref);
    }
    jsonw_raw(&w, ",\"id\":");
    jsonw_i64(&w, r->frame.op == CHAT_OP_MESSAGE ? ch->id : r->id);
    jsonw_raw(&w, ",\"seq\":");
    jsonw_i64(&w, ch->seq);
    if (ch->at) {
        jsonw_raw(&w, ",\"");
        jsonw_raw(&w, at_key);
        jsonw_raw(&w, "\":");
        jsonw_cstr(&w, ch->at);
    }
    jsonw_raw(&w, "}");
    long n = jsonw_finish(&w);
    if (n > 0 && ws_conn_send_text(r->c, buf, (size_t)n) == 0) metrics_add(METRIC_ACKS, 1);
}

static const char *const error_messages[][2] = {
    {"not_found", "no such message in this room"},
    {"forbidden", "only the author may do that"},
    {"edit_window_closed", "the edit window has closed"},
};

static void on_stored(void *arg, const struct store_change *ch)
{
    struct chat_req *r = arg;
    static const char *const at_keys[] = {
        [CHAT_OP_MESSAGE] = "created_at", [CHAT_OP_EDIT] = "edited_at",
        [CHAT_OP_DELETE] = "deleted_at"};
    if (!ch) {
        req_error(r, "unavailable", "could not store; resend with the same ref");
    } else if (strcmp(ch->status, "ok") != 0) {
        const char *msg = "refused";
        for (size_t i = 0; i < sizeof error_messages / sizeof error_messages[0]; i++)
            if (strcmp(error_messages[i][0], ch->status) == 0) msg = error_messages[i][1];
        req_error(r, ch->status, msg);
    } else {
        /* Stored: announce it whether or not the sender is still here.
         * A failed PUBLISH leaves a seq gap that receivers repair. */
        if (ch->payload && hub_publish_change(r->c->w->hub, r->room, ch->seq, ch->payload) < 0)
            log_warn("publish failed for room %s seq %" PRId64 "; receivers will repair it",
                     r->room, ch->seq);
        send_ack(r, ch, at_keys[r->frame.op]);
    }
    req_free(r);
}

static void process(struct chat_req *r, struct chat_session *s)
{
    struct worker *w = r->c->w;
    const char *text = NULL;
    struct chat_error err;
    if (chat_frame_validate(&r->frame, s->role, w->cfg->max_text_chars, &text, &r->id, &err) < 0) {
        req_error(r, err.code, err.message);
        req_free(r);
        return;
    }
    const char *ref = req_ref(r);
    int rc;
    switch (r->frame.op) {
    case CHAT_OP_MESSAGE:
        rc = store_post(w->store, r->room, s->user_id, s->user_name, text, ref, on_stored, r);
        break;
    case CHAT_OP_EDIT:
        rc = store_edit(w->store, r->room, r->id, s->user_id, text, w->cfg->edit_window_s, ref,
                        on_stored, r);
        break;
    default:
        rc = store_delete(w->store, r->room, r->id, s->user_id, s->role == JWT_ROLE_ORGANIZER, ref,
                          on_stored, r);
        break;
    }
    if (rc < 0) {
        req_error(r, "unavailable", "database unavailable; resend with the same ref");
        req_free(r);
    }
}

static void on_rate(void *arg, bool unavailable, bool allowed, int64_t retry_after_ms)
{
    struct chat_req *r = arg;
    struct chat_session *s = ws_conn_chat(r->c);
    if (r->c->closed || !s || s->state == CHAT_CLOSED) {
        req_free(r);
        return;
    }
    if (unavailable) {
        req_error(r, "unavailable", "rate limiter unavailable; resend with the same ref");
        req_free(r);
        return;
    }
    if (!allowed) {
        send_error(r->c, req_ref(r), "rate_limited", "slow down", retry_after_ms);
        req_free(r);
        return;
    }
    process(r, s);
}

static void typing(struct conn *c, struct chat_session *s)
{
    if (s->role == JWT_ROLE_VIEWER || s->state == CHAT_CLOSED) return;
    int64_t now = timefmt_mono_ms();
    if (s->last_typing_ms && now - s->last_typing_ms < 1000) return;
    s->last_typing_ms = now;
    char buf[512];
    struct jsonw w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_raw(&w, "{\"type\":\"typing\",\"room\":");
    jsonw_cstr(&w, s->room_name);
    jsonw_raw(&w, ",\"user\":");
    jsonw_user(&w, s->user_id, strlen(s->user_id), s->user_name, strlen(s->user_name));
    jsonw_raw(&w, "}");
    long n = jsonw_finish(&w);
    char conn_id[37];
    chat_session_conn_id(s, conn_id);
    if (n > 0) hub_publish_typing(c->w->hub, s->room_name, conn_id, buf, (size_t)n);
}

void chat_request_handle(struct conn *c, struct chat_session *s, const char *data, size_t len)
{
    struct chat_frame f;
    struct chat_error err;
    if (chat_frame_parse(data, len, &f, &err) < 0) {
        /* A well-formed ref is echoed even here: the client can only tell
         * which of its requests this answers by the ref. */
        send_error(c, f.has_ref ? f.ref : NULL, err.code, err.message, -1);
        chat_frame_clear(&f);
        return;
    }
    if (f.op == CHAT_OP_TYPING) {
        typing(c, s);
        chat_frame_clear(&f);
        return;
    }
    /* The rate is checked before anything else: an over-rate request is
     * told so whatever else is wrong with it. */
    int64_t retry_after_ms;
    bool probe;
    if (ratelimit_refused(s->user_id, &probe, &retry_after_ms)) {
        send_error(c, f.has_ref ? f.ref : NULL, "rate_limited", "slow down", retry_after_ms);
        chat_frame_clear(&f);
        return;
    }
    struct chat_req *r = calloc(1, sizeof *r);
    if (!r) {
        if (probe) ratelimit_probe_lost(s->user_id);
        send_error(c, f.has_ref ? f.ref : NULL, "unavailable", "out of memory", -1);
        chat_frame_clear(&f);
        return;
    }
    r->c = c;
    conn_ref(c);
    c->requests++;
    r->frame = f;
    snprintf(r->room, sizeof r->room, "%s", s->room_name);
    if (ratelimit_take(c->w, s->user_id, probe, on_rate, r) < 0) {
        req_error(r, "unavailable", "rate limiter unavailable; resend with the same ref");
        req_free(r);
    }
}

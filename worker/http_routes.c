#include "worker/http_routes.h"

#include <stdio.h>
#include <string.h>

#include "worker/conn.h"
#include "worker/health.h"
#include "worker/http_conn.h"
#include "worker/rest.h"
#include "worker/static_files.h"
#include "worker/ws_conn.h"

typedef void (*route_handler)(struct http_req *req);

struct route {
    const char *path;
    route_handler get;
    bool api;   /* takes tokens and CORS preflights */
};

static void healthz(struct http_req *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    http_reply(req->c, 200, "application/json", body, sizeof body - 1,
               "Cache-Control: no-store\r\n");
}

static const struct route routes[] = {
    {"/healthz", healthz, false},
    {"/readyz", health_readyz, false},
    {"/metrics", rest_metrics, false},
    {"/api/chat", ws_conn_upgrade, true},
    {"/api/chat/messages", rest_history, true},
    {"/api/users", rest_users, true},
};

/* The Allow header of a route: HEAD is not an upgrade, and only the API
 * paths answer preflights. */
static const char *route_allow(const struct route *r)
{
    if (r->get == ws_conn_upgrade) return "Allow: GET, OPTIONS\r\n";
    return r->api ? "Allow: GET, HEAD, OPTIONS\r\n" : "Allow: GET, HEAD\r\n";
}

/* A known path asked with a method it does not answer. */
static void not_allowed(struct http_req *req, const char *allow_header)
{
    req->c->keep_alive = req->c->keep_alive && !req->has_body;
    http_reply_error_with(req->c, 405, "method_not_allowed", "method not allowed", allow_header);
}

static void preflight(struct http_req *req, const struct route *r)
{
    /* No Origin: not a preflight but a plain question about the path
     * (RFC 9110 9.3.7), answered with its methods. */
    if (!http_head_get(req->head, "Origin")) {
        http_reply(req->c, 204, NULL, NULL, 0, route_allow(r));
        return;
    }
    if (req->c->cors_origin == CONN_CORS_NONE) {
        http_reply_error(req->c, 403, "forbidden", "origin not allowed");
        return;
    }
    char headers[256];
    snprintf(headers, sizeof headers,
             "%sAccess-Control-Allow-Methods: GET, OPTIONS\r\n"
             "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
             "Access-Control-Max-Age: 600\r\n",
             route_allow(r));
    http_reply(req->c, 204, NULL, NULL, 0, headers);
}

void http_routes_dispatch(struct http_req *req)
{
    const struct http_head *h = req->head;
    bool is_get = http_str_eq(h->method, "GET");
    bool is_head = http_str_eq(h->method, "HEAD");
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if (!http_str_eq(h->path, r->path)) continue;
        if (is_get || (is_head && r->get != ws_conn_upgrade)) {
            r->get(req);
        } else if (r->api && http_str_eq(h->method, "OPTIONS")) {
            preflight(req, r);
        } else {
            not_allowed(req, route_allow(r));
        }
        return;
    }
    if ((is_get || is_head) && static_files_serve(req)) return;
    if (!is_get && !is_head && static_files_has(req)) {
        not_allowed(req, "Allow: GET, HEAD\r\n");
        return;
    }
    http_reply_error(req->c, 404, "not_found", "no such path");
}

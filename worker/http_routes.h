#ifndef CHATD_WORKER_HTTP_ROUTES_H
#define CHATD_WORKER_HTTP_ROUTES_H

struct http_req;

/* Answers (or starts answering) one request: known paths go to their
 * handler, a known path with another method gets 405 with Allow, an
 * OPTIONS preflight on an API path gets 204, anything else 404. */
void http_routes_dispatch(struct http_req *req);

#endif

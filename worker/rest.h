#ifndef CHATD_WORKER_REST_H
#define CHATD_WORKER_REST_H

/* The REST endpoints of PROTOCOL.md section 4. */

struct http_req;

/* GET /api/chat/messages?room=&limit=&before=&after= */
void rest_history(struct http_req *req);
/* GET /api/users[?room=] */
void rest_users(struct http_req *req);
/* GET /metrics */
void rest_metrics(struct http_req *req);

#endif

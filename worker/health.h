#ifndef CHATD_WORKER_HEALTH_H
#define CHATD_WORKER_HEALTH_H

struct http_req;

/* GET /readyz: 200 when a Redis PING on the command link and a
 * PostgreSQL SELECT 1 both answer within READYZ_TIMEOUT_MS and the
 * subscription link is up; 503 otherwise, and always while draining. */
void health_readyz(struct http_req *req);

#define READYZ_TIMEOUT_MS 1000

#endif

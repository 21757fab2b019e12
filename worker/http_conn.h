#ifndef CHATD_WORKER_HTTP_CONN_H
#define CHATD_WORKER_HTTP_CONN_H

/* HTTP/1.1 on a connection: reads request heads (keep-alive, pipelining),
 * routes them, and writes answers in order. A handler either answers at
 * once or marks the connection busy and answers later with http_reply*;
 * pipelined requests behind it wait, so answers keep request order. */

#include <stdbool.h>
#include <stddef.h>

#include "worker/http_head.h"

struct conn;

/* Input is read up to this many bytes before we parse: one full head plus
 * room for pipelined ones behind it. */
#define HTTP_CONN_READ_HIGH 16384
/* Requests answered per connection per loop turn, so one pipelining
 * client cannot hold the loop. */
#define HTTP_CONN_REQS_PER_TURN 16
/* Parsing pauses while this much output waits for a slow reader. */
#define HTTP_CONN_OUTPUT_PAUSE 262144

void http_conn_on_read(struct conn *c);
void http_conn_on_drain(struct conn *c);
/* The peer half-closed: what it sent is still answered. */
void http_conn_on_eof(struct conn *c);

/* What a handler sees of the request. Valid only during the handler call:
 * the head points into the connection's input buffer. */
struct http_req {
    struct conn *c;
    const struct http_head *head;
    bool has_body;
};

/* Writes a complete answer. extra_headers is NULL or "Name: value\r\n"
 * lines. CORS headers are added for allowed origins. Ends the connection
 * after the answer when the request did not allow keep-alive. */
void http_reply(struct conn *c, int status, const char *content_type, const char *body,
                size_t len, const char *extra_headers);

/* {"error":{"code":...,"message":...}} with the status. */
void http_reply_error(struct conn *c, int status, const char *code, const char *message);
void http_reply_error_with(struct conn *c, int status, const char *code, const char *message,
                           const char *extra_headers);

/* For handlers that answer later: http_begin_async takes a reference and
 * pauses the connection's parsing; http_end_async (after the reply, or
 * when the connection closed meanwhile) resumes it and drops the
 * reference. */
void http_begin_async(struct conn *c);
void http_end_async(struct conn *c);

const char *http_status_text(int status);

#endif

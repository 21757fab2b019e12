#ifndef CHATD_WORKER_CHAT_FRAME_H
#define CHATD_WORKER_CHAT_FRAME_H

/* What a client frame asks for, and whether it may, as pure functions
 * (no I/O, no server state): unit-tested and fuzzed on their own.
 *
 * Two stages, because the rate check sits between them: an over-rate
 * request must be told so "whatever else is wrong with it", yet we must
 * know it is a message/edit/delete to count it at all.
 *   1. chat_frame_parse: a JSON object with a string type; which op; the
 *      ref if well formed (echoed in any reply).
 *   2. chat_frame_validate: fields, role, text rules.
 * Errors are (code, message) pairs of PROTOCOL.md section 3, as static
 * strings. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/jwt.h"

#define CHAT_REF_MAX_CHARS 64

enum chat_op { CHAT_OP_TYPING, CHAT_OP_MESSAGE, CHAT_OP_EDIT, CHAT_OP_DELETE };

struct chat_error {
    const char *code;
    const char *message;
};

/* Owns root (a jansson reference) until chat_frame_clear. */
struct chat_frame {
    json_t *root;
    enum chat_op op;
    bool has_ref;    /* ref holds a well-formed ref */
    bool bad_ref;    /* a ref was given but is not a string of 1..64 characters */
    char ref[4 * CHAT_REF_MAX_CHARS + 1];
};

/* Returns 0 with f filled, or -1 with err (bad_request, unknown_type);
 * f->has_ref/ref are valid either way when a JSON object was read, so
 * the error can carry the ref. */
int chat_frame_parse(const char *data, size_t len, struct chat_frame *f, struct chat_error *err);

/* For message/edit/delete. Returns 0 and sets *text (message/edit; points
 * into f->root, NUL-terminated, no NUL inside) and *id (edit/delete), or
 * -1 with err (bad_request, forbidden, empty, too_long). */
int chat_frame_validate(const struct chat_frame *f, enum jwt_role role, int max_text_chars,
                        const char **text, int64_t *id, struct chat_error *err);

void chat_frame_clear(struct chat_frame *f);

const char *chat_op_name(enum chat_op op);

#endif

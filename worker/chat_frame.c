#include "worker/chat_frame.h"

#include <string.h>

#include "shared/utf8.h"

static const char *const op_names[] = {"typing", "message", "edit", "delete"};

const char *chat_op_name(enum chat_op op) { return op_names[op]; }

static int fail(struct chat_error *err, const char *code, const char *message)
{
    err->code = code;
    err->message = message;
    return -1;
}

static void read_ref(struct chat_frame *f)
{
    json_t *ref = json_object_get(f->root, "ref");
    f->has_ref = f->bad_ref = false;
    if (!ref) return;
    const char *v = json_string_value(ref);
    size_t n = v ? json_string_length(ref) : 0;
    size_t cps = v ? utf8_count_codepoints((const uint8_t *)v, n) : 0;
    if (!v || cps < 1 || cps > CHAT_REF_MAX_CHARS || n >= sizeof f->ref || memchr(v, '\0', n)) {
        f->bad_ref = true;
        return;
    }
    memcpy(f->ref, v, n + 1);
    f->has_ref = true;
}

int chat_frame_parse(const char *data, size_t len, struct chat_frame *f, struct chat_error *err)
{
    memset(f, 0, sizeof *f);
    json_error_t jerr;
    /* jansson refuses NUL inside strings by default: PostgreSQL text
     * could not hold it anyway. */
    json_t *root = json_loadb(data, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return fail(err, "bad_request", "frame is not a JSON object");
    }
    f->root = root;
    read_ref(f);
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!type) return fail(err, "bad_request", "type must be a string");
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        if (strcmp(type, op_names[i]) == 0) {
            f->op = (enum chat_op)i;
            return 0;
        }
    }
    return fail(err, "unknown_type", "unknown type");
}

int chat_frame_validate(const struct chat_frame *f, enum jwt_role role, int max_text_chars,
                        const char **text, int64_t *id, struct chat_error *err)
{
    if (f->bad_ref) return fail(err, "bad_request", "ref must be a string of 1..64 characters");
    if (f->op == CHAT_OP_EDIT || f->op == CHAT_OP_DELETE) {
        json_t *j = json_object_get(f->root, "id");
        if (!json_is_integer(j) || json_integer_value(j) <= 0)
            return fail(err, "bad_request", "id must be a positive integer");
        *id = json_integer_value(j);
    }
    json_t *t = json_object_get(f->root, "text");
    if (f->op != CHAT_OP_DELETE && !json_is_string(t))
        return fail(err, "bad_request", "text must be a string");
    if (role == JWT_ROLE_VIEWER) return fail(err, "forbidden", "viewers cannot write");
    if (f->op == CHAT_OP_DELETE) return 0;
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    if (utf8_is_blank((const uint8_t *)s, n)) return fail(err, "empty", "text is empty");
    if (utf8_count_codepoints((const uint8_t *)s, n) > (size_t)max_text_chars)
        return fail(err, "too_long", "text is too long");
    *text = s;
    return 0;
}

void chat_frame_clear(struct chat_frame *f)
{
    json_decref(f->root);
    f->root = NULL;
}

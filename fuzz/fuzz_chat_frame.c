// fuzz-sources: worker/chat_frame.c shared/utf8.c
/* Client frames through both stages with every role: no crash, no leak,
 * and the contracts of chat_frame.h hold. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/utf8.h"
#include "worker/chat_frame.h"

static const char *const codes[] = {"bad_request", "unknown_type", "empty", "too_long", "forbidden"};

static void check_code(const char *code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0) return;
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chat_frame f;
    struct chat_error err;
    if (chat_frame_parse((const char *)data, size, &f, &err) < 0) {
        check_code(err.code);
        if (f.has_ref && (!utf8_is_complete_valid((const uint8_t *)f.ref, strlen(f.ref)) ||
                          f.ref[0] == '\0'))
            abort();
        chat_frame_clear(&f);
        return 0;
    }
    if (f.op != CHAT_OP_TYPING) {
        for (int role = JWT_ROLE_VIEWER; role <= JWT_ROLE_ORGANIZER; role++) {
            const char *text = NULL;
            int64_t id = 0;
            int max = 1 + (int)(size % 50);
            if (chat_frame_validate(&f, (enum jwt_role)role, max, &text, &id, &err) < 0) {
                check_code(err.code);
                continue;
            }
            if (role == JWT_ROLE_VIEWER) abort();
            if (f.op != CHAT_OP_DELETE) {
                size_t n = strlen(text);
                if (utf8_is_blank((const uint8_t *)text, n)) abort();
                if (utf8_count_codepoints((const uint8_t *)text, n) > (size_t)max) abort();
            }
            if (f.op != CHAT_OP_MESSAGE && id <= 0) abort();
        }
    }
    chat_frame_clear(&f);
    return 0;
}

#ifndef CHATD_SHARED_LOG_H
#define CHATD_SHARED_LOG_H

/* One line per event on stderr:
 *   2026-11-26T09:31:32.123Z info  [1234] worker started slot=0 port=8080
 * The level is checked before anything is formatted, so a disabled
 * log_debug costs one comparison. Values that may hold secrets (tokens,
 * passwords in DSNs) must never be passed here. */

#include <stdarg.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

extern enum log_level log_min_level;

/* Returns -1 for an unknown level name. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);
void log_set_level(enum log_level level);

/* A short tag naming the process ("master", "worker 1", "chatctl"). */
void log_set_role(const char *role);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Async-signal-safe: fixed text only, no formatting, no allocation. */
void log_raw_from_handler(const char *msg);

#define log_at(level, ...)                                                 \
    do {                                                                   \
        if ((level) >= log_min_level) log_write((level), __VA_ARGS__);     \
    } while (0)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)

#endif

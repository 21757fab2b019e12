#include "shared/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shared/timefmt.h"

enum log_level log_min_level = LOG_INFO;
static char log_role[32] = "chatd";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return (level >= LOG_DEBUG && level <= LOG_ERROR) ? level_names[level] : "?";
}

void log_set_level(enum log_level level) { log_min_level = level; }

void log_set_role(const char *role)
{
    snprintf(log_role, sizeof log_role, "%s", role);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    /* Build the whole line first and emit it with one write(2), so lines
     * from several processes sharing stderr never interleave. */
    char line[2048];
    char ts[TIMEFMT_RFC3339_MS_LEN + 1];
    timefmt_rfc3339_ms(timefmt_now_ms(), ts);
    int n = snprintf(line, sizeof line, "%s %-5s [%d] %s: ", ts,
                     log_level_name(level), (int)getpid(), log_role);
    if (n < 0) return;
    if ((size_t)n < sizeof line - 1) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - 1 - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0) n += m;
    }
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void log_raw_from_handler(const char *msg)
{
    ssize_t w = write(STDERR_FILENO, msg, strlen(msg));
    w = write(STDERR_FILENO, "\n", 1);
    (void)w;
}

#ifndef CHATD_SHARED_CONFIG_H
#define CHATD_SHARED_CONFIG_H

/* Settings of chatd and chatctl (PROTOCOL.md section 6).
 *
 * Every setting is one row of a table in config.c: name, type, default,
 * bounds, whether it may change on reload, a description and the field it
 * sets. Parsing, environment names, --check-config output, --help and
 * etc/chatd.conf are all produced from that table, so adding a setting is
 * one field here plus one row there.
 *
 * Precedence: defaults < config file < CHAT_* environment < flags.
 *   config_load_all(&c, file_or_NULL, envp, err, sizeof err);
 *   config_set(&c, "port", optarg, err, sizeof err);       (per flag)
 *   config_validate(&c, err, sizeof err);
 *
 * Ownership: struct chat_config holds no pointers (strings are fixed-size
 * arrays), so it may be copied by assignment, and a copy handed to a forked
 * worker stays valid. config_free exists so callers need not know that.
 * Every function here is free of global state (config_defaults reads the
 * CPU count) and may be used from any process.
 *
 * Return convention: 0 on success, -1 on failure with a one-line reason in
 * the caller's err buffer (err may be NULL or errlen 0 to discard it). The
 * reason names the setting and what is allowed, and never contains a
 * secret. */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "shared/log.h"

/* Capacities of the string fields, terminating NUL included. A value that
 * does not fit is rejected, never truncated. */
#define CONFIG_ADDR_MAX        64   /* INET6_ADDRSTRLEN is 46 */
#define CONFIG_SECRET_MAX      1024
#define CONFIG_URL_MAX         512
#define CONFIG_DSN_MAX         1024
#define CONFIG_PREFIX_MAX      65   /* 1..64 characters */
#define CONFIG_ORIGINS_RAW_MAX 8192
#define CONFIG_MAX_ORIGINS     64
#define CONFIG_ORIGIN_MAX      256  /* one "scheme://host[:port]" */
#define CONFIG_PATH_MAX        1024
#define CONFIG_NAME_MAX        65   /* instance_name: 0..64 characters */

/* The jwt_secret written into etc/chatd.conf. A server must never run with
 * it: callers may compare against it and warn or refuse. */
#define CONFIG_SAMPLE_JWT_SECRET "change-me-to-a-long-random-secret"

/* The value of CHAT_CONFIG names the config file when no -c is given. It
 * is the one CHAT_ variable that is not a setting. */
#define CONFIG_ENV_FILE "CHAT_CONFIG"

struct chat_config {
    /* Listening: fixed for the master's life (not reloadable). */
    char bind[CONFIG_ADDR_MAX];          /* numeric IPv4 or IPv6 address */
    int port;                            /* 1..65535 */
    int workers;                         /* 1..256; "auto" = online CPUs */
    char listen_mode[16];                /* "reuseport" or "shared" */

    /* Auth. */
    char jwt_secret[CONFIG_SECRET_MAX];  /* required: validation fails if empty */
    char jwt_secret_previous[CONFIG_SECRET_MAX]; /* "" or a second accepted secret */

    /* Storage. */
    char redis_url[CONFIG_URL_MAX];      /* checked by config_parse_redis_url */
    char pg_dsn[CONFIG_DSN_MAX];         /* libpq URI or key=value string */
    char redis_prefix[CONFIG_PREFIX_MAX];/* 1..64 characters, no whitespace */
    int pg_pool_size;                    /* PostgreSQL connections per worker */

    /* Browser origins: the raw setting, and its entries in order. An empty
     * list allows any origin. */
    char allowed_origins[CONFIG_ORIGINS_RAW_MAX];
    int origins_count;
    char origins[CONFIG_MAX_ORIGINS][CONFIG_ORIGIN_MAX];

    /* Limits. */
    int max_text_chars;                  /* code points per message */
    int max_frame_bytes;                 /* inbound frame or message */
    int max_outbuf_bytes;                /* unsent output before close 1013 */
    double rate_per_sec;                 /* > 0, fractions allowed */
    int rate_burst;
    int max_conns_per_ip;                /* 0 = no limit */

    /* Timing, in seconds. */
    int edit_window_s;
    int presence_ttl_s;
    int ping_interval_s;
    int drain_timeout_s;                 /* 0 = close at once */
    int replay_max;                      /* messages replayed for `since` */

    /* Process. */
    char static_dir[CONFIG_PATH_MAX];
    enum log_level log_level;
    char pid_file[CONFIG_PATH_MAX];      /* "" = none */
    char instance_name[CONFIG_NAME_MAX]; /* "" = host name (+ pid per worker) */

    /* Tests only: drop every n-th Redis PUBLISH (0 = never). */
    int test_drop_publish_every;
};

/* Sets every field to its default. jwt_secret is left empty, so an
 * unconfigured server fails config_validate. */
void config_defaults(struct chat_config *c);

/* Nothing to release today (no pointers inside); call it anyway wherever a
 * config's life ends, so the representation may change. Idempotent. */
void config_free(struct chat_config *c);

/* Sets one setting from its text form, as written in a config file or the
 * environment: integers in decimal, rate_per_sec as a decimal number,
 * workers also "auto". On error *c is unchanged and err reads like
 * "port: expected an integer 1..65535, got 'abc'" or
 * "unknown key 'prot' (did you mean 'port'?)". */
int config_set(struct chat_config *c, const char *key, const char *value,
               char *err, size_t errlen);

/* Applies a config file: `key = value` lines; blank lines; `#` comments on
 * their own line or after whitespace following a value; whitespace around
 * key and value is trimmed; a value may be wrapped in double quotes (no
 * escapes inside; use them to keep a leading/trailing space or " #").
 * A key may appear once per file. Errors name the file and line:
 * "etc/chatd.conf:12: unknown key 'prot'". A missing file is an error.
 * All or nothing: on error *c is unchanged. */
int config_load_file(struct chat_config *c, const char *path,
                     char *err, size_t errlen);

/* Applies every CHAT_<KEY> variable of envp (NULL-terminated "NAME=value"
 * strings, e.g. environ), values taken verbatim. Any other CHAT_ variable
 * except CHAT_CONFIG is an error naming it, so a typo cannot be silently
 * ignored. All or nothing: on error *c is unchanged. envp may be NULL. */
int config_load_env(struct chat_config *c, char *const *envp,
                    char *err, size_t errlen);

/* defaults -> file (file if not NULL, else $CHAT_CONFIG from envp if set
 * and non-empty, else none) -> environment. The caller then applies its
 * flags with config_set and calls config_validate. */
int config_load_all(struct chat_config *c, const char *file, char *const *envp,
                    char *err, size_t errlen);

/* Checks what a single setting cannot: jwt_secret present, and the limits
 * consistent with each other. Also re-checks every bound, so fields a
 * caller wrote directly are covered. */
int config_validate(const struct chat_config *c, char *err, size_t errlen);

/* Every setting as "key = value", one per line, in table order, in a form
 * config_load_file reads back. jwt_secret, jwt_secret_previous and any
 * password inside redis_url or pg_dsn are shown as ********. */
void config_dump(const struct chat_config *c, FILE *out);

/* True when a setting that cannot change on reload (SIGHUP) differs
 * between the two: bind, port, workers, redis_prefix, pid_file,
 * instance_name. The first such key is copied into key_out (if not NULL
 * and n > 0). */
bool config_reloadable_differs(const struct chat_config *old_cfg,
                               const struct chat_config *new_cfg,
                               char *key_out, size_t n);

/* Parses redis://[[user]:password@]host[:port][/db]. host is an IPv4
 * address, [IPv6 address] (written to *host without brackets) or
 * localhost (written as 127.0.0.1): workers never resolve names. The only
 * user accepted is "default" (what a password alone authenticates as);
 * user and password may be percent-encoded. Port defaults to 6379, db to
 * 0; an empty password means no AUTH. Any output pointer may be NULL to
 * only check the URL. Errors never include the password. */
int config_parse_redis_url(const char *url, char *host, size_t hostlen,
                           int *port, int *db, char *password, size_t pwlen,
                           char *err, size_t errlen);

/* True (1) when allowed_origins is empty or origin[0..n) equals one entry
 * exactly, ignoring ASCII case (origins are scheme://host[:port], whose
 * scheme and host are case-insensitive). origin need not be
 * NUL-terminated. Whether a request without an Origin header is allowed
 * is the caller's policy; an empty origin matches no entry. */
int config_origin_allowed(const struct chat_config *c, const char *origin, size_t n);

/* Every setting with its environment name, default, allowed values and
 * description, for --help. */
void config_print_help(FILE *out);

/* A commented config file holding every setting at its default (jwt_secret
 * set to CONFIG_SAMPLE_JWT_SECRET). etc/chatd.conf is this output; a unit
 * test checks that they match. */
void config_print_sample(FILE *out);

#endif

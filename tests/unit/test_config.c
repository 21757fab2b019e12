/* Unit tests of shared/config.c: the settings table and everything built on
 * it. Run with --print-sample to write the sample config to stdout (that is
 * how etc/chatd.conf is regenerated). */

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/config.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/* Writes text to a fresh temporary file; returns its path (static buffer,
 * one at a time is enough here). */
static const char *tmp_file(const char *text, size_t len)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/chatd-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static const char *tmp_conf(const char *text) { return tmp_file(text, strlen(text)); }

/* Loads text as a config file on top of defaults; returns the result and
 * leaves the error in err. */
static int load_text(struct chat_config *c, const char *text, char *err, size_t errlen)
{
    const char *path = tmp_conf(text);
    int rc = config_load_file(c, path, err, errlen);
    unlink(path);
    return rc;
}

/* Expects text to fail as a config file with "<path>:<want>". */
static void expect_file_error(const char *text, const char *want)
{
    struct chat_config c, before;
    char err[512] = "";
    config_defaults(&c);
    before = c;
    const char *path = tmp_conf(text);
    int rc = config_load_file(&c, path, err, sizeof err);
    char full[512];
    snprintf(full, sizeof full, "%s:%s", path, want);
    unlink(path);
    if (rc != -1 || strcmp(err, full) != 0)
        fail_msg("config %s\n  want error: %s\n  got (%d): %s", text, full, rc, err);
    /* All or nothing: a bad file changes nothing. */
    assert_memory_equal(&c, &before, sizeof c);
}

static void expect_set_error(const char *key, const char *value, const char *want)
{
    struct chat_config c, before;
    char err[512] = "";
    config_defaults(&c);
    before = c;
    int rc = config_set(&c, key, value, err, sizeof err);
    if (rc != -1 || strcmp(err, want) != 0)
        fail_msg("set %s=%s\n  want error: %s\n  got (%d): %s", key, value, want, rc, err);
    assert_memory_equal(&c, &before, sizeof c);
}

static void set_ok(struct chat_config *c, const char *key, const char *value)
{
    char err[512] = "";
    if (config_set(c, key, value, err, sizeof err) != 0)
        fail_msg("set %s=%s failed: %s", key, value, err);
}

/* config_dump / print functions into a malloc'd string. */
static char *dump_str(const struct chat_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_dump(c, f);
    fclose(f);
    return buf;
}

static char *print_str(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fn(f);
    fclose(f);
    return buf;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) fail_msg("'%s' not found in:\n%s", needle, hay);
}

static void assert_not_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL) fail_msg("'%s' found in:\n%s", needle, hay);
}

/* Test environments are string literals; the API takes environ's type. */
static char *const *E(const char **envp) { return (char *const *)envp; }

static int expected_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* ------------------------------------------------------------------------
 * Defaults
 * ---------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    struct chat_config c;
    config_defaults(&c);
    assert_string_equal(c.bind, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.workers, expected_workers());
    assert_string_equal(c.listen_mode, "reuseport");
    char lm_err[256];
    assert_int_equal(config_set(&c, "listen_mode", "shared", lm_err, sizeof lm_err), 0);
    assert_string_equal(c.listen_mode, "shared");
    assert_int_equal(config_set(&c, "listen_mode", "both", lm_err, sizeof lm_err), -1);
    assert_non_null(strstr(lm_err, "listen_mode"));
    assert_string_equal(c.listen_mode, "shared");
    config_defaults(&c);
    assert_string_equal(c.jwt_secret, "");
    assert_string_equal(c.jwt_secret_previous, "");
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(c.pg_dsn, "postgresql://chat@127.0.0.1:5432/chat");
    assert_string_equal(c.redis_prefix, "chat:");
    assert_int_equal(c.pg_pool_size, 4);
    assert_string_equal(c.allowed_origins, "");
    assert_int_equal(c.origins_count, 0);
    assert_int_equal(c.max_text_chars, 2000);
    assert_int_equal(c.max_frame_bytes, 16384);
    assert_int_equal(c.max_outbuf_bytes, 1048576);
    assert_true(c.rate_per_sec == 5.0);
    assert_int_equal(c.rate_burst, 10);
    assert_int_equal(c.max_conns_per_ip, 0);
    assert_int_equal(c.edit_window_s, 60);
    assert_int_equal(c.presence_ttl_s, 30);
    assert_int_equal(c.ping_interval_s, 30);
    assert_int_equal(c.drain_timeout_s, 10);
    assert_int_equal(c.replay_max, 1000);
    assert_string_equal(c.static_dir, "web");
    assert_int_equal(c.log_level, LOG_INFO);
    assert_string_equal(c.pid_file, "");
    assert_string_equal(c.instance_name, "");
    assert_int_equal(c.test_drop_publish_every, 0);

    /* The only thing missing from the defaults is the secret. */
    char err[256];
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    set_ok(&c, "jwt_secret", "s");
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    config_free(&c);
    config_free(&c);
}

static void test_workers_auto(void **state)
{
    (void)state;
    struct chat_config c;
    config_defaults(&c);
    set_ok(&c, "workers", "3");
    assert_int_equal(c.workers, 3);
    set_ok(&c, "workers", "auto");
    assert_int_equal(c.workers, expected_workers());
    expect_set_error("workers", "0", "workers: expected an integer 1..256 or auto, got '0'");
    expect_set_error("workers", "257", "workers: expected an integer 1..256 or auto, got '257'");
    expect_set_error("workers", "AUTO", "workers: expected an integer 1..256 or auto, got 'AUTO'");
}

/* ------------------------------------------------------------------------
 * Config file
 * ---------------------------------------------------------------------- */

static void test_file_parsing(void **state)
{
    (void)state;
    struct chat_config c;
    char err[512] = "";
    config_defaults(&c);
    const char *text =
        "\xEF\xBB\xBF# a comment on the first line, after a byte order mark\n"
        "\n"
        "   \t\n"
        "  # an indented comment\n"
        "port=9001\n"
        "\tworkers\t=\t3\t\n"
        "bind = 0.0.0.0   # trailing comment\n"
        "jwt_secret = \"quoted # not a comment \"  # but this is\n"
        "jwt_secret_previous = \"\"\n"
        "redis_prefix = \"p:\"\n"
        "pg_dsn = host=127.0.0.1 password=a#b dbname=chat\n"
        "static_dir = =#x\n"
        "pid_file = # only a comment: empty value\n"
        "rate_per_sec = 0.5\r\n"
        "log_level = debug\r\n"
        "instance_name = host-1.example_a\n"
        "allowed_origins = https://a.example , http://localhost:8080\n"
        "max_conns_per_ip = 0\n"
        "# no newline at the end of the last line\n"
        "drain_timeout_s = 0";
    int rc = load_text(&c, text, err, sizeof err);
    if (rc != 0) fail_msg("load failed: %s", err);
    assert_int_equal(c.port, 9001);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.bind, "0.0.0.0");
    assert_string_equal(c.jwt_secret, "quoted # not a comment ");
    assert_string_equal(c.jwt_secret_previous, "");
    assert_string_equal(c.redis_prefix, "p:");
    assert_string_equal(c.pg_dsn, "host=127.0.0.1 password=a#b dbname=chat");
    assert_string_equal(c.static_dir, "=#x");
    assert_string_equal(c.pid_file, "");
    assert_true(c.rate_per_sec == 0.5);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_string_equal(c.instance_name, "host-1.example_a");
    assert_int_equal(c.origins_count, 2);
    assert_string_equal(c.origins[0], "https://a.example");
    assert_string_equal(c.origins[1], "http://localhost:8080");
    assert_int_equal(c.drain_timeout_s, 0);
    /* Untouched settings keep their defaults. */
    assert_int_equal(c.max_text_chars, 2000);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    /* An empty file and a comments-only file change nothing. */
    struct chat_config d, e;
    config_defaults(&d);
    e = d;
    assert_int_equal(load_text(&d, "", err, sizeof err), 0);
    assert_int_equal(load_text(&d, "# nothing\n\n", err, sizeof err), 0);
    assert_memory_equal(&d, &e, sizeof d);
}

static void test_file_errors(void **state)
{
    (void)state;
    expect_file_error("port = 80\n\nprot = 1\n",
                      "3: unknown key 'prot' (did you mean 'port'?)");
    expect_file_error("frobnicate = 1\n", "1: unknown key 'frobnicate'");
    expect_file_error("Port = 1\n", "1: unknown key 'Port' (did you mean 'port'?)");
    expect_file_error("port = abc\n", "1: port: expected an integer 1..65535, got 'abc'");
    expect_file_error("port = 0\n", "1: port: expected an integer 1..65535, got '0'");
    expect_file_error("port = 65536\n", "1: port: expected an integer 1..65535, got '65536'");
    expect_file_error("port = 80x\n", "1: port: expected an integer 1..65535, got '80x'");
    expect_file_error("port = +80\n", "1: port: expected an integer 1..65535, got '+80'");
    expect_file_error("port = 8 0\n", "1: port: expected an integer 1..65535, got '8 0'");
    expect_file_error("port =\n", "1: port: expected an integer 1..65535, got ''");
    expect_file_error("port = 99999999999999999999999\n",
                      "1: port: expected an integer 1..65535, got '99999999999999999999999'");
    expect_file_error("drain_timeout_s = -1\n",
                      "1: drain_timeout_s: expected an integer 0..3600, got '-1'");
    expect_file_error("max_frame_bytes = 124\n",
                      "1: max_frame_bytes: expected an integer 125..16777216, got '124'");
    expect_file_error("rate_per_sec = 0\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got '0'");
    expect_file_error("rate_per_sec = -1\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got '-1'");
    expect_file_error("rate_per_sec = inf\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got 'inf'");
    expect_file_error("rate_per_sec = nan\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got 'nan'");
    expect_file_error("rate_per_sec = 0x10\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got '0x10'");
    expect_file_error("rate_per_sec = 1e7\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got '1e7'");
    expect_file_error("rate_per_sec = 1.5.2\n",
                      "1: rate_per_sec: expected a number > 0 and <= 1000000, got '1.5.2'");
    expect_file_error("log_level = verbose\n",
                      "1: log_level: expected one of debug, info, warn, error, got 'verbose'");
    expect_file_error("log_level = INFO\n",
                      "1: log_level: expected one of debug, info, warn, error, got 'INFO'");
    expect_file_error("just some words\n", "1: expected 'key = value'");
    expect_file_error(" = 5\n", "1: missing key before '='");
    expect_file_error("static_dir = \"abc\n", "1: static_dir: unterminated quote");
    expect_file_error("static_dir = \"abc\" x\n",
                      "1: static_dir: unexpected text after the closing quote");
    expect_file_error("port = 1\nport = 2\n", "2: 'port' is already set on line 1");
    expect_file_error("static_dir =\n", "1: static_dir: must not be empty");
    expect_file_error("redis_prefix = a b\n",
                      "1: redis_prefix: must not contain whitespace, got 'a b'");
    expect_file_error("bind = example.com\n",
                      "1: bind: expected a numeric IPv4 or IPv6 address (names are not "
                      "resolved), got 'example.com'");
    expect_file_error("redis_url = redis://example.com:6379\n",
                      "1: redis_url: host must be an IPv4 address, [IPv6 address] or "
                      "localhost (workers do not resolve names)");
    expect_file_error("allowed_origins = https://a.example/\n",
                      "1: allowed_origins: 'https://a.example/' is not an origin: expected "
                      "scheme://host[:port], no path");
    expect_file_error("instance_name = a:b\n",
                      "1: instance_name: expected letters, digits, '.', '_' and '-' only, "
                      "got 'a:b'");
    /* Earlier good lines are not applied when a later one is bad
     * (expect_file_error checks the config is unchanged). */
    expect_file_error("port = 9000\nworkers = 2\nlog_level = loud\n",
                      "3: log_level: expected one of debug, info, warn, error, got 'loud'");

    /* A NUL byte inside a line. */
    {
        struct chat_config c;
        char err[512];
        config_defaults(&c);
        const char *path = tmp_file("port = 80\nport\0 = 81\n", 21);
        assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
        assert_contains(err, ":2: NUL byte in line");
        unlink(path);
    }
    /* An absurdly long line. */
    {
        size_t n = 20000;
        char *text = malloc(n + 16);
        assert_non_null(text);
        memcpy(text, "static_dir = ", 13);
        memset(text + 13, 'a', n);
        strcpy(text + 13 + n, "\n");
        struct chat_config c;
        char err[512];
        config_defaults(&c);
        assert_int_equal(load_text(&c, text, err, sizeof err), -1);
        assert_contains(err, ":1: line longer than 16384 bytes");
        free(text);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    struct chat_config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, "/nonexistent/chatd.conf", err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/chatd.conf: cannot open: No such file or directory");
    /* A directory opens but cannot be read. */
    assert_int_equal(config_load_file(&c, "/", err, sizeof err), -1);
    assert_string_equal(err, "/: cannot read: Is a directory");
    /* A NULL error buffer is allowed. */
    assert_int_equal(config_load_file(&c, "/nonexistent/chatd.conf", NULL, 0), -1);
}

/* Secrets are never echoed in errors, wherever they come from. */
static void test_errors_hide_secrets(void **state)
{
    (void)state;
    char big[1100];
    memset(big, 'S', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_set_error("jwt_secret", big, "jwt_secret: too long: 1099 bytes, at most 1023");
    expect_set_error("jwt_secret", "a\nb", "jwt_secret: must not contain control characters");

    struct chat_config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(config_set(&c, "redis_url", "redis://:topsecret@example.com/0", err,
                                sizeof err), -1);
    assert_not_contains(err, "topsecret");
    /* Written without the '@', the password lands where the host goes. */
    assert_int_equal(config_set(&c, "redis_url", "redis://topsecret", err, sizeof err), -1);
    assert_not_contains(err, "topsecret");
    assert_int_equal(config_set(&c, "redis_url", "redis://1.2.3.4:topsecret", err, sizeof err), -1);
    assert_not_contains(err, "topsecret");
}

/* ------------------------------------------------------------------------
 * config_set
 * ---------------------------------------------------------------------- */

static void test_set(void **state)
{
    (void)state;
    expect_set_error("prot", "1", "unknown key 'prot' (did you mean 'port'?)");
    expect_set_error("max_text_char", "1",
                     "unknown key 'max_text_char' (did you mean 'max_text_chars'?)");
    expect_set_error("", "1", "unknown key ''");
    expect_set_error("port", "abc", "port: expected an integer 1..65535, got 'abc'");
    expect_set_error("static_dir", "a\x01b", "static_dir: must not contain control characters");
    expect_set_error("redis_prefix", "", "redis_prefix: must not be empty");
    char prefix[70];
    memset(prefix, 'p', 65);
    prefix[65] = '\0';
    expect_set_error("redis_prefix", prefix, "redis_prefix: too long: 65 bytes, at most 64");
    prefix[64] = '\0';

    struct chat_config c;
    char err[256];
    config_defaults(&c);
    set_ok(&c, "redis_prefix", prefix);
    assert_int_equal(strlen(c.redis_prefix), 64);
    set_ok(&c, "bind", "::");
    set_ok(&c, "bind", "::1");
    set_ok(&c, "port", "65535");
    set_ok(&c, "rate_per_sec", "2.5e1");
    assert_true(c.rate_per_sec == 25.0);
    set_ok(&c, "rate_per_sec", ".25");
    assert_true(c.rate_per_sec == 0.25);
    set_ok(&c, "rate_per_sec", "1000000");
    set_ok(&c, "log_level", "error");
    assert_int_equal(c.log_level, LOG_ERROR);
    set_ok(&c, "max_outbuf_bytes", "1073741824");
    assert_int_equal(c.max_outbuf_bytes, 1073741824);
    assert_int_equal(config_set(&c, NULL, "1", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "port", NULL, err, sizeof err), -1);
    assert_string_equal(err, "port: missing value");
    /* Long bad values are shortened and control bytes replaced. */
    char longv[200];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    assert_int_equal(config_set(&c, "port", longv, err, sizeof err), -1);
    assert_contains(err, "xxx...'");
    assert_true(strlen(err) < 120);
    assert_int_equal(config_set(&c, "log_level", "a\nb", err, sizeof err), -1);
    assert_string_equal(err, "log_level: expected one of debug, info, warn, error, got 'a?b'");
    /* A small error buffer truncates, never overflows. */
    char tiny[8];
    assert_int_equal(config_set(&c, "port", "abc", tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "port: e");
}

/* ------------------------------------------------------------------------
 * Environment and precedence
 * ---------------------------------------------------------------------- */

static void test_env(void **state)
{
    (void)state;
    struct chat_config c, before;
    char err[512];
    config_defaults(&c);
    const char *env[] = {
        "PATH=/usr/bin", "CHAT_PORT=9100", "CHAT_RATE_PER_SEC=0.5",
        "CHAT_JWT_SECRET=from-env", "CHAT_CONFIG=/nonexistent/ignored.conf",
        "CHAT_ALLOWED_ORIGINS=https://x.example", "NOT_CHAT_PORT=1", "CHAT_LOG_LEVEL=warn",
        "CHAT_PG_DSN=host=127.0.0.1 password=p dbname=chat", "chat_port=1", NULL,
    };
    assert_int_equal(config_load_env(&c, E(env), err, sizeof err), 0);
    assert_int_equal(c.port, 9100);
    assert_true(c.rate_per_sec == 0.5);
    assert_string_equal(c.jwt_secret, "from-env");
    assert_int_equal(c.origins_count, 1);
    assert_int_equal(c.log_level, LOG_WARN);
    assert_string_equal(c.pg_dsn, "host=127.0.0.1 password=p dbname=chat");
    assert_int_equal(config_load_env(&c, NULL, err, sizeof err), 0);

    /* Values are verbatim: no trimming, no quote removal. */
    const char *quoted[] = {"CHAT_STATIC_DIR=\" spaced \"", NULL};
    assert_int_equal(config_load_env(&c, E(quoted), err, sizeof err), 0);
    assert_string_equal(c.static_dir, "\" spaced \"");

    struct {
        const char *var;
        const char *want;
    } bad[] = {
        {"CHAT_PROT=1", "unknown environment variable 'CHAT_PROT' (did you mean CHAT_PORT?)"},
        {"CHAT_port=1", "unknown environment variable 'CHAT_port' (did you mean CHAT_PORT?)"},
        {"CHAT_NOTHING_LIKE_IT=1", "unknown environment variable 'CHAT_NOTHING_LIKE_IT'"},
        {"CHAT_=1", "unknown environment variable 'CHAT_'"},
        {"CHAT_PORT=abc", "CHAT_PORT: expected an integer 1..65535, got 'abc'"},
        {"CHAT_PORT= 80", "CHAT_PORT: expected an integer 1..65535, got ' 80'"},
        {"CHAT_LOG_LEVEL=trace",
         "CHAT_LOG_LEVEL: expected one of debug, info, warn, error, got 'trace'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *one[] = {"CHAT_WORKERS=7", bad[i].var, NULL};
        config_defaults(&c);
        before = c;
        assert_int_equal(config_load_env(&c, E(one), err, sizeof err), -1);
        if (strcmp(err, bad[i].want) != 0)
            fail_msg("%s\n  want: %s\n  got:  %s", bad[i].var, bad[i].want, err);
        /* CHAT_WORKERS came first but is not applied either. */
        assert_memory_equal(&c, &before, sizeof c);
    }
}

static void test_precedence(void **state)
{
    (void)state;
    struct chat_config c;
    char err[512];
    const char *path = tmp_conf("port = 1111\n"
                                "workers = 3\n"
                                "log_level = warn\n"
                                "static_dir = file-dir\n"
                                "jwt_secret = file-secret\n");
    char config_var[128];
    snprintf(config_var, sizeof config_var, "CHAT_CONFIG=%s", path);
    const char *env[] = {config_var, "CHAT_PORT=2222", "CHAT_LOG_LEVEL=debug", NULL};

    /* defaults < file (from $CHAT_CONFIG) < env < config_set (flags) */
    assert_int_equal(config_load_all(&c, NULL, E(env), err, sizeof err), 0);
    assert_int_equal(c.max_text_chars, 2000);      /* default */
    assert_int_equal(c.workers, 3);                /* file */
    assert_string_equal(c.static_dir, "file-dir"); /* file */
    assert_int_equal(c.port, 2222);                /* env over file */
    assert_int_equal(c.log_level, LOG_DEBUG);      /* env over file */
    set_ok(&c, "port", "3333");                    /* flag over env */
    assert_int_equal(c.port, 3333);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    /* An explicit file wins over $CHAT_CONFIG. */
    const char *other = "/nonexistent/explicit.conf";
    assert_int_equal(config_load_all(&c, other, E(env), err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/explicit.conf: cannot open: No such file or directory");

    /* No file at all: defaults, then env. */
    const char *env2[] = {"CHAT_PORT=4444", NULL};
    assert_int_equal(config_load_all(&c, NULL, E(env2), err, sizeof err), 0);
    assert_int_equal(c.port, 4444);
    assert_int_equal(c.workers, expected_workers());
    assert_int_equal(config_load_all(&c, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c.port, 8080);

    /* An empty CHAT_CONFIG means none; a missing one is an error naming it. */
    const char *env3[] = {"CHAT_CONFIG=", NULL};
    assert_int_equal(config_load_all(&c, NULL, E(env3), err, sizeof err), 0);
    const char *env4[] = {"CHAT_CONFIG=/nonexistent/env.conf", NULL};
    assert_int_equal(config_load_all(&c, NULL, E(env4), err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/env.conf: cannot open: No such file or directory");

    /* A bad environment after a good file fails the whole load. */
    const char *env5[] = {config_var, "CHAT_PROT=1", NULL};
    assert_int_equal(config_load_all(&c, NULL, E(env5), err, sizeof err), -1);
    assert_contains(err, "CHAT_PROT");
    unlink(path);
}

/* ------------------------------------------------------------------------
 * Validation
 * ---------------------------------------------------------------------- */

static void test_validate(void **state)
{
    (void)state;
    struct chat_config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    assert_string_equal(err, "jwt_secret: required; set it in the config file or "
                             "CHAT_JWT_SECRET in the environment");
    set_ok(&c, "jwt_secret", "secret");
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    set_ok(&c, "max_frame_bytes", "65536");
    set_ok(&c, "max_outbuf_bytes", "4096");
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    assert_contains(err, "max_outbuf_bytes (4096) must be at least max_frame_bytes (65536)");
    set_ok(&c, "max_outbuf_bytes", "65536");
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    /* Fields written directly, not through config_set, are checked too. */
    struct chat_config d = c;
    d.port = 0;
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_string_equal(err, "port: expected an integer 1..65535, got 0");
    d = c;
    d.workers = 1000;
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_string_equal(err, "workers: expected an integer 1..256 or auto, got 1000");
    d = c;
    d.rate_per_sec = 0;
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_contains(err, "rate_per_sec: expected a number > 0");
    d = c;
    d.log_level = (enum log_level)7;
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_contains(err, "log_level:");
    d = c;
    snprintf(d.bind, sizeof d.bind, "localhost");
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_contains(err, "bind: expected a numeric");
    d = c;
    d.static_dir[0] = '\0';
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_string_equal(err, "static_dir: must not be empty");
    d = c;
    snprintf(d.allowed_origins, sizeof d.allowed_origins, "https://a.example");
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_contains(err, "allowed_origins:");
    d = c;
    memset(d.redis_prefix, 'x', sizeof d.redis_prefix);
    assert_int_equal(config_validate(&d, err, sizeof err), -1);
    assert_string_equal(err, "redis_prefix: not terminated");
}

/* ------------------------------------------------------------------------
 * Dump
 * ---------------------------------------------------------------------- */

static void test_dump_masks_secrets(void **state)
{
    (void)state;
    struct chat_config c;
    config_defaults(&c);
    set_ok(&c, "jwt_secret", "jwt-s3cret");
    set_ok(&c, "jwt_secret_previous", "old-s3cret");
    set_ok(&c, "redis_url", "redis://:redis-pw@127.0.0.1:6380/2");
    set_ok(&c, "pg_dsn", "postgresql://chat:pg-pw@127.0.0.1:5433/chat?sslmode=disable&password=q-pw");
    char *out = dump_str(&c);
    assert_contains(out, "\njwt_secret = ********\n");
    assert_contains(out, "\njwt_secret_previous = ********\n");
    assert_contains(out, "\nredis_url = redis://:********@127.0.0.1:6380/2\n");
    assert_contains(out, "\npg_dsn = postgresql://chat:********@127.0.0.1:5433/chat"
                         "?sslmode=disable&password=********\n");
    assert_not_contains(out, "s3cret");
    assert_not_contains(out, "-pw");
    assert_contains(out, "bind = 127.0.0.1\nport = 8080\n");
    assert_contains(out, "\nrate_per_sec = 5\n");
    assert_contains(out, "\nlog_level = info\n");
    assert_contains(out, "\npid_file = \"\"\n");
    free(out);

    /* libpq key=value strings, and what cannot be parsed is masked whole. */
    struct {
        const char *dsn, *shown;
    } kv[] = {
        {"host=127.0.0.1 password=pw dbname=chat", "host=127.0.0.1 password=******** dbname=chat"},
        {"password = 'p w\\' x' user=chat", "password = ******** user=chat"},
        {"user=chat password=p\\ w", "user=chat password=********"},
        {"host=127.0.0.1 dbname=chat", "host=127.0.0.1 dbname=chat"},
        {"host=127.0.0.1 password='unterminated", "********"},
        {"garbage without equals", "********"},
        {"host=127.0.0.1 password=a://b@c", "host=127.0.0.1 password=********"},
        {"postgres://u@127.0.0.1/db", "postgres://u@127.0.0.1/db"},
        {"postgresql://:pw@[::1]:5432/db#frag", "postgresql://:********@[::1]:5432/db#frag"},
        {"postgresql:///chat?host=/tmp&password=pw", "postgresql:///chat?host=/tmp&password=********"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        /* Set directly: what libpq cannot parse is refused by config_set
         * (test_pg_dsn_hosts), and the dump must still never show it. */
        snprintf(c.pg_dsn, sizeof c.pg_dsn, "%s", kv[i].dsn);
        char want[512];
        snprintf(want, sizeof want, "\npg_dsn = %s\n", kv[i].shown);
        out = dump_str(&c);
        assert_contains(out, want);
        free(out);
    }

    /* An empty secret shows as empty: --check-config then tells "unset". */
    config_defaults(&c);
    out = dump_str(&c);
    assert_contains(out, "\njwt_secret = \"\"\n");
    free(out);
}

/* What config_dump writes, config_load_file reads back to the same. */
static void test_dump_round_trip(void **state)
{
    (void)state;
    struct chat_config c, d;
    char err[512];
    config_defaults(&c);
    set_ok(&c, "port", "1234");
    set_ok(&c, "workers", "5");
    set_ok(&c, "rate_per_sec", "0.1");
    set_ok(&c, "static_dir", " lead and trail ");
    set_ok(&c, "pid_file", "/run/x #1.pid");
    set_ok(&c, "instance_name", "node-7");
    set_ok(&c, "allowed_origins", "https://a.example,http://[::1]:8080");
    set_ok(&c, "log_level", "warn");
    set_ok(&c, "pg_dsn", "host=127.0.0.1 dbname=chat");
    char *first = dump_str(&c);
    assert_contains(first, "\nrate_per_sec = 0.1\n");
    assert_contains(first, "\nstatic_dir = \" lead and trail \"\n");
    assert_contains(first, "\npid_file = \"/run/x #1.pid\"\n");

    config_defaults(&d);
    assert_int_equal(load_text(&d, first, err, sizeof err), 0);
    char *second = dump_str(&d);
    assert_string_equal(first, second);
    assert_string_equal(d.static_dir, " lead and trail ");
    assert_int_equal(d.origins_count, 2);
    free(first);
    free(second);
}

/* ------------------------------------------------------------------------
 * Redis URL
 * ---------------------------------------------------------------------- */

static void test_redis_url_good(void **state)
{
    (void)state;
    struct {
        const char *url, *host;
        int port, db;
        const char *pw;
    } cases[] = {
        {"redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, ""},
        {"redis://10.1.2.3", "10.1.2.3", 6379, 0, ""},
        {"redis://10.1.2.3/", "10.1.2.3", 6379, 0, ""},
        {"redis://localhost", "127.0.0.1", 6379, 0, ""},
        {"REDIS://LocalHost:7000/3", "127.0.0.1", 7000, 3, ""},
        {"redis://[::1]:6380/1", "::1", 6380, 1, ""},
        {"redis://[fe80::1]", "fe80::1", 6379, 0, ""},
        {"redis://:pw@10.0.0.1", "10.0.0.1", 6379, 0, "pw"},
        {"redis://default:p%40ss%2F@1.2.3.4:1/15", "1.2.3.4", 1, 15, "p@ss/"},
        {"redis://:a@b@1.2.3.4", "1.2.3.4", 6379, 0, "a@b"},
        {"redis://:@1.2.3.4:65535", "1.2.3.4", 65535, 0, ""},
        {"redis://127.0.0.1/2147483647", "127.0.0.1", 6379, 2147483647, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64] = "?", pw[64] = "?", err[256] = "";
        int port = -1, db = -1;
        int rc = config_parse_redis_url(cases[i].url, host, sizeof host, &port, &db, pw,
                                        sizeof pw, err, sizeof err);
        if (rc != 0) fail_msg("%s: %s", cases[i].url, err);
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
        assert_int_equal(db, cases[i].db);
        assert_string_equal(pw, cases[i].pw);
    }
    /* Outputs are optional. */
    assert_int_equal(config_parse_redis_url("redis://:x@1.2.3.4", NULL, 0, NULL, NULL, NULL,
                                            0, NULL, 0), 0);
}

static void test_redis_url_bad(void **state)
{
    (void)state;
    struct {
        const char *url, *want;
    } cases[] = {
        {"http://127.0.0.1", "expected redis://[[user]:password@]host[:port][/db]"},
        {"127.0.0.1:6379", "expected redis://[[user]:password@]host[:port][/db]"},
        {"rediss://127.0.0.1", "TLS (rediss://) is not supported"},
        {"redis://", "missing host (expected redis://[[user]:password@]host[:port][/db])"},
        {"redis:///0", "missing host (expected redis://[[user]:password@]host[:port][/db])"},
        {"redis://:6379", "missing host (expected redis://[[user]:password@]host[:port][/db])"},
        {"redis://example.com", "host must be an IPv4 address, [IPv6 address] or localhost "
                                "(workers do not resolve names)"},
        {"redis://256.1.1.1", "host must be an IPv4 address, [IPv6 address] or localhost "
                              "(workers do not resolve names)"},
        {"redis://::1", "missing host (expected redis://[[user]:password@]host[:port][/db])"},
        {"redis://user:pw@1.2.3.4",
         "only the user 'default' is supported (or none: redis://:password@host)"},
        {"redis://pw@1.2.3.4", "expected [user]:password@ before the host (a password alone "
                               "is written redis://:password@host)"},
        {"redis://:%zz@1.2.3.4", "bad percent-encoding in the password"},
        {"redis://:%0@1.2.3.4", "bad percent-encoding in the password"},
        {"redis://:%00@1.2.3.4", "bad percent-encoding in the password"},
        {"redis://1.2.3.4:0", "port must be an integer 1..65535"},
        {"redis://1.2.3.4:65536", "port must be an integer 1..65535"},
        {"redis://1.2.3.4:", "port must be an integer 1..65535"},
        {"redis://1.2.3.4:12ab", "port must be an integer 1..65535"},
        {"redis://1.2.3.4:000001", "port must be an integer 1..65535"},
        {"redis://[::1", "bad [IPv6] host"},
        {"redis://[]", "bad [IPv6] host"},
        {"redis://[1.2.3.4]", "bad [IPv6] host"},
        {"redis://[::1]x", "port must be an integer 1..65535"},
        {"redis://1.2.3.4/x", "database must be an integer 0..2147483647"},
        {"redis://1.2.3.4/-1", "database must be an integer 0..2147483647"},
        {"redis://1.2.3.4/2147483648", "database must be an integer 0..2147483647"},
        {"redis://1.2.3.4/0/1", "database must be an integer 0..2147483647"},
        {"redis://1.2.3.4/0?timeout=1",
         "query and fragment are not supported (expected redis://[[user]:password@]host[:port][/db])"},
        {"redis://1.2.3.4#x",
         "query and fragment are not supported (expected redis://[[user]:password@]host[:port][/db])"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64], pw[64], err[256] = "";
        int port, db;
        int rc = config_parse_redis_url(cases[i].url, host, sizeof host, &port, &db, pw,
                                        sizeof pw, err, sizeof err);
        if (rc != -1 || strcmp(err, cases[i].want) != 0)
            fail_msg("%s\n  want: %s\n  got (%d): %s", cases[i].url, cases[i].want, rc, err);
    }
    char err[256];
    assert_int_equal(config_parse_redis_url(NULL, NULL, 0, NULL, NULL, NULL, 0, err, sizeof err), -1);

    /* Output buffers that are too small are errors, not truncations. */
    char host[4], pw[3];
    assert_int_equal(config_parse_redis_url("redis://1.2.3.4", host, sizeof host, NULL, NULL,
                                            NULL, 0, err, sizeof err), -1);
    assert_string_equal(err, "host buffer too small");
    assert_int_equal(config_parse_redis_url("redis://:abc@[::1]", NULL, 0, NULL, NULL, pw,
                                            sizeof pw, err, sizeof err), -1);
    assert_string_equal(err, "password buffer too small");
}

/* libpq would resolve a name with a blocking lookup inside a worker's
 * loop: only hosts that need none are accepted. */
static void test_pg_dsn_hosts(void **state)
{
    (void)state;
    struct chat_config c;
    config_defaults(&c);
    const char *good[] = {
        "postgresql://chat@127.0.0.1:5432/chat",
        "postgresql://chat@[::1]/chat",
        "postgresql:///chat",
        "postgresql:///chat?host=/var/run/postgresql",
        "host=/tmp dbname=chat",
        "host=127.0.0.1,10.0.0.2 port=5432,5433 dbname=chat",
        "host=db.internal hostaddr=10.0.0.5 dbname=chat",
        "dbname=chat user=chat",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) set_ok(&c, "pg_dsn", good[i]);
    const char *lookup = "hosts must be IP addresses (127.0.0.1 for localhost) or socket "
                         "directories, or hostaddr given: a name would be looked up, blocking a worker";
    struct {
        const char *dsn, *want;
    } bad[] = {
        {"postgresql://chat@db.internal/chat", lookup},
        {"postgresql://chat@localhost/chat", lookup},
        {"host=127.0.0.1,db.internal dbname=chat", lookup},
        {"host=256.1.1.1 dbname=chat", lookup},
        {"host=127.0.0.1 password='unterminated", "not a libpq connection string"},
        {"garbage without equals", "not a libpq connection string"},
        {"mysql://127.0.0.1/chat", "not a libpq connection string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "", want[600];
        snprintf(want, sizeof want, "pg_dsn: %s", bad[i].want);
        if (config_set(&c, "pg_dsn", bad[i].dsn, err, sizeof err) != -1 || strcmp(err, want) != 0)
            fail_msg("%s\n  want: %s\n  got: %s", bad[i].dsn, want, err);
    }
    /* Neither error quotes the string: a password may be anywhere in it. */
    char err[512];
    assert_int_equal(config_set(&c, "pg_dsn", "postgresql://topsecret", err, sizeof err), -1);
    assert_not_contains(err, "topsecret");
}

/* ------------------------------------------------------------------------
 * Origins
 * ---------------------------------------------------------------------- */

static int allowed(const struct chat_config *c, const char *origin)
{
    return config_origin_allowed(c, origin, strlen(origin));
}

static void test_origins(void **state)
{
    (void)state;
    struct chat_config c;
    config_defaults(&c);
    /* Empty list: anything goes. */
    assert_true(allowed(&c, "https://evil.example"));
    assert_true(config_origin_allowed(&c, "", 0));

    set_ok(&c, "allowed_origins", " https://chat.example.com ,http://localhost:8080,\thttp://[::1]:3000");
    assert_int_equal(c.origins_count, 3);
    assert_true(allowed(&c, "https://chat.example.com"));
    assert_true(allowed(&c, "HTTPS://Chat.Example.COM"));
    assert_true(allowed(&c, "http://localhost:8080"));
    assert_true(allowed(&c, "http://[::1]:3000"));
    assert_false(allowed(&c, "https://chat.example.com:443"));
    assert_false(allowed(&c, "https://chat.example.co"));
    assert_false(allowed(&c, "https://chat.example.comx"));
    assert_false(allowed(&c, "https://chat.example.com/"));
    assert_false(allowed(&c, "http://chat.example.com"));
    assert_false(allowed(&c, "http://localhost"));
    assert_false(allowed(&c, "null"));
    assert_false(config_origin_allowed(&c, "", 0));
    /* origin need not be NUL-terminated. */
    const char buf[] = "http://localhost:8080XYZ";
    assert_true(config_origin_allowed(&c, buf, 21));
    assert_false(config_origin_allowed(&c, buf, 22));
    assert_false(config_origin_allowed(&c, buf, 20));

    expect_set_error("allowed_origins", "*",
                     "allowed_origins: '*' is not supported: leave allowed_origins empty to "
                     "allow any origin");
    expect_set_error("allowed_origins", "https://a.example,,https://b.example",
                     "allowed_origins: empty entry in the list (stray comma?)");
    expect_set_error("allowed_origins", "https://a.example,",
                     "allowed_origins: empty entry in the list (stray comma?)");
    const char *not_origins[] = {
        "a.example", "https://", "https://a.example/path", "https://a.example:0",
        "https://a.example:65536", "https://a.example:", "https://u@a.example",
        "https://a.example?x", "1https://a.example", "https://[::1", "https://[zz]:80",
        "https://a example",
    };
    for (size_t i = 0; i < sizeof not_origins / sizeof not_origins[0]; i++) {
        char want[256];
        snprintf(want, sizeof want,
                 "allowed_origins: '%s' is not an origin: expected scheme://host[:port], no path",
                 not_origins[i]);
        expect_set_error("allowed_origins", not_origins[i], want);
    }

    /* Bounds: 64 entries, 255 bytes each. */
    char list[CONFIG_ORIGINS_RAW_MAX];
    size_t len = 0;
    for (int i = 0; i < CONFIG_MAX_ORIGINS; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%shttp://h%d.example",
                                i ? "," : "", i);
    set_ok(&c, "allowed_origins", list);
    assert_int_equal(c.origins_count, CONFIG_MAX_ORIGINS);
    assert_true(allowed(&c, "http://h63.example"));
    snprintf(list + len, sizeof list - len, ",http://one-too-many.example");
    expect_set_error("allowed_origins", list, "allowed_origins: more than 64 origins");

    char longo[300] = "https://";
    memset(longo + 8, 'a', 250);
    longo[258] = '\0';
    expect_set_error("allowed_origins", longo,
                     "allowed_origins: origin 'https://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' "
                     "is longer than 255 bytes");

    /* A failed set keeps the previous list; an empty one allows any again. */
    char err[256];
    assert_int_equal(config_set(&c, "allowed_origins", "bad", err, sizeof err), -1);
    assert_int_equal(c.origins_count, CONFIG_MAX_ORIGINS);
    set_ok(&c, "allowed_origins", "https://only.example");
    assert_int_equal(c.origins_count, 1);
    assert_string_equal(c.origins[1], "");
    assert_false(allowed(&c, "http://h1.example"));
    set_ok(&c, "allowed_origins", "  ");
    assert_int_equal(c.origins_count, 0);
    assert_true(allowed(&c, "http://h1.example"));
}

/* ------------------------------------------------------------------------
 * Reload
 * ---------------------------------------------------------------------- */

static void test_reloadable_differs(void **state)
{
    (void)state;
    struct chat_config a, b;
    char key[64] = "junk";
    config_defaults(&a);
    set_ok(&a, "jwt_secret", "one");
    b = a;
    assert_false(config_reloadable_differs(&a, &b, key, sizeof key));
    assert_string_equal(key, "");

    /* Everything a replacement worker can pick up may change. */
    set_ok(&b, "jwt_secret", "two");
    set_ok(&b, "jwt_secret_previous", "one");
    set_ok(&b, "log_level", "debug");
    set_ok(&b, "rate_per_sec", "0.5");
    set_ok(&b, "allowed_origins", "https://a.example");
    set_ok(&b, "redis_url", "redis://127.0.0.1:6380/1");
    set_ok(&b, "pg_dsn", "host=127.0.0.1");
    set_ok(&b, "max_conns_per_ip", "10");
    set_ok(&b, "static_dir", "/srv/web");
    set_ok(&b, "drain_timeout_s", "1");
    assert_false(config_reloadable_differs(&a, &b, key, sizeof key));

    /* What the master holds (sockets, process count, files, identity)
     * may not. */
    struct {
        const char *key, *value;
    } fixed[] = {
        {"bind", "0.0.0.0"}, {"port", "9999"}, {"workers", "17"},
        {"redis_prefix", "other:"}, {"pid_file", "/run/chatd.pid"},
        {"instance_name", "node-2"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct chat_config n = b;
        set_ok(&n, fixed[i].key, fixed[i].value);
        assert_true(config_reloadable_differs(&a, &n, key, sizeof key));
        assert_string_equal(key, fixed[i].key);
        assert_true(config_reloadable_differs(&a, &n, NULL, 0));
    }
    /* The first differing key in table order, truncated to the buffer. */
    struct chat_config n = b;
    set_ok(&n, "port", "9999");
    set_ok(&n, "bind", "::");
    char small[3];
    assert_true(config_reloadable_differs(&a, &n, small, sizeof small));
    assert_string_equal(small, "bi");
}

/* ------------------------------------------------------------------------
 * Help and sample
 * ---------------------------------------------------------------------- */

/* Every key from the dump, each with its env name, is in the help text. */
static void test_help(void **state)
{
    (void)state;
    struct chat_config c;
    config_defaults(&c);
    char *dump = dump_str(&c);
    char *help = print_str(config_print_help);
    int keys = 0;
    for (char *line = strtok(dump, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char key[64], env[80], want[100];
        assert_int_equal(sscanf(line, "%63s", key), 1);
        size_t k = (size_t)snprintf(env, sizeof env, "CHAT_");
        for (size_t i = 0; key[i] && k + 1 < sizeof env; i++)
            env[k++] = (char)(key[i] >= 'a' && key[i] <= 'z' ? key[i] - 32 : key[i]);
        env[k] = '\0';
        snprintf(want, sizeof want, "  %s ", key);
        assert_contains(help, want);
        assert_contains(help, env);
        keys++;
    }
    assert_int_equal(keys, 27);
    assert_contains(help, "default: none, required");
    assert_contains(help, "Value: an integer 1..65535. [restart]");
    free(dump);
    free(help);
}

/* Finds etc/chatd.conf from the repository root (the usual working
 * directory) or from this source file's path. */
static FILE *open_committed_sample(char *path, size_t n)
{
    snprintf(path, n, "etc/chatd.conf");
    FILE *f = fopen(path, "r");
    if (f != NULL) return f;
    const char *src = __FILE__;
    const char *tail = strstr(src, "tests/unit/test_config.c");
    if (tail == NULL) return NULL;
    snprintf(path, n, "%.*setc/chatd.conf", (int)(tail - src), src);
    return fopen(path, "r");
}

static void test_sample_matches_committed(void **state)
{
    (void)state;
    char path[1024];
    FILE *f = open_committed_sample(path, sizeof path);
    if (f == NULL) fail_msg("cannot find etc/chatd.conf (run from the repository root)");
    char *committed = NULL;
    size_t cap = 0;
    ssize_t got = getdelim(&committed, &cap, '\0', f);
    fclose(f);
    assert_true(got >= 0);
    char *sample = print_str(config_print_sample);
    bool same = strcmp(committed, sample) == 0;
    free(committed);
    if (!same) {
        free(sample);
        fail_msg("%s differs from config_print_sample(); regenerate it with\n"
                 "  bin/tests/test_config --print-sample > etc/chatd.conf", path);
    }

    /* The sample loads, validates, and is the defaults plus the placeholder
     * secret. */
    struct chat_config c, d;
    char err[512];
    config_defaults(&c);
    assert_int_equal(load_text(&c, sample, err, sizeof err), 0);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    assert_string_equal(c.jwt_secret, CONFIG_SAMPLE_JWT_SECRET);
    config_defaults(&d);
    set_ok(&d, "jwt_secret", CONFIG_SAMPLE_JWT_SECRET);
    assert_memory_equal(&c, &d, sizeof c);

    /* Every setting has a comment line right above it. */
    char *save = NULL, *prev = NULL;
    int settings = 0;
    for (char *line = strtok_r(sample, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '#') {
            assert_non_null(prev);
            assert_true(prev[0] == '#');
            settings++;
        }
        prev = line;
    }
    assert_int_equal(settings, 27);
    free(sample);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-sample") == 0) {
        config_print_sample(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_workers_auto),
        cmocka_unit_test(test_file_parsing),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_errors_hide_secrets),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_dump_masks_secrets),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_redis_url_good),
        cmocka_unit_test(test_redis_url_bad),
        cmocka_unit_test(test_pg_dsn_hosts),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_reloadable_differs),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_sample_matches_committed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

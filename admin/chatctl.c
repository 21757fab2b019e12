/* chatctl: the admin tool. Everything it does goes through Redis or
 * PostgreSQL, exactly as documented in docs/redis.md, so any other admin
 * tool can do the same. It is a short-lived command, so plain blocking
 * client calls are right here (unlike in a worker). */

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "shared/config.h"
#include "shared/jwt.h"
#include "shared/log.h"
#include "shared/presence_lua.h"
#include "shared/room.h"
#include "shared/version.h"

extern char **environ;

#define EXIT_USAGE 2
#define MAX_MIGRATIONS 1000

static const char usage_text[] =
    "usage: chatctl [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "  online [ROOM]          users online (everywhere, or in ROOM): id<TAB>name\n"
    "  kick USER              close every connection of USER on every host (4003)\n"
    "  ban USER               refuse USER everywhere, and kick\n"
    "  unban USER             lift a ban\n"
    "  notice ROOM TEXT       send a notice event to ROOM\n"
    "  token --sub ID [--name N] [--role viewer|member|organizer]\n"
    "        [--rooms a,b] [--ttl SECONDS]\n"
    "                         mint a token with the configured secret\n"
    "  migrate [--dir DIR]    apply the SQL migrations not applied yet\n"
    "\n"
    "Settings as for chatd: FILE (or $CHAT_CONFIG), then CHAT_* variables.\n"
    "Exit status: 0 success, 1 failure, 2 bad usage.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chatctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try chatctl --help)\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* The reason on one line: libpq's messages come with a newline and a
 * tab-indented hint. */
static int fail(const char *what, const char *why)
{
    fprintf(stderr, "chatctl: %s: ", what);
    bool space = false, started = false;
    for (const char *p = why; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t' || (*p == ' ' && space)) {
            space = started;
            continue;
        }
        if (space) fputc(' ', stderr);
        space = false;
        started = true;
        fputc(*p, stderr);
    }
    fputc('\n', stderr);
    return 1;
}

/* ---- Redis ------------------------------------------------------------- */

static redisContext *redis_open(const struct chat_config *cfg, char *err, size_t errlen)
{
    char host[256], password[256];
    int port, db;
    if (config_parse_redis_url(cfg->redis_url, host, sizeof host, &port, &db, password,
                               sizeof password, err, errlen) < 0)
        return NULL;
    struct timeval tv = {3, 0};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        snprintf(err, errlen, "cannot connect to redis at %s:%d: %s", host, port,
                 rc ? rc->errstr : "out of memory");
        if (rc) redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    redisReply *r = NULL;
    if (password[0]) {
        r = redisCommand(rc, "AUTH %s", password);
        if (!r || r->type == REDIS_REPLY_ERROR) goto refused;
        freeReplyObject(r);
    }
    if (db) {
        r = redisCommand(rc, "SELECT %d", db);
        if (!r || r->type == REDIS_REPLY_ERROR) goto refused;
        freeReplyObject(r);
    }
    return rc;
refused:
    snprintf(err, errlen, "redis refused AUTH/SELECT: %s", r ? r->str : rc->errstr);
    if (r) freeReplyObject(r);
    redisFree(rc);
    return NULL;
}

/* Runs one command; returns the reply (caller frees) or NULL with err. */
static redisReply *redis_run(redisContext *rc, char *err, size_t errlen, int argc,
                             const char **argv)
{
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    if (!r) {
        snprintf(err, errlen, "redis: %s", rc->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int publish_control(redisContext *rc, const struct chat_config *cfg, json_t *cmd,
                           long long *receivers, char *err, size_t errlen)
{
    char *text = json_dumps(cmd, JSON_COMPACT);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char channel[CONFIG_PREFIX_MAX + 16];
    snprintf(channel, sizeof channel, "%scontrol", cfg->redis_prefix);
    const char *argv[3] = {"PUBLISH", channel, text};
    redisReply *r = redis_run(rc, err, errlen, 3, argv);
    free(text);
    if (!r) return -1;
    *receivers = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return 0;
}

static int cmd_online(const struct chat_config *cfg, int argc, char **argv)
{
    if (argc > 1) return usage_error("online takes at most one room, got '%s'", argv[1]);
    const char *room = argc == 1 ? argv[0] : NULL;
    if (room && !room_name_valid(room, strlen(room)))
        return usage_error("bad room name '%s'", room);
    char err[512], key[CONFIG_PREFIX_MAX + 80];
    redisContext *rc = redis_open(cfg, err, sizeof err);
    if (!rc) return fail("online", err);
    /* The sets are only as true as the last reap: with every chatd down
     * (a lone host lost), nobody else reaps the dead instances' users. */
    const char *reap[7] = {"EVAL", PRESENCE_LUA_REAP, "0", cfg->redis_prefix, "", "0", ""};
    redisReply *reaped = redis_run(rc, err, sizeof err, 7, reap);
    if (!reaped) {
        redisFree(rc);
        return fail("online", err);
    }
    freeReplyObject(reaped);
    if (room) snprintf(key, sizeof key, "%sonline:%s", cfg->redis_prefix, room);
    else snprintf(key, sizeof key, "%sonline", cfg->redis_prefix);
    const char *a[2] = {"SMEMBERS", key};
    redisReply *members = redis_run(rc, err, sizeof err, 2, a);
    if (!members) {
        redisFree(rc);
        return fail("online", err);
    }
    /* A list cut short is no answer: it is printed only once whole. */
    char *list = NULL;
    size_t list_len = 0;
    FILE *out = open_memstream(&list, &list_len);
    int status = out ? 0 : fail("online", "out of memory");
    for (size_t i = 0; out && status == 0 && i < members->elements; i++) {
        const char *id = members->element[i]->str;
        char ukey[CONFIG_PREFIX_MAX + 80];
        snprintf(ukey, sizeof ukey, "%suser:%s", cfg->redis_prefix, id);
        const char *h[3] = {"HGET", ukey, "name"};
        redisReply *name = redis_run(rc, err, sizeof err, 3, h);
        if (!name) {
            status = fail("online", err);
            break;
        }
        fprintf(out, "%s\t%s\n", id, name->type == REDIS_REPLY_STRING ? name->str : id);
        freeReplyObject(name);
    }
    if (out && fclose(out) != 0 && status == 0) status = fail("online", "out of memory");
    if (status == 0 && list_len &&
        (fwrite(list, 1, list_len, stdout) != list_len || fflush(stdout) != 0))
        status = fail("online", strerror(errno));
    free(list);
    freeReplyObject(members);
    redisFree(rc);
    return status;
}

static int kick_user(redisContext *rc, const struct chat_config *cfg, const char *user)
{
    char err[512];
    long long receivers = 0;
    json_t *cmd = json_pack("{s:s, s:s}", "op", "kick", "user", user);
    int r = cmd ? publish_control(rc, cfg, cmd, &receivers, err, sizeof err) : -1;
    json_decref(cmd);
    if (r < 0) return fail("kick", cmd ? err : "out of memory");
    printf("kicked %s (%lld workers told)\n", user, receivers);
    return 0;
}

static int cmd_user(const struct chat_config *cfg, const char *verb, int argc, char **argv)
{
    if (argc != 1) return usage_error("%s needs exactly one user id", verb);
    const char *user = argv[0];
    if (!*user || strlen(user) > JWT_SUB_MAX_BYTES) return usage_error("bad user id '%s'", user);
    char err[512];
    redisContext *rc = redis_open(cfg, err, sizeof err);
    if (!rc) return fail(verb, err);
    int status = 0;
    if (strcmp(verb, "kick") == 0) {
        status = kick_user(rc, cfg, user);
    } else {
        char key[CONFIG_PREFIX_MAX + 16];
        snprintf(key, sizeof key, "%sbanned", cfg->redis_prefix);
        bool ban = strcmp(verb, "ban") == 0;
        const char *a[3] = {ban ? "SADD" : "SREM", key, user};
        redisReply *r = redis_run(rc, err, sizeof err, 3, a);
        if (!r) {
            status = fail(verb, err);
        } else {
            freeReplyObject(r);
            if (ban) {
                printf("banned %s\n", user);
                status = kick_user(rc, cfg, user);
            } else {
                printf("unbanned %s\n", user);
            }
        }
    }
    redisFree(rc);
    return status;
}

static int cmd_notice(const struct chat_config *cfg, int argc, char **argv)
{
    if (argc != 2) return usage_error("notice needs ROOM and TEXT");
    if (!room_name_valid(argv[0], strlen(argv[0]))) return usage_error("bad room name '%s'", argv[0]);
    if (!*argv[1]) return usage_error("empty notice text");
    if (strlen(argv[1]) > ROOM_NOTICE_MAX_BYTES)
        return usage_error("notice text over %d bytes", ROOM_NOTICE_MAX_BYTES);
    char err[512];
    redisContext *rc = redis_open(cfg, err, sizeof err);
    if (!rc) return fail("notice", err);
    long long receivers = 0;
    json_t *cmd = json_pack("{s:s, s:s, s:s}", "op", "notice", "room", argv[0], "text", argv[1]);
    if (!cmd) {
        redisFree(rc);
        return fail("notice", "text is not valid UTF-8");
    }
    int r = publish_control(rc, cfg, cmd, &receivers, err, sizeof err);
    json_decref(cmd);
    redisFree(rc);
    if (r < 0) return fail("notice", err);
    printf("notice sent to %s (%lld workers told)\n", argv[0], receivers);
    return 0;
}

/* ---- tokens ------------------------------------------------------------ */

static int cmd_token(const struct chat_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sub", required_argument, NULL, 's'},   {"name", required_argument, NULL, 'n'},
        {"role", required_argument, NULL, 'r'},  {"rooms", required_argument, NULL, 'R'},
        {"ttl", required_argument, NULL, 't'},   {NULL, 0, NULL, 0},
    };
    const char *sub = NULL, *name = NULL, *role = NULL, *rooms = NULL;
    long long ttl = 0;
    optind = 0;
    /* getopt's own messages would make a second stderr line: the reason
     * is ours to give, in one line. A leading ':' tells a missing value
     * (':') from an unknown option ('?'). */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
        switch (c) {
        case 's': sub = optarg; break;
        case 'n': name = optarg; break;
        case 'r': role = optarg; break;
        case 'R': rooms = optarg; break;
        case 't': {
            char *end;
            errno = 0;
            ttl = strtoll(optarg, &end, 10);
            if (errno || *end || ttl <= 0 || ttl > 10LL * 365 * 86400)
                return usage_error("--ttl takes seconds, 1..315360000, got '%s'", optarg);
            break;
        }
        case ':': return usage_error("token: option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("token: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("token: unexpected argument '%s'", argv[optind]);
    if (!sub) return usage_error("token needs --sub");
    enum jwt_role parsed;
    if (role && jwt_role_parse(role, &parsed) < 0)
        return usage_error("--role must be viewer, member or organizer, got '%s'", role);
    char err[512];
    if (config_validate(cfg, err, sizeof err) < 0) return fail("token", err);
    const char *list[JWT_ROOMS_MAX];
    size_t nrooms = 0;
    char *copy = rooms ? strdup(rooms) : NULL;
    if (rooms && !copy) return fail("token", "out of memory");
    for (char *save = NULL, *r = copy ? strtok_r(copy, ",", &save) : NULL; r;
         r = strtok_r(NULL, ",", &save)) {
        if (nrooms == JWT_ROOMS_MAX) {
            free(copy);
            return usage_error("--rooms: more than %d rooms", JWT_ROOMS_MAX);
        }
        if (!room_name_valid(r, strlen(r))) {
            int status = usage_error("--rooms: bad room name '%s'", r);
            free(copy);
            return status;
        }
        list[nrooms++] = r;
    }
    int64_t now = (int64_t)time(NULL);
    char *tok = jwt_sign(cfg->jwt_secret, sub, name, role, rooms ? list : NULL, nrooms, now,
                         ttl ? now + ttl : 0);
    free(copy);
    /* The settings are valid, so a token that cannot be signed, or that
     * the server would refuse, comes from the claims given: bad usage. */
    if (!tok) return usage_error("token: --sub must be 1..64 bytes and --name 1..64 characters");
    /* Check it the way the server will, so a bad claim fails here. */
    struct jwt_secrets secrets = {.secrets = {cfg->jwt_secret}, .count = 1};
    struct jwt_claims claims;
    if (jwt_verify(&secrets, tok, strlen(tok), now, &claims, err, sizeof err) < 0) {
        free(tok);
        return usage_error("token: %s", err);
    }
    jwt_claims_clear(&claims);
    printf("%s\n", tok);
    free(tok);
    return 0;
}

/* ---- migrations -------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static bool pg_ok(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static void default_sql_dir(char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(out, n, "%s/../sql", exe) < (int)n) return;
        }
    }
    snprintf(out, n, "sql");
}

static int apply_one(PGconn *pg, const char *dir, const char *name, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        snprintf(err, errlen, "path too long");
        return -1;
    }
    char *sql = read_all(path);
    if (!sql) {
        if (snprintf(err, errlen, "cannot read %s: %s", name, strerror(errno)) >= (int)errlen)
            err[errlen - 1] = '\0';
        return -1;
    }
    bool ok = pg_ok(pg, "BEGIN", err, errlen) && pg_ok(pg, sql, err, errlen);
    free(sql);
    if (ok) {
        const char *values[1] = {name};
        PGresult *r = PQexecParams(pg, "INSERT INTO schema_migrations (version) VALUES ($1)", 1,
                                   NULL, values, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
    }
    if (ok) ok = pg_ok(pg, "COMMIT", err, errlen);
    if (!ok) {
        char ignored[8];
        pg_ok(pg, "ROLLBACK", ignored, sizeof ignored);
        return -1;
    }
    return 0;
}

static int cmd_migrate(const struct chat_config *cfg, int argc, char **argv)
{
    char dir[PATH_MAX];
    default_sql_dir(dir, sizeof dir);
    if (argc == 2 && strcmp(argv[0], "--dir") == 0) {
        if (snprintf(dir, sizeof dir, "%s", argv[1]) >= (int)sizeof dir)
            return usage_error("--dir: path too long");
    }
    else if (argc != 0) {
        return usage_error("migrate takes only --dir DIR, got '%s'", argv[0]);
    }
    DIR *d = opendir(dir);
    if (!d) return fail("migrate", "cannot open the sql directory (use --dir)");
    char *names[MAX_MIGRATIONS];
    int n = 0;
    struct dirent *e;
    const char *why = NULL;
    while (!why && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".sql") != 0 || e->d_name[0] < '0' ||
            e->d_name[0] > '9')
            continue;
        /* Applying some and calling it up to date would be a lie. */
        if (n == MAX_MIGRATIONS) why = "too many migration files";
        else if (!(names[n] = strdup(e->d_name))) why = "out of memory";
        else n++;
    }
    closedir(d);
    if (why) {
        for (int i = 0; i < n; i++) free(names[i]);
        return fail("migrate", why);
    }
    qsort(names, (size_t)n, sizeof *names, by_name);
    PGconn *pg = PQconnectdb(cfg->pg_dsn);
    char err[1024];
    int status = 0, applied = 0;
    if (PQstatus(pg) != CONNECTION_OK) {
        status = fail("migrate: cannot connect to postgresql", PQerrorMessage(pg));
        goto out;
    }
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    /* One migrator at a time, whoever else runs one. */
    if (!pg_ok(pg, "SELECT pg_advisory_lock(727001)", err, sizeof err) ||
        !pg_ok(pg,
               "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
               err, sizeof err)) {
        status = fail("migrate", err);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const char *values[1] = {names[i]};
        PGresult *r = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                                   NULL, values, NULL, NULL, 0);
        bool done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        PQclear(r);
        if (done) continue;
        if (apply_one(pg, dir, names[i], err, sizeof err) < 0) {
            char what[600];
            snprintf(what, sizeof what, "migrate %s", names[i]);
            status = fail(what, err);
            goto out;
        }
        printf("applied %s\n", names[i]);
        applied++;
    }
    if (applied == 0) printf("database is up to date (%d migrations)\n", n);
out:
    PQfinish(pg);
    for (int i = 0; i < n; i++) free(names[i]);
    return status;
}

int main(int argc, char **argv)
{
    log_set_role("chatctl");
    const char *file = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("chatctl %s\n", CHATD_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            file = argv[++i];
            continue;
        }
        return usage_error("unknown option '%s'", argv[i]);
    }
    if (i >= argc) return usage_error("no command given");
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **args = argv + i;
    /* A command we do not know is bad usage, whatever the settings. */
    static const char *const commands[] = {"online", "kick",  "ban",    "unban",
                                           "notice", "token", "migrate"};
    bool known = false;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        known = known || strcmp(cmd, commands[k]) == 0;
    if (!known) return usage_error("unknown command '%s'", cmd);
    struct chat_config cfg;
    char err[512];
    if (config_load_all(&cfg, file, environ, err, sizeof err) < 0) return fail("settings", err);
    int status;
    if (strcmp(cmd, "online") == 0) status = cmd_online(&cfg, rest, args);
    else if (strcmp(cmd, "kick") == 0 || strcmp(cmd, "ban") == 0 || strcmp(cmd, "unban") == 0)
        status = cmd_user(&cfg, cmd, rest, args);
    else if (strcmp(cmd, "notice") == 0) status = cmd_notice(&cfg, rest, args);
    else if (strcmp(cmd, "token") == 0) status = cmd_token(&cfg, rest + 1, args - 1);
    else status = cmd_migrate(&cfg, rest, args);
    config_free(&cfg);
    return status;
}

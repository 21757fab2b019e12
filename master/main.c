#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master/master.h"
#include "shared/log.h"
#include "shared/version.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: chatd [-c FILE] [--workers N] [--port P]\n"
            "       chatd --check-config [-c FILE] ...\n"
            "       chatd --help | --version\n"
            "\n"
            "Settings come from FILE (or $CHAT_CONFIG), then CHAT_* environment\n"
            "variables, then these flags. Settings:\n\n");
}

int master_load_config(const struct master_options *o, struct chat_config *cfg, char *err,
                       size_t errlen)
{
    if (config_load_all(cfg, o->config_file, environ, err, errlen) < 0) return -1;
    if (o->workers && config_set(cfg, "workers", o->workers, err, errlen) < 0) goto fail;
    if (o->port && config_set(cfg, "port", o->port, err, errlen) < 0) goto fail;
    if (config_validate(cfg, err, errlen) < 0) goto fail;
    return 0;
fail:
    config_free(cfg);
    return -1;
}

int main(int argc, char **argv)
{
    enum { OPT_WORKERS = 256, OPT_PORT, OPT_CHECK, OPT_HELP, OPT_VERSION };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"port", required_argument, NULL, OPT_PORT},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct master_options opts = {0};
    int check = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': opts.config_file = optarg; break;
        case OPT_WORKERS: opts.workers = optarg; break;
        case OPT_PORT: opts.port = optarg; break;
        case OPT_CHECK: check = 1; break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            config_print_help(stdout);
            return 0;
        case OPT_VERSION: printf("chatd %s\n", CHATD_VERSION); return 0;
        default:
            fprintf(stderr, "chatd: unknown or incomplete option '%s' (try --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    struct chat_config cfg;
    char err[512];
    if (master_load_config(&opts, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "chatd: %s\n", err);
        return 1;
    }
    if (check) {
        config_dump(&cfg, stdout);
        config_free(&cfg);
        return 0;
    }
    log_set_level(cfg.log_level);
    int status = master_run(&opts, &cfg);
    config_free(&cfg);
    return status;
}

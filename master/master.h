#ifndef CHATD_MASTER_MASTER_H
#define CHATD_MASTER_MASTER_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/config.h"

/* The command line, kept so that SIGHUP re-reads settings exactly as
 * start-up did: defaults, then the file, then CHAT_* variables, then flags. */
struct master_options {
    const char *config_file;   /* -c FILE; NULL: $CHAT_CONFIG or none */
    const char *workers;       /* --workers; NULL when not given */
    const char *port;          /* --port; NULL when not given */
};

/* Loads and validates settings as described above. */
int master_load_config(const struct master_options *o, struct chat_config *cfg, char *err,
                       size_t errlen);

/* Opens the listening sockets, forks the workers and supervises them until
 * a graceful stop. Returns the process exit status. cfg is taken over (and
 * may be replaced by reloads); it is handed back for freeing. */
int master_run(struct master_options *opts, struct chat_config *cfg);

#endif

#ifndef CHATD_WORKER_STATIC_FILES_H
#define CHATD_WORKER_STATIC_FILES_H

/* The web client's files, read into memory once when the worker starts,
 * so serving them never touches the disk from the loop. Bounded: files
 * over STATIC_FILE_MAX and anything past STATIC_TOTAL_MAX are skipped
 * with a warning. Changes on disk are picked up by a reload (SIGHUP). */

#include <stdbool.h>

#define STATIC_FILE_MAX (2u << 20)
#define STATIC_TOTAL_MAX (32u << 20)
#define STATIC_MAX_FILES 256

struct static_files;
struct http_req;

/* Never NULL unless out of memory; an unreadable directory gives an
 * empty set (and a warning). */
struct static_files *static_files_load(const char *dir);
void static_files_free(struct static_files *s);

/* Answers GET/HEAD for a known file ("/" is "/index.html"); returns false
 * when there is no such file. */
bool static_files_serve(struct http_req *req);

/* True when a file is served at the request's path (for a 405 to other
 * methods). */
bool static_files_has(const struct http_req *req);

#endif

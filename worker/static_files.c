#include "worker/static_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/log.h"
#include "worker/conn.h"
#include "worker/http_conn.h"
#include "worker/http_query.h"
#include "worker/worker.h"

struct static_file {
    char *path;          /* "/index.html" */
    const char *type;
    char *data;
    size_t len;
};

struct static_files {
    struct static_file files[STATIC_MAX_FILES];
    int count;
    size_t total;
};

static const char *mime_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

static int read_file(const char *fs_path, char **data, size_t *len)
{
    int fd = open(fs_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > (off_t)STATIC_FILE_MAX) {
        close(fd);
        return -1;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        return -1;
    }
    *data = buf;
    *len = got;
    return 0;
}

static void load_dir(struct static_files *s, const char *fs_dir, const char *url_dir, int depth)
{
    DIR *d = opendir(fs_dir);
    if (!d) {
        if (depth == 0) log_warn("static_dir %s cannot be read; serving no files", fs_dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char fs_path[4096], url[1024];
        snprintf(fs_path, sizeof fs_path, "%s/%s", fs_dir, e->d_name);
        snprintf(url, sizeof url, "%s/%s", url_dir, e->d_name);
        struct stat st;
        if (stat(fs_path, &st) < 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 3) load_dir(s, fs_path, url, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        if (s->count >= STATIC_MAX_FILES || s->total + (size_t)st.st_size > STATIC_TOTAL_MAX) {
            log_warn("static file %s skipped: over the static file limits", fs_path);
            continue;
        }
        struct static_file *f = &s->files[s->count];
        if (read_file(fs_path, &f->data, &f->len) < 0 || !(f->path = strdup(url))) {
            free(f->data);
            log_warn("static file %s cannot be read", fs_path);
            continue;
        }
        f->type = mime_type(e->d_name);
        s->total += f->len;
        s->count++;
    }
    closedir(d);
}

struct static_files *static_files_load(const char *dir)
{
    struct static_files *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (dir && *dir) load_dir(s, dir, "", 0);
    return s;
}

void static_files_free(struct static_files *s)
{
    if (!s) return;
    for (int i = 0; i < s->count; i++) {
        free(s->files[i].path);
        free(s->files[i].data);
    }
    free(s);
}

/* The file at the request's path, or NULL. */
static const struct static_file *find(const struct http_req *req)
{
    const struct static_files *s = req->c->w->files;
    if (!s) return NULL;
    char path[1024];
    int n = http_path_decode(req->head->path, path, sizeof path);
    if (n < 0) return NULL;
    if (strcmp(path, "/") == 0) snprintf(path, sizeof path, "/index.html");
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->files[i].path, path) == 0) return &s->files[i];
    return NULL;
}

bool static_files_has(const struct http_req *req)
{
    return find(req) != NULL;
}

bool static_files_serve(struct http_req *req)
{
    const struct static_file *f = find(req);
    if (!f) return false;
    char headers[256];
    /* The client has buttons (delete) worth clickjacking: no framing. */
    snprintf(headers, sizeof headers,
             "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
             "X-Frame-Options: DENY\r\n"
             "Content-Security-Policy: frame-ancestors 'none'\r\n");
    http_reply(req->c, 200, f->type, f->data, f->len, headers);
    return true;
}

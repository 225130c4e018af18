/* cache.c - the model cache: up to max_models engines loaded at once, most recently used first;
 * a request's `model` names one (file stem of the default model or of DIR/<name>.gguf), loading it
 * on demand and evicting the least recently used idle one. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tfab/log.h>
#include "srv.h"

#define MOD "serve"

static int stat_file(const char *path, uint64_t *size, int64_t *mtime)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    *size  = (uint64_t)st.st_size;
    *mtime = (int64_t)st.st_mtime;
    return 0;
}

/* Names are file stems: letters, digits, '.', '-', '_' (so a name never walks the tree). */
static int valid_name(const char *name)
{
    if (name[0] == '\0' || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

/* Where the model called name lives; 0 found. Ollama's "name:latest" is name. */
static int resolve(srv_t *srv, const char *name, char *path, size_t len)
{
    char        stem[128];
    const char *colon = strchr(name, ':');
    if (colon && strcmp(colon, ":latest") == 0) {
        snprintf(stem, sizeof(stem), "%.*s", (int)(colon - name), name);
        name = stem;
    }
    if (!valid_name(name))
        return -1;
    uint64_t size;
    int64_t  mtime;
    if (strcmp(name, srv->default_name) == 0) {
        snprintf(path, len, "%s", srv->cfg.model);
        return 0;
    }
    if (srv->cfg.models_dir[0]) {
        int w = snprintf(path, len, "%s/%s.gguf", srv->cfg.models_dir, name);
        if (w > 0 && (size_t)w < len && stat_file(path, &size, &mtime) == 0)
            return 0;
    }
    return -1;
}

int srv_cache_acquire(srv_t *srv, const char *req_name, srv_engine_t **e_p, srv_error_t *err)
{
    char path[PATH_MAX], name[128];
    if (resolve(srv, req_name, path, sizeof(path)) != 0) {
        srv_error_set(err, 404, "invalid_request_error", "model", "model_not_found",
                      "The model '%s' does not exist", req_name);
        return -1;
    }
    /* the canonical name: the stem */
    const char *slash = strrchr(path, '/');
    snprintf(name, sizeof(name), "%.127s", slash ? slash + 1 : path);
    char *dot = strstr(name, ".gguf");
    if (dot && dot[5] == '\0')
        *dot = '\0';
    pthread_mutex_lock(&srv->cache_lock);
    for (;;) {
        srv_engine_t **pp = &srv->engines;
        for (; *pp; pp = &(*pp)->lru_next)
            if (strcmp((*pp)->name, name) == 0)
                break;
        if (*pp) { /* hit: to the front */
            srv_engine_t *e = *pp;
            *pp             = e->lru_next;
            e->lru_next     = srv->engines;
            srv->engines    = e;
            e->users++;
            e->last_used = srv_now_ns();
            pthread_mutex_unlock(&srv->cache_lock);
            *e_p = e;
            return 0;
        }
        if (srv->n_engines < srv->cfg.max_models)
            break;
        /* full: evict the least recently used idle model */
        srv_engine_t **victim = NULL;
        for (pp = &srv->engines; *pp; pp = &(*pp)->lru_next)
            if ((*pp)->users == 0)
                victim = pp;
        if (victim == NULL) {
            pthread_mutex_unlock(&srv->cache_lock);
            srv_error_set(err, 503, "server_error", "model", "model_cache_busy",
                          "all %u loaded models are in use; '%s' cannot be loaded now",
                          srv->cfg.max_models, name);
            return -1;
        }
        srv_engine_t *e = *victim;
        *victim         = e->lru_next;
        srv->n_engines--;
        TFAB_INFO(MOD, "model cache full (%u): evicting '%s', least recently used",
                  srv->cfg.max_models, e->name);
        srv_engine_destroy(e);
    }
    /* load under the cache lock: one load at a time, and no one loads the same model twice */
    srv_engine_t *e = NULL;
    if (srv_engine_create(srv, name, path, &e) != 0) {
        pthread_mutex_unlock(&srv->cache_lock);
        srv_error_set(err, 500, "server_error", "model", "model_load_failed",
                      "the model '%s' could not be loaded (see the server log)", name);
        return -1;
    }
    stat_file(path, &e->file_size, &(int64_t){0});
    e->lru_next  = srv->engines;
    srv->engines = e;
    srv->n_engines++;
    e->users     = 1;
    e->last_used = srv_now_ns();
    pthread_mutex_unlock(&srv->cache_lock);
    *e_p = e;
    return 0;
}

void srv_cache_release(srv_t *srv, srv_engine_t *e)
{
    pthread_mutex_lock(&srv->cache_lock);
    e->users--;
    pthread_mutex_unlock(&srv->cache_lock);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const srv_model_info_t *)a)->name, ((const srv_model_info_t *)b)->name);
}

unsigned srv_cache_list(srv_t *srv, srv_model_info_t *out, unsigned max)
{
    unsigned n = 0;
    if (max == 0)
        return 0;
    snprintf(out[0].name, sizeof(out[0].name), "%s", srv->default_name);
    snprintf(out[0].path, sizeof(out[0].path), "%s", srv->cfg.model);
    if (stat_file(out[0].path, &out[0].size, &out[0].mtime) == 0)
        n = 1;
    DIR *d = srv->cfg.models_dir[0] ? opendir(srv->cfg.models_dir) : NULL;
    for (struct dirent *de; d && n < max && (de = readdir(d)) != NULL;) {
        size_t l = strlen(de->d_name);
        if (l <= 5 || l - 5 >= sizeof(out[n].name) || strcmp(de->d_name + l - 5, ".gguf") != 0)
            continue;
        snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)(l - 5), de->d_name);
        if (!valid_name(out[n].name) || strcmp(out[n].name, srv->default_name) == 0)
            continue;
        int w =
            snprintf(out[n].path, sizeof(out[n].path), "%s/%s", srv->cfg.models_dir, de->d_name);
        if (w > 0 && (size_t)w < sizeof(out[n].path) &&
            stat_file(out[n].path, &out[n].size, &out[n].mtime) == 0)
            n++;
    }
    if (d)
        closedir(d);
    if (n > 1)
        qsort(out + 1, n - 1, sizeof(*out), by_name);
    pthread_mutex_lock(&srv->cache_lock);
    for (unsigned i = 0; i < n; i++) {
        out[i].loaded = 0;
        for (srv_engine_t *e = srv->engines; e; e = e->lru_next)
            if (strcmp(e->name, out[i].name) == 0)
                out[i].loaded = 1;
    }
    pthread_mutex_unlock(&srv->cache_lock);
    return n;
}

void srv_cache_cleanup(srv_t *srv)
{
    pthread_mutex_lock(&srv->cache_lock);
    while (srv->engines) {
        srv_engine_t *e = srv->engines;
        srv->engines    = e->lru_next;
        srv_engine_destroy(e);
    }
    srv->n_engines = 0;
    pthread_mutex_unlock(&srv->cache_lock);
}

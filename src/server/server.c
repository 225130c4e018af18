/* server.c - tfab serve's life cycle and its stream registry: admission against the adaptive
 * limit (503 beyond it), the housekeeping thread that measures utilisation and tokens/s and moves
 * the limit, and the dashboard's JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <tfab/log.h>
#include <tfab/topology.h>
#include "srv.h"

#define MOD "serve"

int srv_admit(srv_t *srv)
{
    pthread_mutex_lock(&srv->reg_lock);
    int ok = srv->active < srv->limit;
    if (ok)
        srv->active++;
    pthread_mutex_unlock(&srv->reg_lock);
    pthread_mutex_lock(&srv->metrics.lock);
    if (ok)
        srv->metrics.requests++;
    else
        srv->metrics.rejections++;
    pthread_mutex_unlock(&srv->metrics.lock);
    return ok ? 0 : -1;
}

void srv_release(srv_t *srv)
{
    pthread_mutex_lock(&srv->reg_lock);
    srv->active--;
    pthread_mutex_unlock(&srv->reg_lock);
}

/* Every interval: utilisation (mean of active/limit sampled each tick) above util_high with a
 * mean TTFT under target raises the limit by limit_up; under util_low lowers it by limit_down. */
static void evaluate_limit(srv_t *srv)
{
    const srv_config_t *c = &srv->cfg;
    pthread_mutex_lock(&srv->metrics.lock);
    double ttft_ms                 = srv->metrics.ttft_window_n
                                         ? srv->metrics.ttft_window_sum * 1e3 / (double)srv->metrics.ttft_window_n
                                         : srv->metrics.ttft_mean_last_ms;
    srv->metrics.ttft_mean_last_ms = ttft_ms;
    srv->metrics.ttft_window_sum   = 0;
    srv->metrics.ttft_window_n     = 0;
    pthread_mutex_unlock(&srv->metrics.lock);
    pthread_mutex_lock(&srv->reg_lock);
    double   util = srv->util_n ? srv->util_sum / srv->util_n : 0;
    unsigned old  = srv->limit;
    /* no first token measured yet: TTFT unknown, no raise */
    if (util > c->util_high && ttft_ms >= 0 && ttft_ms < c->ttft_target_ms)
        srv->limit =
            srv->limit + c->limit_up > c->limit_max ? c->limit_max : srv->limit + c->limit_up;
    else if (util < c->util_low)
        srv->limit =
            srv->limit < c->limit_min + c->limit_down ? c->limit_min : srv->limit - c->limit_down;
    srv->util_sum = 0;
    srv->util_n   = 0;
    unsigned now  = srv->limit;
    pthread_mutex_unlock(&srv->reg_lock);
    if (now != old)
        TFAB_INFO(MOD, "stream limit %u -> %u (utilisation %.0f%%, mean TTFT %.0f ms)", old, now,
                  util * 100, ttft_ms);
}

static void *house_main(void *arg)
{
    srv_t   *srv    = arg;
    uint64_t t_rate = srv_now_ns(), t_eval = t_rate;
    uint64_t tok_old = 0;
    pthread_mutex_lock(&srv->house_lock);
    while (!srv->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&srv->house_cond, &srv->house_lock, &ts);
        if (srv->stopping)
            break;
        pthread_mutex_unlock(&srv->house_lock);
        uint64_t now = srv_now_ns();
        pthread_mutex_lock(&srv->reg_lock);
        srv->util_sum += srv->limit ? (double)srv->active / srv->limit : 0;
        srv->util_n++;
        pthread_mutex_unlock(&srv->reg_lock);
        if (now - t_rate >= 1000000000ull) {
            pthread_mutex_lock(&srv->metrics.lock);
            srv->metrics.tokens_per_s =
                (double)(srv->metrics.tokens - tok_old) * 1e9 / (double)(now - t_rate);
            tok_old = srv->metrics.tokens;
            pthread_mutex_unlock(&srv->metrics.lock);
            t_rate = now;
        }
        if (now - t_eval >= (uint64_t)srv->cfg.limit_interval_ms * 1000000ull) {
            evaluate_limit(srv);
            t_eval = now;
        }
        pthread_mutex_lock(&srv->house_lock);
    }
    pthread_mutex_unlock(&srv->house_lock);
    return NULL;
}

/* The default model's name: its file stem. */
static void stem(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    snprintf(out, len, "%.127s", slash ? slash + 1 : path);
    char *dot = strstr(out, ".gguf");
    if (dot && dot[5] == '\0')
        *dot = '\0';
}

int srv_start(srv_t *srv, const srv_config_t *cfg)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg        = *cfg;
    srv->t_start_ns = srv_now_ns();
    srv->uds_fd     = -1;
    srv->limit      = cfg->limit_initial;
    atomic_init(&srv->next_id, 0);
    srv_metrics_init(&srv->metrics);
    srv->metrics.ttft_mean_last_ms = -1; /* unknown until a first token */
    pthread_mutex_init(&srv->cache_lock, NULL);
    pthread_mutex_init(&srv->reg_lock, NULL);
    pthread_mutex_init(&srv->house_lock, NULL);
    pthread_cond_init(&srv->house_cond, NULL);
    stem(cfg->model, srv->default_name, sizeof(srv->default_name));
    if (srv_pool_init(&srv->pool, cfg->chunk_pool) != 0) {
        TFAB_ERROR(MOD, "cannot allocate the chunk pool (%u chunks)", cfg->chunk_pool);
        goto err_sync;
    }
    if (cfg->topology[0]) {
        char err[512];
        if (tfab_topology_load(cfg->topology, &srv->topo, err, sizeof(err)) != TFAB_OK) {
            TFAB_ERROR(MOD, "%s", err);
            goto err_pool;
        }
    }
    /* the default model is loaded before listening: the first /health means ready */
    srv_engine_t *e;
    srv_error_t   eerr = {0};
    if (srv_cache_acquire(srv, srv->default_name, &e, &eerr) != 0) {
        TFAB_ERROR(MOD, "default model %s: %s", cfg->model, eerr.message);
        goto err_topo;
    }
    srv_cache_release(srv, e);
    if (pthread_create(&srv->house, NULL, house_main, srv) != 0) {
        TFAB_ERROR(MOD, "cannot start the housekeeping thread");
        goto err_cache;
    }
    if (srv_http_start(srv) != 0)
        goto err_house;
    return 0;
err_house:
    pthread_mutex_lock(&srv->house_lock);
    srv->stopping = 1;
    pthread_cond_signal(&srv->house_cond);
    pthread_mutex_unlock(&srv->house_lock);
    pthread_join(srv->house, NULL);
err_cache:
    srv_cache_cleanup(srv);
err_topo:
    tfab_topology_free(srv->topo);
err_pool:
    srv_pool_cleanup(&srv->pool);
err_sync:
    pthread_cond_destroy(&srv->house_cond);
    pthread_mutex_destroy(&srv->house_lock);
    pthread_mutex_destroy(&srv->reg_lock);
    pthread_mutex_destroy(&srv->cache_lock);
    srv_metrics_cleanup(&srv->metrics);
    return -1;
}

void srv_stop(srv_t *srv)
{
    pthread_mutex_lock(&srv->house_lock);
    srv->stopping = 1;
    pthread_cond_signal(&srv->house_cond);
    pthread_mutex_unlock(&srv->house_lock);
    pthread_join(srv->house, NULL);
    srv_http_quiesce(srv); /* no new connections */
    pthread_mutex_lock(&srv->cache_lock);
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next)
        srv_engine_shutdown(e); /* every stream ends canceled: their readers finish */
    pthread_mutex_unlock(&srv->cache_lock);
    srv_http_stop(srv); /* joins the connection threads */
    srv_cache_cleanup(srv);
    tfab_topology_free(srv->topo);
    srv_pool_cleanup(&srv->pool);
    pthread_cond_destroy(&srv->house_cond);
    pthread_mutex_destroy(&srv->house_lock);
    pthread_mutex_destroy(&srv->reg_lock);
    pthread_mutex_destroy(&srv->cache_lock);
    srv_metrics_cleanup(&srv->metrics);
}

/* What the dashboard polls: nodes and links of the topology (this host alone without one), the
 * bytes each link carried, streams, limit and tokens/s. */
char *srv_dashboard_json(srv_t *srv)
{
    cJSON *root  = cJSON_CreateObject();
    cJSON *nodes = cJSON_AddArrayToObject(root, "nodes");
    cJSON *links = cJSON_AddArrayToObject(root, "links");
    if (srv->topo) {
        unsigned n = tfab_topology_n_hosts(srv->topo);
        for (unsigned i = 0; i < n; i++) {
            const tfab_topology_host_t *h = tfab_topology_host(srv->topo, i);
            cJSON_AddItemToArray(nodes, cJSON_CreateString(h->name));
            for (unsigned l = 0; l < h->n_links; l++) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "host", h->name);
                cJSON_AddStringToObject(o, "name", h->links[l].name);
                cJSON_AddStringToObject(o, "kind", tfab_link_kind_str(h->links[l].kind));
                cJSON_AddStringToObject(o, "address", h->links[l].address);
                /* serving runs on this host: no link carries its traffic */
                cJSON_AddNumberToObject(o, "bytes_per_s", 0);
                cJSON_AddItemToArray(links, o);
            }
        }
    } else {
        char  host[256] = "localhost";
        FILE *f         = fopen("/proc/sys/kernel/hostname", "r");
        if (f) {
            if (fgets(host, sizeof(host), f))
                host[strcspn(host, "\n")] = '\0';
            fclose(f);
        }
        cJSON_AddItemToArray(nodes, cJSON_CreateString(host));
    }
    pthread_mutex_lock(&srv->reg_lock);
    cJSON_AddNumberToObject(root, "active_streams", srv->active);
    cJSON_AddNumberToObject(root, "stream_limit", srv->limit);
    pthread_mutex_unlock(&srv->reg_lock);
    pthread_mutex_lock(&srv->metrics.lock);
    cJSON_AddNumberToObject(root, "tokens_per_s", srv->metrics.tokens_per_s);
    cJSON_AddNumberToObject(root, "tokens_total", (double)srv->metrics.tokens);
    pthread_mutex_unlock(&srv->metrics.lock);
    cJSON *models = cJSON_AddArrayToObject(root, "models");
    pthread_mutex_lock(&srv->cache_lock);
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next)
        cJSON_AddItemToArray(models, cJSON_CreateString(e->name));
    pthread_mutex_unlock(&srv->cache_lock);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* metrics.c - serving metrics (latency histograms, counters, gauges) and their Prometheus text
 * exposition for GET /metrics. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "srv.h"

static const double lat_bounds[SRV_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,   0.25,   0.5,   1,    2.5,   10};

void srv_metrics_init(srv_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    srv_hist_t *h[] = {&m->ttft, &m->itl, &m->queue};
    for (int i = 0; i < 3; i++) {
        h[i]->bounds = lat_bounds;
        h[i]->n      = SRV_HIST_BUCKETS;
    }
}

void srv_metrics_cleanup(srv_metrics_t *m)
{
    pthread_mutex_destroy(&m->lock);
}

void srv_hist_add(srv_hist_t *h, double v)
{
    unsigned i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

typedef struct buf {
    char  *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char  *p   = realloc(b->p, cap);
        if (p == NULL)
            return;
        b->p   = p;
        b->cap = cap;
    }
}

static void put_hist(buf_t *b, const char *name, const char *help, const srv_hist_t *h)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (unsigned i = 0; i < h->n; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->count);
}

static void put_one(buf_t *b, const char *type, const char *name, const char *help, double v)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *srv_metrics_render(srv_t *srv)
{
    buf_t         b = {0};
    srv_metrics_t m;
    pthread_mutex_lock(&srv->metrics.lock);
    m = srv->metrics;
    pthread_mutex_unlock(&srv->metrics.lock);
    pthread_mutex_lock(&srv->reg_lock);
    unsigned active = srv->active, limit = srv->limit;
    pthread_mutex_unlock(&srv->reg_lock);
    pthread_mutex_lock(&srv->pool.lock);
    uint64_t allocs = srv->pool.allocs, reuses = srv->pool.reuses, dry = srv->pool.exhausted;
    unsigned n_free = srv->pool.n_free, n_pool = srv->pool.n;
    pthread_mutex_unlock(&srv->pool.lock);

    put_hist(&b, "tfab_ttft_seconds", "Time from request arrival to the first generated token.",
             &m.ttft);
    put_hist(&b, "tfab_inter_token_seconds", "Time between consecutive tokens of a stream.",
             &m.itl);
    put_hist(&b, "tfab_queue_seconds", "Time from request arrival to getting a KV cache slot.",
             &m.queue);
    put_one(&b, "counter", "tfab_generated_tokens_total", "Tokens generated.", (double)m.tokens);
    put_one(&b, "counter", "tfab_prompt_tokens_total", "Prompt tokens prefilled.",
            (double)m.prompt_tokens);
    put_one(&b, "gauge", "tfab_tokens_per_second",
            "Generated tokens per second over the last second.", m.tokens_per_s);
    put_one(&b, "counter", "tfab_generation_requests_total", "Generation requests admitted.",
            (double)m.requests);
    put_one(&b, "gauge", "tfab_active_streams", "Generation streams admitted and not yet finished.",
            active);
    put_one(&b, "gauge", "tfab_stream_limit", "Current adaptive limit on concurrent streams.",
            limit);
    put_one(&b, "counter", "tfab_rejections_total",
            "Requests refused with 503 at the stream limit.", (double)m.rejections);
    put(&b,
        "# HELP tfab_cancellations_total Generations canceled, by reason.\n"
        "# TYPE tfab_cancellations_total counter\n"
        "tfab_cancellations_total{reason=\"disconnect\"} %llu\n"
        "tfab_cancellations_total{reason=\"stall\"} %llu\n"
        "tfab_cancellations_total{reason=\"shutdown\"} %llu\n",
        (unsigned long long)m.cancel_disconnect, (unsigned long long)m.cancel_stall,
        (unsigned long long)m.cancel_shutdown);
    put_one(&b, "counter", "tfab_slow_consumers_total",
            "Streams canceled after stalling past the ack timeout.", (double)m.slow_consumers);
    put(&b,
        "# HELP tfab_http_errors_total Error responses, by class.\n"
        "# TYPE tfab_http_errors_total counter\n"
        "tfab_http_errors_total{class=\"4xx\"} %llu\ntfab_http_errors_total{class=\"5xx\"} %llu\n",
        (unsigned long long)m.errors_4xx, (unsigned long long)m.errors_5xx);
    put_one(&b, "counter", "tfab_chunk_pool_allocs_total", "Response chunks taken from the pool.",
            (double)allocs);
    put_one(&b, "counter", "tfab_chunk_pool_reuses_total",
            "Chunks taken that had been used before.", (double)reuses);
    put_one(&b, "gauge", "tfab_chunk_pool_reuse_ratio", "Reuses over allocations.",
            allocs ? (double)reuses / (double)allocs : 0.0);
    put_one(&b, "counter", "tfab_chunk_pool_exhausted_total",
            "Chunk requests the pool could not serve.", (double)dry);
    put_one(&b, "gauge", "tfab_chunk_pool_free", "Free chunks in the pool.", n_free);
    put_one(&b, "gauge", "tfab_chunk_pool_size", "Chunks in the pool.", n_pool);

    put(&b, "# HELP tfab_kv_slots_used KV cache slots holding a sequence, by model.\n"
            "# TYPE tfab_kv_slots_used gauge\n");
    pthread_mutex_lock(&srv->cache_lock);
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next) {
        pthread_mutex_lock(&e->lock);
        put(&b, "tfab_kv_slots_used{model=\"%s\"} %u\n", e->name, e->n_active);
        pthread_mutex_unlock(&e->lock);
    }
    put(&b, "# HELP tfab_kv_slots KV cache slots, by model.\n# TYPE tfab_kv_slots gauge\n");
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next)
        put(&b, "tfab_kv_slots{model=\"%s\"} %u\n", e->name, e->n_slots);
    put(&b, "# HELP tfab_queued_requests Requests waiting for a KV slot, by model.\n"
            "# TYPE tfab_queued_requests gauge\n");
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next) {
        pthread_mutex_lock(&e->lock);
        put(&b, "tfab_queued_requests{model=\"%s\"} %u\n", e->name, e->n_pending);
        pthread_mutex_unlock(&e->lock);
    }
    put(&b, "# HELP tfab_decode_steps_total Decode steps run, by model.\n"
            "# TYPE tfab_decode_steps_total counter\n");
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next)
        put(&b, "tfab_decode_steps_total{model=\"%s\"} %llu\n", e->name,
            (unsigned long long)atomic_load(&e->steps));
    put(&b, "# HELP tfab_batch_tokens_total Tokens run through decode steps, by model.\n"
            "# TYPE tfab_batch_tokens_total counter\n");
    for (srv_engine_t *e = srv->engines; e; e = e->lru_next)
        put(&b, "tfab_batch_tokens_total{model=\"%s\"} %llu\n", e->name,
            (unsigned long long)atomic_load(&e->step_tokens));
    put_one(&b, "gauge", "tfab_models_loaded", "Models in the cache.", srv->n_engines);
    pthread_mutex_unlock(&srv->cache_lock);
    /* one host: no transport links carry serving traffic, so no series; a cluster adds
     * tfab_link_bytes_total{link="..."} per link of the topology */
    put(&b, "# HELP tfab_link_bytes_total Bytes moved per transport link (none on a single host).\n"
            "# TYPE tfab_link_bytes_total counter\n");
    put_one(&b, "gauge", "tfab_uptime_seconds", "Seconds since the server started.",
            (double)(srv_now_ns() - srv->t_start_ns) / 1e9);
    return b.p;
}

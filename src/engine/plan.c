/* plan.c - placement of a model on a cluster: layer ranges in proportion to each rank's memory,
 * nodes ordered so that consecutive stages use the best-ranked links of the topology file, the
 * link of every stage boundary and the bytes per token it carries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/cluster.h>
#include <tfab/gguf.h>
#include <tfab/units.h>
#include "wire.h"

tfab_status_t tfab_plan_model_read(const char *path, uint32_t n_ctx, tfab_plan_model_t *m,
                                   char *err, size_t err_len)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->path, sizeof(m->path), "%s", path);
    tfab_gguf_t  *g;
    tfab_status_t st = tfab_gguf_open(path, &g);
    if (st != TFAB_OK) {
        snprintf(err, err_len, "%s: cannot read it as GGUF (%s; the log says why)", path,
                 tfab_status_str(st));
        return st;
    }
    const char *arch = NULL;
    size_t      alen = 0;
    char        key[96];
    uint32_t    n_head = 0, n_head_kv = 0, ctx_train = 2048;
    if (tfab_gguf_get_str(g, "general.architecture", &arch, &alen) != TFAB_OK || alen > 32) {
        snprintf(err, err_len, "%s: no general.architecture", path);
        st = TFAB_ERR_INVALID;
        goto out;
    }
#define KEY(k) (snprintf(key, sizeof(key), "%.*s." k, (int)alen, arch), key)
    if (tfab_gguf_get_u32(g, KEY("block_count"), &m->n_layer) != TFAB_OK ||
        tfab_gguf_get_u32(g, KEY("embedding_length"), &m->n_embd) != TFAB_OK ||
        tfab_gguf_get_u32(g, KEY("attention.head_count"), &n_head) != TFAB_OK || n_head == 0 ||
        m->n_layer == 0 || m->n_layer > 4096) {
        snprintf(err, err_len, "%s: missing or bad block_count, embedding_length or head_count",
                 path);
        st = TFAB_ERR_INVALID;
        goto out;
    }
    if (tfab_gguf_get_u32(g, KEY("attention.head_count_kv"), &n_head_kv) != TFAB_OK)
        n_head_kv = n_head;
    tfab_gguf_get_u32(g, KEY("context_length"), &ctx_train);
#undef KEY
    m->n_ctx = n_ctx ? n_ctx : (ctx_train < 4096 ? ctx_train : 4096);
    if ((m->layer_bytes = calloc(m->n_layer, sizeof(uint64_t))) == NULL) {
        st = TFAB_ERR_NOMEM;
        goto out;
    }
    uint64_t embd = 0, head = 0, onorm = 0;
    for (uint64_t i = 0; i < tfab_gguf_n_tensors(g); i++) {
        const tfab_gguf_tensor_t *t = tfab_gguf_tensor(g, i);
        unsigned                  l;
        int                       used = 0;
        if (sscanf(t->name, "blk.%u.%n", &l, &used) == 1 && used > 0 && l < m->n_layer)
            m->layer_bytes[l] += t->size;
        else if (strcmp(t->name, "token_embd.weight") == 0)
            embd = t->size, m->n_vocab = (uint32_t)t->ne[1];
        else if (strcmp(t->name, "output.weight") == 0)
            head = t->size;
        else if (strcmp(t->name, "output_norm.weight") == 0)
            onorm = t->size;
    }
    m->first_bytes = embd;
    m->last_bytes  = onorm + (head ? head : embd);
    m->kv_layer    = 2ull * m->n_ctx * ((uint64_t)m->n_embd / n_head) * n_head_kv * sizeof(float);
out:
    tfab_gguf_close(g);
    if (st != TFAB_OK)
        tfab_plan_model_free(m);
    return st;
}

void tfab_plan_model_free(tfab_plan_model_t *m)
{
    free(m->layer_bytes);
    m->layer_bytes = NULL;
}

/* The best path between two ranks' hosts: its place in the ranking (0 best) and a label. */
static int link_between(const tfab_cluster_t *c, const tfab_topology_t *topo, unsigned a,
                        unsigned b, char *label, size_t len)
{
    if (topo && c->ranks[a].host[0] && c->ranks[b].host[0]) {
        tfab_topology_path_t p[8];
        unsigned             n = tfab_topology_rank(topo, c->ranks[a].host, c->ranks[b].host, p, 8);
        if (n == 0) {
            snprintf(label, len, "none between %s and %s", c->ranks[a].host, c->ranks[b].host);
            return 1000;
        }
        /* the ranking puts verbs before tcp; a verbs path costs 0, tcp 1, plus its place */
        snprintf(label, len, "%s %s (%s -> %s)", tfab_link_kind_str(p[0].local->kind),
                 p[0].local->name, c->ranks[a].host, c->ranks[b].host);
        return p[0].local->kind == TFAB_LINK_VERBS ? 0 : 10;
    }
    snprintf(label, len, "%s %s -> %s", c->backend, c->ranks[a].address, c->ranks[b].address);
    return -1;
}

static int order_cost(const tfab_cluster_t *c, const tfab_topology_t *topo, const unsigned *o,
                      unsigned n)
{
    char lab[128];
    int  cost = 0;
    for (unsigned s = 0; s < n; s++) {
        int k = link_between(c, topo, o[s], o[(s + 1) % n], lab, sizeof(lab));
        cost += k < 0 ? 0 : k;
    }
    return cost;
}

/* Every order of ranks 1..n-1 (n <= 8), keeping the first of equal cost (the file's order). */
static void best_order(const tfab_cluster_t *c, const tfab_topology_t *topo, unsigned *o,
                       unsigned n, unsigned k, unsigned *best, int *best_cost)
{
    if (k == n) {
        int cost = order_cost(c, topo, o, n);
        if (cost < *best_cost) {
            *best_cost = cost;
            memcpy(best, o, n * sizeof(unsigned));
        }
        return;
    }
    for (unsigned i = k; i < n; i++) {
        unsigned t = o[k];
        o[k]       = o[i];
        o[i]       = t;
        best_order(c, topo, o, n, k + 1, best, best_cost);
        o[i] = o[k];
        o[k] = t;
    }
}

static uint64_t stage_need(const tfab_plan_model_t *m, uint32_t b, uint32_t e)
{
    uint64_t need = 0;
    for (uint32_t l = b; l < e; l++)
        need += m->layer_bytes[l] + m->kv_layer;
    if (b == 0)
        need += m->first_bytes;
    if (e == m->n_layer)
        need += m->last_bytes;
    return need;
}

tfab_status_t tfab_plan_make(const tfab_cluster_t *c, const tfab_topology_t *topo,
                             const tfab_plan_model_t *m, const uint64_t *mem, uint32_t chunk,
                             tfab_plan_t *p, char *err, size_t err_len)
{
    unsigned n = c->n_ranks;
    char     a[32], b[32];
    memset(p, 0, sizeof(*p));
    p->n = n;
    if (n > m->n_layer) {
        snprintf(err, err_len, "%s: %u ranks but %s has only %u layers (one stage per rank)",
                 c->name, n, m->path, m->n_layer);
        return TFAB_ERR_INVALID;
    }
    for (unsigned r = 0; r < n; r++)
        p->order[r] = r;
    int given = c->ranks[0].layer_end != 0;
    if (given && c->ranks[n - 1].layer_end != m->n_layer) {
        snprintf(err, err_len, "%s:%d: the last stage ends at layer %u but %s has %u layers",
                 c->name, c->ranks[n - 1].line, c->ranks[n - 1].layer_end, m->path, m->n_layer);
        return TFAB_ERR_INVALID;
    }
    if (!given && topo && n <= 8) {
        unsigned o[TFAB_CLUSTER_MAX_RANKS], best[TFAB_CLUSTER_MAX_RANKS];
        int      cost = 1 << 30;
        memcpy(o, p->order, n * sizeof(unsigned));
        best_order(c, topo, o, n, 1, best, &cost);
        memcpy(p->order, best, n * sizeof(unsigned));
    }
    for (unsigned s = 0; s < n; s++)
        p->mem[s] = mem[p->order[s]];
    for (uint32_t l = 0; l < m->n_layer; l++)
        p->weights += m->layer_bytes[l];
    p->weights += m->first_bytes + m->last_bytes;
    p->kv          = m->kv_layer * m->n_layer;
    uint64_t total = stage_need(m, 0, m->n_layer), cap = 0;
    for (unsigned s = 0; s < n; s++)
        cap += p->mem[s];
    if (total > cap) {
        int w = snprintf(err, err_len,
                         "%s does not fit: it needs %s (weights %s + KV cache %s at n_ctx %u) but "
                         "the cluster has %s:",
                         m->path, tfab_size_human(total, a, sizeof(a)),
                         tfab_size_human(p->weights, b, sizeof(b)),
                         tfab_size_human(p->kv, (char[32]){0}, 32), m->n_ctx,
                         tfab_size_human(cap, (char[32]){0}, 32));
        for (unsigned r = 0; r < n && w > 0 && (size_t)w < err_len; r++)
            w += snprintf(err + w, err_len - (size_t)w, " %s on rank %u (%s)",
                          tfab_size_human(mem[r], a, sizeof(a)), r, c->ranks[r].address);
        return TFAB_ERR_NOMEM;
    }
    if (given) {
        for (unsigned s = 0; s < n; s++) {
            p->begin[s] = c->ranks[s].layer_begin;
            p->end[s]   = c->ranks[s].layer_end;
        }
    } else {
        /* boundaries where the cumulative cost crosses each rank's cumulative memory share */
        double   acc_mem = 0;
        uint32_t at      = 0;
        for (unsigned s = 0; s + 1 < n; s++) {
            acc_mem += (double)p->mem[s];
            double   target = (double)total * acc_mem / (double)cap;
            uint32_t best = at + 1, max_end = m->n_layer - (n - 1 - s);
            double   best_d = 1e300;
            for (uint32_t e = at + 1; e <= max_end; e++) {
                double d = (double)stage_need(m, 0, e) - target;
                d        = d < 0 ? -d : d;
                if (d < best_d && stage_need(m, at, e) <= p->mem[s]) {
                    best_d = d;
                    best   = e;
                }
            }
            p->begin[s] = at;
            p->end[s]   = best;
            at          = best;
        }
        p->begin[n - 1] = at;
        p->end[n - 1]   = m->n_layer;
    }
    for (unsigned s = 0; s < n; s++) {
        p->need[s] = stage_need(m, p->begin[s], p->end[s]);
        if (p->need[s] > p->mem[s]) {
            unsigned r = p->order[s];
            snprintf(err, err_len,
                     "%s does not fit rank %u (%s, %s:%d): layers [%u, %u) need %s (weights + KV "
                     "at n_ctx %u) but it has %s; give it fewer layers or more memory",
                     m->path, r, c->ranks[r].address, c->name, c->ranks[r].line, p->begin[s],
                     p->end[s], tfab_size_human(p->need[s], a, sizeof(a)), m->n_ctx,
                     tfab_size_human(p->mem[s], b, sizeof(b)));
            return TFAB_ERR_NOMEM;
        }
        p->link_cost[s] = link_between(c, topo, p->order[s], p->order[(s + 1) % n], p->link[s],
                                       sizeof(p->link[s]));
    }
    if (n == 1)
        snprintf(p->link[0], sizeof(p->link[0]), "none (one host)");
    p->act_bytes_decode  = wire_batch_bytes(1, m->n_embd);
    p->act_bytes_prefill = (wire_batch_bytes(chunk, m->n_embd) + chunk - 1) / chunk;
    p->logits_bytes      = wire_logits_bytes(1, m->n_vocab);
    return TFAB_OK;
}

uint64_t tfab_plan_mem_available(void)
{
    FILE              *f = fopen("/proc/meminfo", "r");
    char               line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024;
}

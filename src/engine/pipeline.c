/* pipeline.c - pipeline-parallel inference over the fabric: the coordinator (rank 0, first
 * stage, tokens in and logits out) and the nodes (later stages). Activations are pool buffers
 * sent stage to stage (zero-copy rendezvous when large); prefill goes in chunks, two in flight
 * per link, so one chunk's transfer hides behind the next one's compute. Nodes send heartbeats;
 * a node that dies or falls silent fails the request within dead_ms. */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/cluster.h>
#include <tfab/log.h>
#include <tfab/model.h>
#include <tfab/pool.h>
#include <tfab/transport.h>
#include "wire.h"

#define JOIN_MSG_NS (10ull * 1000000000ull) /* a joining node's JOIN after its connect */
#define MOD       "pipe"
#define NSLOT     2 /* batches in flight per link */
#define MS        1000000ull
#define POLL_NS   (20 * MS)
#define MAX_RANKS TFAB_CLUSTER_MAX_RANKS

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- completions: a transfer's callback marks it done under one lock per process ---------- */
typedef struct sync {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
} sync_t;

typedef struct xfer {
    sync_t       *s;
    int           busy; /* posted and not completed */
    int           done;
    tfab_status_t st;
    size_t        len;
    void         *buf;
    size_t        cap;
    /* overlap accounting of batch sends: posted, completed, and when the compute of the next
     * chunk ended (the transfer is hidden up to then) */
    uint64_t t_post, t_done, t_next_ce;
    int      acct;
} xfer_t;

static void xfer_cb(tfab_status_t st, size_t len, void *arg)
{
    xfer_t *x = arg;
    pthread_mutex_lock(&x->s->mu);
    x->st     = st;
    x->len    = len;
    x->t_done = now_ns();
    x->done   = 1;
    x->busy   = 0;
    pthread_cond_broadcast(&x->s->cv);
    pthread_mutex_unlock(&x->s->mu);
}

static tfab_status_t xfer_alloc(tfab_pool_t *pool, sync_t *s, size_t cap, xfer_t *x)
{
    memset(x, 0, sizeof(*x));
    x->s             = s;
    x->cap           = cap;
    tfab_status_t st = tfab_pool_alloc(pool, cap, &x->buf);
    if (st != TFAB_OK)
        TFAB_ERROR(MOD, "cannot take a %zu-byte message buffer from the pool: %s", cap,
                   tfab_status_str(st));
    return st;
}

static void xfer_free(tfab_pool_t *pool, xfer_t *x)
{
    if (x->buf)
        tfab_pool_free(pool, x->buf);
    x->buf = NULL;
}

static tfab_status_t post_send(tfab_ep_t *ep, xfer_t *x, size_t len, uint64_t tag)
{
    x->done          = 0;
    x->busy          = 1;
    tfab_status_t st = tfab_ep_send(ep, x->buf, len, tag, xfer_cb, x);
    if (st == TFAB_INPROGRESS || st == TFAB_OK)
        return TFAB_OK;
    x->busy = 0;
    return st;
}

static tfab_status_t post_recv(tfab_ep_t *ep, xfer_t *x, uint64_t tag)
{
    x->done          = 0;
    x->busy          = 1;
    tfab_status_t st = tfab_ep_recv(ep, x->buf, x->cap, tag, xfer_cb, x);
    if (st == TFAB_INPROGRESS || st == TFAB_OK)
        return TFAB_OK;
    x->busy = 0;
    return st;
}

/* Wait for x (NULL: for nothing, just the checks) until deadline (0: none). check() is called
 * every POLL_NS and on every completion: a non-OK status ends the wait with it. */
typedef tfab_status_t (*check_fn_t)(void *arg);
static tfab_status_t wait_xfer(sync_t *s, xfer_t *x, uint64_t deadline, check_fn_t check, void *arg)
{
    tfab_status_t st = TFAB_OK;
    pthread_mutex_lock(&s->mu);
    while (!x->done) {
        if (check) {
            pthread_mutex_unlock(&s->mu);
            st = check(arg);
            pthread_mutex_lock(&s->mu);
            if (st != TFAB_OK || x->done)
                break;
        }
        uint64_t now = now_ns();
        if (deadline && now >= deadline) {
            st = TFAB_ERR_TIMEOUT;
            break;
        }
        uint64_t        until = now + POLL_NS;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t abs = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + (until - now);
        ts.tv_sec    = (time_t)(abs / 1000000000ull);
        ts.tv_nsec   = (long)(abs % 1000000000ull);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    if (st == TFAB_OK && x->done)
        st = x->st;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void msg_init(pipe_msg_t *m, uint32_t type)
{
    memset(m, 0, sizeof(*m));
    m->magic   = PIPE_MAGIC;
    m->version = PIPE_VERSION;
    m->type    = type;
}


static tfab_status_t make_fabric(const char *listen, const char *token, const char *backend,
                                 size_t pool_bytes, tfab_pool_t **pool_p, tfab_fabric_t **fab_p)
{
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = pool_bytes};
    tfab_status_t      st = tfab_pool_create(&pp, pool_p);
    if (st != TFAB_OK)
        return st;
    tfab_fabric_params_t fp = {.field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN |
                                             TFAB_FABRIC_PARAM_LISTEN | TFAB_FABRIC_PARAM_BACKEND,
                               .pool    = *pool_p,
                               .token   = token,
                               .listen  = listen,
                               .backend = backend ? backend : "tcp"};
    if ((st = tfab_fabric_create(&fp, fab_p)) != TFAB_OK) {
        tfab_pool_destroy(*pool_p);
        *pool_p = NULL;
    }
    return st;
}

/* Connect, retrying while the peer is not listening yet (peers start in any order), until
 * deadline. (The fabric logs each refused attempt.) */
static tfab_status_t connect_retry(tfab_fabric_t *fab, const char *addr, uint64_t deadline,
                                   tfab_ep_t **ep_p)
{
    tfab_status_t st;
    while ((st = tfab_ep_connect(fab, addr, ep_p)) == TFAB_ERR_CONN && now_ns() < deadline)
        usleep(200000);
    return st;
}

/* ---- tensor parallel: the model's allgather over the fabric's ring ------------------------ */
typedef struct tp_ctx {
    tfab_ring_t *ring;
    tfab_pool_t *pool;
    void        *scratch; /* in the pool: the ring moves pool memory only */
    size_t       cap;
    unsigned     rank, size;
} tp_ctx_t;

static tfab_status_t ring_gather(void *arg, void *buf, size_t bytes_per_rank)
{
    tp_ctx_t *t = arg;
    if (t->ring == NULL || bytes_per_rank * t->size > t->cap)
        return TFAB_ERR_RANGE;
    memcpy((char *)t->scratch + t->rank * bytes_per_rank, (char *)buf + t->rank * bytes_per_rank,
           bytes_per_rank);
    tfab_status_t st = tfab_ring_allgather(t->ring, t->scratch, bytes_per_rank);
    if (st == TFAB_OK)
        memcpy(buf, t->scratch, bytes_per_rank * t->size);
    return st;
}

/* Bytes the largest gather of a model split size ways takes (chunk tokens, the widest of the
 * split outputs), rounded up. */
static size_t tp_scratch_bytes(const tfab_model_config_t *c, uint32_t chunk, unsigned size)
{
    size_t w = c->n_embd;
    w        = c->n_ff > w ? c->n_ff : w;
    w        = c->n_vocab > w ? c->n_vocab : w;
    w        = (size_t)c->n_head * c->head_dim > w ? (size_t)c->n_head * c->head_dim : w;
    return ((w + size - 1) / size) * size * chunk * sizeof(float);
}

static tfab_status_t tp_setup(tp_ctx_t *t, tfab_fabric_t *fab, tfab_pool_t *pool, unsigned rank,
                              unsigned size, tfab_ep_t *left, tfab_ep_t *right,
                              const tfab_model_config_t *c, uint32_t chunk)
{
    t->pool          = pool;
    t->cap           = tp_scratch_bytes(c, chunk, size);
    tfab_status_t st = tfab_pool_alloc(pool, t->cap, &t->scratch);
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "tensor parallel: no %zu-byte gather buffer in the pool: %s", t->cap,
                   tfab_status_str(st));
        return st;
    }
    if ((st = tfab_ring_create(fab, (int)rank, (int)size, left, right, t->cap, &t->ring)) !=
        TFAB_OK)
        TFAB_ERROR(MOD, "tensor parallel: ring of %u: %s", size, tfab_status_str(st));
    return st;
}

static void tp_cleanup(tp_ctx_t *t)
{
    if (t->ring)
        tfab_ring_destroy(t->ring);
    t->ring = NULL;
    if (t->scratch)
        tfab_pool_free(t->pool, t->scratch);
    t->scratch = NULL;
}

/* ======================================================================================== */
/* coordinator                                                                               */

typedef struct node_ref {
    tfab_ep_t    *ep;
    xfer_t        ctrl_rx, ctrl_tx, hb_rx;
    xfer_t        tok_tx;    /* tensor parallel: token batches to this node */
    uint64_t      last_seen; /* ns of the last heartbeat (under sync) */
    tfab_status_t failed;    /* heartbeat receive failed: the link is gone */
} node_ref_t;

struct tfab_pipe {
    tfab_cluster_t    cl;
    sync_t            s;
    tfab_pool_t      *pool;
    tfab_fabric_t    *fab;
    tfab_model_t     *model; /* stage 0 */
    uint32_t          n_ctx, chunk, n_layer, n_embd, n_vocab;
    uint32_t          begin[MAX_RANKS], end[MAX_RANKS]; /* layers of each rank */
    unsigned          order[MAX_RANKS];                 /* rank of each pipeline stage */
    uint64_t          mem[MAX_RANKS];                   /* memory each rank offers */
    node_ref_t        nodes[MAX_RANKS];                 /* [1, n_ranks) */
    tfab_ep_t        *to_first;                         /* batches to rank 1 */
    tfab_ep_t        *from_last;                        /* logits from the last rank */
    xfer_t            act[NSLOT];                       /* batches to rank 1 */
    xfer_t            logits_rx;                        /* from the last rank */
    int               closing, broken;
    tfab_status_t     start_failed; /* a node's own reason it could not start */
    uint64_t          seq_no;
    uint32_t         *pos1;  /* [chunk] one host, tensor parallel: positions of a chunk */
    uint8_t          *want1; /* [chunk] one host, tensor parallel: logits flags */
    tp_ctx_t          tp;    /* tensor parallel across all ranks (cl.tp > 1) */
    size_t            tp_cap;
    tfab_pipe_stats_t stats;
};

static void free_bufs(tfab_pipe_t *p)
{
    for (int k = 0; k < NSLOT; k++)
        xfer_free(p->pool, &p->act[k]);
    xfer_free(p->pool, &p->logits_rx);
    for (unsigned r = 1; r < p->cl.n_ranks; r++) {
        xfer_free(p->pool, &p->nodes[r].tok_tx);
        xfer_free(p->pool, &p->nodes[r].ctrl_rx);
        xfer_free(p->pool, &p->nodes[r].ctrl_tx);
        xfer_free(p->pool, &p->nodes[r].hb_rx);
    }
}

static void hb_cb(tfab_status_t st, size_t len, void *arg)
{
    node_ref_t *n = arg;
    sync_t     *s = n->hb_rx.s;
    (void)len;
    /* reposted under the lock: the closing side sets busy = 2 under it before closing */
    pthread_mutex_lock(&s->mu);
    if (st == TFAB_OK)
        n->last_seen = now_ns();
    else if (n->failed == TFAB_OK)
        n->failed = st;
    if (st == TFAB_OK && n->hb_rx.busy != 2 &&
        tfab_ep_recv(n->ep, n->hb_rx.buf, n->hb_rx.cap, TAG_HB, hb_cb, n) < 0)
        n->failed = TFAB_ERR_CONN;
    pthread_mutex_unlock(&s->mu);
}

/* Every node alive: heartbeats fresh, links up. Logs the first dead node once. */
static tfab_status_t check_nodes(void *arg)
{
    tfab_pipe_t  *p   = arg;
    uint64_t      now = now_ns();
    tfab_status_t st  = TFAB_OK;
    pthread_mutex_lock(&p->s.mu);
    for (unsigned r = 1; r < p->cl.n_ranks && st == TFAB_OK; r++) {
        node_ref_t *n = &p->nodes[r];
        if (n->ep == NULL)
            continue;
        if (n->failed != TFAB_OK) {
            if (!p->broken)
                TFAB_ERROR(MOD, "node %u (%s): link lost (%s); failing the request", r,
                           p->cl.ranks[r].address, tfab_status_str(n->failed));
            st = TFAB_ERR_CONN;
        } else if (n->last_seen && now - n->last_seen > (uint64_t)p->cl.dead_ms * MS) {
            if (!p->broken)
                TFAB_ERROR(MOD,
                           "node %u (%s): no heartbeat for %llu ms (dead_ms %u); failing the "
                           "request",
                           r, p->cl.ranks[r].address,
                           (unsigned long long)((now - n->last_seen) / MS), p->cl.dead_ms);
            st = TFAB_ERR_TIMEOUT;
        }
    }
    if (st != TFAB_OK)
        p->broken = 1;
    pthread_mutex_unlock(&p->s.mu);
    return st;
}

/* A node that could not start its stage says why in its READY; report that rather than the
 * link loss that follows when it exits. */
static tfab_status_t ready_failure(tfab_pipe_t *p)
{
    if (p->start_failed != TFAB_OK)
        return p->start_failed; /* said once */
    for (unsigned r = 1; r < p->cl.n_ranks; r++) {
        node_ref_t *nd = &p->nodes[r];
        pipe_msg_t *m  = nd->ctrl_rx.buf;
        char        why[1024];
        pthread_mutex_lock(&p->s.mu);
        int done = nd->ctrl_rx.done && nd->ctrl_rx.st == TFAB_OK;
        pthread_mutex_unlock(&p->s.mu);
        if (!done ||
            wire_check(m, nd->ctrl_rx.len, PM_READY, 0, 0, 0, 0, why, sizeof(why)) != TFAB_OK ||
            m->status == TFAB_OK)
            continue;
        TFAB_ERROR(MOD, "node %u (%s) failed to start its stage [%u, %u): %s", r,
                   p->cl.ranks[r].address, p->begin[r], p->end[r], m->text);
        p->broken = 1;
        p->start_failed =
            m->status < 0 && m->status > TFAB_ERR_LAST ? (tfab_status_t)m->status : TFAB_ERR_PROTO;
        return p->start_failed;
    }
    return TFAB_OK;
}

/* Node checks while waiting for the stages to start: a node's own failure first. */
static tfab_status_t check_start(void *arg)
{
    tfab_pipe_t  *p  = arg;
    tfab_status_t st = ready_failure(p);
    if (st == TFAB_OK) {
        st = check_nodes(p);
        if (st != TFAB_OK) { /* the node may have said why just before its link went */
            usleep(100000);
            p->broken = 0;
            if (ready_failure(p) != TFAB_OK)
                return TFAB_ERR_CANCELED;
            p->broken = 1;
        }
    }
    return st;
}

/* Layer ranges and stage order (tfab_plan_make): by the memory each rank offers and the
 * topology file's link ranking. */
static tfab_status_t place(tfab_pipe_t *p, const char *model)
{
    tfab_cluster_t    *c = &p->cl;
    char               err[1024];
    tfab_plan_model_t  pm;
    tfab_topology_t   *topo = NULL;
    static tfab_plan_t plan; /* large; the coordinator places once */
    tfab_status_t      st;
    if (c->topology[0] &&
        (st = tfab_topology_load(c->topology, &topo, err, sizeof(err))) != TFAB_OK) {
        TFAB_ERROR(MOD, "%s", err);
        return st;
    }
    if ((st = tfab_plan_model_read(model, p->n_ctx, &pm, err, sizeof(err))) != TFAB_OK) {
        TFAB_ERROR(MOD, "placement: %s", err);
        tfab_topology_free(topo);
        return st;
    }
    st = tfab_plan_make(c, topo, &pm, p->mem, p->chunk, &plan, err, sizeof(err));
    tfab_plan_model_free(&pm);
    tfab_topology_free(topo);
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "placement: %s", err);
        return st;
    }
    for (unsigned s = 0; s < plan.n; s++) {
        unsigned r  = plan.order[s];
        p->order[s] = r;
        p->begin[r] = plan.begin[s];
        p->end[r]   = plan.end[s];
        TFAB_INFO(MOD, "stage %u: rank %u (%s) layers [%u, %u), link to the next: %s", s, r,
                  c->ranks[r].address, plan.begin[s], plan.end[s], plan.link[s]);
    }
    return TFAB_OK;
}

static tfab_status_t stage_model_tp(const char *path, uint32_t begin, uint32_t end, uint32_t n_ctx,
                                    uint32_t chunk, unsigned threads, tp_ctx_t *tp,
                                    tfab_model_t **m_p)
{
    tfab_model_params_t mp = {.field_mask  = TFAB_MODEL_PARAM_LAYERS | TFAB_MODEL_PARAM_N_BATCH,
                              .path        = path,
                              .layer_begin = begin,
                              .layer_end   = end,
                              .n_batch     = chunk};
    if (tp && tp->size > 1) {
        mp.field_mask |= TFAB_MODEL_PARAM_TP;
        mp.tp_rank      = tp->rank;
        mp.tp_size      = tp->size;
        mp.tp_allgather = ring_gather;
        mp.tp_arg       = tp;
    }
    if (n_ctx) {
        mp.field_mask |= TFAB_MODEL_PARAM_N_CTX;
        mp.n_ctx = n_ctx;
    }
    if (threads) {
        mp.field_mask |= TFAB_MODEL_PARAM_N_THREADS;
        mp.n_threads = threads;
    }
    return tfab_model_create(&mp, m_p);
}

static tfab_status_t stage_model(const char *path, uint32_t begin, uint32_t end, uint32_t n_ctx,
                                 uint32_t chunk, unsigned threads, tfab_model_t **m_p)
{
    return stage_model_tp(path, begin, end, n_ctx, chunk, threads, NULL, m_p);
}

tfab_status_t tfab_pipe_create(const tfab_pipe_params_t *params, tfab_pipe_t **pipe_p)
{
    if (params == NULL || params->cluster == NULL || params->model == NULL || pipe_p == NULL)
        return TFAB_ERR_INVALID;
    tfab_pipe_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return TFAB_ERR_NOMEM;
    p->cl = *params->cluster;
    pthread_mutex_init(&p->s.mu, NULL);
    pthread_cond_init(&p->s.cv, NULL);
    tfab_cluster_t *c = &p->cl;
    tfab_status_t   st;
    unsigned        n = c->n_ranks;

    /* the model's shape, n_ctx and chunk from a one-layer stage (reads only its norms) */
    tfab_model_t *probe;
    if ((st = stage_model(params->model, 0, 1, params->n_ctx, c->chunk, 1, &probe)) != TFAB_OK)
        goto err_free;
    const tfab_model_config_t *cfg = tfab_model_config(probe);
    p->n_layer                     = cfg->n_layer;
    p->n_embd                      = cfg->n_embd;
    p->n_vocab                     = cfg->n_vocab;
    p->n_ctx                       = tfab_model_n_ctx(probe);
    p->chunk = c->chunk < tfab_model_n_batch(probe) ? c->chunk : tfab_model_n_batch(probe);
    if (c->tp > 1 && cfg->n_head_kv % n != 0) {
        TFAB_ERROR(MOD, "%s:%d: tp %u does not divide the model's %u KV heads", c->name, c->tp_line,
                   n, cfg->n_head_kv);
        tfab_model_destroy(probe);
        st = TFAB_ERR_INVALID;
        goto err_free;
    }
    p->tp_cap = c->tp > 1 ? tp_scratch_bytes(cfg, p->chunk, n) : 0;
    tfab_model_destroy(probe);
    for (unsigned r = 0; r < n; r++)
        p->order[r] = r;
    if (n == 1) {
        p->pos1  = calloc(p->chunk, sizeof(uint32_t));
        p->want1 = calloc(p->chunk, 1);
        if (p->pos1 == NULL || p->want1 == NULL ||
            (st = stage_model(params->model, 0, p->n_layer, p->n_ctx, p->chunk, params->n_threads,
                              &p->model)) != TFAB_OK) {
            st = st != TFAB_OK ? st : TFAB_ERR_NOMEM;
            goto err_free; /* frees pos1, want1 */
        }
        p->end[0] = p->n_layer;
        *pipe_p   = p;
        return TFAB_OK;
    }

    size_t batch_bytes  = wire_batch_bytes(p->chunk, p->n_embd);
    size_t logits_bytes = wire_logits_bytes(1, p->n_vocab);
    size_t need         = NSLOT * batch_bytes + logits_bytes + (size_t)n * 3 * 4096 + (1u << 20) +
                  2 * p->tp_cap + (size_t)n * wire_batch_bytes(p->chunk, 1);
    size_t pool = 16u << 20;
    while (pool < 2 * need)
        pool <<= 1;
    if ((st = make_fabric(c->ranks[0].address, c->token, c->backend, pool, &p->pool, &p->fab)) !=
        TFAB_OK)
        goto err_model;
    for (int k = 0; k < NSLOT; k++)
        if ((st = xfer_alloc(p->pool, &p->s, batch_bytes, &p->act[k])) != TFAB_OK)
            goto err_fabric;
    if ((st = xfer_alloc(p->pool, &p->s, logits_bytes, &p->logits_rx)) != TFAB_OK)
        goto err_fabric;

    /* join: every node connects, says which rank (or which address) it is */
    uint64_t deadline = now_ns() + (uint64_t)c->join_s * 1000 * MS;
    TFAB_INFO(MOD, "coordinator %s: waiting up to %u s for %u nodes", c->ranks[0].address,
              c->join_s, n - 1);
    for (unsigned joined = 0; joined < n - 1;) {
        tfab_ep_t *ep;
        uint64_t   now = now_ns();
        st = now < deadline ? tfab_fabric_accept(p->fab, deadline - now, &ep) : TFAB_ERR_TIMEOUT;
        if (st != TFAB_OK) {
            char missing[512] = "";
            int  w            = 0;
            for (unsigned r = 1; r < n; r++)
                if (p->nodes[r].ep == NULL && w < (int)sizeof(missing) - 100)
                    w += snprintf(missing + w, sizeof(missing) - (size_t)w, " %u (%s, %s:%d)", r,
                                  c->ranks[r].address, c->name, c->ranks[r].line);
            TFAB_ERROR(MOD, "coordinator: %u of %u nodes joined within %u s; missing:%s", joined,
                       n - 1, c->join_s, missing);
            goto err_fabric;
        }
        xfer_t rx;
        if ((st = xfer_alloc(p->pool, &p->s, 4096, &rx)) != TFAB_OK)
            goto err_fabric;
        /* a peer that connects and says nothing must not hold the join window of the others */
        uint64_t join_by = now_ns() + JOIN_MSG_NS < deadline ? now_ns() + JOIN_MSG_NS : deadline;
        if ((st = post_recv(ep, &rx, TAG_CTRL)) == TFAB_OK)
            st = wait_xfer(&p->s, &rx, join_by, NULL, NULL);
        pipe_msg_t *m = rx.buf;
        char        why[1024];
        if (st == TFAB_OK)
            st = wire_check(m, rx.len, PM_JOIN, 0, 0, 0, 0, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", tfab_status_str(st));
        int r = -1;
        if (st == TFAB_OK) {
            for (unsigned k = 1; k < n; k++)
                if ((m->rank > 0 && (unsigned)m->rank == k) ||
                    (m->rank < 0 && strcmp(m->addr, c->ranks[k].address) == 0))
                    r = (int)k;
            if (r < 0 || p->nodes[r].ep != NULL) {
                snprintf(why, sizeof(why), "rank %d / address %s is %s in %s", m->rank, m->addr,
                         r < 0 ? "not a node" : "already taken", c->name);
                st = TFAB_ERR_INVALID;
            } else if (strcmp(m->addr, c->ranks[r].address) != 0) {
                snprintf(why, sizeof(why), "rank %d listens on %s but %s:%d says %s", r, m->addr,
                         c->name, c->ranks[r].line, c->ranks[r].address);
                st = TFAB_ERR_INVALID;
            }
        }
        if (st != TFAB_OK) {
            TFAB_ERROR(MOD, "coordinator: refusing a node (%s): %s", tfab_ep_link(ep), why);
            tfab_ep_close(ep); /* cancels the receive still posted into rx first */
            tfab_pool_free(p->pool, rx.buf);
            continue; /* a stray or misconfigured node does not stop the others */
        }
        node_ref_t *nd = &p->nodes[r];
        nd->ep         = ep;
        nd->ctrl_rx    = rx;
        nd->last_seen  = now_ns();
        if ((st = xfer_alloc(p->pool, &p->s, 4096, &nd->ctrl_tx)) != TFAB_OK ||
            (st = xfer_alloc(p->pool, &p->s, 4096, &nd->hb_rx)) != TFAB_OK)
            goto err_fabric;
        if ((st = tfab_ep_recv(ep, nd->hb_rx.buf, nd->hb_rx.cap, TAG_HB, hb_cb, nd)) < 0)
            goto err_fabric;
        p->mem[r] = c->ranks[r].mem ? c->ranks[r].mem : m->free_mem;
        TFAB_INFO(MOD, "coordinator: node %d joined from %s (%llu MiB offered)", r, m->addr,
                  (unsigned long long)(p->mem[r] >> 20));
        joined++;
    }

    /* placement by the memory each rank offers, then this rank's stage */
    p->mem[0] = c->ranks[0].mem ? c->ranks[0].mem : tfab_plan_mem_available();
    if (c->tp > 1) { /* every rank: all layers, its share of each */
        for (unsigned r = 0; r < n; r++)
            p->begin[r] = 0, p->end[r] = p->n_layer;
        p->tp.rank = 0;
        p->tp.size = n;
        p->pos1    = calloc(p->chunk, sizeof(uint32_t));
        p->want1   = calloc(p->chunk, 1);
        if (p->pos1 == NULL || p->want1 == NULL) {
            st = TFAB_ERR_NOMEM;
            goto err_fabric;
        }
        for (unsigned r = 1; r < n; r++)
            if ((st = xfer_alloc(p->pool, &p->s, wire_batch_bytes(p->chunk, 1),
                                 &p->nodes[r].tok_tx)) != TFAB_OK)
                goto err_fabric;
    } else if ((st = place(p, params->model)) != TFAB_OK) {
        goto err_fabric;
    }
    if ((st = stage_model_tp(params->model, p->begin[0], p->end[0], p->n_ctx, p->chunk,
                             params->n_threads, c->tp > 1 ? &p->tp : NULL, &p->model)) != TFAB_OK)
        goto err_fabric;

    /* assign stages; every node loads its layers and connects to the next */
    for (unsigned s = 1; s < n; s++) {
        unsigned    r  = p->order[s];
        node_ref_t *nd = &p->nodes[r];
        pipe_msg_t *m  = nd->ctrl_tx.buf;
        msg_init(m, PM_ASSIGN);
        m->rank         = (int32_t)r;
        m->size         = n;
        m->layer_begin  = p->begin[r];
        m->layer_end    = p->end[r];
        m->n_layer      = p->n_layer;
        m->n_embd       = p->n_embd;
        m->n_vocab      = p->n_vocab;
        m->n_ctx        = p->n_ctx;
        m->chunk        = p->chunk;
        m->heartbeat_ms = c->heartbeat_ms;
        m->dead_ms      = c->dead_ms;
        m->tp_size      = c->tp > 1 ? n : 0;
        snprintf(m->addr, sizeof(m->addr), "%s", c->ranks[p->order[(s + 1) % n]].address);
        snprintf(m->model, sizeof(m->model), "%s", params->model);
        if ((st = post_send(nd->ep, &nd->ctrl_tx, sizeof(*m), TAG_CTRL)) != TFAB_OK ||
            (st = post_recv(nd->ep, &nd->ctrl_rx, TAG_CTRL)) != TFAB_OK)
            goto err_fabric;
    }
    /* the data links: to rank 1, and from the last rank (which connects once assigned) */
    uint64_t ready_by = deadline + (uint64_t)c->join_s * 1000 * MS;
    unsigned first = p->order[1], last = p->order[n - 1];
    if ((st = connect_retry(p->fab, c->ranks[first].address, ready_by, &p->to_first)) != TFAB_OK) {
        if (ready_failure(p) == TFAB_OK)
            TFAB_ERROR(MOD, "coordinator: cannot connect to node %u (%s): %s", first,
                       c->ranks[first].address, tfab_status_str(st));
        goto err_fabric;
    }
    while ((st = tfab_fabric_accept(p->fab, POLL_NS * 5, &p->from_last)) == TFAB_ERR_TIMEOUT &&
           now_ns() < ready_by && (st = check_start(p)) == TFAB_OK)
        ;
    if (st == TFAB_ERR_CANCELED || (st != TFAB_OK && ready_failure(p) != TFAB_OK))
        goto err_fabric; /* a node said why */
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "coordinator: the last node %u (%s) did not connect back: %s", last,
                   c->ranks[last].address, tfab_status_str(st));
        goto err_fabric;
    }
    for (unsigned r = 1; r < n; r++) {
        node_ref_t *nd = &p->nodes[r];
        char        why[1024];
        st = wait_xfer(&p->s, &nd->ctrl_rx, ready_by, check_start, p);
        if (st == TFAB_ERR_CANCELED)
            goto err_fabric; /* ready_failure said why */
        if (st == TFAB_OK)
            st = wire_check(nd->ctrl_rx.buf, nd->ctrl_rx.len, PM_READY, 0, 0, 0, 0, why,
                            sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", tfab_status_str(st));
        pipe_msg_t *m = nd->ctrl_rx.buf;
        if (st == TFAB_OK && m->status != TFAB_OK) {
            st = m->status < 0 && m->status > TFAB_ERR_LAST ? m->status : TFAB_ERR_PROTO;
            snprintf(why, sizeof(why), "%s", m->text);
        }
        if (st != TFAB_OK) {
            TFAB_ERROR(MOD, "node %u (%s) failed to start its stage [%u, %u): %s", r,
                       c->ranks[r].address, p->begin[r], p->end[r], why);
            goto err_fabric;
        }
    }
    if (c->tp > 1) {
        /* the ring: from the last rank (left), to rank 1 (right) */
        if ((st = tp_setup(&p->tp, p->fab, p->pool, 0, n, p->from_last, p->to_first,
                           tfab_model_config(p->model), p->chunk)) != TFAB_OK)
            goto err_fabric;
    } else if ((st = post_recv(p->from_last, &p->logits_rx, TAG_LOGITS)) != TFAB_OK) {
        goto err_fabric;
    }
    {
        char plan[1024];
        int  w = 0;
        for (unsigned s = 0; s < n && w < (int)sizeof(plan) - 80; s++) {
            unsigned r = p->order[s];
            w += snprintf(plan + w, sizeof(plan) - (size_t)w, "%s%u:[%u,%u)@%s", s ? " -> " : "", r,
                          p->begin[r], p->end[r], c->ranks[r].address);
        }
        TFAB_INFO(MOD, "pipeline ready: %s, chunk %u", plan, p->chunk);
    }
    *pipe_p = p;
    return TFAB_OK;

err_fabric:
    p->closing = 1;
    tp_cleanup(&p->tp);
    tfab_fabric_destroy(p->fab); /* completes our pending receives (canceled) */
    free_bufs(p);
    tfab_pool_destroy(p->pool);
err_model:
    tfab_model_destroy(p->model);
err_free:
    free(p->pos1);
    free(p->want1);
    pthread_mutex_destroy(&p->s.mu);
    pthread_cond_destroy(&p->s.cv);
    free(p);
    return st;
}

void tfab_pipe_destroy(tfab_pipe_t *p)
{
    if (p == NULL)
        return;
    if (p->fab) {
        /* An orderly stop in which the receiving end of every link closes first, so nobody
         * sees a peer vanish under a pending receive: the logits link here, then each node,
         * last to first, closes its link from the previous stage and says bye; then its
         * control link closes from this side. */
        uint64_t until = now_ns() + 3000 * MS;
        tp_cleanup(&p->tp);
        if (p->from_last)
            tfab_ep_close(p->from_last);
        for (unsigned s = p->cl.n_ranks - 1; s >= 1; s--) {
            node_ref_t *nd = &p->nodes[p->order[s]];
            if (nd->ep == NULL)
                continue;
            /* tensor parallel: first complete the node's posted token receives */
            for (int k = 0; k < NSLOT && p->cl.tp > 1 && !p->broken && nd->tok_tx.buf; k++) {
                if (nd->tok_tx.busy)
                    wait_xfer(&p->s, &nd->tok_tx, until, NULL, NULL);
                msg_init(nd->tok_tx.buf, PM_STOP);
                if (post_send(nd->ep, &nd->tok_tx, sizeof(pipe_msg_t), TAG_ACT) != TFAB_OK)
                    break;
            }
            if (nd->tok_tx.busy)
                wait_xfer(&p->s, &nd->tok_tx, until, NULL, NULL);
            if (!p->broken && !nd->ctrl_tx.busy && !nd->ctrl_rx.busy) {
                msg_init(nd->ctrl_tx.buf, PM_STOP);
                if (post_recv(nd->ep, &nd->ctrl_rx, TAG_CTRL) == TFAB_OK &&
                    post_send(nd->ep, &nd->ctrl_tx, sizeof(pipe_msg_t), TAG_CTRL) == TFAB_OK &&
                    wait_xfer(&p->s, &nd->ctrl_rx, until, NULL, NULL) == TFAB_OK) {
                    msg_init(nd->ctrl_tx.buf, PM_CLOSE);
                    if (post_send(nd->ep, &nd->ctrl_tx, sizeof(pipe_msg_t), TAG_CTRL) == TFAB_OK)
                        wait_xfer(&p->s, &nd->ctrl_tx, until, NULL, NULL);
                }
            }
            pthread_mutex_lock(&p->s.mu);
            nd->hb_rx.busy = 2; /* heartbeat callbacks stop reposting */
            pthread_mutex_unlock(&p->s.mu);
            tfab_ep_close(nd->ep);
        }
        if (p->to_first)
            tfab_ep_close(p->to_first);
        tfab_fabric_destroy(p->fab);
        free_bufs(p);
        tfab_pool_destroy(p->pool);
    }
    tfab_model_destroy(p->model);
    free(p->pos1);
    free(p->want1);
    pthread_mutex_destroy(&p->s.mu);
    pthread_cond_destroy(&p->s.cv);
    free(p);
}

uint32_t tfab_pipe_n_vocab(const tfab_pipe_t *p)
{
    return p->n_vocab;
}
void tfab_pipe_stages(const tfab_pipe_t *p, char *buf, size_t len)
{
    size_t w = 0;
    buf[0]   = '\0';
    for (unsigned s = 0; s < p->cl.n_ranks && w < len; s++) {
        unsigned r = p->order[s];
        int      k =
            snprintf(buf + w, len - w, "%s%u:[%u,%u)", s ? " -> " : "", r, p->begin[r], p->end[r]);
        if (k < 0)
            break;
        w += (size_t)k;
    }
}

uint32_t tfab_pipe_n_ctx(const tfab_pipe_t *p)
{
    return p->n_ctx;
}
void tfab_pipe_get_stats(const tfab_pipe_t *p, tfab_pipe_stats_t *s)
{
    *s = p->stats;
}

/* Add a completed batch send to the transfer-time statistics: its whole duration, and the part
 * that ran while the next chunk was being computed here. */
static void account_send(tfab_pipe_t *p, xfer_t *x)
{
    pthread_mutex_lock(&p->s.mu);
    if (x->acct && x->done && x->st == TFAB_OK) {
        uint64_t end = x->t_next_ce && x->t_next_ce < x->t_done ? x->t_next_ce : x->t_done;
        p->stats.xfer_s += (double)(x->t_done - x->t_post) * 1e-9;
        if (x->t_next_ce)
            p->stats.hidden_s += (double)(end > x->t_post ? end - x->t_post : 0) * 1e-9;
        x->acct = 0;
    }
    pthread_mutex_unlock(&p->s.mu);
}

/* Tensor parallel: every node gets the token ids, every rank computes its share of every
 * layer, the ring joins the pieces; the logits come out here as on every rank. */
static tfab_status_t eval_tp(tfab_pipe_t *p, const int32_t *tokens, uint32_t n, uint32_t pos,
                             float *logits)
{
    tfab_status_t st;
    for (uint32_t s = 0; s < n; s += p->chunk) {
        uint32_t c = n - s < p->chunk ? n - s : p->chunk;
        for (uint32_t i = 0; i < c; i++) {
            p->pos1[i]  = pos + s + i;
            p->want1[i] = s + i == n - 1;
        }
        for (unsigned r = 1; r < p->cl.n_ranks; r++) {
            xfer_t *x = &p->nodes[r].tok_tx;
            if (x->busy && (st = wait_xfer(&p->s, x, 0, check_nodes, p)) != TFAB_OK)
                return st;
            if (x->done && x->st != TFAB_OK) {
                TFAB_ERROR(MOD, "node %u (%s): link lost, tokens not delivered (%s)", r,
                           p->cl.ranks[r].address, tfab_status_str(x->st));
                return x->st;
            }
            pipe_msg_t *m = x->buf;
            msg_init(m, PM_BATCH);
            m->n      = c;
            m->n_out  = s + c == n;
            m->seq_no = p->seq_no;
            memcpy(m + 1, p->pos1, c * sizeof(uint32_t));
            memcpy((uint32_t *)(m + 1) + c, p->want1, c);
            memcpy((char *)x->buf + wire_batch_hidden_off(c), tokens + s, c * sizeof(int32_t));
            if ((st = post_send(p->nodes[r].ep, x, wire_batch_bytes(c, 1), TAG_ACT)) != TFAB_OK) {
                TFAB_ERROR(MOD, "node %u (%s): link lost, cannot send tokens (%s)", r,
                           p->cl.ranks[r].address, tfab_status_str(st));
                return st;
            }
            p->stats.bytes_sent += wire_batch_bytes(c, 1);
        }
        p->seq_no++;
        tfab_model_batch_t b = {
            .n = c, .tokens = tokens + s, .pos = p->pos1, .want_logits = p->want1};
        uint64_t t0 = now_ns();
        if ((st = tfab_model_decode(p->model, NULL, &b, s + c == n ? logits : NULL, NULL)) !=
            TFAB_OK) {
            check_nodes(p); /* names a dead node, if that is why the ring failed */
            return st;
        }
        p->stats.compute_s += (double)(now_ns() - t0) * 1e-9;
    }
    p->stats.tokens += n;
    return TFAB_OK;
}

tfab_status_t tfab_pipe_eval(tfab_pipe_t *p, const int32_t *tokens, uint32_t n, uint32_t pos,
                             float *logits)
{
    if (p->broken) {
        TFAB_ERROR(MOD, "the pipeline lost a node earlier; restart the cluster");
        return TFAB_ERR_CONN;
    }
    if (n == 0 || pos > p->n_ctx || n > p->n_ctx - pos) {
        TFAB_ERROR(MOD, "eval of %u tokens at position %u: beyond the context of %u", n, pos,
                   p->n_ctx);
        return TFAB_ERR_RANGE;
    }
    tfab_status_t st;
    uint64_t      t0;
    if (p->cl.n_ranks == 1) {
        /* one host: the whole model here, in the same chunks */
        for (uint32_t s = 0; s < n; s += p->chunk) {
            uint32_t c = n - s < p->chunk ? n - s : p->chunk;
            for (uint32_t i = 0; i < c; i++) {
                p->pos1[i]  = pos + s + i;
                p->want1[i] = s + i == n - 1;
            }
            tfab_model_batch_t b = {
                .n = c, .tokens = tokens + s, .pos = p->pos1, .want_logits = p->want1};
            t0 = now_ns();
            if ((st = tfab_model_decode(p->model, NULL, &b, logits, NULL)) != TFAB_OK)
                return st;
            p->stats.compute_s += (double)(now_ns() - t0) * 1e-9;
        }
        p->stats.tokens += n;
        return TFAB_OK;
    }
    if (p->cl.tp > 1) {
        if ((st = eval_tp(p, tokens, n, pos, logits)) != TFAB_OK) {
            TFAB_ERROR(MOD, "tensor-parallel request of %u tokens at position %u failed: %s", n,
                       pos, tfab_status_str(st));
            p->broken = 1;
        }
        return st;
    }
    uint32_t D = p->n_embd, V = p->n_vocab;
    for (uint32_t s = 0, k = 0; s < n; s += p->chunk, k = (k + 1) % NSLOT) {
        uint32_t c = n - s < p->chunk ? n - s : p->chunk;
        xfer_t  *x = &p->act[k];
        t0         = now_ns();
        if (x->busy && (st = wait_xfer(&p->s, x, 0, check_nodes, p)) != TFAB_OK)
            goto fail;
        if (x->done && x->st != TFAB_OK) {
            st = x->st;
            TFAB_ERROR(MOD, "node %u (%s): link lost, a batch was not delivered (%s)", p->order[1],
                       p->cl.ranks[p->order[1]].address, tfab_status_str(st));
            goto fail;
        }
        p->stats.wait_s += (double)(now_ns() - t0) * 1e-9;
        account_send(p, x);
        pipe_msg_t *m = x->buf;
        msg_init(m, PM_BATCH);
        m->n           = c;
        m->n_out       = s + c == n;
        m->seq_no      = p->seq_no++;
        uint32_t *bpos = (uint32_t *)(m + 1);
        uint8_t  *want = (uint8_t *)(bpos + c);
        for (uint32_t i = 0; i < c; i++) {
            bpos[i] = pos + s + i;
            want[i] = s + i == n - 1;
        }
        float             *hidden = (float *)((char *)x->buf + wire_batch_hidden_off(c));
        tfab_model_batch_t b      = {.n = c, .tokens = tokens + s, .pos = bpos};
        t0                        = now_ns();
        if ((st = tfab_model_decode(p->model, NULL, &b, NULL, hidden)) != TFAB_OK)
            goto fail;
        uint64_t ce = now_ns();
        p->stats.compute_s += (double)(ce - t0) * 1e-9;
        xfer_t *prev = &p->act[(k + NSLOT - 1) % NSLOT];
        pthread_mutex_lock(&p->s.mu);
        if (s > 0 && prev->acct && prev->t_next_ce == 0)
            prev->t_next_ce = ce;
        x->t_post    = now_ns();
        x->t_next_ce = 0;
        x->acct      = 1;
        pthread_mutex_unlock(&p->s.mu);
        if ((st = post_send(p->to_first, x, wire_batch_bytes(c, D), TAG_ACT)) != TFAB_OK) {
            TFAB_ERROR(MOD, "node %u (%s): link lost, cannot send a batch (%s)", p->order[1],
                       p->cl.ranks[p->order[1]].address, tfab_status_str(st));
            goto fail;
        }
        p->stats.bytes_sent += wire_batch_bytes(c, D);
    }
    t0 = now_ns();
    st = wait_xfer(&p->s, &p->logits_rx, 0, check_nodes, p);
    p->stats.wait_s += (double)(now_ns() - t0) * 1e-9;
    if (st != TFAB_OK) {
        if (!p->broken) /* not found by check_nodes: the logits link itself failed */
            TFAB_ERROR(MOD, "node %u (%s): link lost while the coordinator waited for logits (%s)",
                       p->order[p->cl.n_ranks - 1],
                       p->cl.ranks[p->order[p->cl.n_ranks - 1]].address, tfab_status_str(st));
        goto fail;
    }
    char        why[1024];
    pipe_msg_t *m = p->logits_rx.buf;
    if ((st = wire_check(m, p->logits_rx.len, PM_LOGITS, 1, D, V, p->n_ctx, why, sizeof(why))) !=
        TFAB_OK) {
        TFAB_ERROR(MOD, "logits from node %u: %s", p->order[p->cl.n_ranks - 1], why);
        goto fail;
    }
    memcpy(logits, m + 1, (size_t)V * sizeof(float));
    for (int k = 0; k < NSLOT; k++)
        account_send(p, &p->act[k]);
    p->stats.bytes_received += p->logits_rx.len;
    p->stats.tokens += n;
    if ((st = post_recv(p->from_last, &p->logits_rx, TAG_LOGITS)) != TFAB_OK) {
        unsigned last = p->order[p->cl.n_ranks - 1];
        TFAB_ERROR(MOD, "node %u (%s): link lost (%s)", last, p->cl.ranks[last].address,
                   tfab_status_str(st));
        goto fail;
    }
    return TFAB_OK;
fail:
    if (!p->broken)
        TFAB_ERROR(MOD, "pipeline request of %u tokens at position %u failed: %s", n, pos,
                   tfab_status_str(st));
    p->broken = 1;
    return st;
}

/* ======================================================================================== */
/* node                                                                                      */

typedef struct node {
    sync_t         s;
    tfab_pool_t   *pool;
    tfab_fabric_t *fab;
    tfab_ep_t     *ctrl, *prev, *next;
    xfer_t         ctrl_rx, ctrl_tx, hb_tx;
    xfer_t         in[NSLOT], out[NSLOT];
    tp_ctx_t       tp;
    float         *tp_logits; /* tensor parallel: [chunk][n_vocab], rows with logits */
    pthread_t      hb_thread;
    int            hb_started, hb_stop;
    tfab_status_t  hb_failed;
    uint32_t       hb_ms;
} node_t;

static void *hb_main(void *arg)
{
    node_t *nd = arg;
    for (;;) {
        pthread_mutex_lock(&nd->s.mu);
        int stop = nd->hb_stop, busy = nd->hb_tx.busy;
        if (!busy && nd->hb_tx.done && nd->hb_tx.st != TFAB_OK && nd->hb_failed == TFAB_OK)
            nd->hb_failed = nd->hb_tx.st;
        pthread_mutex_unlock(&nd->s.mu);
        if (stop)
            break;
        if (!busy) {
            msg_init(nd->hb_tx.buf, PM_HB);
            tfab_status_t st = post_send(nd->ctrl, &nd->hb_tx, sizeof(pipe_msg_t), TAG_HB);
            if (st != TFAB_OK) {
                pthread_mutex_lock(&nd->s.mu);
                nd->hb_failed = st;
                pthread_cond_broadcast(&nd->s.cv);
                pthread_mutex_unlock(&nd->s.mu);
                break;
            }
        }
        usleep(nd->hb_ms * 1000u);
    }
    return NULL;
}

/* The node's wait condition besides its batch: the coordinator's control channel (stop, or
 * the coordinator gone) and the heartbeat sender. */
static tfab_status_t check_node(void *arg)
{
    node_t       *nd = arg;
    tfab_status_t st = TFAB_OK;
    pthread_mutex_lock(&nd->s.mu);
    if (nd->ctrl_rx.done)
        st = TFAB_ERR_CANCELED; /* a stop, or the channel closed: the caller looks */
    else if (nd->hb_failed != TFAB_OK)
        st = TFAB_ERR_CONN;
    pthread_mutex_unlock(&nd->s.mu);
    return st;
}

/* The orderly stop (see tfab_pipe_destroy): close the link from the previous stage (we are
 * its receiving end), stop heartbeats, say bye, and wait for the coordinator's close. */
static tfab_status_t node_bye(node_t *nd)
{
    tp_cleanup(&nd->tp); /* the ring uses prev and next */
    tfab_ep_close(nd->prev);
    nd->prev = NULL;
    pthread_mutex_lock(&nd->s.mu);
    nd->hb_stop = 1;
    pthread_mutex_unlock(&nd->s.mu);
    if (nd->hb_started)
        pthread_join(nd->hb_thread, NULL);
    nd->hb_started = 0;
    uint64_t until = now_ns() + 3000 * MS;
    if (nd->hb_tx.busy)
        wait_xfer(&nd->s, &nd->hb_tx, until, NULL, NULL);
    msg_init(nd->ctrl_tx.buf, PM_BYE);
    if (post_recv(nd->ctrl, &nd->ctrl_rx, TAG_CTRL) == TFAB_OK &&
        post_send(nd->ctrl, &nd->ctrl_tx, sizeof(pipe_msg_t), TAG_CTRL) == TFAB_OK)
        wait_xfer(&nd->s, &nd->ctrl_rx, until, NULL, NULL);
    return TFAB_OK;
}

/* Wait for the next batch into in. 0 with *st_p to return when there is none: the
 * coordinator's STOP arrived on the control link (node_bye's status), the coordinator went
 * away, or the receive failed (what names it in the log). */
static int node_next(node_t *nd, xfer_t *in, const pipe_msg_t *as, const char *what,
                     tfab_status_t *st_p)
{
    tfab_status_t st = wait_xfer(&nd->s, in, 0, check_node, nd);
    if (st == TFAB_ERR_CANCELED || (st == TFAB_OK && nd->ctrl_rx.done && !in->done)) {
        pipe_msg_t *c = nd->ctrl_rx.buf;
        if (nd->ctrl_rx.st == TFAB_OK && nd->ctrl_rx.len >= sizeof(*c) &&
            c->magic == PIPE_MAGIC && c->type == PM_STOP) {
            TFAB_INFO(MOD, "node %d: stopped by the coordinator", as->rank);
            *st_p = node_bye(nd);
            return 0;
        }
        TFAB_ERROR(MOD, "node %d: the coordinator went away (%s)", as->rank,
                   tfab_status_str(nd->ctrl_rx.st != TFAB_OK ? nd->ctrl_rx.st : TFAB_ERR_PROTO));
        *st_p = TFAB_ERR_CONN;
        return 0;
    }
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "node %d: %s: %s", as->rank, what, tfab_status_str(st));
        *st_p = st;
        return 0;
    }
    *st_p = TFAB_OK;
    return 1;
}

/* Serve batches until stopped. */
static tfab_status_t node_serve(node_t *nd, tfab_model_t *model, const pipe_msg_t *as)
{
    int           last = as->layer_end == as->n_layer;
    uint32_t      D = as->n_embd, V = as->n_vocab;
    tfab_status_t st;
    for (int k = 0; k < NSLOT; k++)
        if ((st = post_recv(nd->prev, &nd->in[k], TAG_ACT)) != TFAB_OK)
            return st;
    for (int k = 0, o = 0;; k = (k + 1) % NSLOT) {
        xfer_t *in = &nd->in[k];
        if (!node_next(nd, in, as, "receiving from the previous stage", &st))
            return st;
        pipe_msg_t *m = in->buf;
        char        why[1024];
        if ((st = wire_check(m, in->len, PM_BATCH, as->chunk, D, V, as->n_ctx, why, sizeof(why))) !=
            TFAB_OK) {
            TFAB_ERROR(MOD, "node %d: bad batch from the previous stage: %s", as->rank, why);
            return st;
        }
        uint32_t *pos  = (uint32_t *)(m + 1);
        uint8_t  *want = (uint8_t *)(pos + m->n);
        float    *hid  = (float *)((char *)in->buf + wire_batch_hidden_off(m->n));
        xfer_t   *out  = &nd->out[o];
        o              = (o + 1) % NSLOT;
        if (out->busy && (st = wait_xfer(&nd->s, out, 0, check_node, nd)) != TFAB_OK)
            return st == TFAB_ERR_CANCELED ? TFAB_OK : st;
        if (out->done && out->st != TFAB_OK) {
            TFAB_ERROR(MOD, "node %d: sending to the next stage failed: %s", as->rank,
                       tfab_status_str(out->st));
            return out->st;
        }
        pipe_msg_t        *om = out->buf;
        tfab_model_batch_t b  = {.n = m->n, .hidden_in = hid, .pos = pos, .want_logits = want};
        if (last) {
            if (m->n_out > 0) {
                msg_init(om, PM_LOGITS);
                om->n_out  = m->n_out;
                om->seq_no = m->seq_no;
                st         = tfab_model_decode(model, NULL, &b, (float *)(om + 1), NULL);
            } else {
                st = tfab_model_decode(model, NULL, &b, NULL, NULL);
            }
        } else {
            msg_init(om, PM_BATCH);
            om->n      = m->n;
            om->n_out  = m->n_out;
            om->seq_no = m->seq_no;
            memcpy(om + 1, pos, (size_t)m->n * 5);
            st = tfab_model_decode(model, NULL, &b, NULL,
                                   (float *)((char *)out->buf + wire_batch_hidden_off(m->n)));
        }
        if (st != TFAB_OK)
            return st;
        if (last && m->n_out > 0)
            st = post_send(nd->next, out, wire_logits_bytes(m->n_out, V), TAG_LOGITS);
        else if (!last)
            st = post_send(nd->next, out, wire_batch_bytes(m->n, D), TAG_ACT);
        if (st != TFAB_OK) {
            TFAB_ERROR(MOD, "node %d: sending to the %s: %s", as->rank,
                       last ? "coordinator" : "next stage", tfab_status_str(st));
            return st;
        }
        if ((st = post_recv(nd->prev, in, TAG_ACT)) != TFAB_OK)
            return st;
    }
}

/* Tensor parallel: token batches from the coordinator; this rank's share of every layer, the
 * ring joins the pieces (the coordinator keeps the logits). */
static tfab_status_t node_serve_tp(node_t *nd, tfab_model_t *model, const pipe_msg_t *as)
{
    tfab_status_t st;
    int           drained = 0;
    for (int k = 0; k < NSLOT; k++)
        if ((st = post_recv(nd->ctrl, &nd->in[k], TAG_ACT)) != TFAB_OK)
            return st;
    for (int k = 0;; k = (k + 1) % NSLOT) {
        xfer_t *in = &nd->in[k];
        if (!node_next(nd, in, as, "receiving tokens", &st))
            return st;
        pipe_msg_t *m = in->buf;
        char        why[1024];
        if (in->len >= sizeof(*m) && m->magic == PIPE_MAGIC && m->type == PM_STOP) {
            /* the coordinator drains our token receives before it stops us, so that no receive
             * is pending on the control link when it closes */
            if (++drained < NSLOT)
                continue;
            st            = wait_xfer(&nd->s, &nd->ctrl_rx, now_ns() + 5000 * MS, NULL, NULL);
            pipe_msg_t *c = nd->ctrl_rx.buf;
            if (st == TFAB_OK && nd->ctrl_rx.len >= sizeof(*c) && c->magic == PIPE_MAGIC &&
                c->type == PM_STOP) {
                TFAB_INFO(MOD, "node %d: stopped by the coordinator", as->rank);
                return node_bye(nd);
            }
            TFAB_ERROR(MOD, "node %d: token stream ended without a stop: %s", as->rank,
                       tfab_status_str(st));
            return st != TFAB_OK ? st : TFAB_ERR_PROTO;
        }
        if ((st = wire_check(m, in->len, PM_BATCH, as->chunk, 1, as->n_vocab, as->n_ctx, why,
                             sizeof(why))) != TFAB_OK) {
            TFAB_ERROR(MOD, "node %d: bad token batch from the coordinator: %s", as->rank, why);
            return st;
        }
        uint32_t          *pos = (uint32_t *)(m + 1);
        tfab_model_batch_t b   = {
              .n           = m->n,
              .tokens      = (const int32_t *)((char *)in->buf + wire_batch_hidden_off(m->n)),
              .pos         = pos,
              .want_logits = (uint8_t *)(pos + m->n)};
        if ((st = tfab_model_decode(model, NULL, &b, m->n_out ? nd->tp_logits : NULL, NULL)) !=
            TFAB_OK) {
            TFAB_ERROR(MOD, "node %d: tensor-parallel batch failed: %s", as->rank,
                       tfab_status_str(st));
            return st;
        }
        if ((st = post_recv(nd->ctrl, in, TAG_ACT)) != TFAB_OK)
            return st;
    }
}

/* Tell the coordinator how the stage start went. */
static void send_ready(node_t *nd, tfab_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_ready(node_t *nd, tfab_status_t status, const char *fmt, ...)
{
    pipe_msg_t *m = nd->ctrl_tx.buf;
    msg_init(m, PM_READY);
    m->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->text, sizeof(m->text), fmt, ap);
    va_end(ap);
    if (post_send(nd->ctrl, &nd->ctrl_tx, sizeof(*m), TAG_CTRL) == TFAB_OK)
        wait_xfer(&nd->s, &nd->ctrl_tx, now_ns() + 5000 * MS, NULL, NULL);
}

tfab_status_t tfab_node_run(const tfab_node_params_t *params)
{
    if (params == NULL || params->coordinator == NULL || params->listen == NULL ||
        params->token == NULL)
        return TFAB_ERR_INVALID;
    node_t *nd = calloc(1, sizeof(*nd));
    if (nd == NULL)
        return TFAB_ERR_NOMEM;
    pthread_mutex_init(&nd->s.mu, NULL);
    pthread_cond_init(&nd->s.cv, NULL);
    tfab_model_t *model = NULL;
    tfab_status_t st;
    /* message buffers are sized after the assignment (2 x in + 2 x out of chunk x n_embd
     * floats; the last stage's out holds logits rows); a node of a model with a wide vocabulary
     * or chunk needs --pool-size, and says so at assignment */
    size_t pool_bytes = params->pool_bytes ? params->pool_bytes : 32u << 20;
    if ((st = make_fabric(params->listen, params->token, params->backend, pool_bytes, &nd->pool,
                          &nd->fab)) != TFAB_OK)
        goto out_free;
    if ((st = xfer_alloc(nd->pool, &nd->s, 4096, &nd->ctrl_rx)) != TFAB_OK ||
        (st = xfer_alloc(nd->pool, &nd->s, 4096, &nd->ctrl_tx)) != TFAB_OK ||
        (st = xfer_alloc(nd->pool, &nd->s, 4096, &nd->hb_tx)) != TFAB_OK)
        goto out_fabric;
    uint64_t deadline = now_ns() + 60000 * MS;
    if ((st = connect_retry(nd->fab, params->coordinator, deadline, &nd->ctrl)) != TFAB_OK) {
        TFAB_ERROR(MOD, "node %s: cannot join the coordinator %s: %s%s", params->listen,
                   params->coordinator, tfab_status_str(st),
                   st == TFAB_ERR_AUTH ? " (the cluster token differs)" : "");
        goto out_fabric;
    }
    pipe_msg_t *m = nd->ctrl_tx.buf;
    msg_init(m, PM_JOIN);
    m->rank       = params->rank;
    m->free_mem   = tfab_plan_mem_available();
    m->pool_bytes = pool_bytes;
    snprintf(m->addr, sizeof(m->addr), "%s", params->listen);
    if ((st = post_recv(nd->ctrl, &nd->ctrl_rx, TAG_CTRL)) != TFAB_OK ||
        (st = post_send(nd->ctrl, &nd->ctrl_tx, sizeof(*m), TAG_CTRL)) != TFAB_OK ||
        (st = wait_xfer(&nd->s, &nd->ctrl_tx, deadline, NULL, NULL)) != TFAB_OK ||
        (st = wait_xfer(&nd->s, &nd->ctrl_rx, 0, NULL, NULL)) != TFAB_OK) {
        TFAB_ERROR(MOD,
                   "node %s: no stage assignment from the coordinator %s: %s (is this "
                   "address a node of its cluster file?)",
                   params->listen, params->coordinator, tfab_status_str(st));
        goto out_fabric;
    }
    pipe_msg_t as;
    char       why[1024];
    memcpy(&as, nd->ctrl_rx.buf, sizeof(as));
    if ((st = wire_check(&as, nd->ctrl_rx.len, PM_ASSIGN, 0, 0, 0, 0, why, sizeof(why))) !=
            TFAB_OK ||
        as.chunk == 0 || as.chunk > 65536 || as.n_embd == 0 || as.n_vocab == 0 ||
        as.heartbeat_ms == 0) {
        TFAB_ERROR(MOD, "node %s: bad assignment from the coordinator: %s", params->listen,
                   st != TFAB_OK ? why : "zero chunk, width or heartbeat");
        st = TFAB_ERR_PROTO;
        goto out_fabric;
    }
    nd->hb_ms = as.heartbeat_ms;
    if (pthread_create(&nd->hb_thread, NULL, hb_main, nd) != 0) {
        st = TFAB_ERR_NOMEM;
        goto out_fabric;
    }
    nd->hb_started = 1;
    TFAB_INFO(MOD, "node %s: rank %d of %u, layers [%u, %u)", params->listen, as.rank, as.size,
              as.layer_begin, as.layer_end);

    const char *path = params->model ? params->model : as.model;
    int         tp   = as.tp_size > 1;
    if (tp && (as.tp_size > MAX_RANKS || as.rank < 1 || (uint32_t)as.rank >= as.tp_size)) {
        TFAB_ERROR(MOD, "node %s: bad tensor-parallel assignment (rank %d of %u)", params->listen,
                   as.rank, as.tp_size);
        st = TFAB_ERR_PROTO;
        goto out_hb;
    }
    nd->tp.rank = tp ? (unsigned)as.rank : 0;
    nd->tp.size = tp ? as.tp_size : 1;
    if ((st = stage_model_tp(path, as.layer_begin, as.layer_end, as.n_ctx, as.chunk,
                             params->n_threads, tp ? &nd->tp : NULL, &model)) != TFAB_OK) {
        send_ready(nd, st, "cannot load layers [%u, %u) of %s: %s (the log of node %s says why)",
                   as.layer_begin, as.layer_end, path, tfab_status_str(st), params->listen);
        goto out_hb;
    }
    const tfab_model_config_t *cfg = tfab_model_config(model);
    if (cfg->n_layer != as.n_layer || cfg->n_embd != as.n_embd || cfg->n_vocab != as.n_vocab ||
        tfab_model_n_ctx(model) != as.n_ctx) {
        st = TFAB_ERR_INVALID;
        send_ready(nd, st,
                   "%s on node %s has %u layers, width %u, vocabulary %u, n_ctx %u; the "
                   "coordinator's has %u, %u, %u, %u",
                   path, params->listen, cfg->n_layer, cfg->n_embd, cfg->n_vocab,
                   tfab_model_n_ctx(model), as.n_layer, as.n_embd, as.n_vocab, as.n_ctx);
        goto out_hb;
    }
    int    last   = as.layer_end == as.n_layer;
    size_t in_sz  = wire_batch_bytes(as.chunk, tp ? 1 : as.n_embd);
    size_t out_sz = tp ? 64 : last ? wire_logits_bytes(as.chunk, as.n_vocab) : in_sz;
    if (tp && (nd->tp_logits = malloc((size_t)as.chunk * as.n_vocab * sizeof(float))) == NULL) {
        st = TFAB_ERR_NOMEM;
        send_ready(nd, st, "node %s: no memory for logits", params->listen);
        goto out_hb;
    }
    for (int k = 0; k < NSLOT; k++)
        if ((st = xfer_alloc(nd->pool, &nd->s, in_sz, &nd->in[k])) != TFAB_OK ||
            (st = xfer_alloc(nd->pool, &nd->s, out_sz, &nd->out[k])) != TFAB_OK) {
            send_ready(nd, st,
                       "node %s: its pool (%zu MiB) cannot hold 2 x %zu + 2 x %zu bytes "
                       "of message buffers",
                       params->listen, pool_bytes >> 20, in_sz, out_sz);
            goto out_hb;
        }
    /* links: to the next stage (the coordinator, for logits, from the last), from the previous */
    if ((st = connect_retry(nd->fab, as.addr, now_ns() + 60000 * MS, &nd->next)) != TFAB_OK) {
        send_ready(nd, st, "node %s cannot connect to the next stage %s: %s", params->listen,
                   as.addr, tfab_status_str(st));
        goto out_hb;
    }
    if ((st = tfab_fabric_accept(nd->fab, 60000 * MS, &nd->prev)) != TFAB_OK) {
        send_ready(nd, st, "node %s: the previous stage did not connect: %s", params->listen,
                   tfab_status_str(st));
        goto out_hb;
    }
    if (tp && (st = tp_setup(&nd->tp, nd->fab, nd->pool, nd->tp.rank, nd->tp.size, nd->prev,
                             nd->next, cfg, as.chunk)) != TFAB_OK) {
        send_ready(nd, st, "node %s: tensor-parallel ring: %s", params->listen,
                   tfab_status_str(st));
        goto out_hb;
    }
    if ((st = post_recv(nd->ctrl, &nd->ctrl_rx, TAG_CTRL)) != TFAB_OK)
        goto out_hb;
    send_ready(nd, TFAB_OK, "ok");
    st = tp ? node_serve_tp(nd, model, &as) : node_serve(nd, model, &as);

out_hb:
    pthread_mutex_lock(&nd->s.mu);
    nd->hb_stop = 1;
    pthread_mutex_unlock(&nd->s.mu);
    if (nd->hb_started)
        pthread_join(nd->hb_thread, NULL);
out_fabric:
    tp_cleanup(&nd->tp);
    tfab_fabric_destroy(nd->fab);
    free(nd->tp_logits);
    xfer_free(nd->pool, &nd->ctrl_rx);
    xfer_free(nd->pool, &nd->ctrl_tx);
    xfer_free(nd->pool, &nd->hb_tx);
    for (int k = 0; k < NSLOT; k++) {
        xfer_free(nd->pool, &nd->in[k]);
        xfer_free(nd->pool, &nd->out[k]);
    }
    tfab_pool_destroy(nd->pool);
    tfab_model_destroy(model);
out_free:
    pthread_mutex_destroy(&nd->s.mu);
    pthread_cond_destroy(&nd->s.cv);
    free(nd);
    return st;
}

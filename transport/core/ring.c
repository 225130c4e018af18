/* ring.c - ring all-reduce and all-gather over endpoints, written once for every backend:
 * each step sends one chunk right and receives one from the left, both in flight together. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "core.h"

#define MOD      "ring"
#define RING_TAG 0x7fab000000000000ull /* tags of collectives; users' tags stay below */

typedef struct ring_wait ring_wait_t;

typedef struct {
    atomic_int    done;
    tfab_status_t status;
    size_t        len;
    ring_wait_t  *owner;
} wait_t;

/* The completion records of a step. They outlive a failed collective: a receive or send still
 * posted when a step gives up (timeout) completes later, when its endpoint fails or closes, and
 * writes here. So they are on the heap, counted: one reference for the ring, one per posted
 * transfer; whoever drops the last frees them. */
struct ring_wait {
    atomic_int refs;
    wait_t     send, recv;
};

struct tfab_ring {
    tfab_fabric_t *fabric;
    int            rank, size;
    tfab_ep_t     *left, *right;
    uint8_t       *scratch;
    size_t         scratch_bytes;
    uint64_t       seq;    /* collective number: tags of successive calls never mix */
    ring_wait_t   *wait;   /* this ring's step records */
    tfab_status_t  broken; /* a failed step left transfers posted: no further collective */
};

static void wait_put(ring_wait_t *w)
{
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1)
        free(w);
}

static void on_done(tfab_status_t st, size_t len, void *arg)
{
    wait_t      *w     = arg;
    ring_wait_t *owner = w->owner;
    w->status          = st;
    w->len             = len;
    atomic_store_explicit(&w->done, 1, memory_order_release);
    wait_put(owner); /* last touch of the record */
}

/* Wait for both halves of a step; drive progress ourselves when nobody else does. */
static tfab_status_t wait_pair(tfab_ring_t *r, wait_t *a, wait_t *b)
{
    uint64_t deadline = tfab_core_now_ns() + r->fabric->timeout_ns;
    while (!atomic_load_explicit(&a->done, memory_order_acquire) ||
           !atomic_load_explicit(&b->done, memory_order_acquire)) {
        if (r->fabric->mode == TFAB_PROGRESS_MANUAL)
            tfab_fabric_progress(r->fabric, 0);
        if (tfab_core_now_ns() > deadline) {
            TFAB_ERROR(MOD, "rank %d: collective step timed out", r->rank);
            return TFAB_ERR_TIMEOUT;
        }
    }
    if (a->status != TFAB_OK)
        return a->status;
    return b->status;
}

/* Post one half of a step with a reference for its completion. */
static tfab_status_t post(tfab_ring_t *r, int is_send, tfab_ep_t *ep, void *buf, size_t len,
                          uint64_t tag, wait_t *w)
{
    atomic_store_explicit(&w->done, 0, memory_order_relaxed);
    w->status = TFAB_OK;
    w->len    = 0;
    w->owner  = r->wait;
    atomic_fetch_add_explicit(&r->wait->refs, 1, memory_order_relaxed);
    tfab_status_t st = is_send ? tfab_ep_send(ep, buf, len, tag, on_done, w)
                               : tfab_ep_recv(ep, buf, len, tag, on_done, w);
    if (st != TFAB_INPROGRESS) /* not posted: no callback will come */
        wait_put(r->wait);
    return st;
}

/* Send [src, +send_len) right while receiving up to recv_len from the left into dst. A step
 * that fails with a transfer still posted (a timeout, or a send refused after its receive was
 * posted) breaks the ring: that transfer completes only when its endpoint fails or is closed,
 * and may still write into dst until then. */
static tfab_status_t step(tfab_ring_t *r, const void *src, size_t send_len, void *dst,
                          size_t recv_len, uint64_t tag)
{
    if (r->broken != TFAB_OK)
        return r->broken;
    wait_t       *v  = &r->wait->recv, *s = &r->wait->send;
    tfab_status_t st = post(r, 0, r->left, dst, recv_len, tag, v);
    if (st != TFAB_INPROGRESS)
        return st;
    st = post(r, 1, r->right, (void *)src, send_len, tag, s);
    if (st != TFAB_INPROGRESS) {
        TFAB_ERROR(MOD, "rank %d: send to the right failed (%s) with a receive posted; the ring "
                        "is unusable until its endpoints are closed",
                   r->rank, tfab_status_str(st));
        r->broken = st;
        return st;
    }
    st = wait_pair(r, s, v);
    if (st == TFAB_ERR_TIMEOUT) {
        r->broken = st;
        return st;
    }
    if (st == TFAB_OK && v->len != recv_len)
        st = TFAB_ERR_PROTO;
    return st;
}

tfab_status_t tfab_ring_create(tfab_fabric_t *f, int rank, int size, tfab_ep_t *left,
                               tfab_ep_t *right, size_t scratch_bytes, tfab_ring_t **ring_p)
{
    if (size < 1 || rank < 0 || rank >= size || (size > 1 && (left == NULL || right == NULL))) {
        TFAB_ERROR(MOD, "bad ring: rank %d of %d", rank, size);
        return TFAB_ERR_INVALID;
    }
    tfab_ring_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TFAB_ERR_NOMEM;
    *r = (tfab_ring_t){.fabric = f, .rank = rank, .size = size, .left = left, .right = right,
                       .scratch_bytes = scratch_bytes};
    if ((r->wait = calloc(1, sizeof(*r->wait))) == NULL) {
        free(r);
        return TFAB_ERR_NOMEM;
    }
    atomic_init(&r->wait->refs, 1);
    if (scratch_bytes) {
        void         *p;
        tfab_status_t st = tfab_pool_alloc(f->pool, scratch_bytes, &p);
        if (st != TFAB_OK) {
            TFAB_ERROR(MOD, "no room in the pool for %zu bytes of ring scratch", scratch_bytes);
            wait_put(r->wait);
            free(r);
            return st;
        }
        r->scratch = p;
    }
    *ring_p = r;
    return TFAB_OK;
}

void tfab_ring_destroy(tfab_ring_t *r)
{
    if (r == NULL)
        return;
    /* a transfer a failed step left posted may still land in the scratch: then it stays
     * allocated (returned with the pool) rather than reused under it */
    int posted = atomic_load_explicit(&r->wait->refs, memory_order_acquire) > 1;
    if (r->scratch && !posted)
        tfab_pool_free(r->fabric->pool, r->scratch);
    wait_put(r->wait); /* freed now, or by the last transfer a failed step left posted */
    free(r);
}

/* Chunk c of count elements split into size near-equal parts. */
static void chunk(size_t count, int size, int c, size_t *off_p, size_t *len_p)
{
    size_t base = count / (size_t)size, extra = count % (size_t)size;
    *off_p      = (size_t)c * base + ((size_t)c < extra ? (size_t)c : extra);
    *len_p      = base + ((size_t)c < extra);
}

tfab_status_t tfab_ring_allreduce_f32(tfab_ring_t *r, float *buf, size_t count)
{
    int n = r->size;
    if (n == 1 || count == 0)
        return TFAB_OK;
    size_t max_chunk = (count + (size_t)n - 1) / (size_t)n;
    if (max_chunk * sizeof(float) > r->scratch_bytes ||
        !tfab_pool_contains(r->fabric->pool, buf, count * sizeof(float)))
        return TFAB_ERR_RANGE;
    uint64_t tag = RING_TAG | (r->seq++ << 16);
    float   *in  = (float *)r->scratch;
    /* reduce-scatter: after step s, rank holds the partial sum of chunk (rank - s - 1) */
    for (int s = 0; s < n - 1; s++) {
        size_t so, sl, ro, rl;
        chunk(count, n, ((r->rank - s) % n + n) % n, &so, &sl);
        chunk(count, n, ((r->rank - s - 1) % n + n) % n, &ro, &rl);
        tfab_status_t st = step(r, buf + so, sl * sizeof(float), in, rl * sizeof(float), tag | (uint64_t)s);
        if (st != TFAB_OK)
            return st;
        for (size_t i = 0; i < rl; i++)
            buf[ro + i] += in[i];
    }
    /* all-gather: the complete chunks travel around the ring, received in place */
    for (int s = 0; s < n - 1; s++) {
        size_t so, sl, ro, rl;
        chunk(count, n, ((r->rank + 1 - s) % n + n) % n, &so, &sl);
        chunk(count, n, ((r->rank - s) % n + n) % n, &ro, &rl);
        tfab_status_t st = step(r, buf + so, sl * sizeof(float), buf + ro, rl * sizeof(float),
                                tag | 0x8000 | (uint64_t)s);
        if (st != TFAB_OK)
            return st;
    }
    return TFAB_OK;
}

tfab_status_t tfab_ring_allgather(tfab_ring_t *r, void *buf, size_t per_rank)
{
    int n = r->size;
    if (n == 1 || per_rank == 0)
        return TFAB_OK;
    if (!tfab_pool_contains(r->fabric->pool, buf, per_rank * (size_t)n))
        return TFAB_ERR_RANGE;
    uint64_t tag = RING_TAG | (r->seq++ << 16) | 0x4000;
    uint8_t *b   = buf;
    for (int s = 0; s < n - 1; s++) {
        int           send_c = ((r->rank - s) % n + n) % n, recv_c = ((r->rank - s - 1) % n + n) % n;
        tfab_status_t st     = step(r, b + (size_t)send_c * per_rank, per_rank,
                                    b + (size_t)recv_c * per_rank, per_rank, tag | (uint64_t)s);
        if (st != TFAB_OK)
            return st;
    }
    return TFAB_OK;
}

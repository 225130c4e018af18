/* proto.c - the transfer protocol, written once for every backend: tag matching in order,
 * eager messages through credit-controlled slots, rendezvous (RTS -> CTS grant -> DATA into
 * the granted buffer) for large ones, and completions queued for delivery outside the lock. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <tfab/log.h>
#include "core.h"

#define MOD "proto"

uint64_t tfab_core_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- small lists over the fixed slot arrays ------------------------------------------ */

static uint32_t op_take(op_t *ops, uint32_t *free_head)
{
    uint32_t i = *free_head;
    if (i == NIL32)
        return NIL32;
    *free_head  = ops[i].next;
    ops[i].next = NIL32;
    ops[i].gen++;
    return i;
}

static void op_put(op_t *ops, uint32_t *free_head, uint32_t i)
{
    ops[i].state = OP_FREE;
    ops[i].next  = *free_head;
    *free_head   = i;
}

static void fifo_push(op_t *ops, uint32_t *head, uint32_t *tail, uint32_t i)
{
    ops[i].next = NIL32;
    if (*tail == NIL32)
        *head = i;
    else
        ops[*tail].next = i;
    *tail = i;
}

/* Remove i from a FIFO, given its predecessor (NIL32 when i is the head). */
static void fifo_unlink(op_t *ops, uint32_t *head, uint32_t *tail, uint32_t prev, uint32_t i)
{
    if (prev == NIL32)
        *head = ops[i].next;
    else
        ops[prev].next = ops[i].next;
    if (*tail == i)
        *tail = prev;
    ops[i].next = NIL32;
}

static uint32_t op_id(const op_t *ops, uint32_t i) { return i | ((uint32_t)ops[i].gen << 16); }

/* ---- completions ---------------------------------------------------------------------- */

static void complete(tfab_ep_t *ep, tfab_xfer_cb_t cb, void *arg, tfab_status_t st, size_t len)
{
    unsigned cap = sizeof(ep->comp) / sizeof(ep->comp[0]);
    if (ep->comp_count == cap) { /* cannot happen: one entry per live slot at most */
        TFAB_ERROR(MOD, "%s: completion queue overflow", ep->link);
        return;
    }
    ep->comp[(ep->comp_head + ep->comp_count++) % cap] = (comp_t){cb, arg, st, len};
}

static void finish_send(tfab_ep_t *ep, uint32_t i, tfab_status_t st)
{
    op_t *op = &ep->sends[i];
    complete(ep, op->cb, op->arg, st, op->len);
    if (st == TFAB_OK)
        ep->stats.bytes_sent += op->len;
    op_put(ep->sends, &ep->send_free, i);
    ep->sends_live--;
}

static void finish_recv(tfab_ep_t *ep, uint32_t i, tfab_status_t st)
{
    op_t *op = &ep->recvs[i];
    if (op->state == OP_WAIT_DATA && !ep->failed)
        ep->tl->ungrant(ep->tl_ep, op->grant); /* the peer may write here no more */
    complete(ep, op->cb, op->arg, st, op->got);
    if (st == TFAB_OK)
        ep->stats.bytes_received += op->got;
    op_put(ep->recvs, &ep->recv_free, i);
    ep->recvs_live--;
}

unsigned tfab_core_deliver(tfab_fabric_t *f)
{
    unsigned total = 0;
    for (;;) {
        comp_t   batch[64];
        unsigned n = 0;
        pthread_mutex_lock(&f->lock);
        for (tfab_ep_t *ep = f->eps; ep && n < 64; ep = ep->next_ep) {
            unsigned cap = sizeof(ep->comp) / sizeof(ep->comp[0]);
            while (ep->comp_count && n < 64) {
                batch[n++]    = ep->comp[ep->comp_head];
                ep->comp_head = (ep->comp_head + 1) % cap;
                ep->comp_count--;
            }
        }
        pthread_mutex_unlock(&f->lock);
        for (unsigned k = 0; k < n; k++)
            if (batch[k].cb)
                batch[k].cb(batch[k].status, batch[k].len, batch[k].arg);
        total += n;
        if (n < 64)
            return total;
    }
}

/* ---- frames out ------------------------------------------------------------------------ */

static tfab_status_t post(tfab_ep_t *ep, wire_hdr_t *hdr, const void *payload, size_t len, void *ctx)
{
    /* Take the owed credits before the backend runs: it may write at once and upcall tx_done,
     * which restarts stalled sends that post() again; those must not carry them a second time. */
    unsigned owed    = ep->credits_owed;
    hdr->credits     = (uint16_t)owed; /* piggyback freed slots */
    ep->credits_owed = 0;
    tfab_status_t st = ep->tl->ep_post(ep->tl_ep, hdr, payload, len, ctx);
    if (st != TFAB_OK)
        ep->credits_owed += owed;
    return st;
}

/* Tell the peer about freed slots once a quarter of them has piled up with nothing to carry
 * them (frames going out carry them anyway). */
static void return_credit(tfab_ep_t *ep)
{
    ep->credits_owed++;
    if (ep->credits_owed * 4 >= ep->fabric->credits) {
        wire_hdr_t h = {.op = WIRE_CREDIT};
        post(ep, &h, NULL, 0, NULL);
    }
}

/* Put send i on the wire: eager frame or RTS. Needs a credit (checked by the caller). */
static tfab_status_t start_send(tfab_ep_t *ep, uint32_t i)
{
    op_t      *op = &ep->sends[i];
    wire_hdr_t h  = {.tag = op->tag, .len = op->len, .id = op_id(ep->sends, i)};
    ep->credits--;
    if (op->len <= ep->fabric->eager_max) {
        h.op      = WIRE_EAGER;
        op->state = OP_EAGER;
        ep->stats.eager_sent++;
        return post(ep, &h, op->buf, op->len, op);
    }
    h.op      = WIRE_RTS;
    op->state = OP_WAIT_CTS;
    ep->stats.rndv_sent++;
    return post(ep, &h, NULL, 0, NULL);
}

static void fail_ep_locked(tfab_ep_t *ep, tfab_status_t st, const char *why);

/* Start stalled sends while credits last. */
static void unstall(tfab_ep_t *ep)
{
    while (ep->credits > 0 && ep->stall_head != NIL32 && !ep->failed) {
        uint32_t i = ep->stall_head;
        fifo_unlink(ep->sends, &ep->stall_head, &ep->stall_tail, NIL32, i);
        tfab_status_t st = start_send(ep, i);
        if (st != TFAB_OK) {
            fail_ep_locked(ep, st, "backend refused a frame");
            return;
        }
    }
}

/* ---- public data path -------------------------------------------------------------------- */

/* The common start of a send or receive: check the buffer, take the lock (held on
 * TFAB_INPROGRESS, released otherwise) and a free slot of ops into *i_p. */
static tfab_status_t begin_op(tfab_ep_t *ep, const void *buf, size_t len, op_t *ops,
                              uint32_t *free_head, uint32_t *i_p)
{
    tfab_fabric_t *f = ep->fabric;
    if (len > 0 && !tfab_pool_contains(f->pool, buf, len))
        return TFAB_ERR_RANGE;
    pthread_mutex_lock(&f->lock);
    tfab_status_t st = TFAB_INPROGRESS;
    if (ep->failed || ep->closed)
        st = ep->failed ? ep->fail_status : TFAB_ERR_CONN;
    else if ((*i_p = op_take(ops, free_head)) == NIL32)
        st = TFAB_ERR_BUSY;
    if (st != TFAB_INPROGRESS)
        pthread_mutex_unlock(&f->lock);
    return st;
}

/* The common end: unlock, and wake progress to move what was just queued. */
static tfab_status_t end_op(tfab_fabric_t *f)
{
    pthread_mutex_unlock(&f->lock);
    f->tl->wake(f->tl_domain);
    return TFAB_INPROGRESS;
}

tfab_status_t tfab_ep_send(tfab_ep_t *ep, const void *buf, size_t len, uint64_t tag,
                           tfab_xfer_cb_t cb, void *arg)
{
    uint32_t      i;
    tfab_status_t st = begin_op(ep, buf, len, ep->sends, &ep->send_free, &i);
    if (st != TFAB_INPROGRESS)
        return st;
    op_t *op = &ep->sends[i];
    op->buf  = (void *)buf;
    op->len  = len;
    op->tag  = tag;
    op->cb   = cb;
    op->arg  = arg;
    ep->sends_live++;
    if (ep->sends_live == 1)
        ep->last_progress_ns = tfab_core_now_ns();
    if (ep->credits == 0 || ep->stall_head != NIL32) { /* keep order behind stalled sends */
        op->state = OP_STALLED;
        ep->stats.credit_stalls++;
        fifo_push(ep->sends, &ep->stall_head, &ep->stall_tail, i);
    } else if (start_send(ep, i) != TFAB_OK) {
        fail_ep_locked(ep, TFAB_ERR_IO, "backend refused a frame");
    }
    return end_op(ep->fabric);
}

/* Grant receive r to the peer's rendezvous transfer peer_id, or refuse it if too big. */
static void grant(tfab_ep_t *ep, uint32_t r, uint32_t peer_id, uint64_t len)
{
    op_t      *op = &ep->recvs[r];
    wire_hdr_t h  = {.op = WIRE_CTS, .id = peer_id, .aux = op_id(ep->recvs, r), .len = len,
                     .tag = (uint64_t)(uintptr_t)op->buf};
    uint32_t   rkey = 0;
    op->got       = len;
    if (len > op->len) {
        h.flags = WIRE_F_REFUSED;
        finish_recv(ep, r, TFAB_ERR_RANGE);
    } else if (ep->tl->grant(ep->tl_ep, op->buf, len, &rkey, &op->grant) != TFAB_OK) {
        fail_ep_locked(ep, TFAB_ERR_IO, "granting a receive buffer failed");
        return;
    } else {
        op->state   = OP_WAIT_DATA;
        op->peer_id = peer_id;
        h.aux |= (uint64_t)rkey << 32;
    }
    if (post(ep, &h, NULL, 0, NULL) != TFAB_OK)
        fail_ep_locked(ep, TFAB_ERR_IO, "backend refused a frame");
}

/* Receive r takes unexpected arrival u (complete eager payload or RTS): unlink u, copy or
 * grant, free its slot and return the peer's credit. */
static void take_unexpected(tfab_ep_t *ep, uint32_t r, uint32_t u)
{
    uint32_t prev = NIL32;
    for (uint32_t k = ep->unexp_head; k != u; k = ep->unexp[k].next)
        prev = k;
    unexp_t *x = &ep->unexp[u];
    if (prev == NIL32)
        ep->unexp_head = x->next;
    else
        ep->unexp[prev].next = x->next;
    if (ep->unexp_tail == u)
        ep->unexp_tail = prev;
    op_t *op = &ep->recvs[r];
    if (x->kind == WIRE_EAGER) {
        op->got = x->len;
        if (x->len <= op->len)
            memcpy(op->buf, ep->slots + (size_t)u * ep->fabric->eager_max, x->len);
        finish_recv(ep, r, x->len <= op->len ? TFAB_OK : TFAB_ERR_RANGE);
    } else {
        grant(ep, r, x->peer_id, x->len);
    }
    x->kind = 0;
    return_credit(ep);
}

tfab_status_t tfab_ep_recv(tfab_ep_t *ep, void *buf, size_t len, uint64_t tag, tfab_xfer_cb_t cb,
                           void *arg)
{
    uint32_t      r;
    tfab_status_t st = begin_op(ep, buf, len, ep->recvs, &ep->recv_free, &r);
    if (st != TFAB_INPROGRESS)
        return st;
    op_t *op = &ep->recvs[r];
    *op      = (op_t){.gen = op->gen, .next = NIL32, .buf = buf, .len = len, .tag = tag,
                      .cb = cb, .arg = arg, .state = OP_POSTED};
    ep->recvs_live++;
    /* an earlier arrival under this tag? (only complete eager payloads and RTSs match) */
    for (uint32_t u = ep->unexp_head; u != NIL32; u = ep->unexp[u].next) {
        if (ep->unexp[u].tag != tag)
            continue;
        if (ep->unexp[u].kind == WIRE_EAGER && !ep->unexp[u].ready)
            break; /* still landing: it takes this receive when done, keeping order */
        take_unexpected(ep, r, u);
        return end_op(ep->fabric);
    }
    fifo_push(ep->recvs, &ep->posted_head, &ep->posted_tail, r);
    return end_op(ep->fabric);
}

/* ---- frames in (upcalls from the backend, lock held) ------------------------------------- */

/* First posted receive for tag, unlinked from the posted queue. */
static uint32_t match_posted(tfab_ep_t *ep, uint64_t tag)
{
    uint32_t prev = NIL32;
    for (uint32_t r = ep->posted_head; r != NIL32; prev = r, r = ep->recvs[r].next) {
        if (ep->recvs[r].tag == tag) {
            fifo_unlink(ep->recvs, &ep->posted_head, &ep->posted_tail, prev, r);
            return r;
        }
    }
    return NIL32;
}

static uint32_t unexp_add(tfab_ep_t *ep, uint8_t kind, const wire_hdr_t *h)
{
    for (uint32_t u = 0; u < ep->fabric->credits; u++) {
        if (ep->unexp[u].kind != 0)
            continue;
        ep->unexp[u] = (unexp_t){.kind = kind, .next = NIL32, .tag = h->tag, .len = h->len,
                                 .peer_id = h->id, .ready = kind == WIRE_RTS};
        if (ep->unexp_tail == NIL32)
            ep->unexp_head = u;
        else
            ep->unexp[ep->unexp_tail].next = u;
        ep->unexp_tail = u;
        return u;
    }
    return NIL32;
}

/* Look up our transfer named by a peer's id: index and generation must both match. */
static uint32_t lookup(const op_t *ops, uint32_t id, uint8_t state)
{
    uint32_t i = id & 0xffff;
    if (i >= EP_MAX_OPS || ops[i].gen != (uint16_t)(id >> 16) || ops[i].state != state)
        return NIL32;
    return i;
}

tfab_status_t tfab_core_rx_header(tfab_ep_t *ep, const wire_hdr_t *h, void **dest_p)
{
    tfab_fabric_t *f = ep->fabric;
    *dest_p          = NULL;
    ep->last_progress_ns = tfab_core_now_ns();
    if (h->op == 0 || h->op >= WIRE_OP_MAX) {
        TFAB_ERROR(MOD, "%s: frame with unknown op %u", ep->link, h->op);
        return TFAB_ERR_PROTO;
    }
    if (ep->credits + h->credits > f->credits) {
        TFAB_ERROR(MOD, "%s: peer returned %u credits, more than it was given (%u of %u in hand, "
                   "frame op %u)", ep->link, h->credits, ep->credits, f->credits, h->op);
        return TFAB_ERR_PROTO;
    }
    ep->credits += h->credits;
    switch (h->op) {
    case WIRE_EAGER: {
        if (h->len > f->eager_max) {
            TFAB_ERROR(MOD, "%s: eager frame of %llu bytes exceeds eager_max %zu", ep->link,
                       (unsigned long long)h->len, f->eager_max);
            return TFAB_ERR_PROTO;
        }
        uint32_t r = match_posted(ep, h->tag);
        if (r != NIL32) {
            op_t *op  = &ep->recvs[r];
            op->got   = h->len;
            op->state = OP_LANDING;
            *dest_p   = h->len <= op->len ? op->buf : NULL; /* too long: dropped */
            /* one payload lands at a time per endpoint: remember whose it is */
            ep->landing_recv = r;
            return TFAB_OK;
        }
        uint32_t u = unexp_add(ep, WIRE_EAGER, h);
        if (u == NIL32) {
            TFAB_ERROR(MOD, "%s: peer sent beyond its %u credits", ep->link, f->credits);
            return TFAB_ERR_PROTO;
        }
        *dest_p = ep->slots + (size_t)u * f->eager_max;
        return TFAB_OK;
    }
    case WIRE_DATA: {
        uint32_t r = lookup(ep->recvs, h->id, OP_WAIT_DATA);
        if (r == NIL32 || h->len != ep->recvs[r].got) {
            TFAB_ERROR(MOD, "%s: DATA for unknown or mismatched grant %#x (%llu bytes)", ep->link,
                       h->id, (unsigned long long)h->len);
            return TFAB_ERR_PROTO;
        }
        *dest_p = ep->recvs[r].buf;
        return TFAB_OK;
    }
    default:
        return TFAB_OK;
    }
}

void tfab_core_rx_done(tfab_ep_t *ep, const wire_hdr_t *h, void *dest)
{
    tfab_fabric_t *f = ep->fabric;
    switch (h->op) {
    case WIRE_EAGER: {
        uint8_t *slot0 = ep->slots, *end = ep->slots + (size_t)f->credits * f->eager_max;
        if (dest != NULL && (uint8_t *)dest >= slot0 && (uint8_t *)dest < end) {
            uint32_t u = (uint32_t)(((uint8_t *)dest - slot0) / f->eager_max);
            ep->unexp[u].ready = 1;
            /* a receive posted while this was landing waits in the posted queue */
            uint32_t r = match_posted(ep, h->tag);
            if (r != NIL32)
                take_unexpected(ep, r, u);
            break;
        }
        uint32_t r = ep->landing_recv;
        finish_recv(ep, r, h->len <= ep->recvs[r].len ? TFAB_OK : TFAB_ERR_RANGE);
        return_credit(ep);
        break;
    }
    case WIRE_RTS: {
        if (h->len <= f->eager_max) {
            fail_ep_locked(ep, TFAB_ERR_PROTO, "RTS for a message that fits an eager frame");
            return;
        }
        uint32_t r = match_posted(ep, h->tag);
        if (r != NIL32) {
            grant(ep, r, h->id, h->len);
            return_credit(ep);
        } else if (unexp_add(ep, WIRE_RTS, h) == NIL32) {
            fail_ep_locked(ep, TFAB_ERR_PROTO, "peer sent beyond its credits");
        }
        break;
    }
    case WIRE_CTS: {
        uint32_t i = lookup(ep->sends, h->id, OP_WAIT_CTS);
        if (i == NIL32 || (h->len != ep->sends[i].len && !(h->flags & WIRE_F_REFUSED))) {
            fail_ep_locked(ep, TFAB_ERR_PROTO, "CTS for an unknown transfer");
            return;
        }
        if (h->flags & WIRE_F_REFUSED) {
            finish_send(ep, i, TFAB_ERR_RANGE);
            break;
        }
        op_t      *op = &ep->sends[i];
        wire_hdr_t d  = {.op = WIRE_DATA, .id = (uint32_t)h->aux, .len = op->len,
                         .tag = h->aux >> 32, .aux = h->tag};
        op->state     = OP_DATA;
        if (post(ep, &d, op->buf, op->len, op) != TFAB_OK)
            fail_ep_locked(ep, TFAB_ERR_IO, "backend refused a frame");
        break;
    }
    case WIRE_DATA: {
        uint32_t r = lookup(ep->recvs, h->id, OP_WAIT_DATA);
        if (r != NIL32)
            finish_recv(ep, r, TFAB_OK);
        break;
    }
    case WIRE_CREDIT:
        break;
    }
    /* any frame may carry credits (rx_header added them): restart sends waiting for one */
    unstall(ep);
}

void tfab_core_tx_done(tfab_ep_t *ep, void *ctx)
{
    op_t *op = ctx;
    if (op->state == OP_EAGER || op->state == OP_DATA)
        finish_send(ep, (uint32_t)(op - ep->sends), TFAB_OK);
    ep->last_progress_ns = tfab_core_now_ns();
    unstall(ep);
}

/* Every pending transfer of a failed endpoint completes with the failure. */
static void fail_ep_locked(tfab_ep_t *ep, tfab_status_t st, const char *why)
{
    if (ep->failed)
        return;
    ep->failed      = 1;
    ep->fail_status = st;
    if (!ep->closed && ep->sends_live + ep->recvs_live > 0)
        TFAB_ERROR(MOD, "%s failed: %s (%s); %u sends and %u receives fail", ep->link, why,
                   tfab_status_str(st), ep->sends_live, ep->recvs_live);
    else if (!ep->closed)
        TFAB_INFO(MOD, "%s: %s, no transfer pending", ep->link, why);
    for (uint32_t i = 0; i < EP_MAX_OPS; i++) {
        if (ep->sends[i].state != OP_FREE)
            finish_send(ep, i, st);
        if (ep->recvs[i].state != OP_FREE)
            finish_recv(ep, i, st);
    }
    ep->stall_head = ep->stall_tail = ep->posted_head = ep->posted_tail = NIL32;
}

void tfab_core_ep_failed(tfab_ep_t *ep, tfab_status_t st, const char *why)
{
    fail_ep_locked(ep, st, why);
}

void tfab_core_check_timeouts(tfab_fabric_t *f)
{
    pthread_mutex_lock(&f->lock);
    uint64_t now = tfab_core_now_ns(); /* under the lock: stamps are never later than now */
    for (tfab_ep_t *ep = f->eps; ep; ep = ep->next_ep) {
        /* only sends make a peer owe us progress; a receive may wait for a sender forever */
        int owed = ep->sends_live > 0;
        for (uint32_t i = 0; !owed && i < EP_MAX_OPS; i++)
            owed = ep->recvs[i].state == OP_WAIT_DATA || ep->recvs[i].state == OP_LANDING;
        if (!ep->failed && owed && now > ep->last_progress_ns &&
            now - ep->last_progress_ns > f->timeout_ns) {
            char why[96];
            snprintf(why, sizeof(why), "no progress for %llu ms",
                     (unsigned long long)(f->timeout_ns / 1000000));
            fail_ep_locked(ep, TFAB_ERR_TIMEOUT, why);
        }
    }
    pthread_mutex_unlock(&f->lock);
}

/* ---- endpoint state ------------------------------------------------------------------------ */

tfab_status_t tfab_core_ep_init(tfab_ep_t *ep, tfab_fabric_t *f)
{
    ep->fabric  = f;
    ep->tl      = f->tl;
    ep->credits = f->credits;
    for (uint32_t i = 0; i < EP_MAX_OPS; i++) {
        ep->sends[i].next = i + 1 < EP_MAX_OPS ? i + 1 : NIL32;
        ep->recvs[i].next = i + 1 < EP_MAX_OPS ? i + 1 : NIL32;
    }
    ep->send_free = ep->recv_free = 0;
    ep->stall_head = ep->stall_tail = ep->posted_head = ep->posted_tail = NIL32;
    ep->unexp_head = ep->unexp_tail = NIL32;
    ep->last_progress_ns            = tfab_core_now_ns();
    void         *slots;
    tfab_status_t st = tfab_pool_alloc(f->pool, (size_t)f->credits * f->eager_max, &slots);
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "no room in the pool for %u eager slots of %zu bytes", f->credits,
                   f->eager_max);
        return st;
    }
    ep->slots = slots;
    return TFAB_OK;
}

void tfab_core_ep_fini(tfab_ep_t *ep) { tfab_pool_free(ep->fabric->pool, ep->slots); }

void tfab_ep_get_stats(tfab_ep_t *ep, tfab_ep_stats_t *stats)
{
    pthread_mutex_lock(&ep->fabric->lock);
    *stats = ep->stats;
    pthread_mutex_unlock(&ep->fabric->lock);
}

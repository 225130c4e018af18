/* proto.c - the transfer protocol, written once for every backend: tag matching in order,
 * eager messages through credit-controlled slots, rendezvous (RTS -> CTS grant -> DATA into
 * the granted buffer) for large ones, completions queued for delivery outside the lock, and
 * failover across ranked links without loss: messages carry sequence numbers, the receiver
 * acknowledges each once it is wholly in its memory, and when the active link fails every
 * message not yet acknowledged is re-issued on the next live link; the receiver drops what it
 * already has by sequence number. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tfab/log.h>
#include "core.h"

#define MOD "proto"
/* the active link's backend endpoint (read at use: a backend publishes it under the lock) */
#define TL_EP(ep) ((ep)->links[(ep)->active].tl_ep)

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
    ops[i].acked = 0;
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
    if (op->state == OP_WAIT_DATA && !ep->failed && !op->regrant)
        ep->tl->ungrant(TL_EP(ep), op->grant); /* the peer may write here no more */
    complete(ep, op->cb, op->arg, st, op->got);
    if (st == TFAB_OK)
        ep->stats.bytes_received += op->got;
    op_put(ep->recvs, &ep->recv_free, i);
    ep->recvs_live--;
}

unsigned tfab_core_deliver(tfab_fabric_t *f)
{
    unsigned total = 0;
    /* several progress threads (one per backend) deliver: one at a time, so each endpoint's
     * callbacks keep their order (recursive: a callback may close an endpoint) */
    pthread_mutex_lock(&f->deliver_lock);
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
            break;
    }
    pthread_mutex_unlock(&f->deliver_lock);
    return total;
}

/* ---- frames out ------------------------------------------------------------------------ */

static tfab_status_t post(tfab_ep_t *ep, wire_hdr_t *hdr, const void *payload, size_t len, void *ctx)
{
    if (ep->active >= ep->n_links || TL_EP(ep) == NULL)
        return TFAB_ERR_CONN; /* not live (yet), or no link left */
    /* every frame carries our count of freed slots: a frame lost with a link loses nothing */
    hdr->credits   = ep->freed;
    ep->freed_told = ep->freed;
    if (ep->fabric->heartbeat_ns)
        ep->links[ep->active].last_tx_ns = tfab_core_now_ns();
    return ep->tl->ep_post(TL_EP(ep), hdr, payload, len, ctx);
}

/* Tell the peer about freed slots once a quarter of them has piled up with nothing to carry
 * them (frames going out carry them anyway). */
static void return_credit(tfab_ep_t *ep)
{
    ep->freed++;
    if ((uint16_t)(ep->freed - ep->freed_told) * 4u >= ep->fabric->credits) {
        wire_hdr_t h = {.op = WIRE_CREDIT};
        post(ep, &h, NULL, 0, NULL);
    }
}

/* Ranked links: the message seq from the peer's transfer id is wholly here. */
static void send_ack(tfab_ep_t *ep, uint32_t id, uint64_t seq)
{
    wire_hdr_t h = {.op = WIRE_ACK, .id = id, .aux = seq};
    post(ep, &h, NULL, 0, NULL);
}

/* Put send i on the wire: eager frame or RTS. Needs a credit (checked by the caller), except
 * when re-issued after a failover: the slot it takes at the peer was counted the first time. */
static tfab_status_t start_send(tfab_ep_t *ep, uint32_t i, int resent)
{
    op_t *op = &ep->sends[i];
    if (!resent) {
        op->seq = ep->tx_seq++;
        ep->credits--;
    }
    op->acked    = 0;
    wire_hdr_t h = {.tag = op->tag, .len = op->len, .id = op_id(ep->sends, i), .aux = op->seq,
                    .flags = resent ? WIRE_F_RESENT : 0};
    if (resent)
        ep->stats.resent++;
    if (op->len <= ep->fabric->eager_max) {
        h.op      = WIRE_EAGER;
        op->state = OP_EAGER;
        ep->stats.eager_sent += !resent;
        return post(ep, &h, op->buf, op->len, op);
    }
    h.op      = WIRE_RTS;
    op->state = OP_WAIT_CTS;
    ep->stats.rndv_sent += !resent;
    return post(ep, &h, NULL, 0, NULL);
}

static void fail_ep_locked(tfab_ep_t *ep, tfab_status_t st, const char *why);

/* Start stalled sends while credits last. */
static void unstall(tfab_ep_t *ep)
{
    while (ep->credits > 0 && ep->stall_head != NIL32 && !ep->failed && !ep->in_failover) {
        uint32_t i = ep->stall_head;
        fifo_unlink(ep->sends, &ep->stall_head, &ep->stall_tail, NIL32, i);
        tfab_status_t st = start_send(ep, i, 0);
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

/* The common end: unlock, and wake progress (of the active link's backend) to move what was
 * just queued. */
static tfab_status_t end_op(tfab_ep_t *ep)
{
    const tfab_tl_ops_t *tl  = ep->tl;
    void                *dom = ep->links[ep->active < ep->n_links ? ep->active : 0].tl_domain;
    pthread_mutex_unlock(&ep->fabric->lock);
    tl->wake(dom);
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
    } else if (start_send(ep, i, 0) != TFAB_OK) {
        fail_ep_locked(ep, TFAB_ERR_IO, "backend refused a frame");
    }
    return end_op(ep);
}

/* Grant receive r to the peer's rendezvous transfer peer_id (message seq), or refuse it if too
 * big. */
static void grant(tfab_ep_t *ep, uint32_t r, uint32_t peer_id, uint64_t len, uint64_t seq)
{
    op_t      *op = &ep->recvs[r];
    op->seq       = seq;
    op->regrant   = 0;
    wire_hdr_t h  = {.op = WIRE_CTS, .id = peer_id, .aux = op_id(ep->recvs, r), .len = len,
                     .tag = (uint64_t)(uintptr_t)op->buf};
    uint32_t   rkey = 0;
    op->got       = len;
    if (len > op->len) {
        h.flags = WIRE_F_REFUSED;
        finish_recv(ep, r, TFAB_ERR_RANGE);
    } else if (ep->tl->grant(TL_EP(ep), op->buf, len, &rkey, &op->grant) != TFAB_OK) {
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
        grant(ep, r, x->peer_id, x->len, x->seq);
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
                      .cb = cb, .arg = arg, .state = OP_POSTED, .order = ep->recv_order++};
    ep->recvs_live++;
    /* an earlier arrival under this tag? (only complete eager payloads and RTSs match) */
    for (uint32_t u = ep->unexp_head; u != NIL32; u = ep->unexp[u].next) {
        if (ep->unexp[u].tag != tag)
            continue;
        if (ep->unexp[u].kind == WIRE_EAGER && !ep->unexp[u].ready)
            break; /* still landing: it takes this receive when done, keeping order */
        take_unexpected(ep, r, u);
        return end_op(ep);
    }
    fifo_push(ep->recvs, &ep->posted_head, &ep->posted_tail, r);
    return end_op(ep);
}

/* ---- matching ------------------------------------------------------------------------------ */

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
                                 .peer_id = h->id, .ready = kind == WIRE_RTS, .seq = h->aux};
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

/* ---- links and failover ------------------------------------------------------------------- */

const char *tfab_core_link_name(const tfab_link_t *l) { return l->name; }

tfab_link_t *tfab_core_link_add(tfab_ep_t *ep, const tfab_tl_ops_t *tl, void *tl_domain,
                                const char *name)
{
    if (ep->n_links == EP_MAX_LINKS)
        return NULL;
    tfab_link_t *l = &ep->links[ep->n_links++];
    *l             = (tfab_link_t){.ep = ep, .tl = tl, .tl_domain = tl_domain, .dead = 1};
    snprintf(l->name, sizeof(l->name), "%s", name);
    return l;
}

static void close_link(tfab_link_t *l)
{
    l->dead = 1;
    if (l->tl_ep != NULL) {
        l->tl->ep_close(l->tl_ep); /* the backend defers freeing until no event names it */
        l->tl_ep = NULL;
    }
}

static int cmp_u64_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Make link next active after the active one failed (why): the receive side forgets what was
 * only half here, the send side re-issues every message not acknowledged, in order. */
static void failover(tfab_ep_t *ep, unsigned next, const char *why)
{
    tfab_link_t *old = &ep->links[ep->active];
    char         old_name[160];
    snprintf(old_name, sizeof(old_name), "%s", old->name);
    for (unsigned k = ep->active; k < next; k++)
        close_link(&ep->links[k]);
    ep->active = next;
    ep->tl     = ep->links[next].tl;
    snprintf(ep->link, sizeof(ep->link), "%s", ep->links[next].name);
    ep->stats.failovers++;
    uint64_t now                 = tfab_core_now_ns();
    ep->last_progress_ns         = now;
    ep->links[next].last_rx_ns   = now;
    /* receive side: an eager payload half landed is forgotten (it comes again); grants made on
     * the dead link died with it (its windows are invalidated when the backend frees it) */
    if (ep->rx_partial) {
        uint64_t seq = ep->rx_next - 1;
        uint32_t r   = ep->landing_recv;
        if (r < EP_MAX_OPS && ep->recvs[r].state == OP_LANDING) {
            ep->recvs[r].state = OP_POSTED;
        } else {
            uint32_t prev = NIL32;
            for (uint32_t u = ep->unexp_head; u != NIL32; prev = u, u = ep->unexp[u].next) {
                unexp_t *x = &ep->unexp[u];
                if (x->kind != WIRE_EAGER || x->ready || x->seq != seq)
                    continue;
                if (prev == NIL32)
                    ep->unexp_head = x->next;
                else
                    ep->unexp[prev].next = x->next;
                if (ep->unexp_tail == u)
                    ep->unexp_tail = prev;
                x->kind = 0;
                break;
            }
        }
        ep->rx_next--;
        ep->rx_partial = 0;
    }
    ep->rx_dup = 0;
    unsigned regrant = 0, n_posted = 0;
    uint64_t order[EP_MAX_OPS][2]; /* (posting order or sequence number, index) */
    for (uint32_t r = 0; r < EP_MAX_OPS; r++) {
        op_t *op = &ep->recvs[r];
        if (op->state == OP_WAIT_DATA) {
            op->regrant = 1;
            regrant++;
        } else if (op->state == OP_POSTED) {
            order[n_posted][0]   = op->order;
            order[n_posted++][1] = r;
        }
    }
    /* a receive put back keeps its place among those posted under its tag */
    qsort(order, n_posted, sizeof(order[0]), cmp_u64_pair);
    ep->posted_head = ep->posted_tail = NIL32;
    for (unsigned k = 0; k < n_posted; k++)
        fifo_push(ep->recvs, &ep->posted_head, &ep->posted_tail, (uint32_t)order[k][1]);
    /* tell the peer first (our freed-slot count rides along), then re-issue in order */
    wire_hdr_t sw = {.op = WIRE_CREDIT, .flags = WIRE_F_SWITCH};
    tfab_status_t st = post(ep, &sw, NULL, 0, NULL);
    unsigned n = 0;
    for (uint32_t i = 0; i < EP_MAX_OPS; i++) {
        uint8_t s = ep->sends[i].state;
        if (s == OP_EAGER || s == OP_WAIT_CTS || s == OP_DATA || s == OP_WAIT_ACK) {
            order[n][0]   = ep->sends[i].seq;
            order[n++][1] = i;
        }
    }
    qsort(order, n, sizeof(order[0]), cmp_u64_pair);
    unsigned resent = 0;
    ep->in_failover++;
    for (unsigned k = 0; k < n && st == TFAB_OK; k++) {
        uint32_t i = (uint32_t)order[k][1];
        uint8_t  s = ep->sends[i].state;
        /* a post below may fail the new link too: a nested failover then re-issued (or
         * finished) everything itself, and this list is stale */
        if (ep->active != next || ep->failed)
            break;
        if (!(s == OP_EAGER || s == OP_WAIT_CTS || s == OP_DATA || s == OP_WAIT_ACK))
            continue; /* finished meanwhile */
        if (ep->sends[i].acked) { /* acknowledged; only the dead link still held it */
            finish_send(ep, i, TFAB_OK);
            continue;
        }
        st = start_send(ep, i, 1);
        resent++;
    }
    ep->in_failover--;
    TFAB_WARN(MOD, "%s failed (%s): failing over to %s; %u messages re-issued, %u receives to "
              "grant again", old_name, why, ep->link, resent, regrant);
    if (st != TFAB_OK && !ep->failed)
        fail_ep_locked(ep, TFAB_ERR_IO, "the next link refused re-issued frames");
    else if (ep->in_failover == 0 && ep->active == next)
        unstall(ep); /* sends that waited for credits start after every re-issue */
}

/* Link l failed: fail over to the next live one, or fail the endpoint. */
static void link_failed(tfab_link_t *l, tfab_status_t st, const char *why)
{
    tfab_ep_t *ep = l->ep;
    if (l->dead)
        return;
    unsigned idx = (unsigned)(l - ep->links);
    if (idx != ep->active) { /* a standby link (or one not live yet) */
        if (!ep->closed && !ep->failed)
            TFAB_WARN(MOD, "%s: standby link failed (%s)", l->name, why);
        close_link(l);
        return;
    }
    unsigned next = idx + 1;
    while (next < ep->n_links && ep->links[next].dead)
        next++;
    if (!ep->reliable || next >= ep->n_links || st == TFAB_ERR_PROTO || ep->failed || ep->closed) {
        l->dead = ep->n_links > 1; /* single link: the backend keeps it until the close */
        if (ep->n_links > 1)
            close_link(l);
        fail_ep_locked(ep, st, why);
        return;
    }
    failover(ep, next, why);
}

void tfab_core_link_failed(tfab_link_t *l, tfab_status_t st, const char *why)
{
    link_failed(l, st, why);
}

/* Is a frame on l for us? A frame on a live link ranked below the active one means the peer
 * failed over: follow it. Frames on dead links are dropped. */
static int link_check(tfab_link_t *l)
{
    tfab_ep_t *ep = l->ep;
    if (l->dead)
        return 0;
    unsigned idx = (unsigned)(l - ep->links);
    if (idx == ep->active)
        return 1;
    if (idx < ep->active || ep->active >= ep->n_links || !ep->reliable || ep->failed)
        return 0;
    char why[192];
    snprintf(why, sizeof(why), "the peer moved to %s", l->name);
    failover(ep, idx, why);
    return 1;
}

/* ---- frames in (upcalls from the backend, lock held) ------------------------------------- */

tfab_status_t tfab_core_rx_header(tfab_link_t *l, const wire_hdr_t *h, void **dest_p)
{
    tfab_ep_t     *ep = l->ep;
    tfab_fabric_t *f  = ep->fabric;
    *dest_p           = NULL;
    if (!link_check(l))
        return TFAB_OK; /* dropped: its payload is discarded */
    ep->last_progress_ns = l->last_rx_ns = tfab_core_now_ns();
    ep->rx_dup           = 0;
    if (h->op == 0 || h->op >= WIRE_OP_MAX) {
        TFAB_ERROR(MOD, "%s: frame with unknown op %u", ep->link, h->op);
        return TFAB_ERR_PROTO;
    }
    uint16_t more = (uint16_t)(h->credits - ep->peer_freed);
    if (ep->credits + more > f->credits) {
        TFAB_ERROR(MOD, "%s: peer returned %u credits, more than it was given (%u of %u in hand, "
                   "frame op %u)", ep->link, more, ep->credits, f->credits, h->op);
        return TFAB_ERR_PROTO;
    }
    ep->peer_freed = h->credits;
    ep->credits += more;
    if (ep->reliable && (h->op == WIRE_EAGER || h->op == WIRE_RTS)) {
        if (h->aux < ep->rx_next) { /* re-issued, and we have it: drop, answer in rx_done */
            ep->rx_dup = 1;
            return TFAB_OK;
        }
        if (h->aux > ep->rx_next) {
            TFAB_ERROR(MOD, "%s: message %llu arrived, expected %llu (a sequence gap)", ep->link,
                       (unsigned long long)h->aux, (unsigned long long)ep->rx_next);
            return TFAB_ERR_PROTO;
        }
        ep->rx_next++;
        ep->rx_partial = h->op == WIRE_EAGER;
    }
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
            op->seq   = h->aux;
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
        if (r == NIL32 || h->len != ep->recvs[r].got || ep->recvs[r].regrant) {
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

/* A re-issued RTS for a message we have seen: still unmatched (nothing to do), matched with
 * its grant lost with a link (grant again here), or wholly received (acknowledge again). */
static void dup_rts(tfab_ep_t *ep, const wire_hdr_t *h)
{
    for (uint32_t u = ep->unexp_head; u != NIL32; u = ep->unexp[u].next)
        if (ep->unexp[u].kind == WIRE_RTS && ep->unexp[u].seq == h->aux) {
            ep->unexp[u].peer_id = h->id;
            return;
        }
    for (uint32_t r = 0; r < EP_MAX_OPS; r++) {
        op_t *op = &ep->recvs[r];
        if (op->state == OP_WAIT_DATA && op->seq == h->aux) {
            if (op->regrant)
                grant(ep, r, h->id, op->got, op->seq);
            return;
        }
    }
    send_ack(ep, h->id, h->aux);
}

/* Ranked links: the peer acknowledged send id; complete it once the backend let go of it. */
static void on_ack(tfab_ep_t *ep, const wire_hdr_t *h)
{
    uint32_t i = h->id & 0xffff;
    if (i >= EP_MAX_OPS || ep->sends[i].gen != (uint16_t)(h->id >> 16) || ep->sends[i].seq != h->aux)
        return; /* a repeated acknowledgement of a finished send */
    op_t *op = &ep->sends[i];
    if (op->state == OP_EAGER || op->state == OP_DATA)
        op->acked = 1; /* the frame is still queued in the backend: finish in tx_done */
    else if (op->state == OP_WAIT_ACK || op->state == OP_WAIT_CTS)
        finish_send(ep, i, TFAB_OK);
}

void tfab_core_rx_done(tfab_link_t *l, const wire_hdr_t *h, void *dest)
{
    tfab_ep_t     *ep = l->ep;
    tfab_fabric_t *f  = ep->fabric;
    if (l->dead || (unsigned)(l - ep->links) != ep->active)
        return;
    if (ep->rx_dup) {
        ep->rx_dup = 0;
        if (h->op == WIRE_EAGER)
            send_ack(ep, h->id, h->aux);
        else
            dup_rts(ep, h);
        unstall(ep);
        return;
    }
    switch (h->op) {
    case WIRE_EAGER: {
        ep->rx_partial = 0;
        if (ep->reliable)
            send_ack(ep, h->id, h->aux);
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
            grant(ep, r, h->id, h->len, h->aux);
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
        if (r != NIL32) {
            uint32_t peer_id = ep->recvs[r].peer_id;
            uint64_t seq     = ep->recvs[r].seq;
            finish_recv(ep, r, TFAB_OK);
            if (ep->reliable)
                send_ack(ep, peer_id, seq);
        }
        break;
    }
    case WIRE_ACK:
        on_ack(ep, h);
        break;
    case WIRE_CREDIT:
        break;
    }
    /* any frame may carry credits (rx_header added them): restart sends waiting for one */
    unstall(ep);
}

void tfab_core_tx_done(tfab_link_t *l, void *ctx)
{
    tfab_ep_t *ep = l->ep;
    if (l->dead || (unsigned)(l - ep->links) != ep->active)
        return; /* failed over: the message was re-issued on the next link */
    op_t *op = ctx;
    if (op->state == OP_EAGER || op->state == OP_DATA) {
        if (!ep->reliable || op->acked)
            finish_send(ep, (uint32_t)(op - ep->sends), TFAB_OK);
        else
            op->state = OP_WAIT_ACK; /* kept until the peer has it: a failover re-issues it */
    }
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

void tfab_core_ep_fail(tfab_ep_t *ep, tfab_status_t st, const char *why)
{
    fail_ep_locked(ep, st, why);
}

void tfab_core_check_timeouts(tfab_fabric_t *f)
{
    pthread_mutex_lock(&f->lock);
    uint64_t now = tfab_core_now_ns(); /* under the lock: stamps are never later than now */
    for (tfab_ep_t *ep = f->eps; ep; ep = ep->next_ep) {
        if (ep->failed || ep->closed || ep->active >= ep->n_links)
            continue;
        tfab_link_t *l = &ep->links[ep->active];
        /* only sends make a peer owe us progress; a receive may wait for a sender forever */
        int owed = ep->sends_live > 0;
        for (uint32_t i = 0; !owed && i < EP_MAX_OPS; i++)
            owed = ep->recvs[i].state == OP_WAIT_DATA || ep->recvs[i].state == OP_LANDING;
        char why[96];
        if (owed && now > ep->last_progress_ns && now - ep->last_progress_ns > f->timeout_ns) {
            snprintf(why, sizeof(why), "no progress for %llu ms",
                     (unsigned long long)(f->timeout_ns / 1000000));
            link_failed(l, TFAB_ERR_TIMEOUT, why);
            continue;
        }
        if (f->heartbeat_ns == 0)
            continue;
        /* heartbeats: a peer says something every interval; silence past the timeout means
         * the peer or the link is dead, even with only receives pending */
        if (now > l->last_rx_ns && now - l->last_rx_ns > f->timeout_ns) {
            snprintf(why, sizeof(why), "peer silent for %llu ms (heartbeat every %llu ms)",
                     (unsigned long long)((now - l->last_rx_ns) / 1000000),
                     (unsigned long long)(f->heartbeat_ns / 1000000));
            link_failed(l, TFAB_ERR_TIMEOUT, why);
        } else if (now > l->last_tx_ns && now - l->last_tx_ns >= f->heartbeat_ns) {
            wire_hdr_t hb = {.op = WIRE_CREDIT};
            if (post(ep, &hb, NULL, 0, NULL) == TFAB_OK)
                ep->stats.heartbeats_sent++;
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
    ep->active  = EP_MAX_LINKS; /* none until the endpoint goes live */
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

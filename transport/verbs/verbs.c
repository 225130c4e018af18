/* verbs.c - the RDMA verbs backend: one RC queue pair per endpoint, connected with rdma_cm to
 * the peer of the (already authenticated) control connection. The pool is registered once per
 * device; frames are SENDs into receive slots posted from the pool (header and payload gathered
 * from pool memory, inlined when tiny); a rendezvous payload is RDMA-written straight into the
 * granted buffer and its DATA header follows on the same queue pair, so RC ordering delivers it
 * after the data. Every error completion is terminal for its endpoint. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <tfab/devinfo.h>
#include <tfab/log.h>
#include "../core/core.h"
#include "../core/tl.h"

#define MOD        "verbs"
#define SQ_DEPTH   4096u /* frames in flight per endpoint (as the TCP backend's queue) */
#define RQ_EXTRA   256u  /* receive slots beyond the credits, for CTS and CREDIT frames */
#define CQ_BATCH   32
#define CM_MAGIC   0x74666162u /* "tfab": private data of our connect requests */
#define ACK_TIMEOUT 16u        /* 4.096 us * 2^16 = 268 ms before a retransmission (rxe under
                                  emulation is slow); 7 retries, then the error is terminal */

typedef struct {
    uint32_t magic;
    uint32_t rkey;
} __attribute__((packed)) cm_priv_t;

typedef struct verbs_domain verbs_domain_t;

typedef struct verbs_ep {
    tfab_link_t        *link;
    verbs_domain_t     *dom;
    struct rdma_cm_id  *id;
    int                 dead;
    uint32_t            peer_rkey;
    unsigned            wqe_used;  /* send queue entries in use (writes + sends) */
    uint16_t           *frame_wqe; /* SQ_DEPTH: entries each frame took */
    unsigned            wqe_pending; /* unsignaled binds/invalidates not yet owned by a frame */
    struct ibv_mw     **mws;       /* memory windows for grants (NULL: weaker mode) */
    uint32_t           *mw_free;   /* free window indices (stack) */
    unsigned            n_mw, n_mw_free;
    uint8_t            *slots;     /* n_slots x slot_size receive buffers, in the pool */
    unsigned            n_slots;
    size_t              slot_size; /* header + eager_max */
    wire_hdr_t         *hdrs;      /* SQ_DEPTH header copies, in the pool */
    void              **ctx;       /* SQ_DEPTH completion contexts */
    unsigned            sq_head, sq_used;
    struct verbs_ep    *next;      /* domain list / graveyard */
} verbs_ep_t;

struct verbs_domain {
    tfab_fabric_t             *fabric;
    struct rdma_event_channel *cm_ch;     /* connection events of live endpoints */
    struct rdma_event_channel *listen_ch; /* connect requests */
    struct rdma_cm_id         *listen_id;
    struct ibv_context        *verbs;
    struct ibv_pd             *pd;
    struct ibv_mr             *mr;
    struct ibv_comp_channel   *cch;
    struct ibv_cq             *cq;
    uint32_t                   max_msg;   /* largest single RDMA write */
    uint32_t                   max_inline;
    uint32_t                   max_send_wr;
    int                        use_mw;    /* type-2 memory windows bound per grant */
    int                        evfd;
    pthread_mutex_t            dev_lock;  /* device setup from concurrent ep_open calls */
    verbs_ep_t                *eps, *graveyard; /* under the fabric lock */
    /* the reaper frees closed endpoints off the progress thread: rxe's teardown of a queue
     * pair or window can wait in the kernel for seconds, and progress must not stop meanwhile */
    pthread_t                  reaper;
    pthread_mutex_t            reap_lock;
    pthread_cond_t             reap_cond;
    verbs_ep_t                *reap_head;
    int                        reap_stop, have_reaper;
};

static int set_nonblock(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static verbs_ep_t *ep_by_qp(verbs_domain_t *d, uint32_t qp_num)
{
    for (verbs_ep_t *v = d->eps; v; v = v->next)
        if (v->id && v->id->qp && v->id->qp->qp_num == qp_num)
            return v;
    return NULL;
}

/* Parse "ip:port" into a sockaddr for rdma_cm. */
static int parse_ipport(const char *s, struct sockaddr_storage *ss)
{
    char        host[96];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    in->sin_family = AF_INET;
    in->sin_port   = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -1;
}

/* Set up the device once: protection domain, the pool's one registration, completion queue. */
static tfab_status_t dev_init(verbs_domain_t *d, struct ibv_context *ctx, uint8_t port)
{
    tfab_status_t st = TFAB_OK;
    pthread_mutex_lock(&d->dev_lock);
    if (d->verbs != NULL) {
        if (d->verbs != ctx) {
            TFAB_ERROR(MOD, "a second RDMA device (%s) in one fabric is not supported yet (using %s)",
                       ibv_get_device_name(ctx->device), ibv_get_device_name(d->verbs->device));
            st = TFAB_ERR_UNSUPPORTED;
        }
        goto out;
    }
    const char *name = ibv_get_device_name(ctx->device);
    tfab_pool_t *pool = d->fabric->pool;
    if ((d->pd = ibv_alloc_pd(ctx)) == NULL) {
        TFAB_ERROR(MOD, "%s: ibv_alloc_pd: %s", name, strerror(errno));
        st = TFAB_ERR_NODEV;
        goto out;
    }
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0) {
        st = TFAB_ERR_NODEV;
        goto err_pd;
    }
    /* With type-2 memory windows a peer may write only the range granted for one transfer:
     * the pool's registration itself gives no remote access. Without them the peer gets the
     * registration's key and could write anywhere in the pool: say so. */
    d->use_mw = da.max_mw > 0 && (da.device_cap_flags & IBV_DEVICE_MEM_WINDOW_TYPE_2B);
    if (!d->use_mw)
        TFAB_WARN(MOD, "%s has no type-2 memory windows: a connected peer can write anywhere in the "
                  "registered pool, not only into the buffer granted for a transfer (weaker mode)",
                  name);
    else if (da.vendor_id == 0xffffff || strncmp(name, "rxe", 3) == 0)
        /* measured by tests/transport/t_mw_softroce.sh: rxe (Linux 6.1) checks a window's key
         * and state but the range against the registration under it */
        TFAB_WARN(MOD, "%s (soft-RoCE) enforces a memory window's key but not its bounds: a peer "
                  "holding a live grant can write anywhere in the registered pool until the grant "
                  "is revoked; revoked grants are refused (weaker mode on this device)", name);
    d->mr = ibv_reg_mr(d->pd, tfab_pool_base(pool), tfab_pool_size(pool),
                       IBV_ACCESS_LOCAL_WRITE |
                           (d->use_mw ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_WRITE));
    if (d->mr == NULL) {
        int               err = errno;
        tfab_sys_limits_t lim;
        char              fix[512] = "";
        tfab_sys_limits_query(&lim);
        tfab_sys_limits_check(&lim, tfab_pool_size(pool), fix, sizeof(fix));
        TFAB_ERROR(MOD, "%s: registering the %zu-byte pool failed: %s%s%s", name,
                   tfab_pool_size(pool), strerror(err), fix[0] ? "; " : "", fix);
        st = TFAB_ERR_PERM;
        goto err_pd;
    }
    tfab_pool_note_registration(pool);
    struct ibv_port_attr pa;
    if (ibv_query_port(ctx, port, &pa) != 0) {
        st = TFAB_ERR_NODEV;
        goto err_mr;
    }
    d->max_msg     = pa.max_msg_sz ? pa.max_msg_sz : (1u << 30);
    d->max_send_wr = (uint32_t)da.max_qp_wr < 2 * SQ_DEPTH ? (uint32_t)da.max_qp_wr : 2 * SQ_DEPTH;
    int                      cqe = da.max_cqe < 65536 ? da.max_cqe : 65536;
    struct ibv_comp_channel *cch = ibv_create_comp_channel(ctx);
    struct ibv_cq           *cq  = cch ? ibv_create_cq(ctx, cqe, NULL, cch, 0) : NULL;
    if (cq == NULL) {
        TFAB_ERROR(MOD, "%s: creating the completion queue (%d entries): %s", name, cqe,
                   strerror(errno));
        if (cch)
            ibv_destroy_comp_channel(cch);
        st = TFAB_ERR_NOMEM;
        goto err_mr;
    }
    /* Publish only when complete: progress (another thread) must never see a channel whose
     * fd still blocks, or it sleeps in ibv_get_cq_event for an event nobody armed. */
    set_nonblock(cch->fd);
    tfab_core_lock(d->fabric);
    d->cch = cch;
    d->cq  = cq;
    tfab_core_unlock(d->fabric);
    d->verbs = ctx;
    TFAB_INFO(MOD, "%s port %u: pool registered once (%s), max message %u bytes", name, port,
              d->use_mw ? "remote access only through per-transfer memory windows"
                        : "remote write through the registration",
              d->max_msg);
    goto out;

err_mr:
    ibv_dereg_mr(d->mr);
    d->mr = NULL;
err_pd:
    ibv_dealloc_pd(d->pd);
    d->pd = NULL;
out:
    pthread_mutex_unlock(&d->dev_lock);
    return st;
}

static void free_ep(verbs_ep_t *v);

/* Stop the reaper once it freed everything handed to it. */
static void reaper_stop(verbs_domain_t *d)
{
    if (!d->have_reaper)
        return;
    pthread_mutex_lock(&d->reap_lock);
    d->reap_stop = 1;
    pthread_cond_signal(&d->reap_cond);
    pthread_mutex_unlock(&d->reap_lock);
    pthread_join(d->reaper, NULL);
    d->have_reaper = 0;
}

static void *reaper_main(void *arg)
{
    verbs_domain_t *d = arg;
    pthread_mutex_lock(&d->reap_lock);
    for (;;) {
        while (d->reap_head == NULL && !d->reap_stop)
            pthread_cond_wait(&d->reap_cond, &d->reap_lock);
        if (d->reap_head == NULL)
            break;
        verbs_ep_t *v = d->reap_head;
        d->reap_head  = v->next;
        pthread_mutex_unlock(&d->reap_lock);
        free_ep(v);
        pthread_mutex_lock(&d->reap_lock);
    }
    pthread_mutex_unlock(&d->reap_lock);
    return NULL;
}

static tfab_status_t verbs_domain_open(tfab_fabric_t *f, const char *listen, void **domain_p)
{
    verbs_domain_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return TFAB_ERR_NOMEM;
    d->fabric = f;
    pthread_mutex_init(&d->dev_lock, NULL);
    pthread_mutex_init(&d->reap_lock, NULL);
    pthread_cond_init(&d->reap_cond, NULL);
    d->have_reaper = pthread_create(&d->reaper, NULL, reaper_main, d) == 0;
    d->evfd  = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    d->cm_ch = rdma_create_event_channel();
    if (d->evfd < 0 || d->cm_ch == NULL) {
        TFAB_ERROR(MOD, "rdma_create_event_channel: %s (is rdma_ucm loaded? /dev/infiniband/rdma_cm?)",
                   strerror(errno));
        goto err;
    }
    set_nonblock(d->cm_ch->fd);
    if (listen) { /* listening: a queue pair listener on the same ip:port */
        struct sockaddr_storage ss;
        if (parse_ipport(listen, &ss) != 0) {
            TFAB_ERROR(MOD, "verbs needs an IPv4 listen address, not %s", listen);
            goto err;
        }
        if ((d->listen_ch = rdma_create_event_channel()) == NULL ||
            rdma_create_id(d->listen_ch, &d->listen_id, NULL, RDMA_PS_TCP) != 0 ||
            rdma_bind_addr(d->listen_id, (struct sockaddr *)&ss) != 0 || d->listen_id->verbs == NULL) {
            TFAB_ERROR(MOD, "no RDMA device carries %s (rdma_bind_addr: %s): use backend tcp, or "
                       "listen on the address of an RDMA port (`tfab devices`)", listen,
                       strerror(errno));
            goto err;
        }
        if (rdma_listen(d->listen_id, 16) != 0) {
            TFAB_ERROR(MOD, "rdma_listen on %s: %s", listen, strerror(errno));
            goto err;
        }
        if (dev_init(d, d->listen_id->verbs, d->listen_id->port_num ? d->listen_id->port_num : 1) != TFAB_OK)
            goto err;
    }
    *domain_p = d;
    return TFAB_OK;
err:
    reaper_stop(d);
    if (d->listen_id)
        rdma_destroy_id(d->listen_id);
    if (d->listen_ch)
        rdma_destroy_event_channel(d->listen_ch);
    if (d->cm_ch)
        rdma_destroy_event_channel(d->cm_ch);
    if (d->evfd >= 0)
        close(d->evfd);
    free(d);
    return TFAB_ERR_NODEV;
}

/* Next cm event on ch (blocking until deadline). */
static struct rdma_cm_event *cm_wait(struct rdma_event_channel *ch, uint64_t deadline_ns)
{
    for (;;) {
        struct rdma_cm_event *ev;
        if (rdma_get_cm_event(ch, &ev) == 0)
            return ev;
        if (errno != EAGAIN)
            return NULL;
        uint64_t now = tfab_core_now_ns();
        if (now >= deadline_ns)
            return NULL;
        struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
        poll(&pfd, 1, (int)((deadline_ns - now) / 1000000) + 1);
    }
}

/* rdma_cm may leave the ACK timeout at 0 on RoCE: no retransmission ever, so one lost packet
 * hangs the queue pair silently. Set it explicitly. */
static void set_ack_timeout(struct rdma_cm_id *id)
{
    uint8_t t = ACK_TIMEOUT;
    if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof(t)) != 0)
        TFAB_WARN(MOD, "rdma_set_option(ACK_TIMEOUT): %s; lost packets may not be retransmitted",
                  strerror(errno));
}

static tfab_status_t post_slot(verbs_ep_t *v, unsigned i)
{
    struct ibv_sge     sge = {.addr   = (uintptr_t)(v->slots + (size_t)i * v->slot_size),
                              .length = (uint32_t)v->slot_size, .lkey = v->dom->mr->lkey};
    struct ibv_recv_wr wr  = {.wr_id = i, .sg_list = &sge, .num_sge = 1}, *bad;
    return ibv_post_recv(v->id->qp, &wr, &bad) == 0 ? TFAB_OK : TFAB_ERR_IO;
}

static tfab_status_t make_qp(verbs_ep_t *v, struct rdma_cm_id *id)
{
    verbs_domain_t         *d  = v->dom;
    struct ibv_qp_init_attr qa = {
        .send_cq = d->cq, .recv_cq = d->cq, .qp_type = IBV_QPT_RC,
        .cap = {.max_send_wr = d->max_send_wr, .max_recv_wr = v->n_slots, .max_send_sge = 2,
                .max_recv_sge = 1, .max_inline_data = 64},
    };
    if (rdma_create_qp(id, d->pd, &qa) != 0) {
        qa.cap.max_inline_data = 0;
        if (rdma_create_qp(id, d->pd, &qa) != 0) {
            TFAB_ERROR(MOD, "rdma_create_qp: %s", strerror(errno));
            return TFAB_ERR_NOMEM;
        }
    }
    d->max_inline = qa.cap.max_inline_data;
    tfab_core_lock(d->fabric); /* progress looks endpoints up by queue pair */
    v->id = id;
    tfab_core_unlock(d->fabric);
    if (d->use_mw) {
        v->n_mw    = EP_MAX_OPS;
        v->mws     = calloc(v->n_mw, sizeof(*v->mws));
        v->mw_free = calloc(v->n_mw, sizeof(*v->mw_free));
        if (v->mws == NULL || v->mw_free == NULL)
            return TFAB_ERR_NOMEM;
        for (unsigned i = 0; i < v->n_mw; i++) {
            if ((v->mws[i] = ibv_alloc_mw(d->pd, IBV_MW_TYPE_2)) == NULL) {
                TFAB_ERROR(MOD, "ibv_alloc_mw (window %u of %u): %s", i, v->n_mw, strerror(errno));
                return TFAB_ERR_NOMEM;
            }
            v->mw_free[v->n_mw_free++] = i;
        }
    }
    for (unsigned i = 0; i < v->n_slots; i++)
        if (post_slot(v, i) != TFAB_OK) {
            TFAB_ERROR(MOD, "posting receive %u: %s", i, strerror(errno));
            return TFAB_ERR_IO;
        }
    return TFAB_OK;
}

static tfab_status_t accept_qp(verbs_ep_t *v, uint64_t deadline)
{
    verbs_domain_t       *d  = v->dom;
    struct rdma_cm_event *ev = cm_wait(d->listen_ch, deadline);
    if (ev == NULL) {
        TFAB_ERROR(MOD, "no queue pair connect request after the handshake (timed out)");
        return TFAB_ERR_TIMEOUT;
    }
    cm_priv_t priv;
    if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST || ev->param.conn.private_data_len < sizeof(priv)) {
        TFAB_ERROR(MOD, "expected a tfab connect request, got %s", rdma_event_str(ev->event));
        rdma_ack_cm_event(ev);
        return TFAB_ERR_PROTO;
    }
    memcpy(&priv, ev->param.conn.private_data, sizeof(priv));
    struct rdma_cm_id *id = ev->id;
    rdma_ack_cm_event(ev);
    if (priv.magic != CM_MAGIC) {
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        TFAB_ERROR(MOD, "connect request without tfab's magic: rejected");
        return TFAB_ERR_PROTO;
    }
    v->peer_rkey     = priv.rkey;
    set_ack_timeout(id);
    tfab_status_t st = dev_init(d, id->verbs, id->port_num);
    if (st == TFAB_OK)
        st = make_qp(v, id);
    if (st != TFAB_OK) {
        tfab_core_lock(d->fabric);
        v->id = NULL;
        tfab_core_unlock(d->fabric);
        rdma_reject(id, NULL, 0);
        if (id->qp)
            rdma_destroy_qp(id);
        rdma_destroy_id(id);
        return st;
    }
    cm_priv_t mine = {CM_MAGIC, d->use_mw ? 0 : d->mr->rkey};
    struct rdma_conn_param cp = {.private_data = &mine, .private_data_len = sizeof(mine),
                                 .responder_resources = 1, .initiator_depth = 1,
                                 .retry_count = 7, .rnr_retry_count = 7};
    if (rdma_accept(id, &cp) != 0 || (ev = cm_wait(d->listen_ch, deadline)) == NULL) {
        TFAB_ERROR(MOD, "accepting the queue pair: %s", strerror(errno));
        return TFAB_ERR_CONN;
    }
    int ok = ev->event == RDMA_CM_EVENT_ESTABLISHED;
    if (!ok)
        TFAB_ERROR(MOD, "queue pair not established: %s", rdma_event_str(ev->event));
    rdma_ack_cm_event(ev);
    if (!ok)
        return TFAB_ERR_CONN;
    return rdma_migrate_id(id, d->cm_ch) == 0 ? TFAB_OK : TFAB_ERR_IO;
}

static tfab_status_t connect_qp(verbs_ep_t *v, int fd, uint64_t deadline)
{
    verbs_domain_t         *d = v->dom;
    struct sockaddr_storage peer, local;
    socklen_t               pl = sizeof(peer), ll = sizeof(local);
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &ll) != 0)
        return TFAB_ERR_CONN;
    ((struct sockaddr_in *)&local)->sin_port = 0;
    struct rdma_event_channel *ch = rdma_create_event_channel();
    struct rdma_cm_id         *id = NULL;
    tfab_status_t              st = TFAB_ERR_CONN;
    char                       where[64];
    inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, where, sizeof(where));
    if (ch == NULL || rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) != 0)
        goto out;
    struct rdma_cm_event *ev;
    if (rdma_resolve_addr(id, (struct sockaddr *)&local, (struct sockaddr *)&peer, 5000) != 0 ||
        (ev = cm_wait(ch, deadline)) == NULL) {
        TFAB_ERROR(MOD, "resolving %s for a queue pair: %s", where, strerror(errno));
        goto out;
    }
    if (ev->event != RDMA_CM_EVENT_ADDR_RESOLVED) {
        TFAB_ERROR(MOD, "no RDMA route to %s from our address: %s (does an RDMA device carry the "
                   "control connection's address?)", where, rdma_event_str(ev->event));
        rdma_ack_cm_event(ev);
        goto out;
    }
    rdma_ack_cm_event(ev);
    set_ack_timeout(id);
    if (rdma_resolve_route(id, 5000) != 0 || (ev = cm_wait(ch, deadline)) == NULL)
        goto out;
    int routed = ev->event == RDMA_CM_EVENT_ROUTE_RESOLVED;
    rdma_ack_cm_event(ev);
    if (!routed) {
        TFAB_ERROR(MOD, "route to %s not resolved", where);
        goto out;
    }
    if ((st = dev_init(d, id->verbs, id->port_num)) != TFAB_OK || (st = make_qp(v, id)) != TFAB_OK)
        goto out;
    cm_priv_t              mine = {CM_MAGIC, d->use_mw ? 0 : d->mr->rkey};
    struct rdma_conn_param cp   = {.private_data = &mine, .private_data_len = sizeof(mine),
                                   .responder_resources = 1, .initiator_depth = 1,
                                   .retry_count = 7, .rnr_retry_count = 7};
    st = TFAB_ERR_CONN;
    if (rdma_connect(id, &cp) != 0 || (ev = cm_wait(ch, deadline)) == NULL) {
        TFAB_ERROR(MOD, "connecting a queue pair to %s: %s", where, errno ? strerror(errno) : "timed out");
        goto out;
    }
    cm_priv_t theirs = {0};
    if (ev->event == RDMA_CM_EVENT_ESTABLISHED && ev->param.conn.private_data_len >= sizeof(theirs))
        memcpy(&theirs, ev->param.conn.private_data, sizeof(theirs));
    if (ev->event != RDMA_CM_EVENT_ESTABLISHED || theirs.magic != CM_MAGIC)
        TFAB_ERROR(MOD, "queue pair to %s: %s", where, rdma_event_str(ev->event));
    else
        st = TFAB_OK;
    rdma_ack_cm_event(ev);
    if (st == TFAB_OK) {
        v->peer_rkey = theirs.rkey;
        if (rdma_migrate_id(id, d->cm_ch) != 0)
            st = TFAB_ERR_IO;
    }
out:
    if (st != TFAB_OK && id != NULL) {
        tfab_core_lock(d->fabric);
        v->id = NULL;
        tfab_core_unlock(d->fabric);
        if (id->qp)
            rdma_destroy_qp(id);
        rdma_destroy_id(id);
    }
    if (ch)
        rdma_destroy_event_channel(ch);
    return st;
}

static void unlink_ep(verbs_domain_t *d, verbs_ep_t *v);

/* Commit point: the server says on the control socket that its queue pair is live (accepted,
 * ready to receive, known to progress); the client sends nothing on the queue pair before. */
static tfab_status_t ready_barrier(int fd, int is_server, uint64_t deadline_ns)
{
    char b = 'R';
    if (is_server)
        return send(fd, &b, 1, MSG_NOSIGNAL) == 1 ? TFAB_OK : TFAB_ERR_CONN;
    for (;;) {
        uint64_t now = tfab_core_now_ns();
        if (now >= deadline_ns) {
            TFAB_ERROR(MOD, "the peer's queue pair did not become ready (timed out)");
            return TFAB_ERR_TIMEOUT;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)((deadline_ns - now) / 1000000) + 1) <= 0)
            continue;
        ssize_t r = recv(fd, &b, 1, MSG_DONTWAIT);
        if (r == 1 && b == 'R')
            return TFAB_OK;
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            TFAB_ERROR(MOD, "the peer closed the control connection before its queue pair was ready");
            return TFAB_ERR_CONN;
        }
    }
}

/* Windows first: a bound window holds a reference on its queue pair, and rxe's destroy of a
 * queue pair still referenced waits (seconds, while its device is being removed). */
static void free_ep(verbs_ep_t *v)
{
    tfab_pool_t *pool = v->dom->fabric->pool;
    for (unsigned i = 0; v->mws && i < v->n_mw; i++)
        if (v->mws[i])
            ibv_dealloc_mw(v->mws[i]);
    if (v->id) {
        if (v->id->qp)
            rdma_destroy_qp(v->id);
        rdma_destroy_id(v->id);
    }
    free(v->mws);
    free(v->mw_free);
    tfab_pool_free(pool, v->slots);
    tfab_pool_free(pool, v->hdrs);
    free(v->ctx);
    free(v->frame_wqe);
    free(v);
}

static tfab_status_t verbs_ep_open(void *domain, tfab_link_t *link, int fd, int is_server,
                                   uint64_t deadline_ns, void **tl_ep_p)
{
    verbs_domain_t *d = domain;
    tfab_fabric_t  *f = d->fabric;
    verbs_ep_t     *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return TFAB_ERR_NOMEM;
    v->link      = link;
    v->dom       = d;
    v->n_slots   = f->credits + RQ_EXTRA;
    v->slot_size = sizeof(wire_hdr_t) + f->eager_max;
    v->ctx       = calloc(SQ_DEPTH, sizeof(*v->ctx));
    v->frame_wqe = calloc(SQ_DEPTH, sizeof(*v->frame_wqe));
    void         *a = NULL, *b = NULL;
    tfab_status_t st;
    if (v->ctx == NULL || v->frame_wqe == NULL ||
        tfab_pool_alloc(f->pool, v->n_slots * v->slot_size, &a) != TFAB_OK ||
        tfab_pool_alloc(f->pool, SQ_DEPTH * sizeof(wire_hdr_t), &b) != TFAB_OK) {
        v->slots = a;
        free_ep(v);
        return TFAB_ERR_NOMEM;
    }
    v->slots = a;
    v->hdrs  = b;
    /* Live before the queue pair connects: the peer may send the moment its side is
     * established, possibly before ours reports it, and that first completion must find us. */
    tfab_core_lock(f);
    *tl_ep_p = v;
    v->next  = d->eps;
    d->eps   = v;
    tfab_core_unlock(f);
    st = is_server ? accept_qp(v, deadline_ns) : connect_qp(v, fd, deadline_ns);
    if (st == TFAB_OK)
        st = ready_barrier(fd, is_server, deadline_ns);
    if (st != TFAB_OK) {
        tfab_core_lock(f);
        unlink_ep(d, v);
        *tl_ep_p = NULL;
        tfab_core_unlock(f);
        free_ep(v);
        return st;
    }
    close(fd); /* the handshake is over; the queue pair carries everything from here */
    return TFAB_OK;
}

static void unlink_ep(verbs_domain_t *d, verbs_ep_t *v)
{
    for (verbs_ep_t **pp = &d->eps; *pp; pp = &(*pp)->next)
        if (*pp == v) {
            *pp = v->next;
            return;
        }
}

static void fail(verbs_ep_t *v, tfab_status_t st, const char *why)
{
    if (v->dead)
        return;
    v->dead = 1;
    tfab_core_link_failed(v->link, st, why);
}

/* Called with the fabric lock held; freed at the next progress round. */
static void verbs_ep_close(void *tl_ep)
{
    verbs_ep_t *v = tl_ep;
    v->dead       = 1;
    if (v->id)
        rdma_disconnect(v->id);
    unlink_ep(v->dom, v);
    v->next            = v->dom->graveyard;
    v->dom->graveyard  = v;
}

static tfab_status_t verbs_ep_post(void *tl_ep, const wire_hdr_t *hdr, const void *payload,
                                   size_t len, void *ctx)
{
    verbs_ep_t     *v = tl_ep;
    verbs_domain_t *d = v->dom;
    if (v->dead)
        return TFAB_ERR_CONN;
    size_t   chunks = hdr->op == WIRE_DATA ? (len + d->max_msg - 1) / d->max_msg : 0;
    unsigned need   = (unsigned)chunks + 1;
    if (v->sq_used == SQ_DEPTH || v->wqe_used + need > d->max_send_wr)
        return TFAB_ERR_BUSY;
    unsigned i   = (v->sq_head + v->sq_used) % SQ_DEPTH;
    v->hdrs[i]   = *hdr;
    v->ctx[i]    = ctx;
    struct ibv_send_wr wr[65], *bad;
    struct ibv_sge     sg[66];
    unsigned           n = 0;
    if (chunks > 64)
        return TFAB_ERR_BUSY; /* a grant larger than 64 maximal messages: not yet */
    for (size_t k = 0; k < chunks; k++, n++) {
        size_t off = k * d->max_msg, l = len - off < d->max_msg ? len - off : d->max_msg;
        sg[n]      = (struct ibv_sge){(uintptr_t)payload + off, (uint32_t)l, d->mr->lkey};
        wr[n]      = (struct ibv_send_wr){.sg_list = &sg[n], .num_sge = 1,
                                          .opcode = IBV_WR_RDMA_WRITE, .next = &wr[n + 1]};
        wr[n].wr.rdma.remote_addr = hdr->aux + off;
        wr[n].wr.rdma.rkey        = hdr->tag ? (uint32_t)hdr->tag : v->peer_rkey;
    }
    sg[n]       = (struct ibv_sge){(uintptr_t)&v->hdrs[i], sizeof(wire_hdr_t), d->mr->lkey};
    int nsge    = 1;
    size_t body = hdr->op == WIRE_EAGER ? len : 0;
    if (body) {
        sg[n + 1] = (struct ibv_sge){(uintptr_t)payload, (uint32_t)body, d->mr->lkey};
        nsge      = 2;
    }
    wr[n] = (struct ibv_send_wr){.wr_id = i, .sg_list = &sg[n], .num_sge = nsge,
                                 .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED};
    if (sizeof(wire_hdr_t) + body <= d->max_inline)
        wr[n].send_flags |= IBV_SEND_INLINE;
    if (ibv_post_send(v->id->qp, &wr[0], &bad) != 0) {
        TFAB_ERROR(MOD, "%s: ibv_post_send: %s", tfab_core_link_name(v->link), strerror(errno));
        return TFAB_ERR_IO;
    }
    TFAB_TRACE(MOD, "qp %u: posted frame %u op %u len %zu (%u wqe%s)", v->id->qp->qp_num, i,
               hdr->op, len, need, wr[n].send_flags & IBV_SEND_INLINE ? ", inline" : "");
    v->frame_wqe[i] = (uint16_t)(need + v->wqe_pending); /* freed with this frame */
    v->wqe_pending  = 0;
    v->wqe_used += need;
    v->sq_used++;
    return TFAB_OK;
}

/* Post one unsignaled work request that completes with the next signaled frame. */
static tfab_status_t post_unsignaled(verbs_ep_t *v, struct ibv_send_wr *wr)
{
    struct ibv_send_wr *bad;
    if (v->wqe_used + 1 > v->dom->max_send_wr)
        return TFAB_ERR_BUSY;
    if (ibv_post_send(v->id->qp, wr, &bad) != 0) {
        TFAB_ERROR(MOD, "%s: ibv_post_send(%s): %s", tfab_core_link_name(v->link),
                   wr->opcode == IBV_WR_BIND_MW ? "bind window" : "invalidate", strerror(errno));
        return TFAB_ERR_IO;
    }
    v->wqe_used++;
    v->wqe_pending++;
    return TFAB_OK;
}

static tfab_status_t verbs_grant(void *tl_ep, void *buf, size_t len, uint32_t *rkey_p,
                                 uint32_t *handle_p)
{
    verbs_ep_t *v = tl_ep;
    if (!v->dom->use_mw) {
        *rkey_p   = 0; /* the peer uses the registration's key */
        *handle_p = UINT32_MAX;
        return TFAB_OK;
    }
    if (v->n_mw_free == 0)
        return TFAB_ERR_BUSY; /* cannot happen: one window per receive slot */
    uint32_t           i  = v->mw_free[--v->n_mw_free];
    struct ibv_mw     *mw = v->mws[i];
    struct ibv_send_wr wr = {.opcode = IBV_WR_BIND_MW};
    wr.bind_mw.mw         = mw;
    wr.bind_mw.rkey       = ibv_inc_rkey(mw->rkey);
    wr.bind_mw.bind_info  = (struct ibv_mw_bind_info){.mr = v->dom->mr, .addr = (uintptr_t)buf,
                                                      .length = len,
                                                      .mw_access_flags = IBV_ACCESS_REMOTE_WRITE};
    tfab_status_t st = post_unsignaled(v, &wr);
    if (st != TFAB_OK) {
        v->mw_free[v->n_mw_free++] = i;
        return st;
    }
    mw->rkey  = wr.bind_mw.rkey; /* the provider updates it at completion; we need it now */
    *rkey_p   = wr.bind_mw.rkey;
    *handle_p = i;
    return TFAB_OK;
}

static void verbs_ungrant(void *tl_ep, uint32_t handle)
{
    verbs_ep_t *v = tl_ep;
    if (handle == UINT32_MAX || handle >= v->n_mw || v->dead)
        return;
    struct ibv_send_wr wr = {.opcode = IBV_WR_LOCAL_INV, .invalidate_rkey = v->mws[handle]->rkey};
    if (post_unsignaled(v, &wr) != TFAB_OK) {
        fail(v, TFAB_ERR_IO, "revoking a memory window failed");
        return;
    }
    v->mw_free[v->n_mw_free++] = handle;
}

static void on_recv(verbs_ep_t *v, const struct ibv_wc *wc)
{
    uint8_t   *slot = v->slots + (size_t)wc->wr_id * v->slot_size;
    wire_hdr_t h;
    if (wc->byte_len < sizeof(h)) {
        fail(v, TFAB_ERR_PROTO, "frame shorter than its header");
        return;
    }
    memcpy(&h, slot, sizeof(h));
    size_t body = wc->byte_len - sizeof(h);
    if ((h.op == WIRE_EAGER && body != h.len) || (h.op != WIRE_EAGER && body != 0)) {
        fail(v, TFAB_ERR_PROTO, "frame length does not match its header");
        return;
    }
    void         *dest = NULL;
    tfab_status_t st   = tfab_core_rx_header(v->link, &h, &dest);
    if (st != TFAB_OK) {
        fail(v, st, "malformed frame");
        return;
    }
    if (h.op == WIRE_EAGER && dest != NULL && body)
        memcpy(dest, slot + sizeof(h), body);
    tfab_core_rx_done(v->link, &h, dest); /* DATA: the payload was RDMA-written before this */
    if (!v->dead && post_slot(v, (unsigned)wc->wr_id) != TFAB_OK)
        fail(v, TFAB_ERR_IO, "reposting a receive failed");
}

static void handle_wc(verbs_domain_t *d, const struct ibv_wc *wc)
{
    verbs_ep_t *v = ep_by_qp(d, wc->qp_num);
    TFAB_TRACE(MOD, "qp %u: completion opcode %d status %d wr_id %llu bytes %u%s", wc->qp_num,
               wc->opcode, wc->status, (unsigned long long)wc->wr_id, wc->byte_len,
               v ? "" : " (no endpoint)");
    if (v == NULL || v->dead)
        return; /* flushed completions of a closed or failed endpoint */
    if (wc->status != IBV_WC_SUCCESS) {
        char why[160];
        snprintf(why, sizeof(why), "work completion error '%s' (vendor error %#x)",
                 ibv_wc_status_str(wc->status), wc->vendor_err);
        fail(v, wc->status == IBV_WC_RETRY_EXC_ERR ? TFAB_ERR_CONN : TFAB_ERR_IO, why);
        return;
    }
    if (wc->opcode & IBV_WC_RECV) {
        on_recv(v, wc);
        return;
    }
    /* sends complete in order on a queue pair: the completed frame is the oldest */
    unsigned i = v->sq_head;
    if (wc->wr_id != i) {
        fail(v, TFAB_ERR_PROTO, "send completions out of order");
        return;
    }
    void *ctx  = v->ctx[i];
    v->wqe_used -= v->frame_wqe[i];
    v->sq_head = (v->sq_head + 1) % SQ_DEPTH;
    v->sq_used--;
    if (ctx != NULL)
        tfab_core_tx_done(v->link, ctx);
}

static void handle_cm_events(verbs_domain_t *d)
{
    struct rdma_cm_event *ev;
    while (rdma_get_cm_event(d->cm_ch, &ev) == 0) {
        struct rdma_cm_id *id = ev->id;
        enum rdma_cm_event_type t = ev->event;
        rdma_ack_cm_event(ev);
        for (verbs_ep_t *v = d->eps; v; v = v->next)
            if (v->id == id && (t == RDMA_CM_EVENT_DISCONNECTED || t == RDMA_CM_EVENT_DEVICE_REMOVAL))
                fail(v, TFAB_ERR_CONN, t == RDMA_CM_EVENT_DEVICE_REMOVAL ? "RDMA device removed"
                                                                        : "peer disconnected");
    }
}

static int verbs_progress(void *domain, int timeout_ms)
{
    verbs_domain_t *d = domain;
    tfab_core_lock(d->fabric);
    verbs_ep_t *dead = d->graveyard; /* to the reaper: teardown may block in the kernel */
    d->graveyard     = NULL;
    struct ibv_cq           *cq  = d->cq; /* set once by dev_init, under the lock */
    struct ibv_comp_channel *cch = d->cch;
    tfab_core_unlock(d->fabric);
    if (dead) {
        pthread_mutex_lock(&d->reap_lock);
        verbs_ep_t *tail = dead;
        while (tail->next)
            tail = tail->next;
        tail->next   = d->reap_head;
        d->reap_head = dead;
        pthread_cond_signal(&d->reap_cond);
        pthread_mutex_unlock(&d->reap_lock);
    }
    struct ibv_wc wc[CQ_BATCH];
    int           n = cq ? ibv_poll_cq(cq, CQ_BATCH, wc) : 0;
    if (n == 0 && timeout_ms > 0) {
        /* nothing to do: arm, look once more (a completion may have slipped in), then sleep */
        if (cq)
            ibv_req_notify_cq(cq, 0);
        n = cq ? ibv_poll_cq(cq, CQ_BATCH, wc) : 0;
        if (n == 0) {
            struct pollfd pfd[3] = {{.fd = d->evfd, .events = POLLIN},
                                    {.fd = d->cm_ch->fd, .events = POLLIN},
                                    {.fd = cch ? cch->fd : -1, .events = POLLIN}};
            poll(pfd, 3, timeout_ms);
            uint64_t v;
            ssize_t  r = read(d->evfd, &v, sizeof(v));
            (void)r;
            struct ibv_cq *ev_cq;
            void          *cq_ctx;
            if (cch && ibv_get_cq_event(cch, &ev_cq, &cq_ctx) == 0) /* non-blocking fd */
                ibv_ack_cq_events(ev_cq, 1);
            n = cq ? ibv_poll_cq(cq, CQ_BATCH, wc) : 0;
        }
    }
    tfab_core_lock(d->fabric);
    for (int k = 0; k < n; k++)
        handle_wc(d, &wc[k]);
    if (n < 0)
        TFAB_ERROR(MOD, "ibv_poll_cq failed");
    handle_cm_events(d);
    tfab_core_unlock(d->fabric);
    return n > 0 ? n : 0;
}

static void verbs_wake(void *domain)
{
    verbs_domain_t *d   = domain;
    uint64_t        one = 1;
    ssize_t         w   = write(d->evfd, &one, sizeof(one));
    (void)w;
}

static void verbs_domain_close(void *domain)
{
    verbs_domain_t *d = domain;
    reaper_stop(d); /* frees what it holds first */
    while (d->graveyard) {
        verbs_ep_t *v = d->graveyard;
        d->graveyard  = v->next;
        free_ep(v);
    }
    if (d->listen_id)
        rdma_destroy_id(d->listen_id);
    if (d->listen_ch)
        rdma_destroy_event_channel(d->listen_ch);
    if (d->cq)
        ibv_destroy_cq(d->cq);
    if (d->cch)
        ibv_destroy_comp_channel(d->cch);
    if (d->mr)
        ibv_dereg_mr(d->mr);
    if (d->pd)
        ibv_dealloc_pd(d->pd);
    rdma_destroy_event_channel(d->cm_ch);
    close(d->evfd);
    pthread_mutex_destroy(&d->dev_lock);
    free(d);
}

const tfab_tl_ops_t tfab_tl_verbs_ops = {
    .size         = sizeof(tfab_tl_ops_t),
    .name         = "verbs",
    .domain_open  = verbs_domain_open,
    .domain_close = verbs_domain_close,
    .ep_open      = verbs_ep_open,
    .ep_close     = verbs_ep_close,
    .ep_post      = verbs_ep_post,
    .progress     = verbs_progress,
    .wake         = verbs_wake,
    .grant        = verbs_grant,
    .ungrant      = verbs_ungrant,
};

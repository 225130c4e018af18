/* rc_probe.c - proof that a fabric carries real verbs: registers one large region (1 GiB by
 * default) on each side, connects an RC queue pair with rdma_cm, moves N bytes (64 MiB) with
 * RDMA WRITE (+ immediate) and N bytes with SEND, and verifies on both sides that what arrived
 * is byte-for-byte what was sent (regenerated pattern) and that the checksums agree.
 *
 * It talks to verbs directly on purpose (like perftest): it checks the bed and the host, not
 * tfab's transport. It uses libtfab for the GID choice and the memlock diagnosis and checks
 * that tfab_gid_select() picks the GID rdma_cm put into the queue pair.
 *
 *   rc_probe --server --bind IP [options]
 *   rc_probe --client SERVER_IP [options]
 *   rc_probe --reg-only --bind IP [--region SIZE]   (only open the device and register)
 * options: --port P (7471) --region SIZE (1G) --bytes SIZE (64M) --chunk SIZE (1M)
 *          --timeout SECONDS (120) --seed N
 * Exit: 0 when every byte arrived intact, 1 on any failure (with the reason on stderr). */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <tfab/tfab.h>
#include "../common/pattern.h"

#define CTRL_SIZE  4096u
#define WRITE_IMM  0x7fab0001u
#define MAX_SEND_WR 64u

typedef struct {
    uint64_t seed;       /* client -> server in connect private data */
    uint64_t bytes;
    uint64_t chunk;
} __attribute__((packed)) hello_t;

typedef struct {
    uint64_t addr;       /* server -> client in accept private data: WRITE target */
    uint32_t rkey;
    uint64_t len;
} __attribute__((packed)) grant_t;

typedef struct {
    uint64_t write_sum, send_sum; /* server -> client: what arrived */
    uint64_t write_bad, send_bad; /* first bad offset, or bytes when intact */
} result_t;

_Static_assert(sizeof(hello_t) + sizeof(grant_t) <= 56, "rdma_cm private data is 56 bytes");

typedef struct {
    int         server, reg_only;
    const char *addr;
    const char *port;
    uint64_t    region, bytes, chunk, seed;
    int         timeout_s;
} opts_t;

typedef struct {
    struct rdma_event_channel *ech;
    struct rdma_cm_id         *listen_id, *id;
    struct ibv_pd             *pd;
    struct ibv_comp_channel   *cch;
    struct ibv_cq             *cq;
    struct ibv_mr             *mr;
    uint8_t                   *base;
    size_t                     region;
    double                     deadline;
} probe_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define FAIL(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "rc_probe: " __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                                 \
        exit(1);                                                                             \
    } while (0)

static int remaining_ms(const probe_t *p)
{
    double r = p->deadline - now_s();
    return r <= 0 ? 0 : (int)(r * 1000) + 1;
}

/* Wait for the next rdma_cm event until the deadline. */
static struct rdma_cm_event *wait_cm(probe_t *p, const char *what)
{
    struct pollfd pfd = {.fd = p->ech->fd, .events = POLLIN};
    for (;;) {
        int ms = remaining_ms(p);
        if (ms == 0)
            FAIL("timed out waiting for %s", what);
        int n = poll(&pfd, 1, ms);
        if (n < 0 && errno != EINTR)
            FAIL("poll(rdma_cm channel): %s", strerror(errno));
        if (n <= 0)
            continue;
        struct rdma_cm_event *ev;
        if (rdma_get_cm_event(p->ech, &ev) != 0)
            FAIL("rdma_get_cm_event: %s", strerror(errno));
        return ev;
    }
}

/* Wait for one work completion; an error completion is terminal for the probe. */
static void wait_wc(probe_t *p, struct ibv_wc *wc, const char *what)
{
    for (;;) {
        int n = ibv_poll_cq(p->cq, 1, wc);
        if (n < 0)
            FAIL("ibv_poll_cq failed while waiting for %s", what);
        if (n == 1) {
            if (wc->status != IBV_WC_SUCCESS)
                FAIL("%s: work completion error '%s' (status %d, opcode %d, wr_id %" PRIu64 ")",
                     what, ibv_wc_status_str(wc->status), wc->status, wc->opcode, wc->wr_id);
            return;
        }
        if (ibv_req_notify_cq(p->cq, 0) != 0)
            FAIL("ibv_req_notify_cq: %s", strerror(errno));
        n = ibv_poll_cq(p->cq, 1, wc); /* a completion may have landed before the arm */
        if (n == 1) {
            if (wc->status != IBV_WC_SUCCESS)
                FAIL("%s: work completion error '%s'", what, ibv_wc_status_str(wc->status));
            return;
        }
        struct pollfd pfd = {.fd = p->cch->fd, .events = POLLIN};
        int           ms  = remaining_ms(p);
        if (ms == 0)
            FAIL("timed out waiting for %s", what);
        if (poll(&pfd, 1, ms) > 0) {
            struct ibv_cq *cq;
            void          *ctx;
            if (ibv_get_cq_event(p->cch, &cq, &ctx) == 0)
                ibv_ack_cq_events(cq, 1);
        }
    }
}

/* Register the whole region once; on failure say why and how to fix it. */
static void register_region(probe_t *p, size_t region)
{
    tfab_sys_limits_t lim;
    char              fix[512], hs[32];
    tfab_sys_limits_query(&lim);
    p->region = region;
    p->base   = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->base == MAP_FAILED)
        FAIL("mmap(%s) failed: %s", tfab_size_human(region, hs, sizeof(hs)), strerror(errno));
    double t0 = now_s();
    p->mr     = ibv_reg_mr(p->pd, p->base, region,
                           IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
    if (p->mr == NULL) {
        int err = errno;
        if (tfab_sys_limits_check(&lim, region, fix, sizeof(fix)) != TFAB_OK)
            FAIL("ibv_reg_mr(%s) failed: %s; %s", tfab_size_human(region, hs, sizeof(hs)),
                 strerror(err), fix);
        FAIL("ibv_reg_mr(%s) failed: %s", tfab_size_human(region, hs, sizeof(hs)), strerror(err));
    }
    printf("registered %s in %.3f s (lkey 0x%x rkey 0x%x)\n",
           tfab_size_human(region, hs, sizeof(hs)), now_s() - t0, p->mr->lkey, p->mr->rkey);
}

static void setup_qp(probe_t *p, struct rdma_cm_id *id, unsigned recv_wr)
{
    p->pd = ibv_alloc_pd(id->verbs);
    if (p->pd == NULL)
        FAIL("ibv_alloc_pd: %s", strerror(errno));
    p->cch = ibv_create_comp_channel(id->verbs);
    if (p->cch == NULL)
        FAIL("ibv_create_comp_channel: %s", strerror(errno));
    p->cq = ibv_create_cq(id->verbs, (int)(MAX_SEND_WR + recv_wr + 8), NULL, p->cch, 0);
    if (p->cq == NULL)
        FAIL("ibv_create_cq: %s", strerror(errno));
    struct ibv_qp_init_attr qa = {
        .send_cq = p->cq,
        .recv_cq = p->cq,
        .qp_type = IBV_QPT_RC,
        .cap     = {.max_send_wr = MAX_SEND_WR, .max_recv_wr = recv_wr, .max_send_sge = 1,
                    .max_recv_sge = 1},
    };
    if (rdma_create_qp(id, p->pd, &qa) != 0)
        FAIL("rdma_create_qp: %s", strerror(errno));
}

/* Print the GID rdma_cm put in the QP and check tfab_gid_select() agrees for our address. */
static void check_gid(struct rdma_cm_id *id)
{
    struct ibv_qp_attr      attr;
    struct ibv_qp_init_attr init;
    if (ibv_query_qp(id->qp, &attr, IBV_QP_AV, &init) != 0)
        FAIL("ibv_query_qp(AV): %s", strerror(errno));
    unsigned          cm_idx = attr.ah_attr.grh.sgid_index;
    tfab_rdma_list_t *list;
    if (tfab_rdma_list_query(&list) != TFAB_OK)
        FAIL("tfab_rdma_list_query failed");
    const char *dev = ibv_get_device_name(id->verbs->device);
    for (unsigned d = 0; d < list->n_devs; d++) {
        if (strcmp(list->devs[d].name, dev) != 0 || id->port_num > list->devs[d].n_ports)
            continue;
        const tfab_port_info_t *port = &list->devs[d].ports[id->port_num - 1];
        unsigned                idx;
        if (tfab_gid_select(port, rdma_get_local_addr(id), &idx) != TFAB_OK)
            FAIL("tfab_gid_select found no GID for the local address on %s port %u", dev,
                 id->port_num);
        const char *str = "?", *type = "?";
        for (unsigned g = 0; g < port->n_gids; g++)
            if (port->gids[g].index == idx) {
                str  = port->gids[g].str;
                type = tfab_gid_type_str(port->gids[g].type);
            }
        printf("gid: %s port %u index %u %s (%s); rdma_cm chose index %u\n", dev, id->port_num,
               idx, str, type, cm_idx);
        if (idx != cm_idx)
            FAIL("tfab_gid_select chose GID index %u but rdma_cm uses %u", idx, cm_idx);
        tfab_rdma_list_free(list);
        return;
    }
    FAIL("device %s not found by tfab_rdma_list_query", dev);
}

static void post_recv(probe_t *p, uint64_t wr_id, void *addr, uint32_t len)
{
    struct ibv_sge     sge = {.addr = (uintptr_t)addr, .length = len, .lkey = p->mr->lkey};
    struct ibv_recv_wr wr  = {.wr_id = wr_id, .sg_list = &sge, .num_sge = len ? 1 : 0}, *bad;
    if (ibv_post_recv(p->id->qp, &wr, &bad) != 0)
        FAIL("ibv_post_recv: %s", strerror(errno));
}

static void post_send(probe_t *p, enum ibv_wr_opcode op, uint64_t wr_id, void *addr, uint32_t len,
                      uint64_t raddr, uint32_t rkey, int signaled, uint32_t imm)
{
    struct ibv_sge     sge = {.addr = (uintptr_t)addr, .length = len, .lkey = p->mr->lkey};
    struct ibv_send_wr wr  = {
         .wr_id      = wr_id,
         .sg_list    = &sge,
         .num_sge    = 1,
         .opcode     = op,
         .send_flags = signaled ? IBV_SEND_SIGNALED : 0,
    }, *bad;
    if (op == IBV_WR_RDMA_WRITE || op == IBV_WR_RDMA_WRITE_WITH_IMM) {
        wr.wr.rdma.remote_addr = raddr;
        wr.wr.rdma.rkey        = rkey;
    }
    if (op == IBV_WR_RDMA_WRITE_WITH_IMM)
        wr.imm_data = htonl(imm);
    if (ibv_post_send(p->id->qp, &wr, &bad) != 0)
        FAIL("ibv_post_send: %s", strerror(errno));
}

/* ---- server --------------------------------------------------------------------------- */

static int run_server(const opts_t *o, probe_t *p)
{
    struct addrinfo *ai;
    if (getaddrinfo(o->addr, o->port, &(struct addrinfo){.ai_flags = AI_PASSIVE}, &ai) != 0)
        FAIL("cannot resolve bind address %s", o->addr);
    if (rdma_create_id(p->ech, &p->listen_id, NULL, RDMA_PS_TCP) != 0)
        FAIL("rdma_create_id: %s", strerror(errno));
    if (rdma_bind_addr(p->listen_id, ai->ai_addr) != 0)
        FAIL("rdma_bind_addr(%s:%s): %s (is an RDMA device on this address?)", o->addr, o->port,
             strerror(errno));
    freeaddrinfo(ai);
    if (rdma_listen(p->listen_id, 1) != 0)
        FAIL("rdma_listen: %s", strerror(errno));
    printf("listening on %s:%s\n", o->addr, o->port);
    fflush(stdout);

    struct rdma_cm_event *ev = wait_cm(p, "a connection request");
    if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST)
        FAIL("expected CONNECT_REQUEST, got %s", rdma_event_str(ev->event));
    hello_t hello;
    if (ev->param.conn.private_data_len < sizeof(hello))
        FAIL("connect request carries %u bytes of private data, expected %zu",
             ev->param.conn.private_data_len, sizeof(hello));
    memcpy(&hello, ev->param.conn.private_data, sizeof(hello));
    p->id = ev->id;
    rdma_ack_cm_event(ev);
    if (hello.bytes != o->bytes || hello.chunk != o->chunk || hello.chunk == 0 ||
        hello.bytes % hello.chunk != 0)
        FAIL("client wants bytes=%" PRIu64 " chunk=%" PRIu64 ", server has bytes=%" PRIu64
             " chunk=%" PRIu64, hello.bytes, hello.chunk, o->bytes, o->chunk);
    uint64_t n_chunks = o->bytes / o->chunk;
    if (2 * o->bytes + CTRL_SIZE > o->region)
        FAIL("region too small for 2 x %" PRIu64 " bytes", o->bytes);

    setup_qp(p, p->id, (unsigned)n_chunks + 1);
    register_region(p, o->region);
    uint8_t *wr_area = p->base, *send_area = p->base + o->bytes, *ctrl = p->base + 2 * o->bytes;
    /* recv 0 is consumed by the WRITE_WITH_IMM that ends the writes; 1..n by the SENDs */
    post_recv(p, 0, NULL, 0);
    for (uint64_t i = 0; i < n_chunks; i++)
        post_recv(p, 1 + i, send_area + i * o->chunk, (uint32_t)o->chunk);

    grant_t grant = {.addr = (uintptr_t)wr_area, .rkey = p->mr->rkey, .len = o->bytes};
    struct rdma_conn_param cp = {.private_data = &grant, .private_data_len = sizeof(grant),
                                 .responder_resources = 1, .initiator_depth = 1,
                                 .retry_count = 7, .rnr_retry_count = 7};
    if (rdma_accept(p->id, &cp) != 0)
        FAIL("rdma_accept: %s", strerror(errno));
    ev = wait_cm(p, "ESTABLISHED");
    if (ev->event != RDMA_CM_EVENT_ESTABLISHED)
        FAIL("expected ESTABLISHED, got %s", rdma_event_str(ev->event));
    rdma_ack_cm_event(ev);
    check_gid(p->id);

    struct ibv_wc wc;
    wait_wc(p, &wc, "the WRITE_WITH_IMM completion");
    if (wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM || wc.wr_id != 0 || !(wc.wc_flags & IBV_WC_WITH_IMM) ||
        ntohl(wc.imm_data) != WRITE_IMM)
        FAIL("first completion is opcode %d wr_id %" PRIu64 " imm 0x%x, expected the write's "
             "immediate 0x%x", wc.opcode, wc.wr_id, ntohl(wc.imm_data), WRITE_IMM);
    for (uint64_t i = 0; i < n_chunks; i++) {
        wait_wc(p, &wc, "a SEND chunk");
        if (wc.opcode != IBV_WC_RECV || wc.wr_id != 1 + i || wc.byte_len != o->chunk)
            FAIL("SEND chunk %" PRIu64 ": got opcode %d wr_id %" PRIu64 " %u bytes, expected "
                 "RECV wr_id %" PRIu64 " %" PRIu64 " bytes", i, wc.opcode, wc.wr_id, wc.byte_len,
                 1 + i, o->chunk);
    }

    result_t *res  = (result_t *)ctrl;
    res->write_sum = checksum64(wr_area, o->bytes);
    res->send_sum  = checksum64(send_area, o->bytes);
    res->write_bad = pattern_check(wr_area, o->bytes, hello.seed, 0);
    res->send_bad  = pattern_check(send_area, o->bytes, hello.seed ^ 1, 0);
    printf("server: write %" PRIu64 " bytes checksum %016" PRIx64 " %s\n", o->bytes,
           res->write_sum, res->write_bad == o->bytes ? "intact" : "CORRUPT");
    printf("server: send  %" PRIu64 " bytes checksum %016" PRIx64 " %s\n", o->bytes,
           res->send_sum, res->send_bad == o->bytes ? "intact" : "CORRUPT");
    post_send(p, IBV_WR_SEND, 1000, res, sizeof(*res), 0, 0, 1, 0);
    wait_wc(p, &wc, "the result SEND");
    ev = wait_cm(p, "DISCONNECTED");
    rdma_ack_cm_event(ev);
    if (res->write_bad != o->bytes)
        FAIL("RDMA WRITE data corrupt at offset %" PRIu64, res->write_bad);
    if (res->send_bad != o->bytes)
        FAIL("SEND data corrupt at offset %" PRIu64, res->send_bad);
    printf("server: OK\n");
    return 0;
}

/* ---- registration only: the memlock diagnosis --------------------------------------------- */

static int run_reg_only(const opts_t *o, probe_t *p)
{
    struct addrinfo *ai;
    if (getaddrinfo(o->addr, NULL, &(struct addrinfo){.ai_flags = AI_PASSIVE}, &ai) != 0)
        FAIL("cannot resolve %s", o->addr);
    if (rdma_create_id(p->ech, &p->id, NULL, RDMA_PS_TCP) != 0 ||
        rdma_bind_addr(p->id, ai->ai_addr) != 0 || p->id->verbs == NULL)
        FAIL("no RDMA device on %s: %s", o->addr, strerror(errno));
    freeaddrinfo(ai);
    p->pd = ibv_alloc_pd(p->id->verbs);
    if (p->pd == NULL)
        FAIL("ibv_alloc_pd: %s", strerror(errno));
    register_region(p, o->region);
    printf("reg-only: OK\n");
    return 0;
}

/* ---- client --------------------------------------------------------------------------- */

/* Events that mean "the peer is not reachable or not listening yet": the client retries. */
static int retryable(enum rdma_cm_event_type e)
{
    return e == RDMA_CM_EVENT_ADDR_ERROR || e == RDMA_CM_EVENT_ROUTE_ERROR ||
           e == RDMA_CM_EVENT_REJECTED || e == RDMA_CM_EVENT_UNREACHABLE ||
           e == RDMA_CM_EVENT_CONNECT_ERROR;
}

/* Resolve and connect, retrying while the server is not listening yet. */
static grant_t connect_client(const opts_t *o, probe_t *p, const hello_t *hello)
{
    struct addrinfo *ai;
    if (getaddrinfo(o->addr, o->port, NULL, &ai) != 0)
        FAIL("cannot resolve server address %s", o->addr);
    for (int attempt = 1;; attempt++) {
        if (rdma_create_id(p->ech, &p->id, NULL, RDMA_PS_TCP) != 0)
            FAIL("rdma_create_id: %s", strerror(errno));
        if (rdma_resolve_addr(p->id, NULL, ai->ai_addr, 5000) != 0)
            FAIL("rdma_resolve_addr(%s): %s", o->addr, strerror(errno));
        struct rdma_cm_event *ev = wait_cm(p, "ADDR_RESOLVED");
        if (ev->event != RDMA_CM_EVENT_ADDR_RESOLVED) {
            if (!retryable(ev->event))
                FAIL("resolving %s: %s", o->addr, rdma_event_str(ev->event));
            goto retry;
        }
        rdma_ack_cm_event(ev);
        if (rdma_resolve_route(p->id, 5000) != 0)
            FAIL("rdma_resolve_route: %s", strerror(errno));
        ev = wait_cm(p, "ROUTE_RESOLVED");
        if (ev->event != RDMA_CM_EVENT_ROUTE_RESOLVED) {
            if (!retryable(ev->event))
                FAIL("route to %s: %s", o->addr, rdma_event_str(ev->event));
            goto retry;
        }
        rdma_ack_cm_event(ev);
        if (p->pd == NULL) {
            setup_qp(p, p->id, 1);
            register_region(p, o->region);
        } else {
            struct ibv_qp_init_attr qa = {
                .send_cq = p->cq, .recv_cq = p->cq, .qp_type = IBV_QPT_RC,
                .cap = {.max_send_wr = MAX_SEND_WR, .max_recv_wr = 1, .max_send_sge = 1,
                        .max_recv_sge = 1},
            };
            if (rdma_create_qp(p->id, p->pd, &qa) != 0)
                FAIL("rdma_create_qp: %s", strerror(errno));
        }
        struct rdma_conn_param cp = {.private_data = hello, .private_data_len = sizeof(*hello),
                                     .responder_resources = 1, .initiator_depth = 1,
                                     .retry_count = 7, .rnr_retry_count = 7};
        if (rdma_connect(p->id, &cp) != 0)
            FAIL("rdma_connect: %s", strerror(errno));
        ev = wait_cm(p, "ESTABLISHED");
        if (ev->event == RDMA_CM_EVENT_ESTABLISHED) {
            grant_t grant;
            if (ev->param.conn.private_data_len < sizeof(grant))
                FAIL("accept carries %u bytes of private data, expected %zu",
                     ev->param.conn.private_data_len, sizeof(grant));
            memcpy(&grant, ev->param.conn.private_data, sizeof(grant));
            rdma_ack_cm_event(ev);
            freeaddrinfo(ai);
            printf("connected to %s:%s after %d attempt(s)\n", o->addr, o->port, attempt);
            return grant;
        }
        if (!retryable(ev->event))
            FAIL("connecting to %s: %s", o->addr, rdma_event_str(ev->event));
    retry:
        /* the server is not reachable or not listening yet: retry until the deadline */
        fprintf(stderr, "rc_probe: attempt %d: %s; retrying\n", attempt, rdma_event_str(ev->event));
        rdma_ack_cm_event(ev);
        if (p->id->qp != NULL)
            rdma_destroy_qp(p->id);
        rdma_destroy_id(p->id);
        p->id = NULL;
        if (remaining_ms(p) < 1000)
            FAIL("server %s:%s did not accept before the deadline", o->addr, o->port);
        usleep(500000);
    }
}

/* Post len bytes in chunks with op, keeping at most MAX_SEND_WR in flight; signal every 16th
 * and the last so the send queue drains. Returns seconds from the first post to the last
 * completion. */
static double stream(probe_t *p, const opts_t *o, int write, uint64_t raddr, uint32_t rkey)
{
    const uint64_t n = o->bytes / o->chunk;
    uint64_t       signaled_posted = 0, signaled_done = 0;
    double         t0              = now_s();
    for (uint64_t i = 0; i < n; i++) {
        while ((signaled_posted - signaled_done) * 16 >= MAX_SEND_WR - 16) {
            struct ibv_wc wc;
            wait_wc(p, &wc, write ? "an RDMA WRITE" : "a SEND");
            signaled_done++;
        }
        int      last   = i + 1 == n;
        int      sig    = last || i % 16 == 15;
        uint8_t *src    = p->base + (write ? 0 : o->bytes) + i * o->chunk;
        enum ibv_wr_opcode op = write ? (last ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE)
                                      : IBV_WR_SEND;
        post_send(p, op, i, src, (uint32_t)o->chunk, raddr + i * o->chunk, rkey, sig, WRITE_IMM);
        signaled_posted += sig;
    }
    while (signaled_done < signaled_posted) {
        struct ibv_wc wc;
        wait_wc(p, &wc, write ? "an RDMA WRITE" : "a SEND");
        signaled_done++;
    }
    return now_s() - t0;
}

static int run_client(const opts_t *o, probe_t *p)
{
    hello_t hello = {.seed = o->seed, .bytes = o->bytes, .chunk = o->chunk};
    if (2 * o->bytes + CTRL_SIZE > o->region)
        FAIL("region too small for 2 x %" PRIu64 " bytes", o->bytes);
    grant_t grant = connect_client(o, p, &hello);
    if (grant.len < o->bytes)
        FAIL("server granted %" PRIu64 " bytes, need %" PRIu64, grant.len, o->bytes);
    check_gid(p->id);

    uint8_t *wsrc = p->base, *ssrc = p->base + o->bytes, *ctrl = p->base + 2 * o->bytes;
    pattern_fill(wsrc, o->bytes, o->seed, 0);
    pattern_fill(ssrc, o->bytes, o->seed ^ 1, 0);
    uint64_t wsum = checksum64(wsrc, o->bytes), ssum = checksum64(ssrc, o->bytes);
    post_recv(p, 2000, ctrl, sizeof(result_t));

    double tw = stream(p, o, 1, grant.addr, grant.rkey);
    double ts = stream(p, o, 0, 0, 0);
    struct ibv_wc wc;
    wait_wc(p, &wc, "the server's result");
    if (wc.opcode != IBV_WC_RECV || wc.byte_len != sizeof(result_t))
        FAIL("result message: opcode %d, %u bytes", wc.opcode, wc.byte_len);
    result_t res;
    memcpy(&res, ctrl, sizeof(res));
    double mbit = (double)o->bytes * 8 / 1e6;
    printf("client: write %" PRIu64 " bytes checksum %016" PRIx64 " server %016" PRIx64
           " %.1f Mbit/s\n", o->bytes, wsum, res.write_sum, mbit / tw);
    printf("client: send  %" PRIu64 " bytes checksum %016" PRIx64 " server %016" PRIx64
           " %.1f Mbit/s\n", o->bytes, ssum, res.send_sum, mbit / ts);
    rdma_disconnect(p->id);
    if (res.write_sum != wsum || res.write_bad != o->bytes)
        FAIL("RDMA WRITE: checksum mismatch (first bad byte at %" PRIu64 ")", res.write_bad);
    if (res.send_sum != ssum || res.send_bad != o->bytes)
        FAIL("SEND: checksum mismatch (first bad byte at %" PRIu64 ")", res.send_bad);
    printf("client: OK\n");
    return 0;
}

static uint64_t size_arg(const char *name, const char *v)
{
    uint64_t b;
    if (v == NULL || tfab_size_parse(v, &b) != TFAB_OK || b == 0)
        FAIL("%s needs a size such as 64M or 1G, got '%s'", name, v ? v : "");
    return b;
}

int main(int argc, char **argv)
{
    opts_t o = {.port = "7471", .region = 1ull << 30, .bytes = 64ull << 20, .chunk = 1ull << 20,
                .timeout_s = 120, .seed = 0x7fab5eed};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--server") == 0)
            o.server = 1;
        else if (strcmp(a, "--reg-only") == 0)
            o.reg_only = 1;
        else if (strcmp(a, "--bind") == 0 && v)
            o.addr = argv[++i];
        else if (strcmp(a, "--client") == 0 && v)
            o.addr = argv[++i];
        else if (strcmp(a, "--port") == 0 && v)
            o.port = argv[++i];
        else if (strcmp(a, "--region") == 0)
            o.region = size_arg(a, argv[++i]);
        else if (strcmp(a, "--bytes") == 0)
            o.bytes = size_arg(a, argv[++i]);
        else if (strcmp(a, "--chunk") == 0)
            o.chunk = size_arg(a, argv[++i]);
        else if (strcmp(a, "--timeout") == 0 && v)
            o.timeout_s = atoi(argv[++i]);
        else if (strcmp(a, "--seed") == 0 && v)
            o.seed = strtoull(argv[++i], NULL, 0);
        else
            FAIL("unknown or incomplete argument '%s' (see the header of rc_probe.c)", a);
    }
    if (o.addr == NULL)
        FAIL("give --server --bind IP or --client SERVER_IP");
    if (o.chunk > (1ull << 31) || o.bytes % o.chunk != 0)
        FAIL("--bytes must be a multiple of --chunk, and --chunk at most 2G");
    setvbuf(stdout, NULL, _IOLBF, 0);
    probe_t p = {.deadline = now_s() + o.timeout_s};
    p.ech     = rdma_create_event_channel();
    if (p.ech == NULL)
        FAIL("rdma_create_event_channel: %s (is rdma_ucm loaded? /dev/infiniband/rdma_cm?)",
             strerror(errno));
    if (o.reg_only)
        return run_reg_only(&o, &p);
    return o.server ? run_server(&o, &p) : run_client(&o, &p);
}

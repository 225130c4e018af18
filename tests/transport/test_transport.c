/* test_transport.c - the fabric over real TCP sockets between two fabrics in one process:
 * transfers 1 B .. 256 MiB verified byte for byte, eager/rendezvous boundaries, 1,000
 * concurrent transfers, credit exhaustion and recovery, receives too small, wrong cluster
 * token, malformed control frames, a peer closing mid-transfer, and failover across ranked
 * links (one link's sockets shut down mid-stream: every message arrives once, intact, in
 * order), heartbeats failing a receive from a silent peer. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <tfab/tfab.h>
#include <tfab/topology.h>
#include "../common/pattern.h"

#define MiB (1ull << 20)

typedef struct {
    tfab_pool_t   *pool[2];
    tfab_fabric_t *fab[2];
    tfab_ep_t     *ep[2]; /* ep[0]: client side, ep[1]: server side */
} pair_t;

typedef struct {
    atomic_int    done;
    tfab_status_t status;
    size_t        len;
} xfer_t;

static void on_done(tfab_status_t st, size_t len, void *arg)
{
    xfer_t *x = arg;
    x->status = st;
    x->len    = len;
    atomic_store(&x->done, 1);
}

static int wait_all(xfer_t *x, int n, double seconds)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int k = 0;
        while (k < n && atomic_load(&x[k].done))
            k++;
        if (k == n)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > seconds)
            return 0;
        usleep(200);
    }
}

static tfab_fabric_t *fabric(tfab_pool_t *pool, const char *listen, const char *token,
                             unsigned credits, uint64_t timeout_ns)
{
    tfab_fabric_params_t p = {
        .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN | TFAB_FABRIC_PARAM_CREDITS |
                      TFAB_FABRIC_PARAM_TIMEOUT | (listen ? TFAB_FABRIC_PARAM_LISTEN : 0),
        .pool = pool, .listen = listen, .token = token, .credits = credits, .timeout_ns = timeout_ns};
    tfab_fabric_t *f = NULL;
    assert_int_equal(tfab_fabric_create(&p, &f), TFAB_OK);
    return f;
}

static void pair_open(pair_t *pr, size_t pool_size, unsigned credits)
{
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = pool_size};
    for (int i = 0; i < 2; i++)
        assert_int_equal(tfab_pool_create(&pp, &pr->pool[i]), TFAB_OK);
    pr->fab[1] = fabric(pr->pool[1], "127.0.0.1:0", "secret", credits, 5000000000ull);
    pr->fab[0] = fabric(pr->pool[0], NULL, "secret", credits, 5000000000ull);
    assert_int_equal(tfab_ep_connect(pr->fab[0], tfab_fabric_address(pr->fab[1]), &pr->ep[0]),
                     TFAB_OK);
    assert_int_equal(tfab_fabric_accept(pr->fab[1], 5000000000ull, &pr->ep[1]), TFAB_OK);
    assert_non_null(strstr(tfab_ep_link(pr->ep[0]), "tcp 127.0.0.1:"));
}

static void pair_close(pair_t *pr)
{
    for (int i = 0; i < 2; i++)
        tfab_fabric_destroy(pr->fab[i]);
    for (int i = 0; i < 2; i++)
        tfab_pool_destroy(pr->pool[i]);
}

/* Send len bytes of pattern seed from side a to side b under tag and check them. */
static void one_transfer(pair_t *pr, size_t len, uint64_t tag, uint64_t seed)
{
    void *src, *dst;
    assert_int_equal(tfab_pool_alloc(pr->pool[0], len, &src), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr->pool[1], len, &dst), TFAB_OK);
    pattern_fill(src, len, seed, 0);
    memset(dst, 0, len);
    xfer_t x[2] = {0};
    assert_int_equal(tfab_ep_recv(pr->ep[1], dst, len, tag, on_done, &x[1]), TFAB_INPROGRESS);
    assert_int_equal(tfab_ep_send(pr->ep[0], src, len, tag, on_done, &x[0]), TFAB_INPROGRESS);
    assert_true(wait_all(x, 2, 60));
    assert_int_equal(x[0].status, TFAB_OK);
    assert_int_equal(x[1].status, TFAB_OK);
    assert_true(x[1].len == len);
    assert_true(pattern_check(dst, len, seed, 0) == len);
    assert_true(checksum64(dst, len) == checksum64(src, len));
    tfab_pool_free(pr->pool[0], src);
    tfab_pool_free(pr->pool[1], dst);
}

static void test_sizes(void **state)
{
    pair_t pr;
    pair_open(&pr, 1ull << 30, 64);
    size_t sizes[] = {1, 7, 100, 8191, 8192, 8193, 65536, 1 * MiB + 3, 64 * MiB, 256 * MiB};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        one_transfer(&pr, sizes[i], 100 + i, 0x1000 + i);
    tfab_ep_stats_t s;
    tfab_ep_get_stats(pr.ep[0], &s);
    assert_true(s.eager_sent == 5 && s.rndv_sent == 5); /* <= 8 KiB eager, above rendezvous */
    tfab_ep_get_stats(pr.ep[1], &s);
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        total += sizes[i];
    assert_true(s.bytes_received == total);
    tfab_pool_stats_t ps;
    tfab_pool_get_stats(pr.pool[0], &ps);
    assert_true(ps.registrations == 0); /* TCP registers nothing; verbs will count one */
    pair_close(&pr);
}

/* Receives posted after the data arrived (unexpected eager and RTS), both directions. */
static void test_unexpected_and_both_ways(void **state)
{
    pair_t pr;
    pair_open(&pr, 64 * MiB, 16);
    void *a, *b, *c, *d;
    assert_int_equal(tfab_pool_alloc(pr.pool[0], 2 * MiB, &a), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr.pool[1], 2 * MiB, &b), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr.pool[1], 300, &c), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr.pool[0], 300, &d), TFAB_OK);
    pattern_fill(a, 2 * MiB, 1, 0);
    pattern_fill(c, 300, 2, 0);
    xfer_t x[4] = {0};
    assert_int_equal(tfab_ep_send(pr.ep[0], a, 2 * MiB, 5, on_done, &x[0]), TFAB_INPROGRESS);
    assert_int_equal(tfab_ep_send(pr.ep[1], c, 300, 6, on_done, &x[1]), TFAB_INPROGRESS);
    usleep(200000); /* both arrive before any receive is posted */
    assert_int_equal(atomic_load(&x[0].done), 0); /* rendezvous waits for the grant */
    assert_int_equal(tfab_ep_recv(pr.ep[1], b, 2 * MiB, 5, on_done, &x[2]), TFAB_INPROGRESS);
    assert_int_equal(tfab_ep_recv(pr.ep[0], d, 300, 6, on_done, &x[3]), TFAB_INPROGRESS);
    assert_true(wait_all(x, 4, 30));
    for (int i = 0; i < 4; i++)
        assert_int_equal(x[i].status, TFAB_OK);
    assert_true(pattern_check(b, 2 * MiB, 1, 0) == 2 * MiB);
    assert_true(pattern_check(d, 300, 2, 0) == 300);
    pair_close(&pr);
}

/* 1,000 transfers in flight at once on one endpoint, mixed sizes and tags, matched in order
 * per tag. */
static void test_thousand_concurrent(void **state)
{
    enum { N = 1000 };
    pair_t pr;
    pair_open(&pr, 256 * MiB, 64);
    static void  *src[N], *dst[N];
    static xfer_t xs[N], xr[N];
    memset(xs, 0, sizeof(xs));
    memset(xr, 0, sizeof(xr));
    for (int i = 0; i < N; i++) {
        size_t len = (i % 3 == 0) ? 40000 + (size_t)i : 1 + (size_t)(i * 7) % 8000;
        assert_int_equal(tfab_pool_alloc(pr.pool[0], len, &src[i]), TFAB_OK);
        assert_int_equal(tfab_pool_alloc(pr.pool[1], 50000, &dst[i]), TFAB_OK);
        pattern_fill(src[i], len, 5000 + (uint64_t)i, 0);
        xs[i].len = len;
    }
    for (int i = 0; i < N; i++) /* half the receives first, half after the sends */
        if (i % 2 == 0)
            assert_int_equal(tfab_ep_recv(pr.ep[1], dst[i], 50000, (uint64_t)(i % 10), on_done, &xr[i]),
                             TFAB_INPROGRESS);
    for (int i = 0; i < N; i++)
        assert_int_equal(tfab_ep_send(pr.ep[0], src[i], xs[i].len, (uint64_t)(i % 10), on_done, &xs[i]),
                         TFAB_INPROGRESS);
    for (int i = 0; i < N; i++)
        if (i % 2 == 1)
            assert_int_equal(tfab_ep_recv(pr.ep[1], dst[i], 50000, (uint64_t)(i % 10), on_done, &xr[i]),
                             TFAB_INPROGRESS);
    assert_true(wait_all(xs, N, 60));
    assert_true(wait_all(xr, N, 60));
    /* per tag, the k-th receive posted gets the k-th message sent: but receives of a tag were
     * posted even indices first, so map by order of posting */
    for (int tag = 0; tag < 10; tag++) {
        int sends[N / 10], recvs[N / 10], ns = 0, nr = 0;
        for (int i = tag; i < N; i += 10)
            sends[ns++] = i;
        for (int i = tag; i < N; i += 10)
            if (i % 2 == 0)
                recvs[nr++] = i;
        for (int i = tag; i < N; i += 10)
            if (i % 2 == 1)
                recvs[nr++] = i;
        for (int k = 0; k < ns; k++) {
            int s = sends[k], r = recvs[k];
            assert_int_equal(xs[s].status, TFAB_OK);
            assert_int_equal(xr[r].status, TFAB_OK);
            assert_true(xr[r].len == xs[s].len);
            assert_true(pattern_check(dst[r], xr[r].len, 5000 + (uint64_t)s, 0) == xr[r].len);
        }
    }
    pair_close(&pr);
}

/* 500 eager sends against 8 credits with no receive posted: sends stall, nothing is lost,
 * and all complete once receives appear. */
static void test_credit_exhaustion(void **state)
{
    enum { N = 500 };
    pair_t pr;
    pair_open(&pr, 64 * MiB, 8);
    static void  *src[N], *dst[N];
    static xfer_t xs[N], xr[N];
    memset(xs, 0, sizeof(xs));
    memset(xr, 0, sizeof(xr));
    for (int i = 0; i < N; i++) {
        assert_int_equal(tfab_pool_alloc(pr.pool[0], 64, &src[i]), TFAB_OK);
        assert_int_equal(tfab_pool_alloc(pr.pool[1], 64, &dst[i]), TFAB_OK);
        pattern_fill(src[i], 64, (uint64_t)i, 0);
        assert_int_equal(tfab_ep_send(pr.ep[0], src[i], 64, 9, on_done, &xs[i]), TFAB_INPROGRESS);
    }
    usleep(300000);
    int sent = 0;
    for (int i = 0; i < N; i++)
        sent += atomic_load(&xs[i].done);
    assert_int_equal(sent, 8); /* exactly the credits' worth went out */
    tfab_ep_stats_t s;
    tfab_ep_get_stats(pr.ep[0], &s);
    assert_true(s.credit_stalls == N - 8);
    for (int i = 0; i < N; i++)
        assert_int_equal(tfab_ep_recv(pr.ep[1], dst[i], 64, 9, on_done, &xr[i]), TFAB_INPROGRESS);
    assert_true(wait_all(xs, N, 30));
    assert_true(wait_all(xr, N, 30));
    for (int i = 0; i < N; i++) {
        assert_int_equal(xr[i].status, TFAB_OK);
        assert_true(pattern_check(dst[i], 64, (uint64_t)i, 0) == 64); /* in order */
    }
    pair_close(&pr);
}

/* Credits that come back only piggybacked on an eager frame must restart stalled sends. With
 * 64 credits, A sends 100 eager messages (64 go, 36 stall); B posts 10 receives, which frees
 * 10 slots but stays below the explicit-CREDIT threshold (16), then sends A one eager message
 * that carries those 10 credits. Exactly 10 more of A's sends must go out. */
static void test_credits_piggybacked(void **state)
{
    enum { N = 100 };
    pair_t pr;
    pair_open(&pr, 64 * MiB, 64);
    static void  *src[N], *dst[N];
    static xfer_t xs[N], xr[N];
    memset(xs, 0, sizeof(xs));
    memset(xr, 0, sizeof(xr));
    for (int i = 0; i < N; i++) {
        assert_int_equal(tfab_pool_alloc(pr.pool[0], 100, &src[i]), TFAB_OK);
        assert_int_equal(tfab_pool_alloc(pr.pool[1], 100, &dst[i]), TFAB_OK);
        pattern_fill(src[i], 100, (uint64_t)i, 0);
        assert_int_equal(tfab_ep_send(pr.ep[0], src[i], 100, 7, on_done, &xs[i]), TFAB_INPROGRESS);
    }
    usleep(200000);
    int sent = 0;
    for (int i = 0; i < N; i++)
        sent += atomic_load(&xs[i].done);
    assert_int_equal(sent, 64);
    for (int i = 0; i < 10; i++)
        assert_int_equal(tfab_ep_recv(pr.ep[1], dst[i], 100, 7, on_done, &xr[i]), TFAB_INPROGRESS);
    assert_true(wait_all(xr, 10, 10));
    void  *b2a, *a_in;
    xfer_t y[2] = {0};
    assert_int_equal(tfab_pool_alloc(pr.pool[1], 64, &b2a), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr.pool[0], 64, &a_in), TFAB_OK);
    assert_int_equal(tfab_ep_recv(pr.ep[0], a_in, 64, 8, on_done, &y[0]), TFAB_INPROGRESS);
    assert_int_equal(tfab_ep_send(pr.ep[1], b2a, 64, 8, on_done, &y[1]), TFAB_INPROGRESS);
    assert_true(wait_all(y, 2, 10));
    usleep(300000);
    sent = 0;
    for (int i = 0; i < N; i++)
        sent += atomic_load(&xs[i].done);
    assert_int_equal(sent, 74); /* the 10 piggybacked credits were used */
    for (int i = 10; i < N; i++) /* and the rest flows once B receives */
        assert_int_equal(tfab_ep_recv(pr.ep[1], dst[i], 100, 7, on_done, &xr[i]), TFAB_INPROGRESS);
    assert_true(wait_all(xs, N, 30));
    assert_true(wait_all(xr, N, 30));
    for (int i = 0; i < N; i++)
        assert_true(pattern_check(dst[i], 100, (uint64_t)i, 0) == 100);
    pair_close(&pr);
}

static void test_too_small_and_recovery(void **state)
{
    pair_t pr;
    pair_open(&pr, 64 * MiB, 16);
    void *src, *dst;
    assert_int_equal(tfab_pool_alloc(pr.pool[0], 1 * MiB, &src), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr.pool[1], 1 * MiB, &dst), TFAB_OK);
    xfer_t x[4] = {0};
    /* rendezvous: both sides learn the receive was too small */
    tfab_ep_recv(pr.ep[1], dst, 100000, 1, on_done, &x[0]);
    tfab_ep_send(pr.ep[0], src, 1 * MiB, 1, on_done, &x[1]);
    /* eager: the receiver learns it */
    tfab_ep_recv(pr.ep[1], dst, 10, 2, on_done, &x[2]);
    tfab_ep_send(pr.ep[0], src, 100, 2, on_done, &x[3]);
    assert_true(wait_all(x, 4, 10));
    assert_int_equal(x[0].status, TFAB_ERR_RANGE);
    assert_int_equal(x[1].status, TFAB_ERR_RANGE);
    assert_int_equal(x[2].status, TFAB_ERR_RANGE);
    assert_int_equal(x[3].status, TFAB_OK);
    assert_true(x[0].len == 1 * MiB && x[2].len == 100); /* the sender's length is reported */
    one_transfer(&pr, 3 * 100000, 3, 77); /* the endpoint still works */
    /* buffers outside the pool are refused up front */
    char stack[64];
    assert_int_equal(tfab_ep_send(pr.ep[0], stack, sizeof(stack), 4, on_done, &x[0]), TFAB_ERR_RANGE);
    pair_close(&pr);
}

static void test_wrong_token(void **state)
{
    tfab_pool_t       *pool[2];
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 8 * MiB};
    for (int i = 0; i < 2; i++)
        assert_int_equal(tfab_pool_create(&pp, &pool[i]), TFAB_OK);
    tfab_fabric_t *srv = fabric(pool[1], "127.0.0.1:0", "right", 64, 2000000000ull);
    tfab_fabric_t *cli = fabric(pool[0], NULL, "wrong", 64, 2000000000ull);
    tfab_ep_t     *ep  = NULL;
    assert_int_equal(tfab_ep_connect(cli, tfab_fabric_address(srv), &ep), TFAB_ERR_AUTH);
    assert_null(ep);
    assert_int_equal(tfab_fabric_accept(srv, 300000000ull, &ep), TFAB_ERR_TIMEOUT);
    tfab_fabric_destroy(cli);
    tfab_fabric_destroy(srv);
    for (int i = 0; i < 2; i++)
        tfab_pool_destroy(pool[i]);
}

static int raw_connect(const char *addr)
{
    char               host[64];
    const char        *colon = strrchr(addr, ':');
    struct sockaddr_in sa    = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static char logged[4096];
static void capture(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof(logged) - n, "%s\n", line);
}

/* Garbage and oversized control frames: named errors, nothing accepted, the server lives. */
static void test_malformed_control(void **state)
{
    tfab_pool_t       *pool;
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 8 * MiB};
    assert_int_equal(tfab_pool_create(&pp, &pool), TFAB_OK);
    tfab_fabric_t *srv = fabric(pool, "127.0.0.1:0", "t", 64, 1000000000ull);
    logged[0]          = '\0';
    tfab_log_set_sink(capture, NULL);
    int     fd      = raw_connect(tfab_fabric_address(srv));
    uint8_t junk[9] = {5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    int     fd2     = raw_connect(tfab_fabric_address(srv));
    uint8_t huge[4] = {0, 0, 0, 1}; /* 16 MiB frame */
    assert_int_equal(write(fd2, huge, 4), 4);
    tfab_ep_t *ep;
    assert_int_equal(tfab_fabric_accept(srv, 1500000000ull, &ep), TFAB_ERR_TIMEOUT);
    tfab_log_set_sink(NULL, NULL);
    assert_non_null(strstr(logged, "is not a valid protobuf Control"));
    assert_non_null(strstr(logged, "control frame of 16777216 bytes exceeds 4096"));
    close(fd);
    close(fd2);
    tfab_fabric_destroy(srv);
    tfab_pool_destroy(pool);
}

/* The peer goes away in the middle of a rendezvous: the pending transfer fails with a
 * connection error well within the timeout, and the endpoint refuses new work. */
static void test_peer_closes_mid_transfer(void **state)
{
    pair_t pr;
    pair_open(&pr, 64 * MiB, 16);
    void *src;
    assert_int_equal(tfab_pool_alloc(pr.pool[0], 32 * MiB, &src), TFAB_OK);
    xfer_t x = {0};
    assert_int_equal(tfab_ep_send(pr.ep[0], src, 32 * MiB, 1, on_done, &x), TFAB_INPROGRESS);
    usleep(100000); /* RTS sent; no receive: the send waits for a grant */
    tfab_fabric_destroy(pr.fab[1]); /* the server side vanishes */
    pr.fab[1] = NULL;
    assert_true(wait_all(&x, 1, 3));
    assert_int_equal(x.status, TFAB_ERR_CONN);
    xfer_t y = {0};
    assert_int_equal(tfab_ep_send(pr.ep[0], src, 10, 2, on_done, &y), TFAB_ERR_CONN);
    tfab_fabric_destroy(pr.fab[0]);
    tfab_pool_destroy(pr.pool[0]);
    tfab_pool_destroy(pr.pool[1]);
}

/* A peer that stops reading: the sender's transfer times out instead of hanging. */
static void test_stalled_peer_times_out(void **state)
{
    tfab_pool_t       *pool;
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 64 * MiB};
    assert_int_equal(tfab_pool_create(&pp, &pool), TFAB_OK);
    int                ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    listen(ls, 1);
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    tfab_fabric_t *cli = fabric(pool, NULL, "t", 64, 500000000ull);
    tfab_ep_t     *ep  = NULL;
    /* the "server" accepts the TCP connection and never answers the hello */
    assert_int_equal(tfab_ep_connect(cli, addr, &ep), TFAB_ERR_TIMEOUT);
    close(ls);
    tfab_fabric_destroy(cli);
    tfab_pool_destroy(pool);
}

/* ---- ranked links ------------------------------------------------------------------------ */

static tfab_fabric_t *ranked_fabric(tfab_pool_t *pool, const char *links, uint64_t timeout_ns,
                                    uint64_t heartbeat_ns)
{
    tfab_fabric_params_t p = {
        .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN | TFAB_FABRIC_PARAM_LINKS |
                      TFAB_FABRIC_PARAM_TIMEOUT | TFAB_FABRIC_PARAM_HEARTBEAT,
        .pool = pool, .links = links, .token = "secret", .timeout_ns = timeout_ns,
        .heartbeat_ns = heartbeat_ns};
    tfab_fabric_t *f = NULL;
    assert_int_equal(tfab_fabric_create(&p, &f), TFAB_OK);
    return f;
}

static void ranked_open(pair_t *pr, uint64_t timeout_ns, uint64_t heartbeat_ns)
{
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 512 * MiB};
    for (int i = 0; i < 2; i++)
        assert_int_equal(tfab_pool_create(&pp, &pr->pool[i]), TFAB_OK);
    pr->fab[1] = ranked_fabric(pr->pool[1], "tcp 127.0.0.1:0, tcp 127.0.0.2:0", timeout_ns,
                               heartbeat_ns);
    pr->fab[0] = ranked_fabric(pr->pool[0], "tcp", timeout_ns, heartbeat_ns);
    assert_int_equal(tfab_ep_connect(pr->fab[0], tfab_fabric_address(pr->fab[1]), &pr->ep[0]),
                     TFAB_OK);
    assert_int_equal(tfab_fabric_accept(pr->fab[1], 5000000000ull, &pr->ep[1]), TFAB_OK);
    assert_non_null(strstr(tfab_ep_link(pr->ep[0]), "tcp 127.0.0.1:"));
}

/* Shut down every connected socket of this process whose local or remote port is port: a
 * link failing with a socket error on both ends, mid-stream. Returns how many. */
static int cut_port(int port)
{
    int            n = 0;
    DIR           *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        int                fd = atoi(e->d_name);
        struct sockaddr_in a, b;
        socklen_t          al = sizeof(a), bl = sizeof(b);
        if (fd <= 2 || getsockname(fd, (struct sockaddr *)&a, &al) != 0 ||
            getpeername(fd, (struct sockaddr *)&b, &bl) != 0 || a.sin_family != AF_INET)
            continue;
        if (ntohs(a.sin_port) == port || ntohs(b.sin_port) == port) {
            shutdown(fd, SHUT_RDWR);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

#define FO_N 240

static size_t fo_len(int i) { return (size_t)(i % 3 == 0 ? 100 + i * 31 : i % 3 == 1 ? 7000 : 300000 + i * 977); }

/* Two links; the active one is cut after some messages arrived: the rest complete over the
 * second, each once (all land in order under one tag), byte for byte; the switch is counted. */
static void test_failover_ranked_links(void **state)
{
    pair_t pr;
    ranked_open(&pr, 3000000000ull, 0);
    const char *a    = tfab_fabric_address(pr.fab[1]);
    int         port = atoi(strrchr(a, ':') + 1);
    size_t      room = 300000 + FO_N * 977;
    uint8_t    *src, *dst;
    assert_int_equal(tfab_pool_alloc(pr.pool[0], FO_N * room, (void **)&src), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pr.pool[1], FO_N * room, (void **)&dst), TFAB_OK);
    static xfer_t xs[FO_N], xr[FO_N];
    memset(xs, 0, sizeof(xs));
    memset(xr, 0, sizeof(xr));
    memset(dst, 0, FO_N * room);
    for (int i = 0; i < FO_N; i++) {
        pattern_fill(src + i * room, fo_len(i), 0x900 + (uint64_t)i, 0);
        assert_int_equal(tfab_ep_recv(pr.ep[1], dst + i * room, room, 7, on_done, &xr[i]),
                         TFAB_INPROGRESS);
    }
    int cut = 0;
    for (int i = 0; i < FO_N; i++) {
        tfab_status_t st;
        while ((st = tfab_ep_send(pr.ep[0], src + i * room, fo_len(i), 7, on_done, &xs[i])) ==
               TFAB_ERR_BUSY)
            usleep(100);
        assert_int_equal(st, TFAB_INPROGRESS);
    }
    assert_true(wait_all(xr, 20, 30)); /* some arrived over the first link, most did not */
    cut = cut_port(port);
    assert_true(cut >= 1);
    assert_true(wait_all(xr, FO_N, 60));
    assert_true(wait_all(xs, FO_N, 60));
    for (int i = 0; i < FO_N; i++) {
        assert_int_equal(xs[i].status, TFAB_OK);
        assert_int_equal(xr[i].status, TFAB_OK);
        assert_true(xr[i].len == fo_len(i)); /* in order: receive i got message i */
        assert_true(pattern_check(dst + i * room, fo_len(i), 0x900 + (uint64_t)i, 0) == fo_len(i));
        assert_true(checksum64(dst + i * room, fo_len(i)) == checksum64(src + i * room, fo_len(i)));
    }
    /* nothing more arrives: a duplicate would match this receive */
    xfer_t extra = {0};
    assert_int_equal(tfab_ep_recv(pr.ep[1], dst, room, 7, on_done, &extra), TFAB_INPROGRESS);
    usleep(300000);
    assert_false(atomic_load(&extra.done));
    tfab_ep_stats_t s0, s1;
    tfab_ep_get_stats(pr.ep[0], &s0);
    tfab_ep_get_stats(pr.ep[1], &s1);
    assert_true(s0.failovers == 1 && s1.failovers == 1);
    print_message("failover: %d received before the cut, %llu messages re-issued\n", 20,
                  (unsigned long long)s0.resent);
    assert_non_null(strstr(tfab_ep_link(pr.ep[0]), "tcp 127.0.0.2:"));
    /* still usable after the switch, both ways */
    xfer_t y[2] = {0};
    assert_int_equal(tfab_ep_recv(pr.ep[0], src, 5000, 9, on_done, &y[0]), TFAB_INPROGRESS);
    assert_int_equal(tfab_ep_send(pr.ep[1], dst + room, 5000, 9, on_done, &y[1]), TFAB_INPROGRESS);
    assert_true(wait_all(y, 2, 10));
    assert_int_equal(y[0].status, TFAB_OK);
    pair_close(&pr);
}

/* The ranking comes from the topology file: both sides derive their links from it, connect,
 * and the endpoint starts on the route's first link with the second standing by. */
static void test_ranked_links_from_topology(void **state)
{
    static const char yaml[] =
        "version: 1\n"
        "hosts:\n"
        "  - name: a\n"
        "    links:\n"
        "      - {name: n1, kind: tcp, address: 127.0.0.1:0}\n"
        "      - {name: n2, kind: tcp, address: 127.0.0.2:0}\n"
        "  - name: b\n"
        "    links:\n"
        "      - {name: n1, kind: tcp, address: 127.0.0.3:0}\n"
        "      - {name: n2, kind: tcp, address: 127.0.0.4:0}\n"
        "routes:\n"
        "  - {from: a, to: b, links: [n2, n1]}\n";
    tfab_topology_t *t;
    char             err[256], links[256];
    assert_int_equal(tfab_topology_parse(yaml, sizeof(yaml) - 1, "t.yaml", &t, err, sizeof(err)), TFAB_OK);
    assert_int_equal(tfab_topology_links(t, "a", "b", 7470, links, sizeof(links)), TFAB_OK);
    assert_string_equal(links, "tcp 127.0.0.2:0, tcp 127.0.0.1:0"); /* the route's order */
    assert_int_equal(tfab_topology_links(t, "a", "b", 7470, links, 10), TFAB_ERR_RANGE);
    assert_int_equal(tfab_topology_links(t, "a", "a", 7470, links, sizeof(links)), TFAB_ERR_INVALID);
    pair_t             pr;
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 16 * MiB};
    for (int i = 0; i < 2; i++)
        assert_int_equal(tfab_pool_create(&pp, &pr.pool[i]), TFAB_OK);
    assert_int_equal(tfab_topology_links(t, "a", "b", 7470, links, sizeof(links)), TFAB_OK);
    pr.fab[1] = ranked_fabric(pr.pool[1], links, 3000000000ull, 0); /* a serves */
    pr.fab[0] = ranked_fabric(pr.pool[0], "tcp", 3000000000ull, 0);
    assert_int_equal(tfab_ep_connect(pr.fab[0], tfab_fabric_address(pr.fab[1]), &pr.ep[0]), TFAB_OK);
    assert_int_equal(tfab_fabric_accept(pr.fab[1], 5000000000ull, &pr.ep[1]), TFAB_OK);
    assert_non_null(strstr(tfab_ep_link(pr.ep[0]), "tcp 127.0.0.2:"));
    one_transfer(&pr, 100000, 3, 77);
    one_transfer(&pr, 100, 3, 78);
    pair_close(&pr);
    tfab_topology_free(t);
}

/* Heartbeats: a peer that goes silent (a child process, stopped with SIGSTOP: its sockets stay
 * open, nothing says it died) fails a pending receive within the timeout; while it lived,
 * heartbeats kept the idle receive pending. */
static void test_heartbeat_silent_peer(void **state)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* the peer: a server that accepts and then only heartbeats */
        tfab_pool_t       *pool;
        tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 16 * MiB};
        if (tfab_pool_create(&pp, &pool) != TFAB_OK)
            _exit(1);
        tfab_fabric_params_t p = {
            .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN | TFAB_FABRIC_PARAM_LINKS |
                          TFAB_FABRIC_PARAM_TIMEOUT | TFAB_FABRIC_PARAM_HEARTBEAT,
            .pool = pool, .links = "tcp 127.0.0.1:0", .token = "secret",
            .timeout_ns = 400000000ull, .heartbeat_ns = 50000000ull};
        tfab_fabric_t *f;
        tfab_ep_t     *ep;
        if (tfab_fabric_create(&p, &f) != TFAB_OK)
            _exit(1);
        char addr[80];
        snprintf(addr, sizeof(addr), "%s", tfab_fabric_address(f));
        if (write(pfd[1], addr, sizeof(addr)) != (ssize_t)sizeof(addr) ||
            tfab_fabric_accept(f, 5000000000ull, &ep) != TFAB_OK)
            _exit(1);
        pause();
        _exit(0);
    }
    char addr[80];
    assert_int_equal(read(pfd[0], addr, sizeof(addr)), (ssize_t)sizeof(addr));
    close(pfd[0]);
    close(pfd[1]);
    tfab_pool_t       *pool;
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 16 * MiB};
    assert_int_equal(tfab_pool_create(&pp, &pool), TFAB_OK);
    tfab_fabric_t *cli = ranked_fabric(pool, "tcp", 400000000ull, 50000000ull);
    tfab_ep_t     *ep;
    assert_int_equal(tfab_ep_connect(cli, addr, &ep), TFAB_OK);
    void *buf;
    assert_int_equal(tfab_pool_alloc(pool, 4096, &buf), TFAB_OK);
    xfer_t x = {0};
    assert_int_equal(tfab_ep_recv(ep, buf, 4096, 1, on_done, &x), TFAB_INPROGRESS);
    usleep(1000000); /* idle but alive: heartbeats keep the receive pending */
    assert_false(atomic_load(&x.done));
    tfab_ep_stats_t s;
    tfab_ep_get_stats(ep, &s);
    assert_true(s.heartbeats_sent >= 5);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill(child, SIGSTOP);
    assert_true(wait_all(&x, 1, 3));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(x.status, TFAB_ERR_TIMEOUT);
    assert_true(dt > 0.3 && dt < 1.5); /* the 400 ms timeout, give or take a heartbeat */
    tfab_fabric_destroy(cli);
    tfab_pool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_unexpected_and_both_ways),
        cmocka_unit_test(test_thousand_concurrent),
        cmocka_unit_test(test_credit_exhaustion),
        cmocka_unit_test(test_credits_piggybacked),
        cmocka_unit_test(test_too_small_and_recovery),
        cmocka_unit_test(test_wrong_token),
        cmocka_unit_test(test_malformed_control),
        cmocka_unit_test(test_peer_closes_mid_transfer),
        cmocka_unit_test(test_stalled_peer_times_out),
        cmocka_unit_test(test_failover_ranked_links),
        cmocka_unit_test(test_ranked_links_from_topology),
        cmocka_unit_test(test_heartbeat_silent_peer),
    };
    return cmocka_run_group_tests_name("transport_tcp", tests, NULL, NULL);
}

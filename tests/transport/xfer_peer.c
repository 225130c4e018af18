/* xfer_peer.c - one side of a two-process transport run: the same sequence on every backend
 * and every pair of hosts (network namespaces, soft-RoCE guests). The server echoes nothing;
 * it receives and verifies. Modes:
 *   check: sizes 1 B .. --max bytes, each verified byte for byte on the receiver and its
 *          checksum reported back to the sender (messages on tag 2), then --concurrent
 *          transfers in flight at once.
 *   bw:    --iters messages of --size bytes streamed with --window in flight; prints Gbit/s.
 *   lat:   ping-pong of --size bytes, --iters round trips; prints the median half round trip.
 *   stream: --count messages of mixed sizes (1 KB .. 3 MB, eager and rendezvous) from client to
 *          server, --window in flight, all under one tag; the server verifies each (length,
 *          pattern: it arrived intact and in order) and after --pull-after of them runs
 *          --pull-cmd (pull a cable mid-stream), then both compare a checksum of checksums,
 *          check that nothing arrives twice, and print the endpoint's failover counters.
 *
 *   xfer_peer --listen IP:PORT [--token T] MODE [options]
 *   xfer_peer --connect IP:PORT [--token T] MODE [options]
 * --wait S: how long to wait for the peer, and for any one transfer (default 120 s).
 * --backend tcp|verbs. --links "tcp IP:PORT, tcp IP:PORT": ranked links (failover) instead.
 * --timeout-ms, --heartbeat-ms: the fabric's transfer timeout and heartbeat interval.
 * --progress thread|manual: the fabric's progress thread, or busy polling from the waiting
 *   thread (default: manual for bw and lat, thread for check).
 * Exit 0 only when every transfer completed and verified. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/tfab.h>
#include "../common/pattern.h"

#define FAIL(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "xfer_peer: " __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                                 \
        exit(1);                                                                             \
    } while (0)

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
    atomic_store_explicit(&x->done, 1, memory_order_release);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static tfab_fabric_t *fab;
static int            manual; /* this thread drives progress (busy polling, as perftest) */
static int            wait_s = 120;

static void wait_one(xfer_t *x, const char *what)
{
    double t0 = now_s();
    while (!atomic_load_explicit(&x->done, memory_order_acquire)) {
        if (manual)
            tfab_fabric_progress(fab, 0);
        if (now_s() - t0 > wait_s)
            FAIL("timed out waiting for %s", what);
    }
    if (x->status != TFAB_OK)
        FAIL("%s failed: %s", what, tfab_status_str(x->status));
}

static tfab_pool_t *pool;
static tfab_ep_t   *ep;

static void *palloc(size_t len)
{
    void *p;
    if (tfab_pool_alloc(pool, len ? len : 1, &p) != TFAB_OK)
        FAIL("pool exhausted allocating %zu bytes", len);
    return p;
}

static void xsend(const void *buf, size_t len, uint64_t tag, xfer_t *x)
{
    memset(x, 0, sizeof(*x));
    tfab_status_t st = tfab_ep_send(ep, buf, len, tag, on_done, x);
    if (st != TFAB_INPROGRESS)
        FAIL("send of %zu bytes: %s", len, tfab_status_str(st));
}

static void xrecv(void *buf, size_t len, uint64_t tag, xfer_t *x)
{
    memset(x, 0, sizeof(*x));
    tfab_status_t st = tfab_ep_recv(ep, buf, len, tag, on_done, x);
    if (st != TFAB_INPROGRESS)
        FAIL("receive of %zu bytes: %s", len, tfab_status_str(st));
}

static void run_check(int server, size_t max, int concurrent)
{
    uint64_t *sum = palloc(16);
    xfer_t    a, b;
    size_t    n_sizes = 0, total = 0;
    for (size_t len = 1; len <= max; len = len < 16 ? len + 5 : len * 4 + 3) {
        uint8_t *buf  = palloc(len);
        uint64_t seed = 0xabc0 + len;
        if (server) {
            xrecv(buf, len, 1, &a);
            wait_one(&a, "a check receive");
            if (a.len != len)
                FAIL("expected %zu bytes, got %zu", len, a.len);
            size_t bad = pattern_check(buf, len, seed, 0);
            if (bad != len)
                FAIL("%zu-byte message corrupt at offset %zu", len, bad);
            sum[0] = checksum64(buf, len);
            xsend(sum, 8, 2, &b);
            wait_one(&b, "the checksum reply");
        } else {
            pattern_fill(buf, len, seed, 0);
            xrecv(sum, 8, 2, &b);
            xsend(buf, len, 1, &a);
            wait_one(&a, "a check send");
            wait_one(&b, "the checksum reply");
            if (sum[0] != checksum64(buf, len))
                FAIL("%zu bytes: receiver checksum %016" PRIx64 " != %016" PRIx64, len, sum[0],
                     checksum64(buf, len));
        }
        tfab_pool_free(pool, buf);
        n_sizes++;
        total += len;
    }
    printf("%s: check sizes 1..%zu: %zu messages, %zu bytes verified\n",
           server ? "server" : "client", max, n_sizes, total);

    xfer_t  *xs   = calloc((size_t)concurrent, sizeof(*xs));
    uint8_t *big  = palloc((size_t)concurrent * 20000);
    for (int i = 0; i < concurrent; i++) {
        size_t len = 1 + (size_t)(i * 7919) % 20000;
        if (server)
            xrecv(big + (size_t)i * 20000, 20000, 10 + (uint64_t)(i % 4), &xs[i]);
        else {
            pattern_fill(big + (size_t)i * 20000, len, 0x5000 + (uint64_t)i, 0);
            xsend(big + (size_t)i * 20000, len, 10 + (uint64_t)(i % 4), &xs[i]);
        }
    }
    for (int i = 0; i < concurrent; i++) {
        wait_one(&xs[i], "a concurrent transfer");
        size_t len = 1 + (size_t)(i * 7919) % 20000;
        if (server && (xs[i].len != len ||
                       pattern_check(big + (size_t)i * 20000, len, 0x5000 + (uint64_t)i, 0) != len))
            FAIL("concurrent transfer %d corrupt or misordered", i);
    }
    printf("%s: %d concurrent transfers verified\n", server ? "server" : "client", concurrent);
    free(xs);
}

static void run_bw(int server, size_t size, int iters, int window)
{
    uint8_t *bufs = palloc(size * (size_t)window);
    xfer_t  *xs   = calloc((size_t)window, sizeof(*xs));
    uint64_t *ack = palloc(8);
    xfer_t    ax;
    if (!server)
        pattern_fill(bufs, size * (size_t)window, 1, 0);
    double t0 = now_s();
    for (int i = 0; i < iters; i++) {
        int     s = i % window;
        uint8_t *b = bufs + (size_t)s * size;
        if (i >= window)
            wait_one(&xs[s], "a bandwidth transfer");
        if (server)
            xrecv(b, size, 3, &xs[s]);
        else
            xsend(b, size, 3, &xs[s]);
    }
    for (int s = 0; s < window && s < iters; s++)
        wait_one(&xs[s], "a bandwidth transfer");
    /* the receiver says when everything arrived */
    if (server) {
        xsend(ack, 8, 4, &ax);
        wait_one(&ax, "the final ack");
    } else {
        xrecv(ack, 8, 4, &ax);
        wait_one(&ax, "the final ack");
    }
    double dt = now_s() - t0;
    printf("%s: bw size %zu iters %d window %d: %.3f Gbit/s\n", server ? "server" : "client", size,
           iters, window, (double)size * iters * 8 / dt / 1e9);
    free(xs);
}

static size_t stream_len(int i)
{
    static const size_t sizes[] = {1000, 8000, 200000, 1 << 20, 3 << 20, 4096, 65536};
    return sizes[i % 7] + (size_t)i;
}

static void run_stream(int server, int count, int window, int pull_after, const char *pull_cmd)
{
    size_t    room = (3u << 20) + (size_t)count;
    uint8_t  *bufs = palloc(room * (size_t)window);
    xfer_t   *xs   = calloc((size_t)window, sizeof(*xs));
    int      *idx  = calloc((size_t)window, sizeof(int));
    uint64_t *sum  = palloc(16);
    uint64_t  acc  = 0;
    xfer_t    a;
    for (int i = 0; i < count + window; i++) {
        int s = i % window;
        uint8_t *b = bufs + (size_t)s * room;
        if (i >= window) { /* slot s held message i - window */
            int k = idx[s];
            wait_one(&xs[s], server ? "a stream receive" : "a stream send");
            if (server) {
                if (xs[s].len != stream_len(k))
                    FAIL("message %d: %zu bytes, expected %zu (lost, duplicated or reordered)", k,
                         xs[s].len, stream_len(k));
                size_t bad = pattern_check(b, stream_len(k), 0x7000 + (uint64_t)k, 0);
                if (bad != stream_len(k))
                    FAIL("message %d (%zu bytes) corrupt at offset %zu", k, stream_len(k), bad);
                acc += checksum64(b, stream_len(k)) * (uint64_t)(2 * k + 1);
                if (k + 1 == pull_after && pull_cmd) {
                    printf("server: %d messages verified, pulling: %s\n", k + 1, pull_cmd);
                    if (system(pull_cmd) != 0)
                        FAIL("'%s' failed", pull_cmd);
                }
            } else {
                acc += checksum64(b, stream_len(k)) * (uint64_t)(2 * k + 1);
            }
        }
        if (i >= count)
            continue;
        idx[s] = i;
        if (server) {
            xrecv(b, room, 6, &xs[s]);
        } else {
            pattern_fill(b, stream_len(i), 0x7000 + (uint64_t)i, 0);
            xsend(b, stream_len(i), 6, &xs[s]);
        }
    }
    /* one more receive under the stream's tag: a duplicate would land here */
    if (server) {
        xfer_t extra;
        xrecv(bufs, room, 6, &extra);
        usleep(500000);
        if (atomic_load(&extra.done))
            FAIL("a message arrived twice (%zu bytes after the last one)", extra.len);
        sum[0] = acc;
        xsend(sum, 8, 7, &a);
        wait_one(&a, "the stream checksum");
        printf("server: stream %d messages verified, checksum %016" PRIx64 "\n", count, acc);
    } else {
        xrecv(sum, 8, 7, &a);
        wait_one(&a, "the stream checksum");
        if (sum[0] != acc)
            FAIL("stream checksum %016" PRIx64 " from the server != ours %016" PRIx64, sum[0], acc);
        printf("client: stream %d messages, checksums equal %016" PRIx64 "\n", count, acc);
    }
    tfab_ep_stats_t st;
    tfab_ep_get_stats(ep, &st);
    printf("%s: failovers %" PRIu64 " resent %" PRIu64 " link now %s\n", server ? "server" : "client",
           st.failovers, st.resent, tfab_ep_link(ep));
    free(xs);
    free(idx);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_lat(int server, size_t size, int iters)
{
    uint8_t *in = palloc(size), *out = palloc(size);
    double  *rt = calloc((size_t)iters, sizeof(double));
    xfer_t   r, s;
    for (int i = 0; i < iters; i++) {
        double t0 = now_s();
        xrecv(in, size, 5, &r);
        if (!server) {
            xsend(out, size, 5, &s);
            wait_one(&r, "a pong");
            wait_one(&s, "a ping send");
        } else {
            wait_one(&r, "a ping");
            xsend(out, size, 5, &s);
            wait_one(&s, "a pong send");
        }
        rt[i] = now_s() - t0;
    }
    qsort(rt, (size_t)iters, sizeof(double), cmp_double);
    if (!server)
        printf("client: lat size %zu iters %d: median %.2f us, p99 %.2f us (half round trip)\n",
               size, iters, rt[iters / 2] * 1e6 / 2, rt[iters * 99 / 100] * 1e6 / 2);
    free(rt);
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *connect_to = NULL, *token = "tfab-test", *mode = NULL;
    const char *progress = NULL, *backend = "tcp", *links = NULL, *pull_cmd = NULL;
    int         count = 300, pull_after = 0;
    uint64_t    timeout_ms = 0, heartbeat_ms = 0;
    uint64_t    max = 64ull << 20, size = 1ull << 20, pool_size = 1ull << 30;
    int         iters = 100, window = 16, concurrent = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--listen") == 0 && v)
            listen = argv[++i];
        else if (strcmp(a, "--connect") == 0 && v)
            connect_to = argv[++i];
        else if (strcmp(a, "--token") == 0 && v)
            token = argv[++i];
        else if ((strcmp(a, "--max") == 0 || strcmp(a, "--size") == 0 ||
                  strcmp(a, "--pool") == 0) && v) {
            uint64_t b;
            if (tfab_size_parse(argv[++i], &b) != TFAB_OK)
                FAIL("%s needs a size, got '%s'", a, argv[i]);
            *(a[2] == 'm' ? &max : a[2] == 's' ? &size : &pool_size) = b;
        } else if (strcmp(a, "--iters") == 0 && v)
            iters = atoi(argv[++i]);
        else if (strcmp(a, "--window") == 0 && v)
            window = atoi(argv[++i]);
        else if (strcmp(a, "--backend") == 0 && v)
            backend = argv[++i];
        else if (strcmp(a, "--links") == 0 && v)
            links = argv[++i];
        else if (strcmp(a, "--pull-cmd") == 0 && v)
            pull_cmd = argv[++i];
        else if (strcmp(a, "--pull-after") == 0 && v)
            pull_after = atoi(argv[++i]);
        else if (strcmp(a, "--count") == 0 && v)
            count = atoi(argv[++i]);
        else if (strcmp(a, "--timeout-ms") == 0 && v)
            timeout_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--heartbeat-ms") == 0 && v)
            heartbeat_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--progress") == 0 && v)
            progress = argv[++i];
        else if (strcmp(a, "--wait") == 0 && v)
            wait_s = atoi(argv[++i]);
        else if (strcmp(a, "--concurrent") == 0 && v)
            concurrent = atoi(argv[++i]);
        else if (a[0] != '-' && mode == NULL)
            mode = a;
        else
            FAIL("unknown or incomplete argument '%s'", a);
    }
    if ((listen == NULL) == (connect_to == NULL) || mode == NULL || iters <= 0 || window <= 0)
        FAIL("usage: xfer_peer --listen IP:PORT | --connect IP:PORT  check|bw|lat [options]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    tfab_log_level_t level = TFAB_LOG_INFO;
    if (getenv("TFAB_LOG_LEVEL") && tfab_log_level_parse(getenv("TFAB_LOG_LEVEL"), &level) != TFAB_OK)
        FAIL("TFAB_LOG_LEVEL=%s is not a log level", getenv("TFAB_LOG_LEVEL"));
    tfab_log_set_level(level);
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = pool_size};
    if (tfab_pool_create(&pp, &pool) != TFAB_OK)
        FAIL("cannot create a pool of %" PRIu64 " bytes", pool_size);
    manual = progress ? strcmp(progress, "manual") == 0 : strcmp(mode, "check") != 0;
    tfab_fabric_params_t fp = {
        .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN | TFAB_FABRIC_PARAM_PROGRESS |
                      TFAB_FABRIC_PARAM_BACKEND | (listen ? TFAB_FABRIC_PARAM_LISTEN : 0),
        .pool = pool, .token = token, .listen = listen, .backend = backend,
        .progress = manual ? TFAB_PROGRESS_MANUAL : TFAB_PROGRESS_THREAD};
    if (links) { /* ranked links replace listen and backend; --listen still says "serve" */
        fp.field_mask = (fp.field_mask & ~(uint64_t)(TFAB_FABRIC_PARAM_LISTEN | TFAB_FABRIC_PARAM_BACKEND)) |
                        TFAB_FABRIC_PARAM_LINKS;
        fp.links = links;
    }
    if (timeout_ms) {
        fp.field_mask |= TFAB_FABRIC_PARAM_TIMEOUT;
        fp.timeout_ns = timeout_ms * 1000000ull;
    }
    if (heartbeat_ms) {
        fp.field_mask |= TFAB_FABRIC_PARAM_HEARTBEAT;
        fp.heartbeat_ns = heartbeat_ms * 1000000ull;
    }
    if (tfab_fabric_create(&fp, &fab) != TFAB_OK)
        FAIL("cannot create the fabric");
    tfab_status_t st;
    if (listen) {
        printf("listening on %s\n", tfab_fabric_address(fab));
        st = tfab_fabric_accept(fab, (uint64_t)wait_s * 1000000000ull, &ep);
    } else {
        double t0 = now_s();
        while ((st = tfab_ep_connect(fab, connect_to, &ep)) == TFAB_ERR_CONN && now_s() - t0 < wait_s)
            usleep(200000); /* the server may not listen yet */
    }
    if (st != TFAB_OK)
        FAIL("no peer: %s", tfab_status_str(st));
    printf("link: %s\n", tfab_ep_link(ep));
    int server = listen != NULL;
    if (strcmp(mode, "check") == 0)
        run_check(server, max, concurrent);
    else if (strcmp(mode, "bw") == 0)
        run_bw(server, size, iters, window);
    else if (strcmp(mode, "lat") == 0)
        run_lat(server, size, iters);
    else if (strcmp(mode, "stream") == 0)
        run_stream(server, count, window, pull_after, pull_cmd);
    else
        FAIL("unknown mode '%s'", mode);
    tfab_fabric_destroy(fab);
    tfab_pool_destroy(pool);
    printf("%s: OK\n", server ? "server" : "client");
    return 0;
}

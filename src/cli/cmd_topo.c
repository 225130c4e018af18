/* cmd_topo.c - `tfab topo`: check a topology priority file and print, for each pair of hosts,
 * the links tfab will use, best first; with --probe, measure each of them (latency, bandwidth)
 * against a peer running `tfab topo --serve`. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/tfab.h>
#include <tfab/topology.h>
#include "cli.h"

static void print_link(const tfab_topology_link_t *l)
{
    if (l->kind == TFAB_LINK_VERBS) {
        printf("%s:%d", l->device, l->port);
        if (l->gid_index >= 0)
            printf(" gid %d", l->gid_index);
        if (l->address[0])
            printf(" %s", l->address);
    } else {
        printf("%s", l->address);
    }
}

/* ---- probing: a small protocol over the public transport API -------------------------------
 * The prober sends a request (tag 1: lat_iters, bw_iters, bw_size as 3 x u64), then lat_iters
 * ping-pongs of 8 bytes (tag 2, echoed), then bw_iters messages of bw_size (tag 3, window 8),
 * and the server answers with one 8-byte ack (tag 4) once all arrived. */

#define PROBE_PORT   7470 /* verbs links carry only an IP: probes use this port */
#define PROBE_WINDOW 8

typedef struct {
    atomic_int    done;
    tfab_status_t st;
    size_t        len;
} probe_xfer_t;

static void probe_cb(tfab_status_t st, size_t len, void *arg)
{
    probe_xfer_t *x = arg;
    x->st           = st;
    x->len          = len;
    atomic_store(&x->done, 1);
}

static double probe_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static tfab_status_t probe_wait(probe_xfer_t *x, double deadline)
{
    /* spin first (a latency probe must not measure the scheduler), then sleep a little */
    for (unsigned spins = 0; !atomic_load(&x->done); spins++) {
        if (probe_now() > deadline)
            return TFAB_ERR_TIMEOUT;
        if (spins > 200)
            usleep(20);
    }
    return x->st;
}

static tfab_status_t probe_xfer(tfab_ep_t *ep, int send, void *buf, size_t len, uint64_t tag,
                                probe_xfer_t *x)
{
    memset(x, 0, sizeof(*x));
    return send ? tfab_ep_send(ep, buf, len, tag, probe_cb, x) : tfab_ep_recv(ep, buf, len, tag, probe_cb, x);
}

/* "ip:port" for a link: TCP links carry one; verbs links an IP, probed on PROBE_PORT. */
static void probe_addr(const tfab_topology_link_t *l, char *out, size_t len)
{
    if (l->kind == TFAB_LINK_TCP)
        snprintf(out, len, "%s", l->address);
    else
        snprintf(out, len, "%s:%d", l->address, PROBE_PORT);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One measurement over ep: median half round trip (us) and bandwidth (Gbit/s). */
static tfab_status_t probe_run(tfab_ep_t *ep, tfab_pool_t *pool, int lat_iters, int bw_iters,
                               size_t bw_size, double *lat_us, double *gbit)
{
    uint8_t      *buf;
    tfab_status_t st = tfab_pool_alloc(pool, bw_size * PROBE_WINDOW + 64, (void **)&buf);
    if (st != TFAB_OK)
        return st;
    uint64_t    *req = (uint64_t *)(buf + bw_size * PROBE_WINDOW);
    double       dl  = probe_now() + 60, *rt = calloc((size_t)lat_iters, sizeof(double));
    probe_xfer_t a, b, w[PROBE_WINDOW];
    req[0] = (uint64_t)lat_iters;
    req[1] = (uint64_t)bw_iters;
    req[2] = bw_size;
    if (rt == NULL) {
        st = TFAB_ERR_NOMEM;
        goto out;
    }
    if ((st = probe_xfer(ep, 1, req, 24, 1, &a)) != TFAB_INPROGRESS || (st = probe_wait(&a, dl)) != TFAB_OK)
        goto out;
    for (int i = 0; i < lat_iters; i++) {
        double t0 = probe_now();
        if ((st = probe_xfer(ep, 0, req + 4, 8, 2, &b)) != TFAB_INPROGRESS ||
            (st = probe_xfer(ep, 1, req + 3, 8, 2, &a)) != TFAB_INPROGRESS ||
            (st = probe_wait(&a, dl)) != TFAB_OK || (st = probe_wait(&b, dl)) != TFAB_OK)
            goto out;
        rt[i] = (probe_now() - t0) / 2;
    }
    qsort(rt, (size_t)lat_iters, sizeof(double), cmp_dbl);
    *lat_us = rt[lat_iters / 2] * 1e6;
    if ((st = probe_xfer(ep, 0, req + 5, 8, 4, &b)) != TFAB_INPROGRESS)
        goto out;
    double t0 = probe_now();
    for (int i = 0; i < bw_iters + PROBE_WINDOW; i++) {
        int s = i % PROBE_WINDOW;
        if (i >= PROBE_WINDOW && (st = probe_wait(&w[s], dl)) != TFAB_OK)
            goto out;
        if (i < bw_iters && (st = probe_xfer(ep, 1, buf + (size_t)s * bw_size, bw_size, 3, &w[s])) != TFAB_INPROGRESS)
            goto out;
    }
    if ((st = probe_wait(&b, dl)) != TFAB_OK)
        goto out;
    *gbit = (double)bw_size * bw_iters * 8 / (probe_now() - t0) / 1e9;
    st    = TFAB_OK;
out:
    free(rt);
    tfab_pool_free(pool, buf);
    return st == TFAB_INPROGRESS ? TFAB_ERR_IO : st;
}

static tfab_fabric_t *probe_fabric(tfab_pool_t *pool, const tfab_topology_link_t *l,
                                   const char *listen, const char *token)
{
    tfab_fabric_params_t fp = {
        .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_BACKEND | TFAB_FABRIC_PARAM_TOKEN |
                      TFAB_FABRIC_PARAM_TIMEOUT | (listen ? TFAB_FABRIC_PARAM_LISTEN : 0),
        .pool = pool, .backend = l->kind == TFAB_LINK_VERBS ? "verbs" : "tcp", .listen = listen,
        .token = token, .timeout_ns = 5000000000ull};
    tfab_fabric_t *f = NULL;
    return tfab_fabric_create(&fp, &f) == TFAB_OK ? f : NULL;
}

typedef struct {
    tfab_fabric_t *fab;
    tfab_pool_t   *pool;
    double         until;
    const char    *name;
    int            served;
    int            once;
} serve_arg_t;

/* Answer probes on one link until the deadline: echo pings, sink the stream, acknowledge. */
static void *serve_link(void *arg)
{
    serve_arg_t *sa = arg;
    uint8_t     *buf;
    if (tfab_pool_alloc(sa->pool, (16u << 20) + 64, (void **)&buf) != TFAB_OK)
        return NULL;
    uint64_t *req = (uint64_t *)(buf + (16u << 20));
    while (probe_now() < sa->until && !(sa->once && sa->served)) {
        tfab_ep_t *ep;
        if (tfab_fabric_accept(sa->fab, 200000000ull, &ep) != TFAB_OK)
            continue;
        double       dl = probe_now() + 60;
        probe_xfer_t a, b;
        tfab_status_t st = TFAB_OK;
        if (probe_xfer(ep, 0, req, 24, 1, &a) != TFAB_INPROGRESS || probe_wait(&a, dl) != TFAB_OK ||
            req[2] > (16u << 20) || req[0] > 100000 || req[1] > 100000) {
            tfab_ep_close(ep);
            continue;
        }
        uint64_t lat = req[0], bw = req[1], size = req[2];
        for (uint64_t i = 0; i < lat && st == TFAB_OK; i++) {
            if (probe_xfer(ep, 0, req + 3, 8, 2, &a) != TFAB_INPROGRESS || (st = probe_wait(&a, dl)) != TFAB_OK)
                break;
            if (probe_xfer(ep, 1, req + 3, 8, 2, &b) != TFAB_INPROGRESS || (st = probe_wait(&b, dl)) != TFAB_OK)
                break;
        }
        for (uint64_t i = 0; i < bw && st == TFAB_OK; i++)
            if (probe_xfer(ep, 0, buf, size, 3, &a) != TFAB_INPROGRESS || (st = probe_wait(&a, dl)) != TFAB_OK)
                break;
        if (st == TFAB_OK && probe_xfer(ep, 1, req + 4, 8, 4, &b) == TFAB_INPROGRESS)
            probe_wait(&b, dl);
        usleep(100000); /* let the ack leave before closing */
        tfab_ep_close(ep);
        sa->served++;
        printf("served a probe on %s (%s)\n", sa->name, st == TFAB_OK ? "ok" : tfab_status_str(st));
    }
    tfab_pool_free(sa->pool, buf);
    return NULL;
}

static int topo_serve(tfab_topology_t *t, const char *host, const char *token, double seconds,
                      int once)
{
    const tfab_topology_host_t *h = tfab_topology_find_host(t, host);
    tfab_pool_params_t          pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 256ull << 20};
    tfab_pool_t                *pool;
    if (tfab_pool_create(&pp, &pool) != TFAB_OK)
        return 1;
    serve_arg_t sa[16];
    pthread_t   th[16];
    unsigned    n = 0;
    for (unsigned i = 0; i < h->n_links && n < 16; i++) {
        char addr[96];
        probe_addr(&h->links[i], addr, sizeof(addr));
        tfab_fabric_t *f = probe_fabric(pool, &h->links[i], addr, token);
        if (f == NULL) {
            fprintf(stderr, "tfab topo: cannot serve link %s on %s\n", h->links[i].name, addr);
            continue;
        }
        sa[n] = (serve_arg_t){f, pool, probe_now() + seconds, h->links[i].name, 0, once};
        printf("serving probes on %s (%s %s)\n", h->links[i].name,
               tfab_link_kind_str(h->links[i].kind), tfab_fabric_address(f));
        pthread_create(&th[n], NULL, serve_link, &sa[n]);
        n++;
    }
    fflush(stdout);
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        tfab_fabric_destroy(sa[i].fab);
    }
    tfab_pool_destroy(pool);
    return n ? 0 : 1;
}

/* Measure every ranked path from host to each peer (or to only). */
static int topo_probe(tfab_topology_t *t, const char *host, const char *only, const char *token,
                      double wait_s)
{
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 256ull << 20};
    tfab_pool_t       *pool;
    if (tfab_pool_create(&pp, &pool) != TFAB_OK)
        return 1;
    int      rc = 0;
    unsigned n  = tfab_topology_n_hosts(t);
    for (unsigned b = 0; b < n; b++) {
        const tfab_topology_host_t *hb = tfab_topology_host(t, b);
        if (strcmp(hb->name, host) == 0 || (only && strcmp(hb->name, only) != 0))
            continue;
        tfab_topology_path_t p[16];
        unsigned             k = tfab_topology_rank(t, host, hb->name, p, 16);
        printf("%s -> %s:%s\n", host, hb->name, k ? "" : " NO COMMON LINK");
        for (unsigned i = 0; i < k && i < 16; i++) {
            char addr[96];
            probe_addr(p[i].remote, addr, sizeof(addr));
            tfab_fabric_t *f = probe_fabric(pool, p[i].local, NULL, token);
            tfab_ep_t     *ep = NULL;
            tfab_status_t  st = f ? TFAB_ERR_CONN : TFAB_ERR_NODEV;
            double         t0 = probe_now();
            while (f && (st = tfab_ep_connect(f, addr, &ep)) == TFAB_ERR_CONN &&
                   probe_now() - t0 < wait_s)
                usleep(200000); /* the responder may not listen yet */
            double lat = 0, gbit = 0;
            if (st == TFAB_OK)
                st = probe_run(ep, pool, 200, 32, 1u << 20, &lat, &gbit);
            /* one line, once measured: connect errors (stderr) must not split it */
            printf("  %u. %-8s %-5s -> %s: ", i + 1, p[i].local->name,
                   tfab_link_kind_str(p[i].local->kind), addr);
            if (st == TFAB_OK)
                printf("latency %.1f us, bandwidth %.3f Gbit/s\n", lat, gbit);
            else
                printf("unreachable: %s\n", tfab_status_str(st));
            rc |= st != TFAB_OK;
            fflush(stdout);
            tfab_fabric_destroy(f);
        }
    }
    tfab_pool_destroy(pool);
    return rc;
}

int tfab_cli_topo(int argc, char **argv)
{
    const char *file = NULL, *from = NULL, *probe = NULL, *serve = NULL, *to = NULL;
    const char *token   = "tfab-probe";
    double      seconds = 60;
    int         once    = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tfab topo --file TOPOLOGY.yaml [--from HOST]\n"
                   "       tfab topo --file TOPOLOGY.yaml --probe HOST [--to PEER] [--token T]\n"
                   "       tfab topo --file TOPOLOGY.yaml --serve HOST [--seconds S] [--token T]\n"
                   "  Checks the topology priority file (errors name the line) and prints the\n"
                   "  ranked links between each pair of hosts (or from HOST). The format is in\n"
                   "  config/topology.example.yaml and the README.\n"
                   "  --probe HOST: run on HOST, measure each ranked link to every peer (or PEER):\n"
                   "  8-byte latency (median half round trip) and bandwidth (1 MiB messages),\n"
                   "  against `tfab topo --serve PEER` running there (verbs links on port %d).\n"
                   "  --serve HOST: answer probes on each of HOST's links for S seconds (60),\n"
                   "  or with --once until each link answered one.\n",
                   PROBE_PORT);
            return 0;
        } else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from = argv[++i];
        } else if (strcmp(argv[i], "--probe") == 0 && i + 1 < argc) {
            probe = argv[++i];
        } else if (strcmp(argv[i], "--serve") == 0 && i + 1 < argc) {
            serve = argv[++i];
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else if (strcmp(argv[i], "--once") == 0) {
            once = 1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else {
            fprintf(stderr, "tfab topo: unknown argument '%s' (see tfab topo --help)\n", argv[i]);
            return 2;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "tfab topo: --file is required\n");
        return 2;
    }
    tfab_topology_t  *t;
    char          err[512];
    tfab_status_t st = tfab_topology_load(file, &t, err, sizeof(err));
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab topo: %s\n", err);
        return 1;
    }
    const char *names[] = {from, probe, serve, to};
    for (int i = 0; i < 4; i++) {
        if (names[i] != NULL && tfab_topology_find_host(t, names[i]) == NULL) {
            fprintf(stderr, "tfab topo: host '%s' is not in %s\n", names[i], file);
            tfab_topology_free(t);
            return 1;
        }
    }
    if (probe || serve) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        int rc = probe ? topo_probe(t, probe, to, token, seconds) : topo_serve(t, serve, token, seconds, once);
        tfab_topology_free(t);
        return rc;
    }
    unsigned n = tfab_topology_n_hosts(t);
    printf("%u hosts\n", n);
    for (unsigned a = 0; a < n; a++) {
        const tfab_topology_host_t *ha = tfab_topology_host(t, a);
        if (from != NULL && strcmp(ha->name, from) != 0)
            continue;
        for (unsigned b = 0; b < n; b++) {
            const tfab_topology_host_t *hb = tfab_topology_host(t, b);
            if (a == b)
                continue;
            tfab_topology_path_t p[16];
            unsigned         k = tfab_topology_rank(t, ha->name, hb->name, p, 16);
            printf("%s -> %s:%s\n", ha->name, hb->name, k ? "" : " NO COMMON LINK");
            for (unsigned i = 0; i < k && i < 16; i++) {
                printf("  %u. %-8s %-5s ", i + 1, p[i].local->name, tfab_link_kind_str(p[i].local->kind));
                print_link(p[i].local);
                printf(" -> ");
                print_link(p[i].remote);
                printf("\n");
            }
        }
    }
    tfab_topology_free(t);
    return 0;
}

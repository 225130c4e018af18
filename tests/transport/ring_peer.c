/* ring_peer.c - one rank of a ring: connects to its right neighbour, accepts its left one,
 * then runs all-reduce and all-gather and checks every element against the exact expected
 * value (integers in floats, so sums are exact in any order).
 *   ring_peer --rank R --addrs IP:PORT,IP:PORT,... [--count N] [--progress thread|manual]
 *             [--backend tcp|verbs]
 * Prints "rank R: allreduce count N OK sum-checksum H" (H must agree across ranks). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/tfab.h>
#include "../common/pattern.h"

#define FAIL(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "ring_peer: " __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                                 \
        exit(1);                                                                             \
    } while (0)

int main(int argc, char **argv)
{
    int         rank = -1, n = 0, manual = 0;
    const char *backend = "tcp";
    size_t      count = 1000003;
    char       *addrs[16];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rank") == 0 && i + 1 < argc)
            rank = atoi(argv[++i]);
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            backend = argv[++i];
        else if (strcmp(argv[i], "--progress") == 0 && i + 1 < argc)
            manual = strcmp(argv[++i], "manual") == 0;
        else if (strcmp(argv[i], "--addrs") == 0 && i + 1 < argc)
            for (char *t = strtok(argv[++i], ","); t && n < 16; t = strtok(NULL, ","))
                addrs[n++] = t;
        else
            FAIL("unknown argument '%s'", argv[i]);
    }
    if (rank < 0 || rank >= n)
        FAIL("--rank must be within the %d addresses of --addrs", n);
    setvbuf(stdout, NULL, _IOLBF, 0);
    tfab_pool_t       *pool;
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 256ull << 20};
    if (tfab_pool_create(&pp, &pool) != TFAB_OK)
        FAIL("pool");
    tfab_fabric_params_t fp = {
        .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN | TFAB_FABRIC_PARAM_LISTEN |
                      TFAB_FABRIC_PARAM_PROGRESS | TFAB_FABRIC_PARAM_BACKEND,
        .pool = pool, .token = "ring", .listen = addrs[rank], .backend = backend,
        .progress = manual ? TFAB_PROGRESS_MANUAL : TFAB_PROGRESS_THREAD};
    tfab_fabric_t *fab;
    if (tfab_fabric_create(&fp, &fab) != TFAB_OK)
        FAIL("fabric on %s", addrs[rank]);
    tfab_ep_t    *left = NULL, *right = NULL;
    tfab_status_t st;
    time_t        t0 = time(NULL);
    if (n > 1) {
        while ((st = tfab_ep_connect(fab, addrs[(rank + 1) % n], &right)) == TFAB_ERR_CONN &&
               time(NULL) - t0 < 60)
            usleep(100000);
        if (st != TFAB_OK)
            FAIL("connect to %s: %s", addrs[(rank + 1) % n], tfab_status_str(st));
        if ((st = tfab_fabric_accept(fab, 60ull * 1000000000ull, &left)) != TFAB_OK)
            FAIL("accept from the left: %s", tfab_status_str(st));
    }
    tfab_ring_t *ring;
    if (tfab_ring_create(fab, rank, n, left, right, (count / (size_t)n + 1) * sizeof(float), &ring) != TFAB_OK)
        FAIL("ring");

    float *v;
    if (tfab_pool_alloc(pool, count * sizeof(float), (void **)&v) != TFAB_OK)
        FAIL("pool alloc");
    double want_mul = (double)n * (n + 1) / 2;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < count; i++)
            v[i] = (float)((i % 1000) * (size_t)(rank + 1) + (size_t)round);
        if ((st = tfab_ring_allreduce_f32(ring, v, count)) != TFAB_OK)
            FAIL("allreduce: %s", tfab_status_str(st));
        for (size_t i = 0; i < count; i++) {
            double want = (double)(i % 1000) * want_mul + (double)round * n;
            if ((double)v[i] != want)
                FAIL("allreduce round %d: element %zu is %g, want %g", round, i, (double)v[i], want);
        }
    }
    printf("rank %d: allreduce count %zu OK sum-checksum %016" PRIx64 "\n", rank, count,
           checksum64(v, count * sizeof(float)));
    /* tiny all-reduces: fewer elements than ranks leaves some chunks empty */
    for (size_t c = 1; c <= 5; c++) {
        for (size_t i = 0; i < c; i++)
            v[i] = (float)(rank + 1);
        if ((st = tfab_ring_allreduce_f32(ring, v, c)) != TFAB_OK)
            FAIL("allreduce of %zu: %s", c, tfab_status_str(st));
        for (size_t i = 0; i < c; i++)
            if ((double)v[i] != want_mul)
                FAIL("allreduce of %zu: element %zu is %g", c, i, (double)v[i]);
    }
    size_t   per = 4099;
    uint8_t *g;
    if (tfab_pool_alloc(pool, per * (size_t)n, (void **)&g) != TFAB_OK)
        FAIL("pool alloc");
    memset(g, 0, per * (size_t)n);
    pattern_fill(g + (size_t)rank * per, per, 0x900 + (uint64_t)rank, 0);
    if ((st = tfab_ring_allgather(ring, g, per)) != TFAB_OK)
        FAIL("allgather: %s", tfab_status_str(st));
    for (int r = 0; r < n; r++)
        if (pattern_check(g + (size_t)r * per, per, 0x900 + (uint64_t)r, 0) != per)
            FAIL("allgather: rank %d's contribution wrong", r);
    printf("rank %d: allgather %d x %zu bytes OK\n", rank, n, per);
    /* stay until every rank is done: a last all-reduce is the barrier */
    v[0] = 1;
    if (tfab_ring_allreduce_f32(ring, v, 1) != TFAB_OK || v[0] != (float)n)
        FAIL("final barrier");
    tfab_ring_destroy(ring);
    tfab_fabric_destroy(fab);
    tfab_pool_destroy(pool);
    printf("rank %d: OK\n", rank);
    return 0;
}

/* bench_stream.c - what the stream costs the forward pass: parallel_for overhead per call
 * (empty tasks) with 1, 2, ... workers, and enqueue-to-completion cost per op. Checks every
 * task ran; prints µs figures. --quick for the ctest smoke run. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/stream.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

typedef struct slot {
    _Alignas(64) unsigned long hits; /* one cache line per task: no false sharing */
} slot_t;

typedef struct bench {
    size_t   n_tasks;
    unsigned iters;
    slot_t  *slots; /* [n_tasks] */
    double   us;
} bench_t;

/* an empty task but for counting itself: the figure is the loop's own overhead */
static void task_sum(size_t i, void *arg)
{
    bench_t *b = arg;
    b->slots[i].hits++;
}

static tfab_status_t op_bench(tfab_stream_ctx_t *ctx, void *arg)
{
    bench_t *b = arg;
    for (unsigned i = 0; i < 100; i++) /* warm up: wake the helpers */
        tfab_stream_parallel_for(ctx, b->n_tasks, task_sum, b);
    for (size_t i = 0; i < b->n_tasks; i++)
        b->slots[i].hits = 0;
    double t0 = now_us();
    for (unsigned i = 0; i < b->iters; i++)
        tfab_stream_parallel_for(ctx, b->n_tasks, task_sum, b);
    b->us = (now_us() - t0) / b->iters;
    return TFAB_OK;
}

/* a task of about 5 us of arithmetic */
static void task_busy(size_t i, void *arg)
{
    volatile double x = (double)i;
    for (int k = 0; k < 2000; k++)
        x = x * 1.0000001 + 1e-9;
    ((slot_t *)arg)[i].hits++;
}

typedef struct cold {
    size_t  n_tasks;
    slot_t *slots;
    double  us;
} cold_t;

/* one parallel_for right at the start of an op, after the stream sat idle */
static tfab_status_t op_cold(tfab_stream_ctx_t *ctx, void *arg)
{
    cold_t *c  = arg;
    double  t0 = now_us();
    tfab_stream_parallel_for(ctx, c->n_tasks, task_busy, c->slots);
    c->us += now_us() - t0;
    return TFAB_OK;
}

static tfab_status_t op_nop(tfab_stream_ctx_t *ctx, void *arg)
{
    return TFAB_OK;
}

int main(int argc, char **argv)
{
    int      quick = 0;
    unsigned kmax  = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--max-workers") == 0 && i + 1 < argc)
            kmax = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--max-workers K]\n", argv[0]);
            return 2;
        }
    }
    unsigned iters = quick ? 2000 : 200000;
    int      rc    = 0;
    for (unsigned k = 1; k <= kmax; k = k < 2 ? k + 1 : k * 2) {
        for (int which = 0; which < 2; which++) {
            size_t               n = which ? 64 : k;
            tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_N_WORKERS, .n_workers = k};
            tfab_stream_t       *s = NULL;
            if (tfab_stream_create(&p, &s) != TFAB_OK)
                return 1;
            bench_t b = {
                .n_tasks = n, .iters = iters, .slots = aligned_alloc(64, n * sizeof(slot_t))};
            if (b.slots == NULL)
                return 1;
            memset(b.slots, 0, n * sizeof(slot_t));
            tfab_stream_enqueue(s, op_bench, &b);
            if (tfab_stream_synchronize(s) != TFAB_OK)
                rc = 1;
            for (size_t i = 0; i < n; i++)
                if (b.slots[i].hits != iters) {
                    fprintf(stderr, "bench_stream: task %zu ran %lu times, want %u\n", i,
                            b.slots[i].hits, iters);
                    rc = 1;
                }
            free(b.slots);
            printf("parallel_for workers=%u tasks=%zu: %.3f us/call\n", k, n, b.us);
            tfab_stream_destroy(s);
        }
    }
    /* cold start: 8 tasks of ~5 us per worker, the stream idle for 1 ms before each op */
    for (unsigned k = 1; k <= kmax; k = k < 2 ? k + 1 : k * 2) {
        tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_N_WORKERS, .n_workers = k};
        tfab_stream_t       *s = NULL;
        if (tfab_stream_create(&p, &s) != TFAB_OK)
            return 1;
        unsigned reps = quick ? 10 : 200;
        cold_t   c    = {.n_tasks = 8 * (size_t)k};
        c.slots       = aligned_alloc(64, c.n_tasks * sizeof(slot_t));
        if (c.slots == NULL)
            return 1;
        memset(c.slots, 0, c.n_tasks * sizeof(slot_t));
        double serial = now_us();
        for (size_t i = 0; i < c.n_tasks; i++)
            task_busy(i, c.slots);
        serial = now_us() - serial;
        for (unsigned r = 0; r < reps; r++) {
            usleep(1000);
            tfab_stream_enqueue(s, op_cold, &c);
            tfab_stream_synchronize(s);
        }
        for (size_t i = 0; i < c.n_tasks; i++)
            if (c.slots[i].hits != reps + 1)
                rc = 1;
        printf("cold parallel_for workers=%u tasks=%zu (%.1f us serial): %.1f us/call\n", k,
               c.n_tasks, serial, c.us / reps);
        free(c.slots);
        tfab_stream_destroy(s);
    }
    /* op round trip: enqueue N no-op ops back to back, then synchronize */
    tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_N_WORKERS | TFAB_STREAM_PARAM_FLAGS |
                                            TFAB_STREAM_PARAM_QUEUE_LEN,
                              .n_workers = 1,
                              .flags     = TFAB_STREAM_BLOCK_WHEN_FULL,
                              .queue_len = 1024};
    tfab_stream_t       *s = NULL;
    if (tfab_stream_create(&p, &s) != TFAB_OK)
        return 1;
    unsigned n  = quick ? 20000 : 1000000;
    double   t0 = now_us();
    for (unsigned i = 0; i < n; i++)
        if (tfab_stream_enqueue(s, op_nop, NULL) != TFAB_OK)
            rc = 1;
    tfab_stream_synchronize(s);
    printf("enqueue+run: %.3f us/op (%u ops)\n", (now_us() - t0) / n, n);
    double t1 = now_us();
    for (unsigned i = 0; i < n / 10; i++) {
        tfab_stream_enqueue(s, op_nop, NULL);
        tfab_stream_synchronize(s);
    }
    printf("enqueue+synchronize round trip: %.3f us\n", (now_us() - t1) / (n / 10));
    tfab_stream_stats_t st;
    tfab_stream_get_stats(s, &st);
    if (st.ops_run != n + n / 10)
        rc = 1;
    tfab_stream_destroy(s);
    return rc;
}

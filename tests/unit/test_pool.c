/* test_pool.c - the memory-region pool: sizes and alignment, exhaustion and recovery,
 * coalescing, fragmentation, bad frees, concurrent alloc/free from several threads with
 * overlap detection, bookkeeping allocation failures, NUMA binding, hugepage policy. */
#include <errno.h>
#include <numaif.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <tfab/tfab.h>

#define MiB (1ull << 20)

static tfab_pool_t *make_pool(size_t size, size_t min_block)
{
    tfab_pool_params_t params = {.field_mask = TFAB_POOL_PARAM_SIZE | TFAB_POOL_PARAM_MIN_BLOCK,
                                 .size = size, .min_block = min_block};
    tfab_pool_t       *pool;
    assert_int_equal(tfab_pool_create(&params, &pool), TFAB_OK);
    return pool;
}

static void test_sizes_alignment(void **state)
{
    tfab_pool_t      *pool = make_pool(64 * MiB, 4096);
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    assert_true(st.size == 64 * MiB && st.used == 0 && st.largest_free == 64 * MiB);
    assert_true(st.fragmentation == 0.0);
    void *a, *b, *c;
    assert_int_equal(tfab_pool_alloc(pool, 1, &a), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pool, 5000, &b), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pool, 3 * MiB, &c), TFAB_OK);
    assert_true(((uintptr_t)a & 4095) == 0);
    assert_true(((uintptr_t)b & 8191) == 0);        /* blocks are aligned to their size */
    assert_true(((uintptr_t)c & (2 * MiB - 1)) == 0); /* ...up to 2 MiB */
    assert_true(tfab_pool_contains(pool, c, 3 * MiB));
    assert_false(tfab_pool_contains(pool, (char *)tfab_pool_base(pool) + 64 * MiB - 8, 16));
    assert_false(tfab_pool_contains(pool, (char *)tfab_pool_base(pool) - 1, 1));
    memset(c, 0xab, 3 * MiB); /* the memory is really there and writable */
    tfab_pool_get_stats(pool, &st);
    assert_true(st.used == 4096 + 8192 + 4 * MiB);
    assert_true(st.requested == 1 + 5000 + 3 * MiB);
    assert_true(st.n_allocs == 3);
    tfab_pool_free(pool, a);
    tfab_pool_free(pool, b);
    tfab_pool_free(pool, c);
    tfab_pool_get_stats(pool, &st);
    assert_true(st.used == 0 && st.requested == 0 && st.largest_free == 64 * MiB);
    assert_int_equal(tfab_pool_alloc(pool, 0, &a), TFAB_ERR_INVALID);
    assert_int_equal(tfab_pool_alloc(pool, 64 * MiB + 1, &a), TFAB_ERR_INVALID);
    tfab_pool_destroy(pool);
}

static void test_exhaustion_recovery(void **state)
{
    tfab_pool_t *pool = make_pool(64 * MiB, 4096);
    void        *blk[16], *x = NULL;
    for (int i = 0; i < 16; i++)
        assert_int_equal(tfab_pool_alloc(pool, 4 * MiB, &blk[i]), TFAB_OK);
    assert_int_equal(tfab_pool_alloc(pool, 1, &x), TFAB_ERR_NOMEM); /* never a silent fallback */
    assert_null(x);
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    assert_true(st.n_failed == 1 && st.used == 64 * MiB && st.largest_free == 0);
    tfab_pool_free(pool, blk[7]);
    assert_int_equal(tfab_pool_alloc(pool, 4 * MiB, &x), TFAB_OK);
    assert_ptr_equal(x, blk[7]);
    for (int i = 0; i < 16; i++)
        tfab_pool_free(pool, i == 7 ? x : blk[i]);
    tfab_pool_get_stats(pool, &st);
    assert_true(st.used == 0 && st.largest_free == 64 * MiB);
    tfab_pool_destroy(pool);
}

static void test_coalesce_and_fragmentation(void **state)
{
    tfab_pool_t *pool = make_pool(1 * MiB, 4096);
    void        *blk[256];
    for (int i = 0; i < 256; i++)
        assert_int_equal(tfab_pool_alloc(pool, 4096, &blk[i]), TFAB_OK);
    /* free every other block: half the pool free, but only in 4 KiB pieces */
    for (int i = 0; i < 256; i += 2)
        tfab_pool_free(pool, blk[i]);
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    assert_true(st.used == 512 * 1024 && st.largest_free == 4096);
    assert_true(st.fragmentation > 0.99 && st.fragmentation < 1.0); /* 1 - 4096/524288 */
    void *x;
    assert_int_equal(tfab_pool_alloc(pool, 8192, &x), TFAB_ERR_NOMEM);
    /* free the rest in a scrambled order: everything coalesces back into one block */
    for (int k = 0; k < 128; k++)
        tfab_pool_free(pool, blk[1 + 2 * ((k * 37) % 128)]);
    tfab_pool_get_stats(pool, &st);
    assert_true(st.used == 0 && st.largest_free == 1 * MiB && st.fragmentation == 0.0);
    tfab_pool_destroy(pool);
}

static char last_log[512];
static void capture(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    snprintf(last_log, sizeof(last_log), "%s", line);
}

static void test_bad_free(void **state)
{
    tfab_pool_t *pool = make_pool(1 * MiB, 4096);
    void        *a;
    assert_int_equal(tfab_pool_alloc(pool, 100, &a), TFAB_OK);
    tfab_log_set_sink(capture, NULL);
    tfab_pool_free(pool, a);
    tfab_pool_free(pool, a); /* double free */
    assert_non_null(strstr(last_log, "not allocated (double free?)"));
    int on_stack;
    tfab_pool_free(pool, &on_stack);
    assert_non_null(strstr(last_log, "not a block of this pool"));
    tfab_pool_free(pool, (char *)tfab_pool_base(pool) + 100); /* inside, misaligned */
    assert_non_null(strstr(last_log, "not a block of this pool"));
    tfab_log_set_sink(NULL, NULL);
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    assert_true(st.n_frees == 1 && st.used == 0 && st.largest_free == 1 * MiB);
    tfab_pool_destroy(pool);
}

/* ---- concurrency: every thread fills its blocks with its own pattern and checks it before
 * freeing; two threads ever sharing bytes would corrupt each other's pattern. */
typedef struct {
    tfab_pool_t *pool;
    unsigned     seed;
    long         ops, corrupt, failed;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    void     *held[32]   = {0};
    size_t    sizes[32]  = {0};
    uint8_t   marks[32]  = {0};
    unsigned  r          = w->seed;
    for (long i = 0; i < w->ops; i++) {
        r          = r * 1103515245u + 12345u;
        unsigned s = (r >> 8) % 32;
        if (held[s]) {
            for (size_t k = 0; k < sizes[s]; k += 61)
                if (((uint8_t *)held[s])[k] != marks[s])
                    w->corrupt++;
            tfab_pool_free(w->pool, held[s]);
            held[s] = NULL;
        } else {
            size_t sz = 64u << ((r >> 16) % 12); /* 64 B .. 128 KiB */
            sz += (r >> 4) % 64;
            if (tfab_pool_alloc(w->pool, sz, &held[s]) != TFAB_OK) {
                held[s] = NULL;
                w->failed++;
                continue;
            }
            sizes[s] = sz;
            marks[s] = (uint8_t)(w->seed * 31 + i);
            memset(held[s], marks[s], sz);
        }
    }
    for (int s = 0; s < 32; s++)
        if (held[s])
            tfab_pool_free(w->pool, held[s]);
    return NULL;
}

static void test_concurrent(void **state)
{
    tfab_pool_t *pool = make_pool(64 * MiB, 64);
    enum { N = 4 };
    pthread_t t[N];
    worker_t  w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker_t){.pool = pool, .seed = 7u + (unsigned)i, .ops = 40000};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    long allocs = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].corrupt, 0);
        assert_int_equal(w[i].failed, 0);
    }
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    allocs = (long)st.n_allocs;
    assert_true(allocs > N * 10000);
    assert_true(st.n_allocs == st.n_frees);
    assert_true(st.used == 0 && st.largest_free == 64 * MiB);
    tfab_pool_destroy(pool);
}

/* ---- bookkeeping allocation failures: the Nth allocation fails, nothing leaks */
typedef struct {
    int fail_at, count, live;
} failing_t;

static void *failing_alloc(size_t size, void *arg)
{
    failing_t *f = arg;
    if (f->count++ == f->fail_at)
        return NULL;
    f->live++;
    return malloc(size);
}
static void failing_free(void *ptr, void *arg)
{
    failing_t *f = arg;
    if (ptr) {
        f->live--;
        free(ptr);
    }
}

static void test_alloc_failures(void **state)
{
    for (int n = 0; n < 8; n++) {
        failing_t          f = {.fail_at = n};
        tfab_allocator_t   a = {failing_alloc, failing_free, &f};
        tfab_pool_params_t p = {.field_mask = TFAB_POOL_PARAM_SIZE | TFAB_POOL_PARAM_ALLOCATOR,
                                .size = 1 * MiB, .allocator = &a};
        tfab_pool_t       *pool = NULL;
        tfab_status_t      st   = tfab_pool_create(&p, &pool);
        if (n < 6) { /* the pool struct + 5 bookkeeping arrays */
            assert_int_equal(st, TFAB_ERR_NOMEM);
            assert_null(pool);
        } else {
            assert_int_equal(st, TFAB_OK);
            tfab_pool_destroy(pool);
        }
        assert_int_equal(f.live, 0);
    }
}

static void test_numa_and_huge(void **state)
{
    tfab_pool_params_t p = {.field_mask = TFAB_POOL_PARAM_SIZE | TFAB_POOL_PARAM_NUMA_NODE,
                            .size = 8 * MiB, .numa_node = 0};
    tfab_pool_t       *pool;
    assert_int_equal(tfab_pool_create(&p, &pool), TFAB_OK);
    for (size_t off = 0; off < 8 * MiB; off += MiB) {
        int node = -1;
        assert_int_equal(get_mempolicy(&node, NULL, 0, (char *)tfab_pool_base(pool) + off,
                                       MPOL_F_NODE | MPOL_F_ADDR), 0);
        assert_int_equal(node, 0);
    }
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    assert_int_equal(st.numa_node, 0);
    tfab_pool_destroy(pool);

    tfab_log_set_sink(capture, NULL);
    p.numa_node = 999;
    assert_int_not_equal(tfab_pool_create(&p, &pool), TFAB_OK);
    assert_non_null(strstr(last_log, "NUMA node 999"));

    tfab_sys_limits_t lim;
    tfab_sys_limits_query(&lim);
    p.field_mask = TFAB_POOL_PARAM_SIZE | TFAB_POOL_PARAM_HUGE;
    p.huge       = TFAB_POOL_HUGE_REQUIRE;
    if (lim.hugepages_free * lim.hugepage_size < 8 * MiB) {
        assert_int_equal(tfab_pool_create(&p, &pool), TFAB_ERR_UNSUPPORTED);
        assert_non_null(strstr(last_log, "/proc/sys/vm/nr_hugepages"));
    } else {
        assert_int_equal(tfab_pool_create(&p, &pool), TFAB_OK);
        tfab_pool_get_stats(pool, &st);
        assert_int_equal(st.hugetlb, 1);
        tfab_pool_destroy(pool);
    }
    tfab_log_set_sink(NULL, NULL);
}

static void test_params(void **state)
{
    tfab_pool_params_t p = {.field_mask = TFAB_POOL_PARAM_MIN_BLOCK, .min_block = 100};
    tfab_pool_t       *pool;
    tfab_log_set_sink(capture, NULL);
    assert_int_equal(tfab_pool_create(&p, &pool), TFAB_ERR_INVALID);
    p = (tfab_pool_params_t){.field_mask = TFAB_POOL_PARAM_SIZE, .size = 0};
    assert_int_equal(tfab_pool_create(&p, &pool), TFAB_ERR_INVALID);
    tfab_log_set_sink(NULL, NULL);
    p = (tfab_pool_params_t){.field_mask = TFAB_POOL_PARAM_SIZE, .size = 3 * MiB};
    assert_int_equal(tfab_pool_create(&p, &pool), TFAB_OK);
    assert_true(tfab_pool_size(pool) == 4 * MiB); /* rounded up to a power of two */
    tfab_pool_note_registration(pool);
    tfab_pool_stats_t st;
    tfab_pool_get_stats(pool, &st);
    assert_true(st.registrations == 1);
    tfab_pool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_alignment),   cmocka_unit_test(test_exhaustion_recovery),
        cmocka_unit_test(test_coalesce_and_fragmentation), cmocka_unit_test(test_bad_free),
        cmocka_unit_test(test_concurrent),        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_numa_and_huge),     cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}

/* test_threads.c - the model's fork-join pool: every task runs exactly once per call, with the
 * workers spinning, sleeping (after idle gaps) and racing the first job after creation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>
#include "model/threads.h"

#define MAX_TASKS 4096

typedef struct counts {
    _Atomic unsigned hits[MAX_TASKS];
} counts_t;

static void hit(size_t task, void *arg)
{
    counts_t *c = arg;
    atomic_fetch_add(&c->hits[task], 1);
}

static void run_and_check(tfab_threads_t *p, counts_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        atomic_store(&c->hits[i], 0);
    tfab_threads_parallel_for(p, n, hit, c);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&c->hits[i]), 1);
}

static void test_pool(void **state)
{
    static counts_t c;
    for (unsigned threads = 1; threads <= 4; threads++) {
        tfab_threads_t *p;
        assert_int_equal(tfab_threads_create(threads, &p), TFAB_OK);
        run_and_check(p, &c, 100); /* at once: workers may not have started yet */
        uint64_t x = 12345;
        for (int round = 0; round < 300; round++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            run_and_check(p, &c, (size_t)(x >> 33) % MAX_TASKS);
        }
        struct timespec gap = {0, 30 * 1000 * 1000}; /* long enough for workers to sleep */
        for (int round = 0; round < 3; round++) {
            nanosleep(&gap, NULL);
            run_and_check(p, &c, 777);
        }
        tfab_threads_parallel_for(p, 0, hit, &c); /* no tasks: returns at once */
        tfab_threads_destroy(p);
    }
    tfab_threads_parallel_for(NULL, 3, hit, &c); /* NULL pool runs inline */
    assert_int_equal(atomic_load(&c.hits[2]), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pool)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

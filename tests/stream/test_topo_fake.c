/* test_topo_fake.c - topology rules on a fake libnuma: holes in node numbers, memoryless and
 * not-allowed nodes merged into the nearest node with memory, the affinity mask applied,
 * and the flat fallbacks. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "stream_int.h"

/* node 0: memory, CPUs 0-1 | node 1: memoryless, CPUs 2-3, nearer to node 2 | no node 3 |
 * node 2: memory, CPUs 4-5 | node 4: memory but not allowed (cpuset), CPUs 6-7, nearer to 2 */
enum { FAKE_MAX_NODE = 4 };
static int fake_available_rc = 0;
static int fake_allow_none   = 0;

static int fake_available(void)
{
    return fake_available_rc;
}
static int fake_max_node(void)
{
    return FAKE_MAX_NODE;
}
static int fake_node_allowed(int n)
{
    return !fake_allow_none && n != 4;
}
static long long fake_node_size(int n, long long *free_p)
{
    static const long long size[] = {4LL << 30, 0, 8LL << 30, -1, 2LL << 30};
    *free_p                       = size[n] > 0 ? size[n] / 2 : 0;
    return size[n];
}
static int fake_node_cpus(int n, int *cpus, int max)
{
    if (n == 3)
        return -1;
    cpus[0] = 2 * (n < 3 ? n : n - 1);
    cpus[1] = cpus[0] + 1;
    return 2;
}
static int fake_distance(int a, int b)
{
    static const int d[5][5] = {
        {10, 20, 20, -1, 30}, {20, 10, 15, -1, 25}, {20, 15, 10, -1, 21},
        {-1, -1, -1, -1, -1}, {30, 25, 21, -1, 10},
    };
    return d[a][b];
}
static const topo_source_t fake = {fake_available, fake_max_node,  fake_node_allowed,
                                   fake_node_size, fake_node_cpus, fake_distance};

static void count_sink(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    ++*(int *)arg;
}

static tfab_numa_topo_t *build(const int *allowed, int n, unsigned flags)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < n; i++)
        CPU_SET(allowed[i], &set);
    tfab_numa_topo_t *t = NULL;
    assert_int_equal(topo_build(&fake, flags, &set, sizeof(set), CPU_SETSIZE, &t), TFAB_OK);
    return t;
}

static void expect_cpus(const tfab_numa_node_t *n, const char *list)
{
    char buf[64];
    tfab_cpulist_format(n->cpus, n->n_cpus, buf, sizeof(buf));
    assert_string_equal(buf, list);
}

static void test_merge_and_affinity(void **state)
{
    const int    all[] = {0, 1, 2, 3, 4, 5, 6, 7};
    tfab_numa_topo_t *t     = build(all, 8, 0);
    assert_int_equal(t->numa, 1);
    assert_int_equal(t->n_nodes, 2); /* 0 and 2: the nodes with memory we may use */
    assert_int_equal(t->nodes[0].id, 0);
    assert_int_equal(t->nodes[1].id, 2);
    expect_cpus(&t->nodes[0], "0-1");
    expect_cpus(&t->nodes[1], "2-7"); /* memoryless node 1 and not-allowed node 4 merged */
    assert_int_equal(t->nodes[1].mem_total, 8LL << 30);
    assert_int_equal(t->nodes[1].mem_free, 4LL << 30);
    assert_int_equal(t->n_cpus, 8);
    assert_null(tfab_numa_topo_node(t, 1));
    tfab_numa_topo_free(t);

    /* taskset -c 1,3,6: node 0 keeps 1, node 2 gets 3 and 6 */
    const int some[] = {1, 3, 6};
    t                = build(some, 3, 0);
    assert_int_equal(t->n_nodes, 2);
    expect_cpus(&t->nodes[0], "1");
    expect_cpus(&t->nodes[1], "3,6");
    assert_int_equal(t->n_cpus, 3);
    tfab_numa_topo_free(t);

    /* taskset -c 4: node 0 is listed with its memory but no CPU */
    const int one[] = {4};
    t               = build(one, 1, 0);
    assert_int_equal(t->n_nodes, 2);
    assert_int_equal(t->nodes[0].n_cpus, 0);
    expect_cpus(&t->nodes[1], "4");
    tfab_numa_topo_free(t);
}

static void test_flat_fallbacks(void **state)
{
    const int all[]   = {0, 1, 2, 3, 4, 5, 6, 7};
    fake_available_rc = -1; /* libnuma: NUMA not available */
    tfab_numa_topo_t *t    = build(all, 8, 0);
    fake_available_rc = 0;
    assert_int_equal(t->numa, 0);
    assert_int_equal(t->n_nodes, 1);
    assert_int_equal(t->nodes[0].id, 0);
    expect_cpus(&t->nodes[0], "0-7");
    assert_string_equal(t->why, "libnuma: NUMA not available on this host");
    tfab_numa_topo_free(t);

    fake_allow_none = 1; /* no node with memory may be used */
    t               = build(all, 8, 0);
    fake_allow_none = 0;
    assert_int_equal(t->numa, 0);
    assert_int_equal(t->n_nodes, 1);
    expect_cpus(&t->nodes[0], "0-7");
    assert_string_equal(t->why, "libnuma: no node with memory is allowed");
    tfab_numa_topo_free(t);

    /* CPUs no node claims (sysfs and the mask disagree): flat, from the mask */
    const int stray[] = {9, 10};
    t                 = build(stray, 2, 0);
    assert_int_equal(t->numa, 0);
    expect_cpus(&t->nodes[0], "9-10");
    assert_string_equal(t->why, "libnuma: no node holds an allowed CPU");
    tfab_numa_topo_free(t);

    t = build(all, 8, TFAB_NUMA_TOPO_FLAT);
    assert_int_equal(t->numa, 0);
    expect_cpus(&t->nodes[0], "0-7");
    tfab_numa_topo_free(t);

    /* an empty mask is an error */
    cpu_set_t none;
    CPU_ZERO(&none);
    tfab_numa_topo_t *e     = NULL;
    int          lines = 0;
    tfab_log_set_sink(count_sink, &lines);
    assert_int_equal(topo_build(&fake, 0, &none, sizeof(none), CPU_SETSIZE, &e), TFAB_ERR_NODEV);
    tfab_log_set_sink(NULL, NULL);
    assert_int_equal(lines, 1); /* said once why */
    assert_null(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_and_affinity),
        cmocka_unit_test(test_flat_fallbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_stream_numa.c - one stream per NUMA node: its workers run only on that node's CPUs and
 * its scratch lies on that node. Runs on this host, under taskset (--cpus), and in a soft-RoCE
 * guest with two emulated nodes (--nodes 2). Prints one line per node for the scripts. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <numa.h>
#include <numaif.h>
#include <cmocka.h>
#include <tfab/stream.h>

static int         want_nodes = -1;   /* --nodes N: exactly N nodes with CPUs */
static const char *want_cpus  = NULL; /* --cpus LIST: the allowed CPUs, as tfab formats them */

enum { TASKS = 4096, PAGES = 16 };
typedef struct probe {
    int    task_cpu[TASKS];
    int    leader_cpu;
    int    page_node[PAGES];
    size_t scratch_size;
} probe_t;

static void task_probe(size_t i, void *arg)
{
    probe_t *p     = arg;
    p->task_cpu[i] = sched_getcpu();
}

static tfab_status_t op_probe(tfab_stream_ctx_t *ctx, void *arg)
{
    probe_t *p    = arg;
    p->leader_cpu = sched_getcpu();
    tfab_stream_parallel_for(ctx, TASKS, task_probe, p);
    char *mem = tfab_stream_scratch(tfab_stream_ctx_stream(ctx), &p->scratch_size);
    for (int i = 0; i < PAGES; i++) {
        char *a = mem + (p->scratch_size / PAGES) * (size_t)i;
        a[0]    = (char)i;
        if (get_mempolicy(&p->page_node[i], NULL, 0, a, MPOL_F_NODE | MPOL_F_ADDR) != 0)
            p->page_node[i] = -2;
    }
    return TFAB_OK;
}

static int in_list(int v, const int *l, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (l[i] == v)
            return 1;
    return 0;
}

static void test_streams_per_node(void **state)
{
    tfab_numa_topo_t *t = NULL;
    assert_int_equal(tfab_numa_topo_query(NULL, &t), TFAB_OK);
    unsigned with_cpus = 0;
    int      all[4096];
    unsigned n_all = 0;
    for (unsigned i = 0; i < t->n_nodes; i++) {
        const tfab_numa_node_t *nd = &t->nodes[i];
        char                    list[256];
        tfab_cpulist_format(nd->cpus, nd->n_cpus, list, sizeof(list));
        printf("node %d cpus %s mem %llu MiB\n", nd->id, list[0] ? list : "-",
               (unsigned long long)(nd->mem_total >> 20));
        with_cpus += nd->n_cpus > 0;
        for (unsigned c = 0; c < nd->n_cpus && n_all < 4096; c++)
            all[n_all++] = nd->cpus[c];
    }
    printf("topology: %u nodes with CPUs, numa=%d%s%s\n", with_cpus, t->numa, t->why[0] ? ", " : "",
           t->why);
    if (want_nodes >= 0) {
        assert_int_equal(t->numa, 1);
        assert_int_equal(with_cpus, (unsigned)want_nodes);
    }
    if (want_cpus) {
        for (unsigned a = 1; a < n_all; a++) /* nodes may interleave CPU numbers */
            for (unsigned b = a; b > 0 && all[b - 1] > all[b]; b--) {
                int x      = all[b];
                all[b]     = all[b - 1];
                all[b - 1] = x;
            }
        char list[256];
        tfab_cpulist_format(all, n_all, list, sizeof(list));
        assert_string_equal(list, want_cpus);
    }

    /* every node at once: one stream each, with one more worker than CPUs (helpers share) */
    tfab_stream_t *s[64]  = {0};
    probe_t       *pr[64] = {0};
    for (unsigned i = 0; i < t->n_nodes && i < 64; i++) {
        const tfab_numa_node_t *nd = &t->nodes[i];
        if (nd->n_cpus == 0)
            continue;
        tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_NODE |
                                                TFAB_STREAM_PARAM_N_WORKERS |
                                                TFAB_STREAM_PARAM_SCRATCH,
                                  .node         = nd->id,
                                  .n_workers    = nd->n_cpus + 1,
                                  .scratch_size = 2u << 20};
        assert_int_equal(tfab_stream_create(&p, &s[i]), TFAB_OK);
        pr[i] = calloc(1, sizeof(probe_t));
        assert_int_equal(tfab_stream_enqueue(s[i], op_probe, pr[i]), TFAB_OK);
    }
    for (unsigned i = 0; i < t->n_nodes && i < 64; i++) {
        const tfab_numa_node_t *nd = &t->nodes[i];
        if (s[i] == NULL)
            continue;
        assert_int_equal(tfab_stream_synchronize(s[i]), TFAB_OK);
        probe_t *p = pr[i];
        int      seen[4096];
        unsigned n_seen = 0;
        assert_true(in_list(p->leader_cpu, nd->cpus, nd->n_cpus));
        seen[n_seen++] = p->leader_cpu;
        for (unsigned k = 0; k < TASKS; k++) {
            int c = p->task_cpu[k];
            if (!in_list(c, nd->cpus, nd->n_cpus))
                fail_msg("node %d: task %u ran on CPU %d, not on the node", nd->id, k, c);
            if (t->numa)
                assert_int_equal(numa_node_of_cpu(c), nd->id);
            if (!in_list(c, seen, n_seen) && n_seen < 4096)
                seen[n_seen++] = c;
        }
        for (int k = 0; k < PAGES; k++)
            if (p->page_node[k] != (t->numa ? nd->id : 0))
                fail_msg("node %d: scratch page %d is on node %d", nd->id, k, p->page_node[k]);
        for (unsigned a = 1; a < n_seen; a++)
            for (unsigned b = a; b > 0 && seen[b - 1] > seen[b]; b--) {
                int x       = seen[b];
                seen[b]     = seen[b - 1];
                seen[b - 1] = x;
            }
        char ran[256];
        tfab_cpulist_format(seen, n_seen, ran, sizeof(ran));
        printf("node %d: %u workers ran only on its CPUs (%s); scratch %zu KiB on node %d\n",
               nd->id, tfab_stream_n_workers(s[i]), ran, p->scratch_size >> 10, p->page_node[0]);
        tfab_stream_destroy(s[i]);
        free(p);
    }
    tfab_numa_topo_free(t);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
            want_nodes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cpus") == 0 && i + 1 < argc)
            want_cpus = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--nodes N] [--cpus LIST]\n", argv[0]);
            return 2;
        }
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams_per_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

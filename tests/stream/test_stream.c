/* test_stream.c - compute streams: topology, FIFO order, full queue, events across streams,
 * callbacks, parallel_for coverage, pinning, scratch placement, errors, concurrent enqueuers,
 * destroy. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <numa.h>
#include <numaif.h>
#include <cmocka.h>
#include <tfab/log.h>
#include <tfab/stream.h>

/* ---- helpers ---- */

static tfab_numa_topo_t *topo_get(void)
{
    tfab_numa_topo_t *t = NULL;
    assert_int_equal(tfab_numa_topo_query(NULL, &t), TFAB_OK);
    assert_non_null(t);
    return t;
}

/* the first node with CPUs */
static const tfab_numa_node_t *cpu_node(const tfab_numa_topo_t *t)
{
    for (unsigned i = 0; i < t->n_nodes; i++)
        if (t->nodes[i].n_cpus)
            return &t->nodes[i];
    fail_msg("no node with CPUs");
    return NULL;
}

static tfab_stream_t *mk_stream(int node, unsigned k, unsigned qlen, unsigned flags)
{
    tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_NODE | TFAB_STREAM_PARAM_N_WORKERS |
                                            TFAB_STREAM_PARAM_QUEUE_LEN | TFAB_STREAM_PARAM_FLAGS,
                              .node      = node,
                              .n_workers = k,
                              .queue_len = qlen,
                              .flags     = flags};
    tfab_stream_t       *s = NULL;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_OK);
    return s;
}

/* a gate an op blocks on until the test opens it */
typedef struct gate {
    pthread_mutex_t m;
    pthread_cond_t  c;
    int             open, entered;
} gate_t;
#define GATE_INIT                                                                                  \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0                                  \
    }

static tfab_status_t op_gate(tfab_stream_ctx_t *ctx, void *arg)
{
    gate_t *g = arg;
    pthread_mutex_lock(&g->m);
    g->entered = 1;
    pthread_cond_broadcast(&g->c);
    while (!g->open)
        pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
    return TFAB_OK;
}
static void gate_wait_entered(gate_t *g)
{
    pthread_mutex_lock(&g->m);
    while (!g->entered)
        pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
}
static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->m);
    g->open = 1;
    pthread_cond_broadcast(&g->c);
    pthread_mutex_unlock(&g->m);
}

/* counts log lines at or above a level instead of printing them */
static atomic_int log_lines;
static void count_sink(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    atomic_fetch_add(&log_lines, 1);
}
static tfab_log_level_t log_capture(void)
{
    tfab_log_level_t old = tfab_log_get_level();
    atomic_store(&log_lines, 0);
    tfab_log_set_level(TFAB_LOG_WARN);
    tfab_log_set_sink(count_sink, NULL);
    return old;
}
static int log_release(tfab_log_level_t old)
{
    tfab_log_set_sink(NULL, NULL);
    tfab_log_set_level(old);
    return atomic_load(&log_lines);
}

/* ---- topology ---- */

static void test_topology(void **state)
{
    tfab_numa_topo_t *t = topo_get();
    cpu_set_t    aff;
    assert_int_equal(sched_getaffinity(0, sizeof(aff), &aff), 0);
    assert_true(t->n_nodes >= 1);
    assert_int_equal(t->n_cpus, (unsigned)CPU_COUNT(&aff));
    unsigned sum = 0;
    for (unsigned i = 0; i < t->n_nodes; i++) {
        const tfab_numa_node_t *n = &t->nodes[i];
        if (i)
            assert_true(n->id > t->nodes[i - 1].id);
        assert_true(n->mem_total > 0);
        assert_true(n->mem_free <= n->mem_total);
        for (unsigned c = 0; c < n->n_cpus; c++) {
            assert_true(CPU_ISSET(n->cpus[c], &aff));
            if (c)
                assert_true(n->cpus[c] > n->cpus[c - 1]);
            if (t->numa && numa_node_size64(numa_node_of_cpu(n->cpus[c]), NULL) > 0)
                assert_int_equal(numa_node_of_cpu(n->cpus[c]), n->id);
        }
        sum += n->n_cpus;
        assert_ptr_equal(tfab_numa_topo_node(t, n->id), n);
    }
    assert_int_equal(sum, t->n_cpus);
    assert_null(tfab_numa_topo_node(t, 100000));
    assert_int_equal(t->numa, numa_available() >= 0);

    /* the fallback: one node 0 with every allowed CPU */
    tfab_numa_topo_params_t fp = {.field_mask = TFAB_NUMA_TOPO_PARAM_FLAGS, .flags = TFAB_NUMA_TOPO_FLAT};
    tfab_numa_topo_t       *f  = NULL;
    assert_int_equal(tfab_numa_topo_query(&fp, &f), TFAB_OK);
    assert_int_equal(f->numa, 0);
    assert_int_equal(f->n_nodes, 1);
    assert_int_equal(f->nodes[0].id, 0);
    assert_int_equal(f->nodes[0].n_cpus, (unsigned)CPU_COUNT(&aff));
    assert_int_equal(f->n_cpus, t->n_cpus);
    assert_true(f->nodes[0].mem_total > 0);
    assert_string_equal(f->why, "flat topology requested");

    /* a stream placed by the flat topology: no NUMA placement for the scratch */
    tfab_stream_params_t sp = {.field_mask = TFAB_STREAM_PARAM_TOPO | TFAB_STREAM_PARAM_N_WORKERS,
                               .topo       = f,
                               .n_workers  = 1};
    tfab_stream_t       *s  = NULL;
    assert_int_equal(tfab_stream_create(&sp, &s), TFAB_OK);
    assert_int_equal(tfab_stream_node(s), 0);
    tfab_stream_destroy(s);
    tfab_numa_topo_free(f);
    tfab_numa_topo_free(t);

    fp.flags             = 1u << 7;
    tfab_log_level_t old = log_capture();
    assert_int_equal(tfab_numa_topo_query(&fp, &f), TFAB_ERR_INVALID);
    assert_int_equal(log_release(old), 1);
}

static void test_cpulist_format(void **state)
{
    char      buf[64];
    const int a[] = {0, 1, 2, 3, 8, 10, 11};
    assert_int_equal(tfab_cpulist_format(a, 7, buf, sizeof(buf)), strlen("0-3,8,10-11"));
    assert_string_equal(buf, "0-3,8,10-11");
    assert_int_equal(tfab_cpulist_format(a, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    const int b[] = {5};
    tfab_cpulist_format(b, 1, buf, sizeof(buf));
    assert_string_equal(buf, "5");
    /* truncation: terminated, and the needed length is returned */
    char small[5];
    assert_int_equal(tfab_cpulist_format(a, 7, small, sizeof(small)), 11);
    assert_string_equal(small, "0-3");
}

/* ---- FIFO order ---- */

typedef struct seq_log {
    unsigned *v;
    unsigned  n;
} seq_log_t;
typedef struct seq_op {
    seq_log_t *log;
    unsigned   value;
} seq_op_t;

static tfab_status_t op_append(tfab_stream_ctx_t *ctx, void *arg)
{
    seq_op_t *o            = arg;
    o->log->v[o->log->n++] = o->value; /* ops of one stream never overlap: no lock */
    return TFAB_OK;
}

static void test_order_10000(void **state)
{
    enum { N = 10000 };
    tfab_numa_topo_t   *t   = topo_get();
    tfab_stream_t *s   = mk_stream(cpu_node(t)->id, 2, 256, TFAB_STREAM_BLOCK_WHEN_FULL);
    seq_log_t      lg  = {calloc(N, sizeof(unsigned)), 0};
    seq_op_t      *ops = calloc(N, sizeof(*ops));
    for (unsigned i = 0; i < N; i++) {
        ops[i] = (seq_op_t){&lg, i};
        assert_int_equal(tfab_stream_enqueue(s, op_append, &ops[i]), TFAB_OK);
    }
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    assert_int_equal(tfab_stream_query(s), TFAB_OK);
    assert_int_equal(lg.n, N);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(lg.v[i], i);
    tfab_stream_stats_t st;
    tfab_stream_get_stats(s, &st);
    assert_int_equal(st.ops_run, N);
    assert_int_equal(st.ops_skipped, 0);
    assert_int_equal(st.enqueue_busy, 0);
    tfab_stream_destroy(s);
    free(ops);
    free(lg.v);
    tfab_numa_topo_free(t);
}

/* ---- a full queue: TFAB_ERR_BUSY without the blocking flag ---- */

static atomic_uint   counter;
static tfab_status_t op_count(tfab_stream_ctx_t *ctx, void *arg)
{
    atomic_fetch_add(&counter, 1);
    return TFAB_OK;
}

static void test_queue_full(void **state)
{
    tfab_numa_topo_t   *t = topo_get();
    tfab_stream_t *s = mk_stream(cpu_node(t)->id, 1, 3, 0); /* rounded up to 4 slots */
    gate_t         g = GATE_INIT;
    atomic_store(&counter, 0);
    assert_int_equal(tfab_stream_enqueue(s, op_gate, &g), TFAB_OK);
    gate_wait_entered(&g); /* the leader popped it: 4 free slots */
    unsigned      accepted = 0;
    tfab_status_t st;
    while ((st = tfab_stream_enqueue(s, op_count, NULL)) == TFAB_OK)
        accepted++;
    assert_int_equal(st, TFAB_ERR_BUSY);
    assert_int_equal(accepted, 4);
    assert_int_equal(tfab_stream_query(s), TFAB_INPROGRESS);
    gate_open(&g);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    assert_int_equal(atomic_load(&counter), 4);
    tfab_stream_stats_t ss;
    tfab_stream_get_stats(s, &ss);
    assert_int_equal(ss.enqueue_busy, 1);
    assert_int_equal(ss.ops_run, 5);
    assert_int_equal(tfab_stream_enqueue(s, NULL, NULL), TFAB_ERR_INVALID);
    tfab_stream_destroy(s);
    tfab_numa_topo_free(t);
}

/* ---- events: a DAG across three streams ---- */

enum { DAG_N = 200 };
typedef struct dag {
    long x[DAG_N], y[DAG_N], z[DAG_N];
    int  bad;
} dag_t;
typedef struct dag_op {
    dag_t *d;
    int    i;
} dag_op_t;

static tfab_status_t op_dag_a(tfab_stream_ctx_t *ctx, void *arg)
{
    dag_op_t *o = arg;
    if (o->i % 16 == 0)
        usleep(500); /* let B and C run ahead if the waits were broken */
    o->d->x[o->i] = 3L * o->i + 1;
    return TFAB_OK;
}
static tfab_status_t op_dag_b(tfab_stream_ctx_t *ctx, void *arg)
{
    dag_op_t *o = arg;
    if (o->d->x[o->i] != 3L * o->i + 1)
        o->d->bad = 1;
    o->d->y[o->i] = o->d->x[o->i] * 2;
    return TFAB_OK;
}
static tfab_status_t op_dag_c(tfab_stream_ctx_t *ctx, void *arg)
{
    dag_op_t *o   = arg;
    o->d->z[o->i] = o->d->x[o->i] + o->d->y[o->i];
    return TFAB_OK;
}

static void test_events_dag(void **state)
{
    tfab_numa_topo_t   *t  = topo_get();
    int            nd = cpu_node(t)->id;
    tfab_stream_t *a  = mk_stream(nd, 1, 1024, TFAB_STREAM_BLOCK_WHEN_FULL);
    tfab_stream_t *b  = mk_stream(nd, 1, 1024, TFAB_STREAM_BLOCK_WHEN_FULL);
    tfab_stream_t *c  = mk_stream(nd, 1, 1024, TFAB_STREAM_BLOCK_WHEN_FULL);
    tfab_event_t  *ea, *eb, *never;
    assert_int_equal(tfab_event_create(NULL, &ea), TFAB_OK);
    assert_int_equal(tfab_event_create(NULL, &eb), TFAB_OK);
    assert_int_equal(tfab_event_create(NULL, &never), TFAB_OK);
    tfab_event_params_t ep = {.field_mask = 0};
    tfab_event_t       *e2 = NULL;
    assert_int_equal(tfab_event_create(&ep, &e2), TFAB_OK);
    tfab_event_destroy(e2);
    /* never recorded: complete, and waiting on it is a no-op */
    assert_int_equal(tfab_event_query(never), TFAB_OK);
    assert_int_equal(tfab_event_synchronize(never), TFAB_OK);
    assert_int_equal(tfab_stream_wait_event(c, never), TFAB_OK);

    dag_t    *d   = calloc(1, sizeof(*d));
    dag_op_t *ops = calloc(DAG_N, sizeof(*ops));
    gate_t    g   = GATE_INIT;
    assert_int_equal(tfab_stream_enqueue(a, op_gate, &g), TFAB_OK); /* hold A back */
    for (int i = 0; i < DAG_N; i++) {
        ops[i] = (dag_op_t){d, i};
        /* A: x; B: y = 2x after A; C: z = x + y after A and B (events re-recorded each time) */
        assert_int_equal(tfab_stream_enqueue(a, op_dag_a, &ops[i]), TFAB_OK);
        assert_int_equal(tfab_event_record(ea, a), TFAB_OK);
        assert_int_equal(tfab_stream_wait_event(b, ea), TFAB_OK);
        assert_int_equal(tfab_stream_enqueue(b, op_dag_b, &ops[i]), TFAB_OK);
        assert_int_equal(tfab_event_record(eb, b), TFAB_OK);
        assert_int_equal(tfab_stream_wait_event(c, ea), TFAB_OK);
        assert_int_equal(tfab_stream_wait_event(c, eb), TFAB_OK);
        assert_int_equal(tfab_stream_enqueue(c, op_dag_c, &ops[i]), TFAB_OK);
        if (i == 0) {
            /* A is held: ea is pending; eb cannot be re-recorded on another stream now */
            assert_int_equal(tfab_event_query(ea), TFAB_INPROGRESS);
            assert_int_equal(tfab_event_record(ea, c), TFAB_ERR_BUSY);
        }
    }
    usleep(2000);
    assert_int_equal(tfab_stream_query(c), TFAB_INPROGRESS); /* C waits, the caller does not */
    assert_int_equal(d->z[0], 0);
    gate_open(&g);
    tfab_event_t *ec;
    assert_int_equal(tfab_event_create(NULL, &ec), TFAB_OK);
    assert_int_equal(tfab_event_record(ec, c), TFAB_OK);
    tfab_event_destroy(ea); /* still referenced by queued records/waits: freed later */
    assert_int_equal(tfab_event_synchronize(ec), TFAB_OK);
    assert_int_equal(tfab_event_query(ec), TFAB_OK);
    assert_int_equal(tfab_event_query(eb), TFAB_OK);
    assert_int_equal(d->bad, 0);
    for (int i = 0; i < DAG_N; i++) {
        assert_int_equal(d->x[i], 3L * i + 1);
        assert_int_equal(d->y[i], 2 * (3L * i + 1));
        assert_int_equal(d->z[i], 3 * (3L * i + 1));
    }
    tfab_event_destroy(eb);
    tfab_event_destroy(ec);
    tfab_event_destroy(never);
    tfab_stream_destroy(a);
    tfab_stream_destroy(b);
    tfab_stream_destroy(c);
    free(ops);
    free(d);
    tfab_numa_topo_free(t);
}

/* ---- callbacks run in order, after all prior work ---- */

typedef struct cb_log {
    int           v[64];
    tfab_status_t st[64];
    tfab_status_t sync_st[64];
    int           worker[64];
    int           n;
} cb_log_t;
typedef struct cb_item {
    cb_log_t *lg;
    int       tag;
} cb_item_t;
static tfab_status_t op_tag(tfab_stream_ctx_t *ctx, void *arg)
{
    cb_item_t *it          = arg;
    it->lg->v[it->lg->n++] = it->tag;
    return TFAB_OK;
}
static void cb_tag(tfab_stream_t *s, tfab_status_t st, void *arg)
{
    cb_item_t *it              = arg;
    it->lg->st[it->lg->n]      = st;
    it->lg->worker[it->lg->n]  = tfab_stream_worker_index(); /* the leader: 0 */
    it->lg->sync_st[it->lg->n] = tfab_stream_synchronize(s); /* would deadlock: refused */
    it->lg->v[it->lg->n++]     = -it->tag;
}

static void test_callbacks_order(void **state)
{
    tfab_numa_topo_t     *t  = topo_get();
    tfab_stream_t   *s  = mk_stream(cpu_node(t)->id, 2, 64, 0);
    cb_log_t         lg = {0};
    cb_item_t        it[30];
    tfab_log_level_t old = log_capture();
    int              expect[30];
    for (int i = 0; i < 30; i++) {
        it[i] = (cb_item_t){&lg, i + 1};
        if (i % 3 == 2) {
            assert_int_equal(tfab_stream_add_callback(s, cb_tag, &it[i]), TFAB_OK);
            expect[i] = -(i + 1);
        } else {
            assert_int_equal(tfab_stream_enqueue(s, op_tag, &it[i]), TFAB_OK);
            expect[i] = i + 1;
        }
    }
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    assert_int_equal(log_release(old), 10); /* each refused synchronize said why */
    assert_int_equal(lg.n, 30);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(lg.v[i], expect[i]);
        if (expect[i] < 0) {
            assert_int_equal(lg.st[i], TFAB_OK);
            assert_int_equal(lg.worker[i], 0);
            assert_int_equal(lg.sync_st[i], TFAB_ERR_INVALID);
        }
    }
    tfab_stream_stats_t ss;
    tfab_stream_get_stats(s, &ss);
    assert_int_equal(ss.callbacks_run, 10);
    assert_int_equal(ss.ops_run, 20);
    tfab_stream_destroy(s);
    tfab_numa_topo_free(t);
}

/* ---- parallel_for covers every index exactly once ---- */

typedef struct pf_job {
    atomic_uint *hits;
    size_t       n;
    unsigned     k;
    int          bad_worker;
    void        *ctx;
} pf_job_t;

static void task_hit(size_t i, void *arg)
{
    pf_job_t *j = arg;
    atomic_fetch_add_explicit(&j->hits[i], 1, memory_order_relaxed);
    int w = tfab_stream_worker_index();
    if (w < 0 || (unsigned)w >= j->k)
        j->bad_worker = 1; /* benign race: only ever set to 1 */
}

static tfab_status_t op_pf(tfab_stream_ctx_t *ctx, void *arg)
{
    pf_job_t              *j  = arg;
    tfab_parallel_for_fn_t pf = tfab_stream_parallel_for; /* the model's function-pointer shape */
    if (ctx != tfab_stream_get_ctx(tfab_stream_ctx_stream(ctx)))
        j->bad_worker = 1; /* the stored ctx is the one ops get */
    pf(ctx, j->n, task_hit, j);
    return TFAB_OK;
}

static void check_hits(pf_job_t *j)
{
    for (size_t i = 0; i < j->n; i++)
        if (atomic_load(&j->hits[i]) != 1)
            fail_msg("n=%zu k=%u: task %zu ran %u times", j->n, j->k, i, atomic_load(&j->hits[i]));
}

static void test_parallel_for_cover(void **state)
{
    tfab_numa_topo_t *t    = topo_get();
    unsigned     ks[] = {1, 2, 3};
    for (unsigned ki = 0; ki < 3; ki++) {
        unsigned       k    = ks[ki];
        tfab_stream_t *s    = mk_stream(cpu_node(t)->id, k, 512, TFAB_STREAM_BLOCK_WHEN_FULL);
        size_t         ns[] = {0, 1, k > 1 ? k - 1 : 0, k, k + 1, 7, 64, 1000, 4097, 1000000};
        for (unsigned ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
            pf_job_t j = {calloc(ns[ni] + 1, sizeof(atomic_uint)), ns[ni], k, 0, NULL};
            assert_int_equal(tfab_stream_enqueue(s, op_pf, &j), TFAB_OK);
            assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
            check_hits(&j);
            assert_int_equal(atomic_load(&j.hits[ns[ni]]), 0); /* nothing past the end */
            assert_int_equal(j.bad_worker, 0);
            free(j.hits);
        }
        /* many consecutive ops, queued back to back, each with its own n */
        enum { M = 300 };
        pf_job_t *jobs = calloc(M, sizeof(*jobs));
        for (unsigned m = 0; m < M; m++) {
            jobs[m] = (pf_job_t){calloc(m % 97 + 1, sizeof(atomic_uint)), m % 97, k, 0, NULL};
            assert_int_equal(tfab_stream_enqueue(s, op_pf, &jobs[m]), TFAB_OK);
        }
        assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
        for (unsigned m = 0; m < M; m++) {
            check_hits(&jobs[m]);
            assert_int_equal(jobs[m].bad_worker, 0);
            free(jobs[m].hits);
        }
        free(jobs);
        tfab_stream_stats_t ss;
        tfab_stream_get_stats(s, &ss);
        assert_int_equal(ss.ops_run, 10 + M);
        if (k == 1)
            assert_int_equal(ss.parallel_fors, 0); /* always inline */
        else
            assert_true(ss.parallel_fors >= M - 10); /* all but n <= 1 used the team */
        tfab_stream_destroy(s);
    }
    /* outside any stream: inline, in order */
    pf_job_t j = {calloc(100, sizeof(atomic_uint)), 100, 1, 0, NULL};
    tfab_stream_parallel_for(NULL, 100, task_hit, &j);
    check_hits(&j);
    assert_int_equal(j.bad_worker, 1); /* ran on this thread, which is no worker */
    /* a stored ctx used off the leader: inline too, still complete */
    tfab_stream_t *s = mk_stream(cpu_node(t)->id, 2, 8, 0);
    memset(j.hits, 0, 100 * sizeof(atomic_uint));
    j.bad_worker = 0;
    tfab_stream_parallel_for(tfab_stream_get_ctx(s), 100, task_hit, &j);
    check_hits(&j);
    assert_int_equal(j.bad_worker, 1);
    tfab_stream_stats_t ss;
    tfab_stream_get_stats(s, &ss);
    assert_int_equal(ss.parallel_fors, 0);
    tfab_stream_destroy(s);
    free(j.hits);
    tfab_numa_topo_free(t);
}

/* nested parallel_for from inside a task runs inline and still covers everything */
typedef struct nest {
    void       *ctx;
    atomic_uint hits[16][16];
} nest_t;
typedef struct nest_row {
    nest_t *n;
    size_t  row;
} nest_row_t;
static void task_inner(size_t i, void *arg)
{
    nest_row_t *r = arg;
    atomic_fetch_add(&r->n->hits[r->row][i], 1);
}
static void task_outer(size_t row, void *arg)
{
    nest_t    *n = arg;
    nest_row_t r = {n, row};
    tfab_stream_parallel_for(n->ctx, 16, task_inner, &r);
}
static tfab_status_t op_nest(tfab_stream_ctx_t *ctx, void *arg)
{
    nest_t *n = arg;
    n->ctx    = ctx;
    tfab_stream_parallel_for(ctx, 16, task_outer, n);
    return TFAB_OK;
}
static void test_parallel_for_nested(void **state)
{
    tfab_numa_topo_t   *t = topo_get();
    tfab_stream_t *s = mk_stream(cpu_node(t)->id, 2, 8, 0);
    nest_t        *n = calloc(1, sizeof(*n));
    assert_int_equal(tfab_stream_enqueue(s, op_nest, n), TFAB_OK);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    for (int r = 0; r < 16; r++)
        for (int i = 0; i < 16; i++)
            assert_int_equal(atomic_load(&n->hits[r][i]), 1);
    free(n);
    tfab_stream_destroy(s);
    tfab_numa_topo_free(t);
}

/* ---- pinning: every task runs on its worker's CPU, inside the node ---- */

enum { PIN_TASKS = 20000 };
typedef struct pin_job {
    int cpu[PIN_TASKS];
    int worker[PIN_TASKS];
    int leader_cpu;
} pin_job_t;
static void task_cpu(size_t i, void *arg)
{
    pin_job_t *j = arg;
    j->cpu[i]    = sched_getcpu();
    j->worker[i] = tfab_stream_worker_index();
}
static tfab_status_t op_pin(tfab_stream_ctx_t *ctx, void *arg)
{
    pin_job_t *j  = arg;
    j->leader_cpu = sched_getcpu();
    tfab_stream_parallel_for(ctx, PIN_TASKS, task_cpu, j);
    return TFAB_OK;
}

static int in_list(int v, const int *l, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (l[i] == v)
            return 1;
    return 0;
}

static void test_pinning(void **state)
{
    tfab_numa_topo_t *t = topo_get();
    for (unsigned ni = 0; ni < t->n_nodes; ni++) {
        const tfab_numa_node_t *node = &t->nodes[ni];
        if (node->n_cpus == 0)
            continue;
        for (int mode = 0; mode < 2; mode++) {
            unsigned k = node->n_cpus + (mode ? 1 : 0); /* mode 1: oversubscribed, whole node */
            tfab_stream_t *s = mk_stream(node->id, k, 16, mode ? TFAB_STREAM_PIN_NODE : 0);
            assert_int_equal(tfab_stream_node(s), node->id);
            assert_int_equal(tfab_stream_n_workers(s), k);
            pin_job_t *j = calloc(1, sizeof(*j));
            assert_int_equal(tfab_stream_enqueue(s, op_pin, j), TFAB_OK);
            assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
            int cpus[256];
            for (unsigned w = 0; w < k; w++) {
                unsigned nc = tfab_stream_worker_cpus(s, w, cpus, 256);
                assert_int_equal(nc, mode ? node->n_cpus : 1);
                for (unsigned c = 0; c < nc; c++)
                    assert_true(in_list(cpus[c], node->cpus, node->n_cpus));
            }
            assert_true(in_list(j->leader_cpu, node->cpus, node->n_cpus));
            for (unsigned i = 0; i < PIN_TASKS; i++) {
                assert_true(j->worker[i] >= 0 && (unsigned)j->worker[i] < k);
                unsigned nc = tfab_stream_worker_cpus(s, (unsigned)j->worker[i], cpus, 256);
                if (!in_list(j->cpu[i], cpus, nc))
                    fail_msg("task %u ran on CPU %d, worker %d pinned elsewhere", i, j->cpu[i],
                             j->worker[i]);
            }
            if (mode == 0 && k == node->n_cpus) {
                /* single-CPU pinning spreads the workers over distinct cores */
                for (unsigned w = 0; w < k; w++)
                    for (unsigned v = w + 1; v < k; v++) {
                        int cw, cv;
                        tfab_stream_worker_cpus(s, w, &cw, 1);
                        tfab_stream_worker_cpus(s, v, &cv, 1);
                        assert_int_not_equal(cw, cv);
                    }
            }
            free(j);
            tfab_stream_destroy(s);
        }
    }
    tfab_numa_topo_free(t);
}

/* least-used placement: two one-worker streams on a node of >= 2 CPUs use different cores;
 * explicit CPU lists are checked against the node */
static void test_placement(void **state)
{
    tfab_numa_topo_t            *t    = topo_get();
    const tfab_numa_node_t *node = cpu_node(t);
    tfab_stream_t          *a    = mk_stream(node->id, 1, 4, 0);
    tfab_stream_t          *b    = mk_stream(node->id, 1, 4, 0);
    int                     ca, cb;
    tfab_stream_worker_cpus(a, 0, &ca, 1);
    tfab_stream_worker_cpus(b, 0, &cb, 1);
    if (node->n_cpus >= 2)
        assert_int_not_equal(ca, cb);
    else
        assert_int_equal(ca, cb);
    tfab_stream_destroy(b);
    tfab_stream_destroy(a);

    int                  last = node->cpus[node->n_cpus - 1];
    tfab_stream_params_t p    = {.field_mask = TFAB_STREAM_PARAM_NODE | TFAB_STREAM_PARAM_CPUS,
                                 .node       = node->id,
                                 .cpus       = &last,
                                 .n_cpus     = 1};
    tfab_stream_t       *s    = NULL;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_OK);
    assert_int_equal(tfab_stream_n_workers(s), 1);
    int c = -1;
    assert_int_equal(tfab_stream_worker_cpus(s, 0, &c, 1), 1);
    assert_int_equal(c, last);
    tfab_stream_destroy(s);

    int bad              = 100000;
    p.cpus               = &bad;
    tfab_log_level_t old = log_capture();
    s                    = NULL;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_ERR_INVALID);
    assert_null(s);
    p.field_mask = TFAB_STREAM_PARAM_NODE;
    p.node       = 100000;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_ERR_NOT_FOUND);
    p.field_mask = TFAB_STREAM_PARAM_N_WORKERS;
    p.n_workers  = 0;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_ERR_INVALID);
    assert_null(s);
    assert_int_equal(log_release(old), 3); /* each refusal said why, once */
    /* defaults: the calling CPU's node, all its CPUs */
    assert_int_equal(tfab_stream_create(NULL, &s), TFAB_OK);
    assert_true(tfab_numa_topo_node(t, tfab_stream_node(s)) != NULL);
    assert_int_equal(tfab_stream_n_workers(s), tfab_numa_topo_node(t, tfab_stream_node(s))->n_cpus);
    char want[16];
    snprintf(want, sizeof(want), "s%d", tfab_stream_node(s));
    assert_string_equal(tfab_stream_name(s), want);
    tfab_stream_destroy(s);
    tfab_numa_topo_free(t);
}

/* ---- scratch memory: on the node, and the allocator is injectable ---- */

typedef struct scratch_check {
    int    nodes[64];
    int    n;
    size_t size;
} scratch_check_t;
static tfab_status_t op_scratch(tfab_stream_ctx_t *ctx, void *arg)
{
    scratch_check_t *sc = arg;
    size_t           sz;
    char            *p = tfab_stream_scratch(tfab_stream_ctx_stream(ctx), &sz);
    sc->size           = sz;
    for (size_t off = 0; off < sz && sc->n < 64; off += sz / 16) {
        p[off]   = 1;
        int node = -1;
        if (get_mempolicy(&node, NULL, 0, p + off, MPOL_F_NODE | MPOL_F_ADDR) != 0)
            node = -2;
        sc->nodes[sc->n++] = node;
    }
    return TFAB_OK;
}

typedef struct fake_alloc {
    int    calls, frees, fail, last_node;
    size_t last_size;
} fake_alloc_t;
static void *fake_alloc_fn(size_t size, int node, void *arg)
{
    fake_alloc_t *f = arg;
    f->calls++;
    f->last_node = node;
    f->last_size = size;
    return f->fail ? NULL : calloc(1, size);
}
static void fake_free_fn(void *p, size_t size, void *arg)
{
    fake_alloc_t *f = arg;
    f->frees++;
    assert_int_equal(size, f->last_size);
    free(p);
}

static void test_scratch(void **state)
{
    tfab_numa_topo_t *t = topo_get();
    for (unsigned ni = 0; ni < t->n_nodes; ni++) {
        const tfab_numa_node_t *node = &t->nodes[ni];
        if (node->n_cpus == 0)
            continue;
        tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_NODE |
                                                TFAB_STREAM_PARAM_N_WORKERS |
                                                TFAB_STREAM_PARAM_SCRATCH,
                                  .node         = node->id,
                                  .n_workers    = 1,
                                  .scratch_size = 4 << 20};
        tfab_stream_t       *s = NULL;
        assert_int_equal(tfab_stream_create(&p, &s), TFAB_OK);
        scratch_check_t sc = {{0}, 0, 0};
        assert_int_equal(tfab_stream_enqueue(s, op_scratch, &sc), TFAB_OK);
        assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
        assert_int_equal(sc.size, 4 << 20);
        assert_int_equal(sc.n, 16);
        for (int i = 0; i < sc.n; i++)
            assert_int_equal(sc.nodes[i], node->id);
        tfab_stream_destroy(s);
    }

    fake_alloc_t            fa   = {0};
    tfab_stream_allocator_t al   = {fake_alloc_fn, fake_free_fn, &fa};
    const tfab_numa_node_t *node = cpu_node(t);
    tfab_stream_params_t p = {.field_mask = TFAB_STREAM_PARAM_NODE | TFAB_STREAM_PARAM_N_WORKERS |
                                            TFAB_STREAM_PARAM_SCRATCH | TFAB_STREAM_PARAM_ALLOCATOR,
                              .node         = node->id,
                              .n_workers    = 2,
                              .scratch_size = 12345,
                              .allocator    = &al};
    tfab_stream_t       *s = NULL;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_OK);
    assert_int_equal(fa.calls, 1);
    assert_int_equal(fa.last_size, 12345);
    assert_int_equal(fa.last_node, t->numa ? node->id : -1);
    size_t sz = 0;
    assert_non_null(tfab_stream_scratch(s, &sz));
    assert_int_equal(sz, 12345);
    tfab_stream_destroy(s);
    assert_int_equal(fa.frees, 1);

    fa.fail = 1;
    s       = NULL;
    assert_int_equal(tfab_stream_create(&p, &s), TFAB_ERR_NOMEM); /* unwinds cleanly (ASan) */
    assert_null(s);
    assert_int_equal(fa.calls, 2);
    assert_int_equal(fa.frees, 1);
    tfab_numa_topo_free(t);
}

/* ---- errors: a failing op cancels the rest and is reported ---- */

typedef struct err_ctx {
    int           ran[10];
    tfab_status_t cb_status;
    int           cb_ran;
} err_ctx_t;
typedef struct err_op {
    err_ctx_t *e;
    int        i;
} err_op_t;
static tfab_status_t op_maybe_fail(tfab_stream_ctx_t *ctx, void *arg)
{
    err_op_t *o     = arg;
    o->e->ran[o->i] = 1;
    return o->i == 3 ? TFAB_ERR_IO : TFAB_OK;
}
static void cb_status(tfab_stream_t *s, tfab_status_t st, void *arg)
{
    err_ctx_t *e = arg;
    e->cb_status = st;
    e->cb_ran++;
}

static void test_error_cancels(void **state)
{
    tfab_numa_topo_t   *t  = topo_get();
    int            nd = cpu_node(t)->id;
    tfab_stream_t *s  = mk_stream(nd, 2, 64, 0);
    tfab_stream_t *s2 = mk_stream(nd, 1, 64, 0);
    err_ctx_t      e  = {{0}, TFAB_OK, 0};
    err_op_t       ops[10];
    tfab_event_t  *ev;
    gate_t         g = GATE_INIT;
    assert_int_equal(tfab_event_create(NULL, &ev), TFAB_OK);
    tfab_log_level_t lvl = log_capture();
    assert_int_equal(tfab_stream_enqueue(s, op_gate, &g), TFAB_OK);
    for (int i = 0; i < 10; i++) {
        ops[i] = (err_op_t){&e, i};
        assert_int_equal(tfab_stream_enqueue(s, op_maybe_fail, &ops[i]), TFAB_OK);
    }
    assert_int_equal(tfab_event_record(ev, s), TFAB_OK);
    assert_int_equal(tfab_stream_add_callback(s, cb_status, &e), TFAB_OK);
    /* a dependent stream inherits the failure through the event */
    assert_int_equal(tfab_stream_wait_event(s2, ev), TFAB_OK);
    atomic_store(&counter, 0);
    assert_int_equal(tfab_stream_enqueue(s2, op_count, NULL), TFAB_OK);
    gate_open(&g);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_ERR_IO);
    assert_int_equal(tfab_stream_query(s), TFAB_ERR_IO);
    for (int i = 0; i < 10; i++)
        assert_int_equal(e.ran[i], i <= 3);
    assert_int_equal(e.cb_ran, 1);
    assert_int_equal(e.cb_status, TFAB_ERR_IO);
    assert_int_equal(tfab_event_synchronize(ev), TFAB_ERR_IO);
    assert_int_equal(tfab_stream_synchronize(s2), TFAB_ERR_IO);
    assert_int_equal(atomic_load(&log_lines), 2); /* one warning per errored stream */
    assert_int_equal(atomic_load(&counter), 0);   /* skipped */
    tfab_stream_stats_t ss;
    tfab_stream_get_stats(s, &ss);
    assert_int_equal(ss.ops_run, 5); /* gate + 0..3 */
    assert_int_equal(ss.ops_skipped, 6);
    assert_int_equal(ss.callbacks_run, 1);
    tfab_stream_get_stats(s2, &ss);
    assert_int_equal(ss.ops_skipped, 1);

    /* sticky until cleared; then ops run again */
    assert_int_equal(tfab_stream_enqueue(s, op_count, NULL), TFAB_OK);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_ERR_IO);
    assert_int_equal(atomic_load(&counter), 0);
    assert_int_equal(tfab_stream_clear_error(s), TFAB_ERR_IO);
    assert_int_equal(tfab_stream_clear_error(s2), TFAB_ERR_IO);
    assert_int_equal(tfab_stream_enqueue(s, op_count, NULL), TFAB_OK);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    assert_int_equal(atomic_load(&counter), 1);
    assert_int_equal(tfab_event_record(ev, s), TFAB_OK);
    assert_int_equal(tfab_event_synchronize(ev), TFAB_OK);

    /* cancel: queued ops are skipped, callbacks get TFAB_ERR_CANCELED */
    gate_t g2 = GATE_INIT;
    assert_int_equal(tfab_stream_enqueue(s, op_gate, &g2), TFAB_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tfab_stream_enqueue(s, op_count, NULL), TFAB_OK);
    assert_int_equal(tfab_stream_add_callback(s, cb_status, &e), TFAB_OK);
    gate_wait_entered(&g2);
    tfab_stream_cancel(s);
    gate_open(&g2);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_ERR_CANCELED);
    assert_int_equal(atomic_load(&counter), 1);
    assert_int_equal(e.cb_ran, 2);
    assert_int_equal(e.cb_status, TFAB_ERR_CANCELED);
    assert_int_equal(log_release(lvl), 2); /* a requested cancel is not warned about */
    tfab_event_destroy(ev);
    tfab_stream_destroy(s);
    tfab_stream_destroy(s2);
    tfab_numa_topo_free(t);
}

/* ---- concurrent enqueuers, cross-stream enqueue from ops ---- */

enum { ENQ_THREADS = 4, ENQ_PER = 5000 };
typedef struct stress {
    tfab_stream_t *s, *s2;
    unsigned       last[ENQ_THREADS]; /* written by s's ops only */
    int            order_bad;
    atomic_uint    forwarded;
    atomic_uint    cbs;
} stress_t;
typedef struct stress_op {
    stress_t *st;
    unsigned  thread, seq;
} stress_op_t;
static tfab_status_t op_forwarded(tfab_stream_ctx_t *ctx, void *arg)
{
    stress_t *st = arg;
    atomic_fetch_add(&st->forwarded, 1);
    return TFAB_OK;
}
static tfab_status_t op_stress(tfab_stream_ctx_t *ctx, void *arg)
{
    stress_op_t *o = arg;
    if (o->seq != o->st->last[o->thread] + 1)
        o->st->order_bad = 1;
    o->st->last[o->thread] = o->seq;
    if (o->seq % 100 == 0) /* ops may enqueue onto another stream */
        return tfab_stream_enqueue(o->st->s2, op_forwarded, o->st);
    return TFAB_OK;
}
static void cb_stress(tfab_stream_t *s, tfab_status_t status, void *arg)
{
    stress_t *st = arg;
    if (status == TFAB_OK)
        atomic_fetch_add(&st->cbs, 1);
}
typedef struct enq_arg {
    stress_t   *st;
    unsigned    thread;
    stress_op_t ops[ENQ_PER];
} enq_arg_t;
static void *enqueuer(void *p)
{
    enq_arg_t *a = p;
    for (unsigned i = 0; i < ENQ_PER; i++) {
        a->ops[i] = (stress_op_t){a->st, a->thread, i + 1};
        if (tfab_stream_enqueue(a->st->s, op_stress, &a->ops[i]) != TFAB_OK)
            return (void *)1;
        if (i % 500 == 0 && tfab_stream_add_callback(a->st->s, cb_stress, a->st) != TFAB_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_concurrent_enqueuers(void **state)
{
    tfab_numa_topo_t *t  = topo_get();
    int          nd = cpu_node(t)->id;
    stress_t    *st = calloc(1, sizeof(*st));
    st->s           = mk_stream(nd, 2, 64, TFAB_STREAM_BLOCK_WHEN_FULL);
    st->s2          = mk_stream(nd, 1, 4096, 0);
    pthread_t  th[ENQ_THREADS];
    enq_arg_t *args = calloc(ENQ_THREADS, sizeof(*args));
    for (unsigned i = 0; i < ENQ_THREADS; i++) {
        args[i].st     = st;
        args[i].thread = i;
        assert_int_equal(pthread_create(&th[i], NULL, enqueuer, &args[i]), 0);
    }
    for (unsigned i = 0; i < ENQ_THREADS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    assert_int_equal(tfab_stream_synchronize(st->s), TFAB_OK);
    assert_int_equal(tfab_stream_synchronize(st->s2), TFAB_OK);
    assert_int_equal(st->order_bad, 0);
    for (unsigned i = 0; i < ENQ_THREADS; i++)
        assert_int_equal(st->last[i], ENQ_PER);
    assert_int_equal(atomic_load(&st->forwarded), ENQ_THREADS * ENQ_PER / 100);
    assert_int_equal(atomic_load(&st->cbs), ENQ_THREADS * ENQ_PER / 500);
    tfab_stream_stats_t ss;
    tfab_stream_get_stats(st->s, &ss);
    assert_int_equal(ss.ops_run, ENQ_THREADS * ENQ_PER);
    tfab_stream_destroy(st->s);
    tfab_stream_destroy(st->s2);
    free(args);
    free(st);
    tfab_numa_topo_free(t);
}

/* ---- own-thread rules, destroy drains ---- */

typedef struct self_ctx {
    tfab_status_t sync_st, enq_st;
} self_ctx_t;
static tfab_status_t op_self(tfab_stream_ctx_t *ctx, void *arg)
{
    self_ctx_t    *sc = arg;
    tfab_stream_t *s  = tfab_stream_ctx_stream(ctx);
    sc->sync_st       = tfab_stream_synchronize(s);
    /* fill the ring from inside: with BLOCK_WHEN_FULL an own-thread enqueue must not wait */
    while ((sc->enq_st = tfab_stream_enqueue(s, op_count, NULL)) == TFAB_OK)
        ;
    return TFAB_OK;
}
static tfab_status_t op_slow(tfab_stream_ctx_t *ctx, void *arg)
{
    usleep(200);
    atomic_fetch_add(&counter, 1);
    return TFAB_OK;
}

static void test_self_and_destroy(void **state)
{
    tfab_numa_topo_t   *t  = topo_get();
    int            nd = cpu_node(t)->id;
    tfab_stream_t *s  = mk_stream(nd, 1, 8, TFAB_STREAM_BLOCK_WHEN_FULL);
    self_ctx_t     sc = {TFAB_OK, TFAB_OK};
    atomic_store(&counter, 0);
    tfab_log_level_t lvl = log_capture();
    assert_int_equal(tfab_stream_enqueue(s, op_self, &sc), TFAB_OK);
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    /* the ops op_self enqueued came after that synchronize's capture point: a second one */
    assert_int_equal(tfab_stream_synchronize(s), TFAB_OK);
    assert_int_equal(log_release(lvl), 1); /* "would deadlock", once */
    assert_int_equal(sc.sync_st, TFAB_ERR_INVALID);
    assert_int_equal(sc.enq_st, TFAB_ERR_BUSY);
    assert_int_equal(atomic_load(&counter), 8);
    tfab_stream_destroy(s);

    /* destroy drains */
    atomic_store(&counter, 0);
    s = mk_stream(nd, 2, 128, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tfab_stream_enqueue(s, op_slow, NULL), TFAB_OK);
    tfab_stream_destroy(s);
    assert_int_equal(atomic_load(&counter), 100);

    /* cancel, then destroy: the queued ops are skipped, callbacks still run */
    atomic_store(&counter, 0);
    s           = mk_stream(nd, 1, 128, 0);
    gate_t    g = GATE_INIT;
    err_ctx_t e = {{0}, TFAB_OK, 0};
    assert_int_equal(tfab_stream_enqueue(s, op_gate, &g), TFAB_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tfab_stream_enqueue(s, op_slow, NULL), TFAB_OK);
    assert_int_equal(tfab_stream_add_callback(s, cb_status, &e), TFAB_OK);
    gate_wait_entered(&g);
    tfab_stream_cancel(s);
    gate_open(&g);
    tfab_stream_destroy(s);
    assert_int_equal(atomic_load(&counter), 0);
    assert_int_equal(e.cb_ran, 1);
    assert_int_equal(e.cb_status, TFAB_ERR_CANCELED);
    tfab_numa_topo_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology),
        cmocka_unit_test(test_cpulist_format),
        cmocka_unit_test(test_order_10000),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_events_dag),
        cmocka_unit_test(test_callbacks_order),
        cmocka_unit_test(test_parallel_for_cover),
        cmocka_unit_test(test_parallel_for_nested),
        cmocka_unit_test(test_pinning),
        cmocka_unit_test(test_placement),
        cmocka_unit_test(test_scratch),
        cmocka_unit_test(test_error_cancels),
        cmocka_unit_test(test_concurrent_enqueuers),
        cmocka_unit_test(test_self_and_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* stream.c - compute streams: the op ring (multi-producer, one consumer), the leader thread
 * that runs ops in FIFO order, sticky errors, callbacks, synchronize, and create/destroy with
 * pinned worker threads and node-local scratch. */
#define _GNU_SOURCE /* CPU_ALLOC, sched_getcpu, pthread_*_np */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "stream_int.h"

#define STREAM_DEFAULT_QUEUE   1024u
#define STREAM_MAX_QUEUE       (1u << 24)
#define STREAM_DEFAULT_SPIN_NS 50000u
#define STREAM_MAX_WORKERS     4096u

struct tfab_stream {
    char                    name[32];
    int                     node;    /* OS node id, -1 on a flat topology */
    int                     node_id; /* the topology's node id (0 when flat) */
    unsigned                flags;
    unsigned                n_workers;
    struct stream_worker   *workers; /* [n_workers], [0] is the leader */
    int                    *pinned;  /* [n_workers] CPUs counted in placement, or NULL */
    tfab_stream_allocator_t allocator;
    void                   *scratch;
    size_t                  scratch_size;
    struct tfab_stream_ctx  ctx;
    uint64_t                spin_ns;

    /* the queue: everything below lock is guarded by it */
    pthread_mutex_t     lock;
    pthread_cond_t      work_cv;  /* leader: queue not empty or stopping */
    pthread_cond_t      space_cv; /* blocked enqueuers: a slot was freed */
    pthread_cond_t      done_cv;  /* synchronize: n_done advanced */
    stream_op_t        *ring;     /* [mask + 1] */
    uint64_t            mask;
    uint64_t            head;    /* next op to run */
    uint64_t            tail;    /* next free slot; ops enqueued so far */
    uint64_t            n_done;  /* ops finished (run or skipped) */
    int                 running; /* the leader holds a popped op */
    unsigned            n_space_waiters, n_sync_waiters;
    int                 leader_sleeping;
    int                 stopping;
    tfab_status_t       error; /* sticky */
    tfab_stream_stats_t stats;
    _Atomic uint64_t    posted;          /* == tail, for the leader's lock-free spin */
    _Atomic uint64_t    n_parallel_fors; /* written by the leader only, outside the lock */

    stream_team_t team;
};

static _Thread_local struct stream_worker *tls_worker;

static int on_own_thread(const tfab_stream_t *s)
{
    return tls_worker != NULL && tls_worker->stream == s;
}

/* ---- the leader ---------------------------------------------------------------------------- */

static void set_error_locked(tfab_stream_t *s, tfab_status_t st, const char *what)
{
    if (s->error != TFAB_OK)
        return;
    s->error = st;
    TFAB_WARN(STREAM_MOD,
              "stream %s: %s: %s; later ops are skipped until "
              "tfab_stream_clear_error()",
              s->name, what, tfab_status_str(st));
}

/* Run one popped op; err is the sticky error when it was popped. Returns the status that
 * errors the stream (TFAB_OK: none). */
static tfab_status_t run_op(tfab_stream_t *s, const stream_op_t *op, tfab_status_t err, int *ran_p)
{
    tfab_status_t st = TFAB_OK;
    *ran_p           = 0;
    switch (op->kind) {
    case OP_FN:
        if (err == TFAB_OK) {
            *ran_p = 1;
            team_warm(&s->team); /* ops of a K > 1 stream are expected to parallel_for */
            st = op->u.fn(&s->ctx, op->arg);
            if (st == TFAB_INPROGRESS)
                st = TFAB_ERR_INVALID; /* ops complete synchronously; a contract breach */
        }
        break;
    case OP_CALLBACK:
        op->u.cb(s, err, op->arg);
        break;
    case OP_RECORD:
        event_complete(op->event, op->seq, err);
        event_unref(op->event);
        break;
    case OP_WAIT:
        if (err == TFAB_OK)
            st = event_wait_seq(op->event, op->seq);
        event_unref(op->event);
        break;
    }
    return st;
}

static void leader_loop(tfab_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->head == s->tail && !s->stopping) {
            uint64_t h = s->head;
            pthread_mutex_unlock(&s->lock);
            /* spin without the lock for the next op: cheap back-to-back enqueues */
            uint64_t start = spin_now_ns();
            for (unsigned i = 1; s->spin_ns > 0; i++) {
                if (atomic_load_explicit(&s->posted, memory_order_acquire) != h)
                    break;
                if ((i & 63) == 0 && spin_now_ns() - start > s->spin_ns)
                    break;
            }
            pthread_mutex_lock(&s->lock);
            while (s->head == s->tail && !s->stopping) {
                s->leader_sleeping = 1;
                pthread_cond_wait(&s->work_cv, &s->lock);
                s->leader_sleeping = 0;
            }
        }
        if (s->head == s->tail)
            break; /* stopping and drained */
        stream_op_t   op  = s->ring[s->head & s->mask];
        tfab_status_t err = s->error;
        s->head++;
        s->running = 1;
        if (s->n_space_waiters)
            pthread_cond_signal(&s->space_cv);
        pthread_mutex_unlock(&s->lock);

        int           ran;
        tfab_status_t st = run_op(s, &op, err, &ran);

        pthread_mutex_lock(&s->lock);
        if (op.kind == OP_FN)
            ran ? s->stats.ops_run++ : s->stats.ops_skipped++;
        else if (op.kind == OP_CALLBACK)
            s->stats.callbacks_run++;
        if (st != TFAB_OK)
            set_error_locked(s, st,
                             op.kind == OP_WAIT ? "the awaited event failed" : "an op failed");
        s->running = 0;
        s->n_done++;
        if (s->n_sync_waiters)
            pthread_cond_broadcast(&s->done_cv);
    }
    pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *p)
{
    struct stream_worker *w = p;
    tls_worker              = w;
    if (w->index == 0)
        leader_loop(w->stream);
    else
        team_helper_loop(&w->stream->team);
    tls_worker = NULL;
    return NULL;
}

/* ---- the queue ----------------------------------------------------------------------------- */

static tfab_status_t enqueue(tfab_stream_t *s, stream_op_t *op)
{
    tfab_status_t st = TFAB_OK;
    pthread_mutex_lock(&s->lock);
    while (s->tail - s->head > s->mask) {
        if (!(s->flags & TFAB_STREAM_BLOCK_WHEN_FULL) || on_own_thread(s) || s->stopping) {
            s->stats.enqueue_busy++;
            st = TFAB_ERR_BUSY;
            goto out_unlock;
        }
        s->n_space_waiters++;
        pthread_cond_wait(&s->space_cv, &s->lock);
        s->n_space_waiters--;
    }
    /* a slot is ours: claim the event's record number now, so the queue order and the
     * record order agree (lock order: stream, then event) */
    if (op->kind == OP_RECORD) {
        if ((st = event_prepare_record(op->event, s, &op->seq)) != TFAB_OK)
            goto out_unlock;
    } else if (op->kind == OP_WAIT) {
        op->seq = event_latest(op->event);
        if (op->seq == 0)
            goto out_unlock; /* never recorded: nothing to wait for */
        event_ref(op->event);
    }
    s->ring[s->tail & s->mask] = *op;
    s->tail++;
    atomic_store_explicit(&s->posted, s->tail, memory_order_release);
    if (s->leader_sleeping)
        pthread_cond_signal(&s->work_cv);
out_unlock:
    pthread_mutex_unlock(&s->lock);
    return st;
}

tfab_status_t tfab_stream_enqueue(tfab_stream_t *stream, tfab_stream_op_fn_t fn, void *arg)
{
    if (stream == NULL || fn == NULL)
        return TFAB_ERR_INVALID;
    stream_op_t op = {.kind = OP_FN, .u.fn = fn, .arg = arg};
    return enqueue(stream, &op);
}

tfab_status_t tfab_stream_add_callback(tfab_stream_t *stream, tfab_stream_callback_t cb, void *arg)
{
    if (stream == NULL || cb == NULL)
        return TFAB_ERR_INVALID;
    stream_op_t op = {.kind = OP_CALLBACK, .u.cb = cb, .arg = arg};
    return enqueue(stream, &op);
}

tfab_status_t tfab_event_record(tfab_event_t *event, tfab_stream_t *stream)
{
    if (stream == NULL || event == NULL)
        return TFAB_ERR_INVALID;
    stream_op_t op = {.kind = OP_RECORD, .event = event};
    return enqueue(stream, &op);
}

tfab_status_t tfab_stream_wait_event(tfab_stream_t *stream, tfab_event_t *event)
{
    if (stream == NULL || event == NULL)
        return TFAB_ERR_INVALID;
    stream_op_t op = {.kind = OP_WAIT, .event = event};
    return enqueue(stream, &op);
}

tfab_status_t tfab_stream_synchronize(tfab_stream_t *stream)
{
    if (stream == NULL)
        return TFAB_ERR_INVALID;
    if (on_own_thread(stream)) {
        TFAB_ERROR(STREAM_MOD,
                   "stream %s: tfab_stream_synchronize from its own op or callback "
                   "would deadlock",
                   stream->name);
        return TFAB_ERR_INVALID;
    }
    pthread_mutex_lock(&stream->lock);
    uint64_t target = stream->tail;
    stream->n_sync_waiters++;
    while (stream->n_done < target)
        pthread_cond_wait(&stream->done_cv, &stream->lock);
    stream->n_sync_waiters--;
    tfab_status_t st = stream->error;
    pthread_mutex_unlock(&stream->lock);
    return st;
}

tfab_status_t tfab_stream_query(tfab_stream_t *stream)
{
    if (stream == NULL)
        return TFAB_ERR_INVALID;
    pthread_mutex_lock(&stream->lock);
    tfab_status_t st = stream->n_done < stream->tail ? TFAB_INPROGRESS : stream->error;
    pthread_mutex_unlock(&stream->lock);
    return st;
}

void tfab_stream_cancel(tfab_stream_t *stream)
{
    if (stream == NULL)
        return;
    pthread_mutex_lock(&stream->lock);
    if (stream->error == TFAB_OK)
        stream->error = TFAB_ERR_CANCELED; /* asked for: not worth a warning */
    pthread_mutex_unlock(&stream->lock);
}

tfab_status_t tfab_stream_clear_error(tfab_stream_t *stream)
{
    if (stream == NULL)
        return TFAB_ERR_INVALID;
    pthread_mutex_lock(&stream->lock);
    tfab_status_t st = stream->error;
    stream->error    = TFAB_OK;
    pthread_mutex_unlock(&stream->lock);
    return st;
}

void tfab_stream_get_stats(tfab_stream_t *stream, tfab_stream_stats_t *stats)
{
    if (stream == NULL || stats == NULL)
        return;
    pthread_mutex_lock(&stream->lock);
    *stats               = stream->stats;
    stats->parallel_fors = atomic_load_explicit(&stream->n_parallel_fors, memory_order_relaxed);
    pthread_mutex_unlock(&stream->lock);
}

/* ---- inside an op -------------------------------------------------------------------------- */

tfab_stream_t *tfab_stream_ctx_stream(tfab_stream_ctx_t *ctx)
{
    return ctx ? ctx->stream : NULL;
}

tfab_stream_ctx_t *tfab_stream_get_ctx(tfab_stream_t *stream)
{
    return stream ? &stream->ctx : NULL;
}

void tfab_stream_parallel_for(void *ctx, size_t n_tasks, tfab_task_fn_t fn, void *arg)
{
    struct tfab_stream_ctx *c = ctx;
    tfab_stream_t          *s = c ? c->stream : NULL;
    if (n_tasks == 0)
        return;
    if (s == NULL || n_tasks == 1 || s->n_workers == 1 || s->team.active ||
        tls_worker != &s->workers[0] || n_tasks > SIZE_MAX / 2) {
        for (size_t i = 0; i < n_tasks; i++)
            fn(i, arg);
        return;
    }
    team_run(&s->team, n_tasks, fn, arg);
    atomic_fetch_add_explicit(&s->n_parallel_fors, 1, memory_order_relaxed);
}

int tfab_stream_worker_index(void)
{
    return tls_worker ? (int)tls_worker->index : -1;
}

/* ---- accessors ----------------------------------------------------------------------------- */

int tfab_stream_node(const tfab_stream_t *stream)
{
    return stream->node_id;
}
unsigned tfab_stream_n_workers(const tfab_stream_t *stream)
{
    return stream->n_workers;
}
const char *tfab_stream_name(const tfab_stream_t *stream)
{
    return stream->name;
}

void *tfab_stream_scratch(const tfab_stream_t *stream, size_t *size_p)
{
    if (size_p)
        *size_p = stream->scratch_size;
    return stream->scratch;
}

unsigned tfab_stream_worker_cpus(const tfab_stream_t *stream, unsigned worker, int *cpus,
                                 unsigned max)
{
    if (worker >= stream->n_workers)
        return 0;
    const struct stream_worker *w = &stream->workers[worker];
    for (unsigned i = 0; i < w->n_cpus && i < max; i++)
        cpus[i] = w->cpus[i];
    return w->n_cpus;
}

/* ---- create / destroy ---------------------------------------------------------------------- */

static tfab_status_t check_params(const tfab_stream_params_t *p, const tfab_numa_node_t *node)
{
    uint64_t m = p->field_mask;
    if ((m & TFAB_STREAM_PARAM_N_WORKERS) &&
        (p->n_workers == 0 || p->n_workers > STREAM_MAX_WORKERS)) {
        TFAB_ERROR(STREAM_MOD, "n_workers %u out of range 1..%u", p->n_workers, STREAM_MAX_WORKERS);
        return TFAB_ERR_INVALID;
    }
    if ((m & TFAB_STREAM_PARAM_QUEUE_LEN) &&
        (p->queue_len == 0 || p->queue_len > STREAM_MAX_QUEUE)) {
        TFAB_ERROR(STREAM_MOD, "queue_len %u out of range 1..%u", p->queue_len, STREAM_MAX_QUEUE);
        return TFAB_ERR_INVALID;
    }
    if ((m & TFAB_STREAM_PARAM_FLAGS) &&
        (p->flags & ~(unsigned)(TFAB_STREAM_BLOCK_WHEN_FULL | TFAB_STREAM_PIN_NODE))) {
        TFAB_ERROR(STREAM_MOD, "unknown stream flags 0x%x", p->flags);
        return TFAB_ERR_INVALID;
    }
    if ((m & TFAB_STREAM_PARAM_ALLOCATOR) &&
        (p->allocator == NULL || p->allocator->alloc == NULL || p->allocator->free == NULL)) {
        TFAB_ERROR(STREAM_MOD, "allocator needs alloc and free");
        return TFAB_ERR_INVALID;
    }
    if (m & TFAB_STREAM_PARAM_CPUS) {
        if (p->cpus == NULL || p->n_cpus == 0) {
            TFAB_ERROR(STREAM_MOD, "cpus is empty");
            return TFAB_ERR_INVALID;
        }
        for (unsigned i = 0; i < p->n_cpus; i++) {
            unsigned c = 0;
            while (c < node->n_cpus && node->cpus[c] != p->cpus[i])
                c++;
            if (c == node->n_cpus) {
                char list[256];
                tfab_cpulist_format(node->cpus, node->n_cpus, list, sizeof(list));
                TFAB_ERROR(STREAM_MOD, "CPU %d is not an allowed CPU of node %d (allowed: %s)",
                           p->cpus[i], node->id, list[0] ? list : "none");
                return TFAB_ERR_INVALID;
            }
        }
    }
    return TFAB_OK;
}

/* Choose the CPUs of every worker: one each (explicit list, or least used), or the whole set. */
static tfab_status_t place_workers(tfab_stream_t *s, const tfab_stream_params_t *p,
                                   const tfab_numa_node_t *node)
{
    int explicit     = (p->field_mask & TFAB_STREAM_PARAM_CPUS) != 0;
    unsigned   set_n = explicit ? p->n_cpus : node->n_cpus;
    const int *set   = explicit ? p->cpus : node->cpus;
    if (s->flags & TFAB_STREAM_PIN_NODE) {
        for (unsigned i = 0; i < s->n_workers; i++) {
            s->workers[i].cpus = malloc(sizeof(int) * set_n);
            if (s->workers[i].cpus == NULL)
                goto err_nomem;
            memcpy(s->workers[i].cpus, set, sizeof(int) * set_n);
            s->workers[i].n_cpus = set_n;
        }
        return TFAB_OK;
    }
    s->pinned = malloc(sizeof(int) * s->n_workers);
    if (s->pinned == NULL)
        goto err_nomem;
    for (unsigned i = 0; i < s->n_workers; i++) {
        s->workers[i].cpus = malloc(sizeof(int));
        if (s->workers[i].cpus == NULL)
            goto err_nomem;
        s->workers[i].n_cpus = 1;
    }
    if (explicit) {
        for (unsigned i = 0; i < s->n_workers; i++)
            s->pinned[i] = set[i % set_n];
        topo_cpus_add(s->pinned, s->n_workers);
    } else {
        topo_cpus_reserve(node, s->n_workers, s->pinned);
    }
    for (unsigned i = 0; i < s->n_workers; i++)
        s->workers[i].cpus[0] = s->pinned[i];
    return TFAB_OK;

err_nomem:
    free(s->pinned); /* the caller frees the workers' cpus */
    s->pinned = NULL;
    TFAB_ERROR(STREAM_MOD, "out of memory placing stream workers");
    return TFAB_ERR_NOMEM;
}

static tfab_status_t start_worker(tfab_stream_t *s, struct stream_worker *w)
{
    pthread_attr_t attr;
    int            max_cpu = 0, err;
    for (unsigned i = 0; i < w->n_cpus; i++)
        if (w->cpus[i] + 1 > max_cpu)
            max_cpu = w->cpus[i] + 1;
    cpu_set_t *set  = CPU_ALLOC((size_t)max_cpu);
    size_t     size = CPU_ALLOC_SIZE((size_t)max_cpu);
    if (set == NULL) {
        TFAB_ERROR(STREAM_MOD, "CPU_ALLOC(%d) failed", max_cpu);
        return TFAB_ERR_NOMEM;
    }
    CPU_ZERO_S(size, set);
    for (unsigned i = 0; i < w->n_cpus; i++)
        CPU_SET_S((size_t)w->cpus[i], size, set);
    pthread_attr_init(&attr);
    /* pinned from the first instruction: its stack is touched on the right node */
    if ((err = pthread_attr_setaffinity_np(&attr, size, set)) == 0)
        err = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    CPU_FREE(set);
    if (err != 0) {
        TFAB_ERROR(STREAM_MOD, "stream %s: starting worker %u on CPU %d%s failed: %s", s->name,
                   w->index, w->cpus[0], w->n_cpus > 1 ? "..." : "", strerror(err));
        return err == EINVAL ? TFAB_ERR_INVALID : TFAB_ERR_IO;
    }
    w->started = 1;
    char tname[16];
    snprintf(tname, sizeof(tname), "tf-%.8s/%u", s->name, w->index);
    pthread_setname_np(w->thread, tname);
    return TFAB_OK;
}

/* Stop and join every started thread: the leader drains the queue first. */
static void stop_workers(tfab_stream_t *s)
{
    struct stream_worker *leader = &s->workers[0];
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->lock);
    if (leader->started)
        pthread_join(leader->thread, NULL);
    team_stop(&s->team);
    for (unsigned i = 1; i < s->n_workers; i++)
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
}

static void free_workers(tfab_stream_t *s)
{
    for (unsigned i = 0; i < s->n_workers; i++)
        free(s->workers[i].cpus);
    free(s->workers);
}

tfab_status_t tfab_stream_create(const tfab_stream_params_t *params, tfab_stream_t **stream_p)
{
    static const tfab_stream_params_t defaults = {0};
    const tfab_stream_params_t       *p        = params ? params : &defaults;
    uint64_t                          m        = p->field_mask;
    tfab_status_t                     st;
    tfab_numa_topo_t                      *own_topo = NULL;
    const tfab_numa_topo_t                *topo     = NULL;
    const tfab_numa_node_t           *node;

    if (stream_p == NULL) {
        TFAB_ERROR(STREAM_MOD, "tfab_stream_create: stream_p is NULL");
        return TFAB_ERR_INVALID;
    }
    if ((m & TFAB_STREAM_PARAM_TOPO) && p->topo != NULL) {
        topo = p->topo;
    } else {
        if ((st = tfab_numa_topo_query(NULL, &own_topo)) != TFAB_OK)
            return st;
        topo = own_topo;
    }
    if (m & TFAB_STREAM_PARAM_NODE) {
        if ((node = tfab_numa_topo_node(topo, p->node)) == NULL) {
            TFAB_ERROR(STREAM_MOD, "NUMA node %d does not exist or has no memory we may use",
                       p->node);
            st = TFAB_ERR_NOT_FOUND;
            goto err_free_topo;
        }
    } else if ((node = topo_current_node(topo)) == NULL) {
        node = &topo->nodes[0];
        for (unsigned i = 0; i < topo->n_nodes && node->n_cpus == 0; i++)
            node = &topo->nodes[i];
    }
    if (node->n_cpus == 0) {
        TFAB_ERROR(STREAM_MOD,
                   "NUMA node %d has no CPU in this process's affinity mask "
                   "(taskset/cpuset)",
                   node->id);
        st = TFAB_ERR_NODEV;
        goto err_free_topo;
    }
    if ((st = check_params(p, node)) != TFAB_OK)
        goto err_free_topo;

    /* the team's atomics sit on their own cache lines: the struct needs its 64-byte alignment */
    size_t ssize = (sizeof(tfab_stream_t) + STREAM_CACHELINE - 1) & ~(size_t)(STREAM_CACHELINE - 1);
    tfab_stream_t *s = aligned_alloc(STREAM_CACHELINE, ssize);
    if (s != NULL)
        memset(s, 0, ssize);
    if (s == NULL) {
        TFAB_ERROR(STREAM_MOD, "out of memory for a stream");
        st = TFAB_ERR_NOMEM;
        goto err_free_topo;
    }
    s->node      = topo->numa ? node->id : -1;
    s->node_id   = node->id;
    s->flags     = (m & TFAB_STREAM_PARAM_FLAGS) ? p->flags : 0;
    s->n_workers = (m & TFAB_STREAM_PARAM_N_WORKERS) ? p->n_workers
                   : (m & TFAB_STREAM_PARAM_CPUS)    ? p->n_cpus
                                                     : node->n_cpus;
    s->spin_ns   = (m & TFAB_STREAM_PARAM_SPIN_NS) ? p->spin_ns : STREAM_DEFAULT_SPIN_NS;
    s->allocator = (m & TFAB_STREAM_PARAM_ALLOCATOR) ? *p->allocator : numa_mem_default_allocator;
    if ((m & TFAB_STREAM_PARAM_NAME) && p->name)
        snprintf(s->name, sizeof(s->name), "%s", p->name);
    else
        snprintf(s->name, sizeof(s->name), "s%d", node->id);
    s->ctx.stream = s;
    s->error      = TFAB_OK;
    atomic_init(&s->posted, 0);
    atomic_init(&s->n_parallel_fors, 0);
    team_init(&s->team, s->n_workers - 1, s->spin_ns);

    uint64_t qlen = (m & TFAB_STREAM_PARAM_QUEUE_LEN) ? p->queue_len : STREAM_DEFAULT_QUEUE;
    uint64_t cap  = 1;
    while (cap < qlen)
        cap <<= 1;
    s->mask = cap - 1;
    s->ring = calloc(cap, sizeof(*s->ring));
    if (s->ring == NULL) {
        TFAB_ERROR(STREAM_MOD, "out of memory for a %llu-slot op ring", (unsigned long long)cap);
        st = TFAB_ERR_NOMEM;
        goto err_free_stream;
    }
    s->workers = calloc(s->n_workers, sizeof(*s->workers));
    if (s->workers == NULL) {
        TFAB_ERROR(STREAM_MOD, "out of memory for %u workers", s->n_workers);
        st = TFAB_ERR_NOMEM;
        goto err_free_ring;
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        s->workers[i].stream = s;
        s->workers[i].index  = i;
    }
    if ((st = place_workers(s, p, node)) != TFAB_OK)
        goto err_free_workers;

    s->scratch_size = (m & TFAB_STREAM_PARAM_SCRATCH) ? p->scratch_size : 0;
    if (s->scratch_size > 0) {
        s->scratch = s->allocator.alloc(s->scratch_size, s->node, s->allocator.arg);
        if (s->scratch == NULL) {
            st = TFAB_ERR_NOMEM; /* the allocator logged why */
            goto err_release_cpus;
        }
    }

    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    for (unsigned i = s->n_workers; i-- > 0;) /* helpers first, then the leader */
        if ((st = start_worker(s, &s->workers[i])) != TFAB_OK)
            goto err_stop_workers;

    tfab_numa_topo_free(own_topo);
    TFAB_DEBUG(STREAM_MOD, "stream %s: node %d, %u workers, %llu slots, %zu bytes scratch", s->name,
               s->node_id, s->n_workers, (unsigned long long)cap, s->scratch_size);
    *stream_p = s;
    return TFAB_OK;

err_stop_workers:
    stop_workers(s);
    pthread_cond_destroy(&s->done_cv);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->lock);
    if (s->scratch)
        s->allocator.free(s->scratch, s->scratch_size, s->allocator.arg);
err_release_cpus:
    if (s->pinned)
        topo_cpus_release(s->pinned, s->n_workers);
    free(s->pinned);
err_free_workers:
    free_workers(s);
err_free_ring:
    free(s->ring);
err_free_stream:
    free(s);
err_free_topo:
    tfab_numa_topo_free(own_topo);
    return st;
}

void tfab_stream_destroy(tfab_stream_t *stream)
{
    if (stream == NULL)
        return;
    if (on_own_thread(stream)) {
        TFAB_ERROR(STREAM_MOD,
                   "stream %s: tfab_stream_destroy from its own op or callback "
                   "is not allowed; ignored",
                   stream->name);
        return;
    }
    stop_workers(stream); /* the leader drains the queue before it returns */
    pthread_cond_destroy(&stream->done_cv);
    pthread_cond_destroy(&stream->space_cv);
    pthread_cond_destroy(&stream->work_cv);
    pthread_mutex_destroy(&stream->lock);
    if (stream->scratch)
        stream->allocator.free(stream->scratch, stream->scratch_size, stream->allocator.arg);
    if (stream->pinned)
        topo_cpus_release(stream->pinned, stream->n_workers);
    free(stream->pinned);
    free_workers(stream);
    free(stream->ring);
    free(stream);
}

/* tfab/stream.h - per-NUMA compute streams for CPUs: in-order op queues run by pinned worker
 * threads, events for cross-stream dependencies, and a cheap data-parallel loop for kernels. */
#ifndef TFAB_STREAM_H
#define TFAB_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- topology ------------------------------------------------------------------------------
 * NUMA nodes with memory, and the online CPUs of each that this process may run on (its
 * affinity mask, so `taskset` and cgroup cpusets are respected). The CPUs of a memoryless node
 * are listed under the nearest node with memory (numa_distance). When libnuma reports NUMA
 * unavailable (or TFAB_NUMA_TOPO_FLAT is asked for) the host is one node, id 0, holding every
 * allowed CPU and all memory. */

typedef struct tfab_numa_node {
    int      id;        /* OS node number (what numactl and mbind use) */
    unsigned n_cpus;    /* allowed online CPUs of the node; may be 0 under taskset */
    int     *cpus;      /* [n_cpus], ascending OS CPU numbers */
    uint64_t mem_total; /* bytes on the node */
    uint64_t mem_free;  /* bytes free at query time */
} tfab_numa_node_t;

typedef struct tfab_numa_topo {
    int               numa;     /* 1: from libnuma; 0: the flat fallback (see why) */
    unsigned          n_nodes;  /* >= 1 */
    tfab_numa_node_t *nodes;    /* [n_nodes], ascending id */
    unsigned          n_cpus;   /* sum of the nodes' n_cpus */
    char              why[128]; /* numa == 0: why ("libnuma: NUMA not available", ...) */
} tfab_numa_topo_t;

enum {
    TFAB_NUMA_TOPO_PARAM_FLAGS = 1u << 0,
};
enum {
    TFAB_NUMA_TOPO_FLAT = 1u << 0, /* ignore libnuma: one node with every allowed CPU */
};
typedef struct tfab_numa_topo_params {
    uint64_t field_mask; /* TFAB_NUMA_TOPO_PARAM_* */
    unsigned flags;      /* TFAB_NUMA_TOPO_FLAT */
} tfab_numa_topo_params_t;

/* Discover the topology (params may be NULL). Setup path: allocates, reads sysfs.
 * Thread-safe. Errors: TFAB_ERR_NOMEM; TFAB_ERR_NODEV when the affinity mask holds no CPU.
 * Free the result with tfab_numa_topo_free(). */
TFAB_API tfab_status_t tfab_numa_topo_query(const tfab_numa_topo_params_t *params, tfab_numa_topo_t **topo_p);
TFAB_API void          tfab_numa_topo_free(tfab_numa_topo_t *topo);
/* The node with OS id `id`, or NULL. */
TFAB_API const tfab_numa_node_t *tfab_numa_topo_node(const tfab_numa_topo_t *topo, int id);
/* Format a CPU list as ranges ("0-3,8,10-11"; "" for none) into buf (always terminated).
 * Returns the length it needed, like snprintf. For the CLI: nodes, CPUs, memory per node. */
TFAB_API size_t tfab_cpulist_format(const int *cpus, unsigned n_cpus, char *buf, size_t len);

/* ---- streams --------------------------------------------------------------------------------
 * A stream is an in-order queue of operations bound to one NUMA node, run by its own K worker
 * threads pinned to that node's CPUs. Worker 0 (the leader) pops and runs the ops one at a time
 * in FIFO order; workers 1..K-1 only help inside tfab_stream_parallel_for().
 *
 * Sharing a node between streams: every stream owns its threads (a sampling stream never
 * waits behind the forward pass's parallel_for). Without an explicit `cpus` list, each worker
 * is pinned to a single CPU of the node, least used first (counting the workers of live
 * streams, ties to the lowest CPU number): a 6-worker forward stream and then a 1-worker
 * sampling and a 1-worker network stream on an 8-CPU node get disjoint cores; once every core
 * carries a worker, further workers share cores, time-sliced by the kernel. Idle workers spin
 * for spin_ns and then sleep (futex), so a sharing stream costs nothing while it is idle. For a
 * deliberate split, give each stream its own `cpus`; TFAB_STREAM_PIN_NODE lets every worker
 * run on any of the node's CPUs instead of one.
 *
 * Typical use (the forward pass on one stream, sampling on another, ordered by an event):
 *
 *     static void row(size_t r, void *arg) { gemv_t *g = arg; g->y[r] = dot(g, r); }
 *     static tfab_status_t op_layer(tfab_stream_ctx_t *ctx, void *arg)
 *     {
 *         tfab_stream_parallel_for(ctx, ((gemv_t *)arg)->n_rows, row, arg);
 *         return TFAB_OK;
 *     }
 *     tfab_stream_enqueue(fwd, op_layer, &g);       tfab_event_record(logits_ready, fwd);
 *     tfab_stream_wait_event(smp, logits_ready);    tfab_stream_enqueue(smp, op_sample, &s);
 *     tfab_stream_add_callback(smp, on_token, ctx); // or tfab_stream_synchronize(smp)
 *
 * Errors: an op that returns a status other than TFAB_OK marks the stream errored (sticky;
 * logged once as a warning with the stream's name). Later ops are skipped (counted in
 * ops_skipped, as TFAB_ERR_CANCELED), callbacks still run and get the error, events recorded
 * after it complete with it, tfab_stream_synchronize() and tfab_stream_query() return it,
 * until tfab_stream_clear_error(). An error is never dropped. */

typedef struct tfab_stream     tfab_stream_t;
typedef struct tfab_stream_ctx tfab_stream_ctx_t; /* what a running op gets; see parallel_for */
typedef struct tfab_event      tfab_event_t;

/* An operation. Runs on the stream's leader thread, after everything enqueued before it.
 * Returning anything but TFAB_OK errors the stream (see above). It may enqueue onto any stream
 * (its own included), record events and call tfab_stream_parallel_for(ctx, ...); it must not
 * synchronize or destroy its own stream. */
typedef tfab_status_t (*tfab_stream_op_fn_t)(tfab_stream_ctx_t *ctx, void *arg);
/* A callback: runs on the leader after all prior work; status is TFAB_OK or the stream's
 * sticky error (the first failing op's status, or TFAB_ERR_CANCELED after cancel). */
typedef void (*tfab_stream_callback_t)(tfab_stream_t *stream, tfab_status_t status, void *arg);
/* One task of a parallel_for; task is in [0, n_tasks). */
typedef void (*tfab_task_fn_t)(size_t task, void *arg);
/* The shape the model codes against: tfab_stream_parallel_for has this type. */
typedef void (*tfab_parallel_for_fn_t)(void *ctx, size_t n_tasks, tfab_task_fn_t fn, void *arg);

/* Scratch allocator (injectable for tests). alloc returns page-aligned, zeroed, pre-faulted
 * memory placed on `node` (node -1: no NUMA, no placement), or NULL (it logs why). */
typedef struct tfab_stream_allocator {
    void *(*alloc)(size_t size, int node, void *arg);
    void (*free)(void *ptr, size_t size, void *arg);
    void *arg;
} tfab_stream_allocator_t;

enum {
    TFAB_STREAM_PARAM_NODE      = 1u << 0,
    TFAB_STREAM_PARAM_N_WORKERS = 1u << 1,
    TFAB_STREAM_PARAM_CPUS      = 1u << 2, /* cpus and n_cpus */
    TFAB_STREAM_PARAM_QUEUE_LEN = 1u << 3,
    TFAB_STREAM_PARAM_SCRATCH   = 1u << 4,
    TFAB_STREAM_PARAM_ALLOCATOR = 1u << 5,
    TFAB_STREAM_PARAM_FLAGS     = 1u << 6,
    TFAB_STREAM_PARAM_SPIN_NS   = 1u << 7,
    TFAB_STREAM_PARAM_NAME      = 1u << 8,
    TFAB_STREAM_PARAM_TOPO      = 1u << 9,
};
enum {
    /* enqueue on a full queue waits for a free slot instead of returning TFAB_ERR_BUSY
     * (except from the stream's own threads, which always get TFAB_ERR_BUSY: no deadlock) */
    TFAB_STREAM_BLOCK_WHEN_FULL = 1u << 0,
    /* pin each worker to all the node's CPUs (or all of `cpus`) instead of one CPU */
    TFAB_STREAM_PIN_NODE = 1u << 1,
};

typedef struct tfab_stream_params {
    uint64_t field_mask; /* TFAB_STREAM_PARAM_* */
    int      node;       /* OS NUMA node id; default: the node of the calling CPU, else the
                            first node with CPUs */
    unsigned n_workers;  /* K >= 1; default: n_cpus when cpus is given, else the node's
                            allowed CPU count. More than the CPUs is allowed (they share) */
    const int *cpus;     /* [n_cpus] worker i is pinned to cpus[i % n_cpus]; every entry
                            must be an allowed CPU of `node`. Copied. */
    unsigned n_cpus;
    unsigned queue_len;    /* op slots, rounded up to a power of two; default 1024 */
    size_t   scratch_size; /* bytes of node-local scratch (tfab_stream_scratch); default 0 */
    const tfab_stream_allocator_t *allocator; /* default: mmap + mbind(MPOL_BIND) + prefault */
    unsigned                       flags; /* TFAB_STREAM_BLOCK_WHEN_FULL, TFAB_STREAM_PIN_NODE */
    uint64_t    spin_ns;     /* idle spin before sleeping, ns; default 50000 (0: sleep at once) */
    const char *name;        /* for thread names and log lines; copied; default "s<node>" */
    const tfab_numa_topo_t *topo; /* place by this topology (e.g. a TFAB_NUMA_TOPO_FLAT one); default:
                                tfab_numa_topo_query(NULL). Only read during create. */
} tfab_stream_params_t;

/* Create a stream: allocates the op ring and the scratch, starts and pins K threads.
 * Setup path: allocates, blocks briefly. Thread-safe.
 * Errors: TFAB_ERR_INVALID (bad params, a CPU not in the node), TFAB_ERR_NOT_FOUND (no such
 * node), TFAB_ERR_NODEV (the node has no allowed CPU), TFAB_ERR_NOMEM, TFAB_ERR_IO (thread
 * creation or pinning failed). */
TFAB_API tfab_status_t tfab_stream_create(const tfab_stream_params_t *params,
                                          tfab_stream_t             **stream_p);
/* Drain and destroy: waits until every op already enqueued has run (or been skipped, if the
 * stream is errored or canceled), callbacks included, then stops and joins the workers and
 * frees the scratch. Call tfab_stream_cancel() first to skip the queued ops instead. Blocks.
 * Not from the stream's own ops/callbacks; nothing may enqueue onto it concurrently. */
TFAB_API void tfab_stream_destroy(tfab_stream_t *stream);

/* Enqueue fn(ctx, arg). Hot path: never allocates (a preallocated ring of queue_len slots).
 * When the ring is full: TFAB_ERR_BUSY (nothing enqueued), or with TFAB_STREAM_BLOCK_WHEN_FULL
 * it waits for a slot. Thread-safe: any number of threads may enqueue concurrently; FIFO order
 * is the order in which the calls took the stream's lock. Errors: TFAB_ERR_INVALID, _BUSY. */
TFAB_API tfab_status_t tfab_stream_enqueue(tfab_stream_t *stream, tfab_stream_op_fn_t fn,
                                           void *arg);
/* Enqueue a callback, run after all work enqueued before it (also when the stream is errored:
 * it gets the error). Same queue, costs and errors as tfab_stream_enqueue. */
TFAB_API tfab_status_t tfab_stream_add_callback(tfab_stream_t *stream, tfab_stream_callback_t cb,
                                                void *arg);
/* Block until all work enqueued before the call has run. Returns TFAB_OK or the sticky error.
 * Thread-safe; returns TFAB_ERR_INVALID (logged) from the stream's own threads. */
TFAB_API tfab_status_t tfab_stream_synchronize(tfab_stream_t *stream);
/* Non-blocking: TFAB_INPROGRESS while work is queued or running, else TFAB_OK or the sticky
 * error. Thread-safe. */
TFAB_API tfab_status_t tfab_stream_query(tfab_stream_t *stream);
/* Error the stream with TFAB_ERR_CANCELED (unless already errored): the queued ops are
 * skipped. Thread-safe, non-blocking. */
TFAB_API void tfab_stream_cancel(tfab_stream_t *stream);
/* Return the sticky error and clear it: ops that start after this run again. For a clean cut,
 * synchronize first. Thread-safe, non-blocking. */
TFAB_API tfab_status_t tfab_stream_clear_error(tfab_stream_t *stream);

TFAB_API int      tfab_stream_node(const tfab_stream_t *stream);      /* OS node id */
TFAB_API unsigned tfab_stream_n_workers(const tfab_stream_t *stream); /* K */
/* The CPU(s) worker i is pinned to: with single-CPU pinning one entry. Returns the count and
 * copies at most max into cpus. */
TFAB_API unsigned tfab_stream_worker_cpus(const tfab_stream_t *stream, unsigned worker, int *cpus,
                                          unsigned max);
/* The stream's node-local scratch (NULL and 0 if none). Valid until destroy. Only ops of this
 * stream should use it (they run one at a time, so they need no lock for it). */
TFAB_API void       *tfab_stream_scratch(const tfab_stream_t *stream, size_t *size_p);
TFAB_API const char *tfab_stream_name(const tfab_stream_t *stream);

typedef struct tfab_stream_stats {
    uint64_t ops_run;     /* ops that ran (fn called) */
    uint64_t ops_skipped; /* ops skipped because the stream was errored (TFAB_ERR_CANCELED) */
    uint64_t callbacks_run;
    uint64_t parallel_fors; /* calls that used the helpers (not the inline ones) */
    uint64_t enqueue_busy;  /* enqueues refused with TFAB_ERR_BUSY */
} tfab_stream_stats_t;
/* A snapshot; exact after synchronize. Thread-safe. */
TFAB_API void tfab_stream_get_stats(tfab_stream_t *stream, tfab_stream_stats_t *stats);

/* ---- inside an op -------------------------------------------------------------------------- */

/* The stream an op runs on. */
TFAB_API tfab_stream_t *tfab_stream_ctx_stream(tfab_stream_ctx_t *ctx);
/* The ctx every op of this stream receives: stable for the stream's lifetime, so it can be
 * stored ahead (e.g. as tfab_model_params_t.parallel_ctx next to tfab_stream_parallel_for).
 * Calls through it only run in parallel on the stream's leader, i.e. from inside its ops. */
TFAB_API tfab_stream_ctx_t *tfab_stream_get_ctx(tfab_stream_t *stream);

/* Data-parallel loop: call fn(task, arg) once for every task in [0, n_tasks), spread over the
 * stream's K workers (the calling leader included), and return when all have returned (a
 * barrier: their writes are visible to the caller afterwards). Order and placement of tasks
 * are unspecified; tasks are claimed in chunks from an atomic counter.
 *
 * ctx is the tfab_stream_ctx_t * an op received (as void *, so this function has exactly the
 * type tfab_parallel_for_fn_t the model codes against). With ctx NULL, or when called from any
 * thread other than that stream's leader, or nested inside a task, or with K == 1 or
 * n_tasks == 1, the tasks run inline on the caller, in order. n_tasks == 0 returns at once.
 * Tasks cannot fail: record failures in arg and return them from the op.
 * The leader waits for the tasks, not for the helpers: a helper that is asleep or descheduled
 * when the call starts does not delay it (it only delays it while holding a chunk).
 * Cost per call with empty tasks (tests/stream/bench_stream, 16-vCPU Xeon VM, helpers awake):
 * K=1 or inline: a plain loop (64 tasks 0.1 us); K=2: 0.4-0.6 us (2 tasks), 0.9-1.2 us
 * (64 tasks); K=8: 1.5 us (8 tasks), 3.2 us (64); K=16: 2.5 us (16), 5.9 us (64). Helpers
 * spin spin_ns after a job, then sleep: the first call after a longer pause pays a futex
 * wake-up, or the leader runs most of it alone. */
TFAB_API void tfab_stream_parallel_for(void *ctx, size_t n_tasks, tfab_task_fn_t fn, void *arg);

/* The index in [0, K) of the calling thread among its stream's workers (0 = leader), or -1 on a
 * thread that is no stream worker. For per-worker slices of the scratch. */
TFAB_API int tfab_stream_worker_index(void);

/* ---- events -------------------------------------------------------------------------------- */

/* Room to grow (timing, interprocess...): no fields yet; pass NULL or field_mask 0. */
typedef struct tfab_event_params {
    uint64_t field_mask;
} tfab_event_params_t;

/* Create an event (never recorded: query and synchronize return TFAB_OK). Thread-safe.
 * Errors: TFAB_ERR_INVALID (unknown field_mask bits), TFAB_ERR_NOMEM. */
TFAB_API tfab_status_t tfab_event_create(const tfab_event_params_t *params, tfab_event_t **event_p);
/* Release the caller's reference. Safe while records or waits on it are still queued: the
 * event is freed when the last of them has run. */
TFAB_API void tfab_event_destroy(tfab_event_t *event);
/* Capture all work enqueued on stream so far: the event completes when that work has run.
 * Re-recording moves the event to the new capture. Hot path (one queue slot, no allocation).
 * Errors: as tfab_stream_enqueue; TFAB_ERR_BUSY also while an earlier record of this event on
 * a different stream has not completed yet. Thread-safe. */
TFAB_API tfab_status_t tfab_event_record(tfab_event_t *event, tfab_stream_t *stream);
/* Make all work enqueued on stream after this call wait until the event's latest record (as of
 * this call) completes. Does not block the caller. A never-recorded event is a no-op. If that
 * record completes with an error, stream is errored with it (its dependency failed).
 * Errors: as tfab_stream_enqueue. Thread-safe. */
TFAB_API tfab_status_t tfab_stream_wait_event(tfab_stream_t *stream, tfab_event_t *event);
/* Block until the latest record completes. Returns TFAB_OK, or the error of the work before it.
 * Thread-safe; may be called from ops of other streams. */
TFAB_API tfab_status_t tfab_event_synchronize(tfab_event_t *event);
/* Non-blocking: TFAB_INPROGRESS while the latest record is pending, else as synchronize. */
TFAB_API tfab_status_t tfab_event_query(tfab_event_t *event);

#ifdef __cplusplus
}
#endif
#endif

/* stream_int.h - private structures shared by the stream module's files (topology, team,
 * queue, events, NUMA memory). */
#ifndef TFAB_STREAM_INT_H
#define TFAB_STREAM_INT_H

#include <pthread.h>
#include <sched.h> /* cpu_set_t: includers define _GNU_SOURCE */
#include <stdatomic.h>
#include <stdint.h>
#include <tfab/log.h>
#include <tfab/stream.h>

#define STREAM_CACHELINE 64
#define STREAM_MOD       "stream"

/* ---- spin-then-futex waiting on a 32-bit word (spin.c) ---- */
uint64_t spin_now_ns(void);
/* Return once *word != old: spin up to spin_ns, then sleep on the futex, counting itself in
 * *sleepers so that spin_wake() only enters the kernel when someone sleeps. */
void spin_wait_change(_Atomic uint32_t *word, uint32_t old, _Atomic uint32_t *sleepers,
                      uint64_t spin_ns);
/* Store val into *word and wake the sleepers, if any. */
void spin_store_wake(_Atomic uint32_t *word, uint32_t val, _Atomic uint32_t *sleepers);

/* ---- the parallel_for team (team.c) ---- */
struct stream_worker {
    struct tfab_stream *stream;
    unsigned            index; /* 0 = leader */
    pthread_t           thread;
    int                 started;
    unsigned            n_cpus; /* CPUs it is pinned to */
    int                *cpus;   /* [n_cpus] */
};

typedef struct stream_team {
    unsigned    n_helpers; /* K - 1 */
    uint64_t    spin_ns;
    int         active; /* leader only: a parallel_for is running (nesting guard) */
    _Atomic int stop;
    /* The job, a seqlock: the leader invalidates claim, writes the fields, then publishes
     * claim = gen << 32 | 0. A helper reads claim, the fields, and takes a chunk with a CAS on
     * claim, which fails if the job changed meanwhile: a late helper never runs a stale job,
     * and the leader never waits for helpers that took no chunk. */
    _Atomic(tfab_task_fn_t) fn;
    _Atomic(void *)         arg;
    _Atomic size_t          n_tasks;
    _Atomic size_t          chunk;
    _Atomic uint32_t        n_chunks;
    _Alignas(STREAM_CACHELINE) _Atomic uint64_t claim; /* gen << 32 | next chunk */
    _Alignas(STREAM_CACHELINE) _Atomic size_t done;    /* tasks finished in this job */
    _Alignas(STREAM_CACHELINE) _Atomic uint32_t gen;   /* job number; helpers wait on it */
    _Atomic uint32_t helper_sleepers;
    _Alignas(STREAM_CACHELINE) _Atomic uint32_t done_gen; /* last finished job; leader waits */
    _Atomic uint32_t leader_sleeping;
} stream_team_t;

void team_init(stream_team_t *team, unsigned n_helpers, uint64_t spin_ns);
/* Body of helper threads (worker index >= 1); returns when the team stops. */
void team_helper_loop(stream_team_t *team);
/* Leader, between jobs: wake sleeping helpers so they spin when the next job comes (called as
 * an op starts, so their wake-up overlaps the op's serial part). */
void team_warm(stream_team_t *team);
/* Stop the helpers (they leave team_helper_loop); the caller then joins them. */
void team_stop(stream_team_t *team);
/* Run a parallel_for from the leader with the helpers. */
void team_run(stream_team_t *team, size_t n_tasks, tfab_task_fn_t fn, void *arg);

/* ---- ops and the stream (stream.c) ---- */
typedef enum stream_op_kind {
    OP_FN = 0,
    OP_CALLBACK,
    OP_RECORD,
    OP_WAIT,
} stream_op_kind_t;

typedef struct stream_op {
    stream_op_kind_t kind;
    union {
        tfab_stream_op_fn_t    fn;
        tfab_stream_callback_t cb;
    } u;
    void              *arg;
    struct tfab_event *event;
    uint64_t           seq; /* OP_RECORD / OP_WAIT: which record of the event */
} stream_op_t;

struct tfab_stream_ctx {
    struct tfab_stream *stream;
};

/* ---- events (event.c) ---- */
struct tfab_event {
    pthread_mutex_t     lock;
    pthread_cond_t      cv;
    uint64_t            issued;    /* records enqueued */
    uint64_t            completed; /* records run (in order: one stream at a time) */
    tfab_status_t       status;    /* of the latest completed record */
    struct tfab_stream *pending;   /* stream of the pending records, NULL when none */
    unsigned            n_waiters;
    _Atomic unsigned    refs; /* the creator's + one per queued record/wait */
};

void event_ref(struct tfab_event *ev);
void event_unref(struct tfab_event *ev);
/* Under the stream's lock, with a slot reserved: claim the next record seq for stream. */
tfab_status_t event_prepare_record(struct tfab_event *ev, struct tfab_stream *stream,
                                   uint64_t *seq_p);
/* The seq a wait made now depends on (0: never recorded, nothing to wait for). */
uint64_t event_latest(struct tfab_event *ev);
/* The leader ran record seq: complete it with status. */
void event_complete(struct tfab_event *ev, uint64_t seq, tfab_status_t status);
/* The leader waits for record seq; returns that record's status. */
tfab_status_t event_wait_seq(struct tfab_event *ev, uint64_t seq);

/* ---- topology and placement (topo.c) ---- */
/* Where the topology comes from: libnuma, or a fake one in tests. */
typedef struct topo_source {
    int (*available)(void);                              /* < 0: no NUMA (flat) */
    int (*max_node)(void);                               /* highest node number */
    int (*node_allowed)(int node);                       /* we may allocate on it (cpuset mems) */
    long long (*node_size)(int node, long long *free_p); /* bytes; <= 0: no memory */
    int (*node_cpus)(int node, int *cpus, int max);      /* ascending; -1: no such node */
    int (*distance)(int a, int b);                       /* SLIT distance; <= 0 unknown */
} topo_source_t;
/* Build a topology from src for the affinity mask aff (CPU numbers below max_cpu). */
tfab_status_t topo_build(const topo_source_t *src, unsigned flags, const cpu_set_t *aff,
                         size_t aff_size, int max_cpu, tfab_numa_topo_t **topo_p);
/* Reserve CPUs for n workers on node (least used first) into cpus[n]; release them later. */
void topo_cpus_reserve(const tfab_numa_node_t *node, unsigned n, int *cpus);
/* Count explicitly chosen CPUs as used, as reserve does. */
void topo_cpus_add(const int *cpus, unsigned n);
void topo_cpus_release(const int *cpus, unsigned n);
/* Node of the calling thread's CPU in topo, or NULL. */
const tfab_numa_node_t *topo_current_node(const tfab_numa_topo_t *topo);

/* ---- NUMA-local memory (numa_mem.c) ---- */
extern const tfab_stream_allocator_t numa_mem_default_allocator;

#endif

/* team.c - the data-parallel loop of a stream: the leader publishes a job (a seqlock-guarded
 * descriptor and a generation bump); the leader and every awake helper take chunks of task
 * indices with a CAS on one claim word; whoever finishes the last task signals the leader. The
 * leader waits for the tasks, not for the helpers. No locks, no allocation per call. */
#include <string.h>
#include "stream_int.h"

#define CLAIM_INVALID 0xffffffffu

void team_init(stream_team_t *team, unsigned n_helpers, uint64_t spin_ns)
{
    memset(team, 0, sizeof(*team));
    team->n_helpers = n_helpers;
    team->spin_ns   = spin_ns;
    atomic_init(&team->stop, 0);
    atomic_init(&team->fn, NULL);
    atomic_init(&team->arg, NULL);
    atomic_init(&team->n_tasks, 0);
    atomic_init(&team->chunk, 1);
    atomic_init(&team->n_chunks, 0);
    atomic_init(&team->claim, CLAIM_INVALID);
    atomic_init(&team->done, 0);
    atomic_init(&team->gen, 0);
    atomic_init(&team->helper_sleepers, 0);
    atomic_init(&team->done_gen, 0);
    atomic_init(&team->leader_sleeping, 0);
}

/* Take and run chunks of job gen until none is left (or the job is no longer gen). The first
 * chunk is taken with a CAS that validates the job; while a worker holds finished-but-
 * unreported tasks the job cannot end, so further chunks are taken with a plain fetch_add and
 * the tasks are reported once, at the end: per worker and job one CAS, one fetch_add per
 * chunk, one fetch_add on done. */
static void run_chunks(stream_team_t *team, uint32_t gen)
{
    tfab_task_fn_t fn;
    void          *arg;
    size_t         n_tasks, chunk;
    uint32_t       n_chunks, idx;
    for (;;) {
        uint64_t v = atomic_load_explicit(&team->claim, memory_order_acquire);
        if ((uint32_t)(v >> 32) != gen || (uint32_t)v == CLAIM_INVALID)
            return;
        fn       = atomic_load_explicit(&team->fn, memory_order_relaxed);
        arg      = atomic_load_explicit(&team->arg, memory_order_relaxed);
        n_tasks  = atomic_load_explicit(&team->n_tasks, memory_order_relaxed);
        chunk    = atomic_load_explicit(&team->chunk, memory_order_relaxed);
        n_chunks = atomic_load_explicit(&team->n_chunks, memory_order_relaxed);
        idx      = (uint32_t)v;
        if (idx >= n_chunks)
            return; /* all taken */
        /* seqlock read side: the fields above belong to v's job iff claim still equals v */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_compare_exchange_weak_explicit(&team->claim, &v, v + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            break;
    }
    size_t ran = 0;
    do {
        size_t i   = (size_t)idx * chunk;
        size_t end = n_tasks - i < chunk ? n_tasks : i + chunk;
        for (size_t t = i; t < end; t++)
            fn(t, arg);
        ran += end - i;
        idx = (uint32_t)atomic_fetch_add_explicit(&team->claim, 1, memory_order_relaxed);
    } while (idx < n_chunks);
    /* the RMW chain carries every worker's writes to whoever completes the job */
    if (atomic_fetch_add_explicit(&team->done, ran, memory_order_acq_rel) + ran == n_tasks)
        spin_store_wake(&team->done_gen, gen, &team->leader_sleeping);
}

void team_helper_loop(stream_team_t *team)
{
    uint32_t seen = 0;
    for (;;) {
        spin_wait_change(&team->gen, seen, &team->helper_sleepers, team->spin_ns);
        seen = atomic_load_explicit(&team->gen, memory_order_acquire);
        if (atomic_load_explicit(&team->stop, memory_order_acquire))
            return;
        run_chunks(team, seen);
    }
}

void team_warm(stream_team_t *team)
{
    if (atomic_load(&team->helper_sleepers) == 0)
        return; /* all spinning already (or no helpers) */
    /* an empty job: helpers wake, find nothing to claim, and spin for the next one */
    uint32_t gen = atomic_load_explicit(&team->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&team->claim, ((uint64_t)gen << 32) | CLAIM_INVALID,
                          memory_order_relaxed);
    atomic_store_explicit(&team->done_gen, gen, memory_order_relaxed); /* no job in flight */
    spin_store_wake(&team->gen, gen, &team->helper_sleepers);
}

void team_stop(stream_team_t *team)
{
    atomic_store_explicit(&team->stop, 1, memory_order_release);
    uint32_t g = atomic_load_explicit(&team->gen, memory_order_relaxed) + 1;
    spin_store_wake(&team->gen, g, &team->helper_sleepers);
}

void team_run(stream_team_t *team, size_t n_tasks, tfab_task_fn_t fn, void *arg)
{
    unsigned k = team->n_helpers + 1;
    /* about 4 chunks per worker: few atomics for many tiny tasks, balance for uneven ones */
    size_t chunk = n_tasks / ((size_t)k * 4);
    if (chunk == 0)
        chunk = 1;
    uint32_t gen = atomic_load_explicit(&team->gen, memory_order_relaxed) + 1;
    team->active = 1;
    /* seqlock write side: invalidate, fence, write the fields, publish */
    atomic_store_explicit(&team->claim, ((uint64_t)gen << 32) | CLAIM_INVALID,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&team->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&team->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&team->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&team->chunk, chunk, memory_order_relaxed);
    atomic_store_explicit(&team->n_chunks, (uint32_t)((n_tasks + chunk - 1) / chunk),
                          memory_order_relaxed);
    atomic_store_explicit(&team->done, 0, memory_order_relaxed);
    atomic_store_explicit(&team->claim, (uint64_t)gen << 32, memory_order_release);
    spin_store_wake(&team->gen, gen, &team->helper_sleepers);
    run_chunks(team, gen);
    /* done_gen == gen - 1 until the job's last task has finished */
    spin_wait_change(&team->done_gen, gen - 1, &team->leader_sleeping, team->spin_ns);
    team->active = 0;
}

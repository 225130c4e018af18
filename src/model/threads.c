/* threads.c - fork-join pool: workers spin briefly on a generation counter, then sleep on a
 * condition variable; every worker checks in once per job, so job fields stay stable. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "threads.h"

#define SPIN_ITERS 100000 /* pause iterations before sleeping (~ a few hundred microseconds) */

struct tfab_threads {
    unsigned         n_workers;
    pthread_t       *tids;
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    _Atomic unsigned gen;      /* bumped once per job */
    _Atomic unsigned finished; /* workers done with the current job */
    _Atomic size_t   next;     /* next task to claim */
    _Atomic int      stop;
    tfab_task_fn_t   fn; /* job fields: written by the caller before bumping gen */
    void            *arg;
    size_t           n_tasks;
};

static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}

static void run_tasks(tfab_threads_t *p)
{
    for (size_t t; (t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n_tasks;)
        p->fn(t, p->arg);
}

static void *worker(void *arg)
{
    tfab_threads_t *p    = arg;
    unsigned        seen = 0; /* gen at creation: a job posted before this thread ran counts */
    for (;;) {
        unsigned g;
        int      spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                if (spins % 1024 == 0) /* oversubscribed: let the thread we wait for run */
                    sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen)
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        run_tasks(p);
        atomic_fetch_add_explicit(&p->finished, 1, memory_order_release);
    }
}

tfab_status_t tfab_threads_create(unsigned n_threads, tfab_threads_t **threads_p)
{
    tfab_threads_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        TFAB_ERROR("model", "out of memory for the thread pool");
        return TFAB_ERR_NOMEM;
    }
    p->n_workers = n_threads > 1 ? n_threads - 1 : 0;
    p->tids      = calloc(p->n_workers ? p->n_workers : 1, sizeof(pthread_t));
    if (p->tids == NULL) {
        TFAB_ERROR("model", "out of memory for the thread pool");
        free(p);
        return TFAB_ERR_NOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (unsigned i = 0; i < p->n_workers; i++) {
        int rc = pthread_create(&p->tids[i], NULL, worker, p);
        if (rc != 0) {
            TFAB_ERROR("model", "pthread_create of compute worker %u failed: %s", i, strerror(rc));
            p->n_workers = i;
            tfab_threads_destroy(p);
            return tfab_status_from_errno(rc);
        }
    }
    *threads_p = p;
    return TFAB_OK;
}

void tfab_threads_destroy(tfab_threads_t *p)
{
    if (p == NULL)
        return;
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_workers; i++)
        pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}

void tfab_threads_parallel_for(void *ctx, size_t n_tasks, tfab_task_fn_t fn, void *arg)
{
    tfab_threads_t *p = ctx;
    if (n_tasks == 0)
        return;
    if (p == NULL || p->n_workers == 0 || n_tasks == 1) {
        for (size_t t = 0; t < n_tasks; t++)
            fn(t, arg);
        return;
    }
    p->fn      = fn;
    p->arg     = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu); /* pairs with the sleeping check: no lost wake-up */
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p);
    for (unsigned spins = 0;
         atomic_load_explicit(&p->finished, memory_order_acquire) != p->n_workers; spins++) {
        cpu_relax();
        if (spins > 1000)
            sched_yield(); /* a worker is late (descheduled): give it the CPU */
    }
}
